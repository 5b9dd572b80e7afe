//! The refund scenarios of `make bench`:
//! - `refund_pipeline`: N refunds (default 1,000) from `POST /v1/refunds` until the ledger and
//!   the wallet have applied each (outbox → relay → RefundQueue → executor → sandbox PSP →
//!   REFUND_SUCCEEDED → relay → ledger and wallet consumers), per second, next to its floor:
//!   the writes and the one PSP call each refund needs, issued directly at concurrency 16 (the
//!   create transaction, the PSP refund, the order's counters read and the settle transaction,
//!   the ledger transaction, the wallet transaction).
//! - `create_refund_c16`: `POST /v1/refunds` at concurrency 16, p50 and p99, next to the same
//!   create transaction (claim, refund, reservation, hold, outbox record) written directly.
//!
//! Every refund is 1.00 USD of one of K orders of 100.00, each order another seller's, all
//! paid on the sandbox's hosted page (so the PSP refunds a real charge). Refunds in flight at
//! once name different orders and sellers: the scenario measures the path, not contention on
//! one order (that case is the concurrency test in tests/refunds.rs).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::stripe::{RetryPolicy, StripeClient};
use shared::api::refunds::parse_refund_request;
use shared::domain::idempotency::{IdempotencyRecord, ResourceRef};
use shared::domain::ids::{PaymentOrderId, RefundId};
use shared::domain::ledger::{postings, wallet_changes};
use shared::domain::outbox::OutboxEvent;
use shared::domain::rate_limit::RateLimit;
use shared::domain::refunds::{FeePolicy, PspRefundRequest, Refund, RefundEvent, Refundable};
use shared::domain::PaymentOrder;
use shared::ports::{Applied, Begin, Checkouts, LedgerWriter, RefundPsp, RefundWrite, Refunds, WalletWriter};

use crate::{env_n, measure, pause_relay, record, round, Stats, PSP_SECRET_KEY};

const ORDER_AMOUNT: &str = "100.00";
const REFUND_AMOUNT: &str = "1.00";

pub async fn run(
    stack: &common::Stack,
    acct: &common::Account,
    store: &DynamoStore,
    results: &mut serde_json::Map<String, Value>,
) {
    let k = env_n("BENCH_REFUND_ORDERS", 256);
    let n_pipeline = env_n("BENCH_N_REFUND_PIPELINE", 1000);
    // BENCH_REFUND_KEYS (default 1): the refunds' orders spread over that many accounts, each
    // with its own API key (order j is account j mod keys'); a diagnosis of how much one hot
    // key costs.
    let keys = env_n("BENCH_REFUND_KEYS", 1).max(1);
    let mut others = Vec::new();
    for _ in 1..keys {
        others.push(stack.new_account(RateLimit::new(1_000_000, 1_000_000)).await);
    }
    let accounts: Vec<&common::Account> = std::iter::once(acct).chain(others.iter()).collect();
    let orders = paid_orders(stack, &accounts, k).await;
    refund_pipeline(stack, &accounts, store, &orders, n_pipeline, results).await;
    create_refund(stack, &accounts, store, &orders, results).await;
    skip_paused_events(stack).await;
    sandbox_webhooks(stack, false).await;
    drained(stack, "after the refund scenarios").await;
}

/// What the floors and the create scenario wrote while the relay was paused is left unread:
/// the relay's mapping is re-created at `LATEST` (the twin's `skip`, as deleting a mapping and
/// creating it again at `LATEST` would on AWS) and enabled. The floors' events were applied
/// directly, and the create scenario's refunds stay `PENDING` with their holds (the invariants
/// allow it), so the next scenario starts with nothing queued and the relay running.
async fn skip_paused_events(stack: &common::Stack) {
    for action in ["skip", "enable"] {
        stack
            .twin(
                reqwest::Method::POST,
                &format!("event-sources/OutboxRelayFunction/{action}"),
            )
            .await;
    }
}

