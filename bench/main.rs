//! `make bench`: create_payment through the local twin (the release bootstraps, via the Lambda
//! Runtime API, against DynamoDB Local) next to its floor measured in the same run: the same
//! items one payment writes (idempotency record, checkout, payment orders) in one direct
//! `TransactWriteItems` plus the one sandbox-PSP session create it needs; the PSP webhook next
//! to the transaction it writes; the outbox pipeline (webhook → stream → relay → SQS → ledger
//! and wallet) next to the raw writes it needs; the stripped bootstrap size and its
//! start-to-first-event time; and the refunds (bench/refunds.rs): `POST /v1/refunds` next to
//! its transaction, and refunds from the API to the ledger and wallet next to their writes; and
//! the payouts (bench/payouts.rs): `POST /v1/payouts` next to its transaction, and a scheduled
//! run over 10,000 due wallets next to the scan and the writes it needs.
//! The floors run with the outbox relay paused. Writes bench/results.json.

mod payouts;
mod reconcile;
mod refunds;

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use shared::adapters::stripe::{RetryPolicy, StripeClient};
use shared::api::pay_in::parse_checkout_request;
use shared::domain::idempotency::IdempotencyRecord;
use shared::domain::idempotency::ResourceRef;
use shared::domain::ids::AccountId;
use shared::domain::ledger::LedgerAccount;
use shared::domain::outbox::OutboxEvent;
use shared::domain::pay_in::{PaymentEvent, SessionRequest};
use shared::domain::psp::sign;
use shared::domain::rate_limit::RateLimit;
use shared::domain::Checkout;
use shared::ports::{Applied, Checkouts, LedgerWriter, Psp, WalletWriter, Webhooks};

const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";
const WEBHOOK_SECRET: &str = "whsec_sandbox_localdev_7c1e9a";

const WARMUP: usize = 64;

struct Stats {
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
}

/// Runs `n` calls of `op` with `concurrency` in flight; latency per call and overall rate.
async fn measure<F, Fut>(n: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let wall = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1e3
    };
    Stats {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        rps: n as f64 / wall.as_secs_f64(),
    }
}

/// `n` checkouts created through the API at concurrency 16 (setup, untimed).
async fn create_checkouts(acct: &common::Account, n: usize) -> Vec<Value> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            acct.post("/v1/payments", Some(&common::new_key()), &body(i))
                .await
                .json
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// A signed `checkout.session.completed` for a created checkout: (body, Stripe-Signature).
fn completed_webhook(c: &Value, event_id: &str) -> (String, String) {
    let event = json!({"id": event_id, "object": "event", "type": "checkout.session.completed",
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": c["psp_token"], "object": "checkout.session", "client_reference_id": c["checkout_id"],
        "amount_total": minor_of(&c["total_amount"]), "currency": "usd", "payment_status": "paid"}}})
    .to_string();
    let signature = sign(event.as_bytes(), WEBHOOK_SECRET, chrono::Utc::now().timestamp());
    (event, signature)
}