/// `k` checkouts of 100.00 USD, each for another seller, paid with a good card on the sandbox's
/// hosted page; their payment orders once all are `SUCCESS` and the pipeline has booked them
/// (setup, untimed).
async fn paid_orders(stack: &common::Stack, accounts: &[&common::Account], k: usize) -> Vec<PaymentOrderId> {
    let started = Instant::now();
    let http = common::no_redirects();
    let run = common::new_key()[..8].to_owned();
    let mut orders: Vec<(usize, PaymentOrderId)> = futures::stream::iter(0..k)
        .map(|i| {
            let (http, run) = (&http, &run);
            async move {
                let body = json!({"buyer_id": "bench_buyer", "seller_id": format!("rs_{run}_{i}"),
                    "amount": ORDER_AMOUNT, "currency": "USD", "order_id": format!("ro_{run}_{i}")});
                let r = accounts[i % accounts.len()].create(&body).await;
                assert_eq!(r.status, 201, "{}", r.text);
                let page = http
                    .post(r.json["psp_redirect_url"].as_str().unwrap())
                    .form(&[("card_number", "4242424242424242")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(page.status(), 303, "the hosted page takes the card");
                let po = r.json["payment_orders"][0]["payment_order_id"].as_str().unwrap();
                (i, PaymentOrderId::parse(po).unwrap())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // In creation order: order j is account j mod keys'.
    orders.sort_by_key(|(i, _)| *i);
    let orders: Vec<PaymentOrderId> = orders.into_iter().map(|(_, po)| po).collect();
    // The sandbox's webhooks make them SUCCESS; then the ledger and wallets catch up.
    for (j, po) in orders.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let p = accounts[j % accounts.len()]
                .get(&format!("/v1/payments/{po}"))
                .await;
            if p.json["status"] == "SUCCESS" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "order {po} never succeeded: {}",
                p.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drained(stack, "after paying the refund scenarios' orders").await;
    eprintln!(
        "refunds: {k} orders paid on the sandbox's hosted page in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    orders
}

/// Waits until no queue holds a message and the invariants hold, twice in a row.
async fn drained(stack: &common::Stack, what: &str) {
    let started = Instant::now();
    let mut quiet = 0;
    while quiet < 2 {
        let mut depth = 0;
        for q in ["RefundQueue", "LedgerQueue", "WalletQueue"] {
            depth += stack.queue_depth(q).await;
        }
        let ok = depth == 0 && stack.invariants().await.ok;
        quiet = if ok { quiet + 1 } else { 0 };
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{what}: the pipeline did not drain in 15 min ({depth} messages queued)"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    eprintln!(
        "refunds: drained {what} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn refund_body(order: &PaymentOrderId) -> String {
    json!({"payment_order_id": order, "amount": REFUND_AMOUNT}).to_string()
}

/// Refunds through the API at concurrency 16; each refund's id and when its 201 came back.
async fn post_refunds(
    accounts: &[&common::Account],
    orders: &[PaymentOrderId],
    n: usize,
    concurrency: usize,
    offset: usize,
) -> (Stats, Vec<(String, chrono::DateTime<chrono::Utc>)>) {
    let created = std::sync::Mutex::new(Vec::with_capacity(n));
    let stats = measure(n, concurrency, |i| {
        let created = &created;
        let j = (offset + i) % orders.len();
        let (order, acct) = (&orders[j], accounts[j % accounts.len()]);
        async move {
            let r = acct
                .post("/v1/refunds", Some(&common::new_key()), &refund_body(order))
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            let id = r.json["refund_id"].as_str().unwrap().to_owned();
            created.lock().unwrap().push((id, chrono::Utc::now()));
        }
    })
    .await;
    (stats, created.into_inner().unwrap())
}

async fn refund_pipeline(
    stack: &common::Stack,
    accounts: &[&common::Account],
    store: &DynamoStore,
    orders: &[PaymentOrderId],
    n: usize,
    results: &mut serde_json::Map<String, Value>,
) {
    let acked = || async {
        tokio::join!(
            stack.mapping_metric("LedgerConsumerFunction", "DeletedEventCount"),
            stack.mapping_metric("WalletConsumerFunction", "DeletedEventCount")
        )
    };
    // BENCH_REFUND_HOLD_WEBHOOKS=1: the sandbox's webhooks held during the API run too (a
    // diagnosis: how much of the pipeline's cost is the PSP's two webhooks per refund).
    let hold = std::env::var("BENCH_REFUND_HOLD_WEBHOOKS").is_ok_and(|v| v == "1");
    if hold {
        sandbox_webhooks(stack, true).await;
    }
    let (ledger_base, wallet_base) = acked().await;
    let window = env_n("BENCH_REFUND_WINDOW", 100) as u64;
    let n64 = n as u64;
    // Sustained, not a burst, as in the payments' pipeline: refunds go out at concurrency 16
    // while fewer than the window are in the pipeline (created, not yet acknowledged by both
    // consumers), and wait while more are; a flood would measure moto's queues, not ours.
    let (open_tx, open_rx) = tokio::sync::watch::channel(true);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let created = std::sync::Mutex::new(Vec::with_capacity(n));
    let started = Instant::now();
    let senders = futures::stream::iter(0..n).for_each_concurrent(16, |i| {
        let (sent, created) = (&sent, &created);
        let mut open = open_rx.clone();
        let j = i % orders.len();
        let (order, acct) = (&orders[j], accounts[j % accounts.len()]);
        async move {
            open.wait_for(|o| *o).await.unwrap();
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = acct
                .post("/v1/refunds", Some(&common::new_key()), &refund_body(order))
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            let id = r.json["refund_id"].as_str().unwrap().to_owned();
            created.lock().unwrap().push((id, chrono::Utc::now()));
        }
    });
    // Each succeeded refund is one message to each consumer; nothing else runs meanwhile.
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (l, w) = acked().await;
            let (l, w) = (l - ledger_base, w - wallet_base);
            let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
            open_tx.send_replace(sent.saturating_sub(l.min(w)) < window);
            if l >= n64 && w >= n64 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "refund pipeline did not drain: {sent} sent, ledger {l} / {n}, wallet {w} / {n}"
            );
        }
    };
    tokio::join!(senders, watch);
    let created = created.into_inner().unwrap();
    let elapsed = started.elapsed();
    // The consumers' counts are the clock; the tables have the last word.
    let ids: HashMap<String, chrono::DateTime<chrono::Utc>> = created.into_iter().collect();
    let booked = stack
        .scan_all("LedgerTable")
        .await
        .iter()
        .filter(|i| {
            i.get("refund_id")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|r| ids.contains_key(r))
        })
        .count();
    let mut lags: Vec<f64> = stack
        .scan_all("WalletsTable")
        .await
        .iter()
        .filter_map(|i| {
            let pk = i.get("pk")?.as_s().ok()?;
            let rf = pk.strip_prefix("APPLIED#obx_")?.strip_suffix("_succeeded")?;
            let created = ids.get(rf)?;
            let at = chrono::DateTime::parse_from_rfc3339(i.get("applied_at")?.as_s().ok()?).ok()?;
            Some(
                (at.with_timezone(&chrono::Utc) - *created)
                    .num_milliseconds()
                    .max(0) as f64,
            )
        })
        .collect();
    assert_eq!(booked, n, "one ledger transaction per refund");
    assert_eq!(lags.len(), n, "one wallet change per refund");
    lags.sort_by(f64::total_cmp);
    let p = |q: f64| lags[((lags.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let rps = n as f64 / elapsed.as_secs_f64();
    let report = stack.invariants().await;
    assert!(report.ok, "{:?}", report.violations);

    // The floor, with the relay paused: what is written here waits in the stream, and nothing
    // else shares the machine with it.
    pause_relay(stack).await;
    sandbox_webhooks(stack, true).await;
    let psp = StripeClient::new(&stack.psp, PSP_SECRET_KEY, RetryPolicy::default()).unwrap();
    let staged = stage_refunds(store, orders, n, n).await;
    let ledger = stack.ledger().await;
    let started = Instant::now();
    let floor = measure(n, 16, |i| {
        let (store, psp, ledger, staged) = (store, &psp, &ledger, &staged);
        async move {
            let (record, refund) = &staged[i];
            begin(store, record, refund).await;
            let answer = psp.create_refund(&PspRefundRequest::of(refund)).await.unwrap();
            assert_eq!(answer.status.event(), Some(RefundEvent::PspSucceeded));
            let mut refund = refund.clone();
            refund.psp_refund = Some(answer.id);
            let outbox = succeed(store, &mut refund).await;
            for tx in postings(&outbox, FEE_RATE.parse().unwrap()).unwrap() {
                ledger.append(&tx).await.unwrap();
            }
            let changes = wallet_changes(&outbox, FEE_RATE.parse().unwrap()).unwrap();
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
    let report = stack.invariants().await;
    assert!(report.ok, "after the floor: {:?}", report.violations);
    println!(
        "{:<20} n={n:<5} window {window} {:>7.1} refunds/s (floor {:>7.1}, {:.0}%)  lag 201->wallet p50 {:>6.0} ms p99 {:>6.0} ms  floor p50 {:.2} ms  invariants hold",
        "refund_pipeline", rps, floor_rps, 100.0 * rps / floor_rps, p(0.5), p(0.99), floor.p50_ms
    );
    results.insert(
        "refund_pipeline".into(),
        json!({"n": n, "concurrency": 16, "window": window, "orders": orders.len(), "api_keys": accounts.len(), "rps": round(rps), "floor_rps": round(floor_rps),
               "rps_ratio": round(rps / floor_rps), "lag_p50_ms": round(p(0.5)), "lag_p99_ms": round(p(0.99)),
               "floor_p50_ms": round(floor.p50_ms), "floor_p99_ms": round(floor.p99_ms), "invariants_hold": true}),
    );
}

/// Holds the sandbox's webhook deliveries (`true`), or sends what it held, in order (`false`):
/// the floor settles its refunds itself, as the executor would, without their webhooks.
async fn sandbox_webhooks(stack: &common::Stack, hold: bool) {
    stack
        .sandbox_admin("/__sandbox/faults", Some(json!({"webhooks": {"hold": hold}})))
        .await;
}

/// The platform fee rate of the bench's twin (the template's default).
const FEE_RATE: &str = "0.025";

/// `n` refunds as create_refund opens them, each with its idempotency record written completed
/// (setup, untimed): against the orders as read now, starting at refund `offset`.
async fn stage_refunds(
    store: &DynamoStore,
    orders: &[PaymentOrderId],
    n: usize,
    offset: usize,
) -> Vec<(IdempotencyRecord, Refund)> {
    let mut read: HashMap<&PaymentOrderId, PaymentOrder> = HashMap::new();
    for po in orders {
        read.insert(po, store.get_payment_order(po).await.unwrap().unwrap());
    }
    let request = parse_refund_request(refund_body(&orders[0]).as_bytes()).unwrap();
    let now = chrono::Utc::now();
    (0..n)
        .map(|i| {
            let order = &read[&orders[(offset + i) % orders.len()]];
            let target = Refundable {
                order,
                payment_intent: order.payment_intent.clone().expect("a paid order's charge"),
                fee: order.fee.expect("a paid order's fee"),
            };
            let refund = Refund::open(
                RefundId::generate(),
                &target,
                &request,
                FeePolicy::Proportional,
                now,
            )
            .unwrap();
            let ms = now.timestamp_millis();
            let record = IdempotencyRecord::new_completed(
                format!("floor#{}", common::new_key()),
                request.fingerprint(),
                ResourceRef::refund(&refund.id),
                ms,
                201,
                "{}".into(),
            );
            (record, refund)
        })
        .collect()
}

/// The create transaction, written directly.
async fn begin(store: &DynamoStore, record: &IdempotencyRecord, refund: &Refund) {
    let outbox = OutboxEvent::refund(refund, None, "request", chrono::Utc::now());
    let begun = store.begin_refund(record, refund, &outbox).await.unwrap();
    assert_eq!(begun, Begin::Created);
}

/// The settle transaction, written directly: the order's counters read, the refund moved to
/// `SUCCEEDED` with its outbox record (read again if another refund of the order moved them).
async fn succeed(store: &DynamoStore, refund: &mut Refund) -> OutboxEvent {
    loop {
        let before = store
            .order_refunds(&refund.payment_order_id)
            .await
            .unwrap()
            .unwrap();
        let mut moved = refund.clone();
        let now = chrono::Utc::now();
        let (m, after) = moved.apply(RefundEvent::PspSucceeded, before, now).unwrap();
        let outbox = OutboxEvent::refund(&moved, Some(m), "psp_response", now);
        let write = RefundWrite {
            refund: &moved,
            from: refund.status,
            before,
            after,
            outbox: &outbox,
            psp_event_id: None,
        };
        match store.save_refund_move(write).await.unwrap() {
            Applied::Applied => {
                *refund = moved;
                return outbox;
            }
            Applied::Conflict => {
                // Another refund of the order moved its counters; this one must still be
                // PENDING (the sandbox's webhooks are held during the floor).
                let now = store.get_refund(&refund.id).await.unwrap().unwrap();
                assert_eq!(
                    now.status, refund.status,
                    "refund {} moved under the floor",
                    refund.id
                );
            }
            Applied::Duplicate => panic!("a move without a PSP event cannot be a duplicate"),
        }
    }
}

/// `create_refund_c1` and `_c16`.
async fn create_refund(
    stack: &common::Stack,
    accounts: &[&common::Account],
    store: &DynamoStore,
    orders: &[PaymentOrderId],
    results: &mut serde_json::Map<String, Value>,
) {
    let n = env_n("BENCH_N_REFUND_C16", 2000);
    let n_c1 = env_n("BENCH_N_REFUND_C1", 300);
    // The relay is paused (by the pipeline's floor) and the sandbox's webhooks are held: the
    // API's and the floor's outbox records wait in the stream alike, and only the create is
    // measured.
    pause_relay(stack).await;
    let mut offset = 2 * env_n("BENCH_N_REFUND_PIPELINE", 1000);
    for (concurrency, n) in [(1, n_c1), (16, n)] {
        let staged = stage_refunds(store, orders, n, offset).await;
        let floor = measure(n, concurrency, |i| {
            let (store, staged) = (store, &staged);
            async move {
                let (record, refund) = &staged[i];
                begin(store, record, refund).await;
            }
        })
        .await;
        // What a refund cannot skip besides: reading its order (its seller, charge, fee and
        // what is left), then the same transaction. Printed alongside.
        let staged = stage_refunds(store, orders, n, offset + n).await;
        let with_read = measure(n, concurrency, |i| {
            let (store, staged) = (store, &staged);
            async move {
                let (record, refund) = &staged[i];
                let order = store.get_payment_order(&refund.payment_order_id).await.unwrap();
                assert!(order.is_some());
                begin(store, record, refund).await;
            }
        })
        .await;
        let (api, _) = post_refunds(accounts, orders, n, concurrency, offset + 2 * n).await;
        offset += 3 * n;
        let name = format!("create_refund_c{concurrency}");
        record(results, &name, n, concurrency, &api, &floor);
        println!(
            "{:<20} against the order's read and the transaction ({:.2} ms): p50 x{:.2}, p99 x{:.2}",
            "",
            with_read.p50_ms,
            api.p50_ms / with_read.p50_ms,
            api.p99_ms / with_read.p99_ms
        );
        if let Some(Value::Object(r)) = results.get_mut(&name) {
            r.insert("api_keys".into(), json!(accounts.len()));
            r.insert("read_floor_p50_ms".into(), json!(round(with_read.p50_ms)));
            r.insert("read_floor_p99_ms".into(), json!(round(with_read.p99_ms)));
            r.insert(
                "read_floor_p50_ratio".into(),
                json!(round(api.p50_ms / with_read.p50_ms)),
            );
        }
    }
}