/// Delivers a signed `checkout.session.completed` for `c` to the webhook URL, as the PSP would;
/// the answer (200 expected).
async fn deliver_completed(http: &reqwest::Client, api: &str, c: &Value, event_id: &str) -> Value {
    let (event, signature) = completed_webhook(c, event_id);
    let r = http
        .post(format!("{api}/webhooks/psp"))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A count from the environment, or its default.
fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn body(i: usize) -> String {
    // The multi-seller shape (3 sellers) for every third request, single otherwise.
    if i.is_multiple_of(3) {
        json!({"buyer_id": "bench_buyer", "order_id": format!("o{i}"), "currency": "USD", "total_amount": "100.00",
               "line_items": [{"seller_id": "s1", "amount": "40.00", "sub_order_id": "a"},
                              {"seller_id": "s2", "amount": "35.00", "sub_order_id": "b"},
                              {"seller_id": "s3", "amount": "25.00", "sub_order_id": "c"}]})
        .to_string()
    } else {
        json!({"buyer_id": "bench_buyer", "seller_id": "s1", "amount": "99.99", "currency": "USD", "order_id": format!("o{i}")})
            .to_string()
    }
}

/// Prints one scenario next to its floor and adds it to the results.
fn record(
    results: &mut serde_json::Map<String, Value>,
    name: &str,
    n: usize,
    concurrency: usize,
    api: &Stats,
    floor: &Stats,
) {
    println!(
        "{name:<20} n={n:<5} p50 {:>7.2} ms (floor {:>6.2}, x{:.2})  p99 {:>7.2} ms (floor {:>6.2}, x{:.2})  {:>7.1} req/s (floor {:>7.1}, {:.0}%)",
        api.p50_ms, floor.p50_ms, api.p50_ms / floor.p50_ms, api.p99_ms, floor.p99_ms, api.p99_ms / floor.p99_ms,
        api.rps, floor.rps, 100.0 * api.rps / floor.rps
    );
    results.insert(
        name.to_owned(),
        json!({
            "n": n, "concurrency": concurrency,
            "p50_ms": round(api.p50_ms), "p99_ms": round(api.p99_ms), "rps": round(api.rps),
            "floor_p50_ms": round(floor.p50_ms), "floor_p99_ms": round(floor.p99_ms), "floor_rps": round(floor.rps),
            "p50_ratio": round(api.p50_ms / floor.p50_ms), "p99_ratio": round(api.p99_ms / floor.p99_ms),
            "rps_ratio": round(api.rps / floor.rps),
        }),
    );
}

/// A checkout as create_payment opens it, with its idempotency record (for the floors).
fn floor_checkout(
    account: &AccountId,
    i: usize,
) -> (IdempotencyRecord, Checkout, Vec<shared::domain::PaymentOrder>) {
    let text = body(i);
    let request = parse_checkout_request(text.as_bytes()).unwrap();
    let now = chrono::Utc::now();
    let (checkout, orders) = Checkout::open(&request, account, now);
    let ms = now.timestamp_millis();
    let record = IdempotencyRecord::new_in_progress(
        format!("floor#{}", common::new_key()),
        request.fingerprint(),
        ResourceRef::checkout(&checkout.id),
        ms,
        ms + 10_000,
    );
    (record, checkout, orders)
}

/// A USD decimal string from our API as minor units.
fn minor_of(amount: &Value) -> i64 {
    let usd = shared::domain::Currency::parse("USD").unwrap();
    shared::domain::Money::parse(amount.as_str().unwrap(), usd)
        .unwrap()
        .minor()
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Starts the bootstrap against a one-shot Runtime API and times process start to the first
/// handled event (the response posted back).
async fn cold_start_ms(binary: &Path, ddb: &str) -> f64 {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let event = json!({
        "version": "2.0", "routeKey": "GET /v1/payments/{payment_order_id}", "rawPath": "/v1/payments/po_x",
        "rawQueryString": "", "headers": {}, "pathParameters": {"payment_order_id": "po_x"},
        "requestContext": {"accountId": "000000000000", "apiId": "bench", "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": "GET", "path": "/v1/payments/po_x", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"},
            "requestId": "r1", "routeKey": "GET /v1/payments/{payment_order_id}", "stage": "$default",
            "time": "25/Nov/2026:00:00:00 +0000", "timeEpoch": 0},
        "isBase64Encoded": false
    })
    .to_string();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let event = event.clone();
            let done_tx = done_tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let event = event.clone();
                    let done_tx = done_tx.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let mut resp = if path.ends_with("/invocation/next") {
                            hyper::Response::new(Full::new(Bytes::from(event)))
                        } else {
                            let _ = done_tx.send(()).await;
                            hyper::Response::new(Full::new(Bytes::new()))
                        };
                        if path.ends_with("/invocation/next") {
                            let deadline = (chrono::Utc::now().timestamp_millis() + 10_000).to_string();
                            let h = resp.headers_mut();
                            h.insert("lambda-runtime-aws-request-id", "r1".parse().unwrap());
                            h.insert("lambda-runtime-deadline-ms", deadline.parse().unwrap());
                            h.insert(
                                "lambda-runtime-invoked-function-arn",
                                "arn:aws:lambda:us-east-1:0:function:b".parse().unwrap(),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_ENDPOINT_URL_DYNAMODB", ddb)
        .env("PAYMENTS_TABLE", "PaymentsTable")
        .env("IDEMPOTENCY_TABLE", "IdempotencyTable")
        .env("API_KEYS_TABLE", "ApiKeysTable")
        .env("WALLETS_TABLE", "WalletsTable")
        .env("PSP_API_BASE", "http://127.0.0.1:9")
        .env("PSP_SECRET_KEY", "sk_test_bench")
        .env("PUBLIC_BASE_URL", "http://127.0.0.1:3000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bootstrap");
    tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
        .await
        .expect("first event handled");
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let _ = child.kill().await;
    server.abort();
    elapsed
}

#[tokio::main]
async fn main() {
    let root = common::workspace_root();
    let release = common::bin_dir();
    let stack = common::start(
        &release,
        &common::TwinSpec {
            label: "bench",
            // The scheduler's run in one invocation: its figure is one scan, not a fan-out.
            params: &[("PayoutScanSegments", "1")],
            on_disk: false,
            env: &[],
        },
    );
    let n_c1: usize = env_n("BENCH_N_C1", 300);
    let n_c16: usize = env_n("BENCH_N_C16", 2000);
    let acct = stack.new_account(RateLimit::new(1_000_000, 1_000_000)).await;
    let store = stack.store().await;
    let floor_account = AccountId::parse("acct_bench_floor").unwrap();
    let psp = StripeClient::new(&stack.psp, PSP_SECRET_KEY, RetryPolicy::default()).unwrap();

    // Warm the function instances up to the highest concurrency.
    measure(WARMUP, 16, |i| {
        let acct = &acct;
        async move {
            let r = acct
                .post("/v1/payments", Some(&common::new_key()), &body(i))
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    })
    .await;

    // BENCH_ONLY=create,refunds,pipeline,webhook,ledger,bootstrap,reconcile,payouts runs some scenarios; the others keep their
    // last figures in bench/results.json.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    let path = root.join("bench/results.json");
    let mut results: serde_json::Map<String, Value> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|_| !only.is_empty())
        .unwrap_or_default();
    let create_runs: &[(usize, usize)] = if run("create") {
        &[(1, n_c1), (16, n_c16)]
    } else {
        &[]
    };
    for &(concurrency, n) in create_runs {
        // The floor is the essential work, done directly: the claim transaction (record,
        // checkout, orders), the PSP session, and the transaction that stores the session and
        // the reply. The old floor stopped after the PSP call; its ratio is printed alongside.
        let old_floor = measure(n, concurrency, |i| {
            let (store, floor_account, psp) = (&store, &floor_account, &psp);
            async move {
                let (record, checkout, orders) = floor_checkout(floor_account, i);
                store.begin_checkout(&record, &checkout, &orders).await.unwrap();
                let session = SessionRequest::for_checkout(&checkout, &orders, "http://127.0.0.1:3000");
                psp.create_session(&session).await.unwrap();
            }
        })
        .await;
        let floor = measure(n, concurrency, |i| {
            let (store, floor_account, psp) = (&store, &floor_account, &psp);
            async move {
                let (record, mut checkout, mut orders) = floor_checkout(floor_account, i);
                store.begin_checkout(&record, &checkout, &orders).await.unwrap();
                let session = SessionRequest::for_checkout(&checkout, &orders, "http://127.0.0.1:3000");
                let session = psp.create_session(&session).await.unwrap();
                checkout.psp_session = Some(session.id);
                checkout.psp_url = Some(session.url);
                let from = checkout
                    .apply(&mut orders, PaymentEvent::Submitted, chrono::Utc::now())
                    .unwrap();
                let body = "{}".to_owned();
                let completion = shared::ports::Completion {
                    record_id: &record.record_id,
                    lease_token: record.lease_token().unwrap(),
                    status: 201,
                    body: &body,
                };
                assert!(store
                    .save_transition(&checkout, &orders, from, completion)
                    .await
                    .unwrap());
            }
        })
        .await;
        let api = measure(n, concurrency, |i| {
            let acct = &acct;
            async move {
                let r = acct
                    .post("/v1/payments", Some(&common::new_key()), &body(i))
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
            }
        })
        .await;
        let name = format!("create_payment_c{concurrency}");
        record(&mut results, &name, n, concurrency, &api, &floor);
        println!(
            "{:<20} against the old floor (claim + PSP call, no transition): p50 x{:.2}, p99 x{:.2}",
            "",
            api.p50_ms / old_floor.p50_ms,
            api.p99_ms / old_floor.p99_ms
        );
        if let Some(Value::Object(r)) = results.get_mut(&name) {
            r.insert("old_floor_p50_ms".into(), json!(round(old_floor.p50_ms)));
            r.insert("old_floor_p99_ms".into(), json!(round(old_floor.p99_ms)));
            r.insert(
                "old_floor_p50_ratio".into(),
                json!(round(api.p50_ms / old_floor.p50_ms)),
            );
        }
    }

    // Refunds next (they pause the relay for their floors and start it again), then the
    // pipeline: the scenarios after it pause the relay for their floors.
    if run("refunds") {
        refunds::run(&stack, &acct, &store, &mut results).await;
    }
    if run("pipeline") {
        pipeline(&stack, &acct, &store, &mut results).await;
    }
    if run("webhook") {
        webhook(&stack, &acct, &store, &mut results).await;
    }
    if run("ledger") {
        ledger_account(&stack, &acct, &mut results).await;
    }
    if run("bootstrap") {
        bootstrap(&release, &stack, &mut results).await;
    }
    if run("reconcile") {
        reconcile::run(&stack, &mut results).await;
    }
    // Last: it leaves the relay paused and wallets without their ledger.
    if run("payouts") {
        payouts::run(&stack, &acct, &store, &mut results).await;
    }
    let out: Value = Value::Object(results);
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap() + "\n").unwrap();
    println!("wrote {}", path.display());
}

/// Webhook handling at concurrency 16: signed checkout.session.completed events for
/// EXECUTING checkouts, next to the transaction the webhook must write, issued directly.
async fn webhook(
    stack: &common::Stack,
    acct: &common::Account,
    store: &shared::adapters::dynamo::DynamoStore,
    results: &mut serde_json::Map<String, Value>,
) {
    let n_wh: usize = env_n("BENCH_N_WEBHOOK", 1000);
    let for_api = create_checkouts(acct, n_wh).await;
    // The webhook alone: the relay is paused (for the rest of the run; the pipeline scenario
    // runs before this one), so the floor's and the webhooks' events wait in the stream and
    // the consumers do not share the machine with what is measured.
    pause_relay(stack).await;
    let staged = stage_checkouts(store, n_wh, "whfloor").await;
    let floor = measure(n_wh, 16, |i| {
        let staged = &staged;
        async move {
            let (mut checkout, mut orders) = staged.lock().unwrap().pop().unwrap();
            let from = settle(&mut checkout, &mut orders, i);
            let event_id = format!("evt_floor_{i}_{}", uuid_simple());
            let outbox = OutboxEvent::settled(&checkout, &orders, &event_id, chrono::Utc::now()).unwrap();
            let applied = store
                .apply_event(&event_id, &checkout, &orders, from, &outbox)
                .await
                .unwrap();
            assert_eq!(applied, Applied::Applied);
        }
    })
    .await;
    let http = reqwest::Client::new();
    let api = measure(n_wh, 16, |i| {
        let (http, c, api) = (&http, &for_api[i], &stack.api);
        async move {
            let v = deliver_completed(http, api, c, &format!("evt_bench_{i}_{}", uuid_simple())).await;
            assert_eq!(v["outcome"], "applied", "{v}");
        }
    })
    .await;
    record(results, "psp_webhook_c16", n_wh, 16, &api, &floor);
}

/// The bootstrap's size and its start to the first handled event.
async fn bootstrap(
    release: &std::path::Path,
    stack: &common::Stack,
    results: &mut serde_json::Map<String, Value>,
) {
    let binary = release.join("create_payment");
    let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let mut starts = Vec::new();
    for _ in 0..7 {
        starts.push(cold_start_ms(&binary, &stack.dynamodb).await);
    }
    starts.sort_by(f64::total_cmp);
    let start_ms = starts[starts.len() / 2];
    println!("bootstrap create_payment: {:.2} MB stripped, start to first handled event {start_ms:.1} ms (median of 7)", size as f64 / 1e6);
    results.insert(
        "bootstrap".into(),
        json!({"binary": "create_payment", "size_bytes": size, "size_mb": round(size as f64 / 1e6), "start_to_first_event_ms": round(start_ms)}),
    );
}

/// The outbox pipeline: N payments (multi-seller mix) from a verified webhook to wallet and
/// ledger, next to the raw DynamoDB writes those payments need (the webhook transaction, one
/// ledger transaction per order, the wallet transaction), issued directly in the same run.
/// Pauses the outbox relay's mapping: what is written from here on waits in the stream.
async fn pause_relay(stack: &common::Stack) {
    stack
        .twin(reqwest::Method::POST, "event-sources/OutboxRelayFunction/disable")
        .await;
}

/// `n` checkouts written straight to `store` as create_payment writes them (setup, untimed).
async fn stage_checkouts(
    store: &shared::adapters::dynamo::DynamoStore,
    n: usize,
    label: &str,
) -> std::sync::Mutex<Vec<(Checkout, Vec<shared::domain::PaymentOrder>)>> {
    let floor_account = AccountId::parse(&format!("acct_bench_{label}")).unwrap();
    let staged: Vec<_> = (0..n).map(|i| floor_checkout(&floor_account, i)).collect();
    futures::stream::iter(staged.iter())
        .for_each_concurrent(16, |(r, c, o)| async move {
            store.begin_checkout(r, c, o).await.unwrap();
        })
        .await;
    std::sync::Mutex::new(staged.into_iter().map(|(_, c, o)| (c, o)).collect())
}

/// A staged checkout paid in memory (submitted to the PSP, then succeeded), as the webhook
/// finds it; returns the stored status the write is conditioned on.
fn settle(
    checkout: &mut Checkout,
    orders: &mut [shared::domain::PaymentOrder],
    i: usize,
) -> shared::domain::PaymentStatus {
    let now = chrono::Utc::now();
    checkout.psp_session = Some(shared::domain::psp::PspSessionId::parse(&format!("cs_floor_{i}")).unwrap());
    let from = checkout.apply(orders, PaymentEvent::Submitted, now).unwrap();
    assert_eq!(from, shared::domain::PaymentStatus::Created);
    checkout.apply(orders, PaymentEvent::PspSucceeded, now).unwrap();
    from
}

async fn pipeline(
    stack: &common::Stack,
    acct: &common::Account,
    store: &shared::adapters::dynamo::DynamoStore,
    results: &mut serde_json::Map<String, Value>,
) {
    use shared::domain::ledger::{postings, wallet_changes};
    let n: usize = env_n("BENCH_N_PIPELINE", 10_000);
    let rate: rust_decimal::Decimal = "0.025".parse().unwrap();
    let ledger = stack.ledger().await;
    // Pipeline: N checkouts through the API (untimed), then N signed webhooks; timed until every
    // wallet marker and ledger transaction is there. Sustained, not a burst: webhooks go out at
    // concurrency 16 while fewer than BENCH_PIPELINE_WINDOW payments are in the pipeline (sent
    // but not yet acknowledged by both consumers), and wait while more are. SQS's cost per
    // call does not grow with the queue's depth; moto's does (each message received walks the
    // whole queue several times), so an unbounded flood would measure moto, not the pipeline.
    let created = create_checkouts(acct, n).await;
    let expected_ledger: usize = created
        .iter()
        .map(|c| c["payment_orders"].as_array().map_or(0, Vec::len))
        .sum();
    let window = env_n("BENCH_PIPELINE_WINDOW", 100) as u64;
    let acked = || async {
        let (l, w) = tokio::join!(
            stack.mapping_metric("LedgerConsumerFunction", "DeletedEventCount"),
            stack.mapping_metric("WalletConsumerFunction", "DeletedEventCount")
        );
        (l, w)
    };
    let (ledger_base, wallet_base) = acked().await;
    let (open_tx, open_rx) = tokio::sync::watch::channel(true);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let sent_at =
        std::sync::Mutex::new(std::collections::HashMap::<String, chrono::DateTime<chrono::Utc>>::new());
    let http = reqwest::Client::new();
    let started = Instant::now();
    let senders = futures::stream::iter(created.iter().enumerate()).for_each_concurrent(16, |(i, c)| {
        let (http, sent_at, api, sent) = (&http, &sent_at, &stack.api, &sent);
        let mut open = open_rx.clone();
        async move {
            open.wait_for(|o| *o).await.unwrap();
            let evt = format!("evt_pipe_{i}_{}", &common::new_key()[..8]);
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            deliver_completed(http, api, c, &evt).await;
            sent_at
                .lock()
                .unwrap()
                .insert(format!("obx_{evt}"), chrono::Utc::now());
        }
    });
    // Watches the consumers' acknowledgements (the twin's DeletedEventCount per mapping): opens
    // and closes the gate while sending, then waits until both consumers have acknowledged
    // every event. Duplicates (at-least-once) count too, so the scans below have the last word.
    let n64 = n as u64;
    // When each consumer had acknowledged all N: its own throughput.
    let consumer_done = std::sync::Mutex::new((None::<Duration>, None::<Duration>));
    let watch = async {
        let mut shown = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (l, w) = acked().await;
            let (l, w) = (l - ledger_base, w - wallet_base);
            let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
            open_tx.send_replace(sent.saturating_sub(l.min(w)) < window);
            if shown.elapsed() >= Duration::from_secs(15) {
                eprintln!(
                    "pipeline: {:>4} s: {sent} / {n} webhooks sent, acknowledged by the ledger {l}, by the wallet {w}",
                    started.elapsed().as_secs(),
                );
                shown = Instant::now();
            }
            {
                let mut done = consumer_done.lock().unwrap();
                if l >= n64 && done.0.is_none() {
                    done.0 = Some(started.elapsed());
                }
                if w >= n64 && done.1.is_none() {
                    done.1 = Some(started.elapsed());
                }
            }
            if l >= n64 && w >= n64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "pipeline did not drain in 30 min: {sent} sent, ledger {l}, wallet {w}"
            );
        }
    };
    tokio::join!(senders, watch);
    let (mut markers, mut ledger_txs, mut elapsed);
    loop {
        elapsed = started.elapsed();
        let wallets = stack.scan_all("WalletsTable").await;
        markers = wallets
            .iter()
            .filter_map(|i| {
                let pk = i.get("pk")?.as_s().ok()?;
                let at = i.get("applied_at")?.as_s().ok()?;
                Some((pk.strip_prefix("APPLIED#")?.to_owned(), at.to_owned()))
            })
            .filter(|(e, _)| e.starts_with("obx_evt_pipe_"))
            .collect::<Vec<_>>();
        ledger_txs = stack
            .scan_all("LedgerTable")
            .await
            .iter()
            .filter(|i| {
                i.get("event_id")
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|e| e.starts_with("obx_evt_pipe_"))
            })
            .count();
        if markers.len() >= n && ledger_txs >= expected_ledger {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "pipeline did not drain: {} / {n} wallet events, {ledger_txs} / {expected_ledger} ledger transactions",
            markers.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let sent_at = sent_at.into_inner().unwrap();
    let mut lags: Vec<f64> = markers
        .iter()
        .filter_map(|(e, at)| {
            let applied = chrono::DateTime::parse_from_rfc3339(at)
                .ok()?
                .with_timezone(&chrono::Utc);
            Some((applied - *sent_at.get(e)?).num_milliseconds().max(0) as f64)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let rps = n as f64 / elapsed.as_secs_f64();
    let report = stack.invariants().await;
    // Floor, after the pipeline: the relay is paused first (for the rest of the run), so the
    // floor's outbox records stay in the stream and nothing else shares DynamoDB with it.
    pause_relay(stack).await;
    let ledger_writes = &ledger;
    let staged = stage_checkouts(store, n, "pfloor").await;
    let started = Instant::now();
    let floor = measure(n, 16, |i| {
        let (staged, ledger, store) = (&staged, ledger_writes, store);
        async move {
            let (mut checkout, mut orders) = staged.lock().unwrap().pop().unwrap();
            let now = chrono::Utc::now();
            let from = settle(&mut checkout, &mut orders, i);
            let event_id = format!("evt_pfloor_{i}_{}", uuid_simple());
            let outbox = OutboxEvent::settled(&checkout, &orders, &event_id, now).unwrap();
            store
                .apply_event(&event_id, &checkout, &orders, from, &outbox)
                .await
                .unwrap();
            for tx in postings(&outbox, rate).unwrap() {
                ledger.append(&tx).await.unwrap();
            }
            let changes = wallet_changes(&outbox, rate).unwrap();
            ledger
                .apply_wallet_changes(
                    outbox.event_id(),
                    &outbox.header.account_id,
                    &changes,
                    &outbox.header.occurred_at,
                )
                .await
                .unwrap();
        }
    })
    .await;
    let floor_rps = n as f64 / started.elapsed().as_secs_f64();

    println!(
        "{:<20} n={n:<5} window {window} {:>7.1} payments/s (floor {:>7.1}, {:.0}%)  lag webhook->wallet p50 {:>7.0} ms p99 {:>7.0} ms  floor p50 {:.2} ms  invariants {}",
        "pipeline", rps, floor_rps, 100.0 * rps / floor_rps, p(0.5), p(0.99), floor.p50_ms, if report.ok { "hold" } else { "BROKEN" }
    );
    let (ledger_done, wallet_done) = consumer_done.into_inner().unwrap();
    let per_s = |d: Option<Duration>| d.map_or(0.0, |d| n as f64 / d.as_secs_f64());
    let (ledger_rps, wallet_rps) = (per_s(ledger_done), per_s(wallet_done));
    println!(
        "{:<20} each consumer, N events acknowledged: ledger {ledger_rps:.1} events/s, wallet {wallet_rps:.1} events/s",
        ""
    );
    assert!(report.ok, "{:?}", report.violations);
    results.insert(
        "pipeline".into(),
        json!({"n": n, "concurrency": 16, "window": window, "rps": round(rps), "floor_rps": round(floor_rps), "rps_ratio": round(rps / floor_rps),
               "lag_p50_ms": round(p(0.5)), "lag_p99_ms": round(p(0.99)), "floor_p50_ms": round(floor.p50_ms), "floor_p99_ms": round(floor.p99_ms),
               "ledger_consumer_rps": round(ledger_rps), "wallet_consumer_rps": round(wallet_rps),
               "invariants_hold": report.ok}),
    );
}

/// Writes `n` balanced one-cent transactions (debit `account`, credit `bank:bench_counter`)
/// straight into the ledger with `BatchWriteItem`: headers and entry lines exactly as the
/// ledger consumer writes them (setup, untimed; the scenario measures reads). Returns the
/// running totals they add, per account.
async fn seed_entries(
    client: &aws_sdk_dynamodb::Client,
    account_id: &AccountId,
    account: &str,
    n: usize,
) -> Vec<(LedgerAccount, i64, i64)> {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    use shared::domain::ledger::{Direction, Entry, LedgerTransaction};
    let usd = shared::domain::Currency::parse("USD").unwrap();
    let (target, counter) = (
        LedgerAccount::parse(account).unwrap(),
        LedgerAccount::parse("bank:bench_counter").unwrap(),
    );
    let started = Instant::now();
    let items: Vec<_> = (0..n)
        .flat_map(|i| {
            let entry = |account: &LedgerAccount, direction| Entry {
                account: account.clone(),
                direction,
                amount: shared::domain::Money::from_minor(1, usd),
            };
            let tx = LedgerTransaction::new(
                format!("ltx_bench_{account}_{i}"),
                format!("obx_bench_{account}_{i}"),
                account_id.clone(),
                None,
                shared::domain::time::format_time(
                    chrono::DateTime::from_timestamp_millis(1_767_225_600_000 + i as i64).unwrap(),
                ),
                vec![
                    entry(&target, Direction::Debit),
                    entry(&counter, Direction::Credit),
                ],
            )
            .unwrap();
            shared::adapters::dynamo::ledger::ledger_items(&tx)
        })
        .collect();
    let chunks: Vec<Vec<_>> = items.chunks(25).map(<[_]>::to_vec).collect();
    futures::stream::iter(chunks)
        .for_each_concurrent(16, |chunk| async move {
            let mut pending: Vec<WriteRequest> = chunk
                .into_iter()
                .map(|item| {
                    WriteRequest::builder()
                        .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                        .build()
                })
                .collect();
            while !pending.is_empty() {
                let out = client
                    .batch_write_item()
                    .request_items("LedgerTable", std::mem::take(&mut pending))
                    .send()
                    .await
                    .unwrap();
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove("LedgerTable"))
                    .unwrap_or_default();
            }
        })
        .await;
    eprintln!(
        "ledger: {n} transactions for {account} written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    vec![(target, n as i64, 0), (counter, 0, n as i64)]
}

/// Sets an account's running totals (one shard) to what its seeded entries add up to.
async fn put_totals(
    client: &aws_sdk_dynamodb::Client,
    account_id: &AccountId,
    account: &LedgerAccount,
    debits: i64,
    credits: i64,
) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    client
        .put_item()
        .table_name("LedgerBalancesTable")
        .item(
            "pk",
            S(shared::adapters::dynamo::ledger::balance_key(account_id, account)),
        )
        .item("sk", S("USD#00".into()))
        .item("entity", S("ledger_balance".into()))
        .item("account_id", S(account_id.to_string()))
        .item("ledger_account", S(account.to_string()))
        .item("currency", S("USD".into()))
        .item("shard", N("0".into()))
        .item("debits_minor", N(debits.to_string()))
        .item("credits_minor", N(credits.to_string()))
        .item("entries", N((debits + credits).to_string()))
        .send()
        .await
        .unwrap();
}

/// `GET /v1/ledger/accounts/{account}` for an account with 100,000 entries next to one with
/// 100: the balance is the running totals, so the two should not differ beyond noise. Next
/// to them, once, what the read used to do: sum every entry of the large account.
async fn ledger_account(
    stack: &common::Stack,
    acct: &common::Account,
    results: &mut serde_json::Map<String, Value>,
) {
    let n_big = env_n("BENCH_N_LEDGER_ENTRIES", 100_000);
    let n_small = 100;
    let n_reads = env_n("BENCH_N_LEDGER_READS", 300);
    let client = stack.store().await.client;
    let mut totals: std::collections::BTreeMap<LedgerAccount, (i64, i64)> = Default::default();
    for (account, n) in [("bank:bench_big", n_big), ("bank:bench_small", n_small)] {
        for (a, d, c) in seed_entries(&client, &acct.account_id, account, n).await {
            let t = totals.entry(a).or_default();
            t.0 += d;
            t.1 += c;
        }
    }
    for (account, (d, c)) in &totals {
        put_totals(&client, &acct.account_id, account, *d, *c).await;
    }
    let read = |account: &'static str, want_entries: usize| {
        move |_| async move {
            let r = acct.get(&format!("/v1/ledger/accounts/{account}?limit=20")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                r.json["balances"][0]["entries"], want_entries as i64,
                "{}",
                r.text
            );
        }
    };
    measure(20, 1, read("bank:bench_big", n_big)).await;
    let small = measure(n_reads, 1, read("bank:bench_small", n_small)).await;
    let big = measure(n_reads, 1, read("bank:bench_big", n_big)).await;
    // What the read did before running totals: every entry of the account, page by page.
    let sum_all = measure(3, 1, |_| {
        let (client, account_id) = (&client, &acct.account_id);
        async move {
            let mut start = None;
            let mut seen = 0usize;
            loop {
                let page = client
                    .query()
                    .table_name("LedgerTable")
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(
                        ":pk",
                        aws_sdk_dynamodb::types::AttributeValue::S(format!(
                            "ACCT#{account_id}#bank:bench_big"
                        )),
                    )
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .unwrap();
                seen += page.items.map_or(0, |i| i.len());
                match page.last_evaluated_key {
                    Some(k) if !k.is_empty() => start = Some(k),
                    _ => break,
                }
            }
            assert_eq!(seen, n_big);
        }
    })
    .await;
    println!(
        "{:<20} n={n_reads:<5} {n_big} entries: p50 {:>6.2} ms p99 {:>6.2} ms | {n_small} entries: p50 {:>6.2} ms p99 {:>6.2} ms | p50 x{:.2}  (summing every entry, as before: {:.0} ms)",
        "get_ledger_account", big.p50_ms, big.p99_ms, small.p50_ms, small.p99_ms, big.p50_ms / small.p50_ms, sum_all.p50_ms
    );
    results.insert(
        "get_ledger_account".into(),
        json!({"n": n_reads, "entries_big": n_big, "entries_small": n_small,
               "big_p50_ms": round(big.p50_ms), "big_p99_ms": round(big.p99_ms),
               "small_p50_ms": round(small.p50_ms), "small_p99_ms": round(small.p99_ms),
               "p50_ratio": round(big.p50_ms / small.p50_ms), "p99_ratio": round(big.p99_ms / small.p99_ms),
               "sum_every_entry_ms": round(sum_all.p50_ms)}),
    );
}

/// A fresh id part in Stripe's alphabet (letters and digits).
fn uuid_simple() -> String {
    common::new_key().replace('-', "")
}
