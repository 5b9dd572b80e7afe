//! Test harness: one real local twin per test binary (DynamoDB Local, moto, the runner and the
//! very bootstraps Lambda would run), on free ports, in memory. Each test makes its own account
//! and API key, so tests run in parallel without seeing each other. The bench uses it too.
//!
//! The twin and the bootstraps are other packages' binaries: `cargo build --workspace --bins`
//! first (`make test` and `make bench` do).

pub mod webdriver;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use shared::adapters::dynamo::codec::Item;
use shared::adapters::dynamo::invariants::InvariantStore;
use shared::adapters::dynamo::ledger::LedgerStore;
use shared::adapters::dynamo::{api_keys::seed_api_key, DynamoStore, Tables};
use shared::app::invariants::check_invariants;
use shared::domain::ids::AccountId;
use shared::domain::invariants::Report;
use shared::domain::rate_limit::RateLimit;

pub const DEV_API_KEY: &str = "psys_test_devkey_4f2a9c7e1b5d";
/// The sandbox PSP's webhook secret the twin gives the webhook function.
pub const PSP_WEBHOOK_SECRET: &str = "whsec_sandbox_localdev_7c1e9a";

pub struct Stack {
    pub api: String,
    pub dynamodb: String,
    /// The sandbox PSP (Stripe's wire format, plus `/__sandbox/...` for tests).
    pub psp: String,
    /// moto (SQS, S3).
    pub moto: String,
    /// The twin's own controls (`/__twin/...`), on a port apart from the API's.
    pub control: String,
    pub log_dir: String,
    /// What the twin itself printed (its banner, its warnings).
    pub stderr_log: String,
    _child: Mutex<Child>,
    // Closing this pipe (when the test process exits) tells the twin to stop everything.
    _stdin: Mutex<ChildStdin>,
}

/// What a test binary's twin looks like.
pub struct TwinSpec {
    /// Names its log folder (`target/twin-logs/<label>-<pid>`).
    pub label: &'static str,
    /// Template parameter overrides (`--param Name=Value`).
    pub params: &'static [(&'static str, &'static str)],
    /// Keeps DynamoDB Local's data in a fresh folder under `target/twin-data/` instead of
    /// memory, so that it can be stopped and started again.
    pub on_disk: bool,
    /// More environment for the twin.
    pub env: &'static [(&'static str, &'static str)],
}

/// The API tests' twin drops slow clients after 3 s instead of 30 (headers) and 60 (bodies),
/// so the test that trickles bytes at it is quick.
pub const DEFAULT_TWIN: TwinSpec = TwinSpec {
    label: "test",
    params: &[],
    on_disk: false,
    env: &[
        ("TWIN_HEADER_READ_TIMEOUT_MS", "3000"),
        ("TWIN_BODY_READ_TIMEOUT_MS", "3000"),
    ],
};

static STACK: OnceLock<Stack> = OnceLock::new();

/// This process's stack, started on first use from `spec` (one per test binary).
pub fn stack_of(spec: &TwinSpec) -> &'static Stack {
    STACK.get_or_init(|| start(&bin_dir(), spec))
}

/// The default stack.
pub fn stack() -> &'static Stack {
    stack_of(&DEFAULT_TWIN)
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
        .to_path_buf()
}

/// Where cargo put this profile's binaries (`target/debug` for tests, `target/release` for the
/// bench): the twin, the sandbox PSP and the bootstraps.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("profile dir")
    } else {
        dir
    };
    assert!(
        dir.join("twin").is_file(),
        "{} has no twin: run `cargo build --workspace --bins` first",
        dir.display()
    );
    dir.to_path_buf()
}

/// Starts a twin from `bin_dir`, running the function binaries there.
pub fn start(bin_dir: &Path, spec: &TwinSpec) -> Stack {
    let TwinSpec {
        label,
        params,
        on_disk,
        env,
    } = *spec;
    let root = workspace_root();
    let root = root.to_str().expect("utf-8 path");
    let log_dir = format!("{root}/target/twin-logs/{label}-{}", std::process::id());
    let mut cmd = Command::new(bin_dir.join("twin"));
    if on_disk {
        let parent = format!("{root}/target/twin-data");
        // Data of earlier runs whose test process is gone.
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(&format!("{label}-")) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let data = format!("{parent}/{label}-{}", std::process::id());
        let _ = std::fs::remove_dir_all(&data);
        cmd.args(["--data-dir", &data]);
    } else {
        cmd.arg("--in-memory");
    }
    let mut child = cmd
        .current_dir(root)
        .args(["--template", "infra/template.yaml", "--exit-on-stdin-eof"])
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["--log-dir", &log_dir])
        .env("API_PORT", "0")
        .env("DYNAMODB_PORT", "0")
        .env("MOTO_PORT", "0")
        .env("TWIN_CONTROL_PORT", "0")
        .envs(env.iter().copied())
        .args(
            params
                .iter()
                .flat_map(|(k, v)| ["--param".to_owned(), format!("{k}={v}")]),
        )
        .env("DEV_API_KEY", DEV_API_KEY)
        .env("PSP_PORT", "0")
        // Fast webhook retries, as the sandbox allows for tests.
        .env("SANDBOX_WEBHOOK_RETRY_BASE_MS", "100")
        .env_remove("TWIN_ECHO_LOGS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the twin (run `make deps` first)");
    let stdin = child.stdin.take().expect("stdin");
    // The twin's own output (its banner, its warnings): shown as it comes, and kept apart from
    // the functions' logs for the tests that read it.
    let stderr_log = format!("{log_dir}.twin-stderr.log");
    if let Some(parent) = Path::new(&stderr_log).parent() {
        std::fs::create_dir_all(parent).expect("twin log folder");
    }
    let twin_stderr = child.stderr.take().expect("stderr");
    let mut copy = std::fs::File::create(&stderr_log).expect("twin stderr log");
    std::thread::spawn(move || {
        use std::io::Write;
        for line in BufReader::new(twin_stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            let _ = writeln!(copy, "{line}");
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("TWIN READY") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("the twin did not report ready within 180 s (see its stderr above)");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
            .to_owned()
    };
    Stack {
        api: field("api"),
        dynamodb: field("dynamodb"),
        psp: field("psp"),
        moto: field("moto"),
        control: field("control"),
        log_dir,
        stderr_log,
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    }
}

/// An HTTP client that does not follow redirects (the hosted page answers 303).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Stack {
    /// A sandbox PSP admin call (`/__sandbox/...`): a POST of `body`, or a GET without one;
    /// panics unless it succeeds.
    pub async fn sandbox_admin(&self, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let url = format!("{}{path}", self.psp);
        let req = match body {
            Some(b) => no_redirects().post(url).json(&b),
            None => no_redirects().get(url),
        }
        .header("x-sandbox-control", "1");
        let resp = req.send().await.expect("sandbox admin");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Clears the sandbox's fault switches (and releases held deliveries).
    pub async fn sandbox_reset(&self) {
        self.sandbox_admin("/__sandbox/reset", Some(serde_json::json!({})))
            .await;
    }

    /// A twin control (`/__twin/...`); panics unless it answers 200.
    pub async fn twin(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        let r = send(
            reqwest::Client::new()
                .request(method, format!("{}/__twin/{path}", self.control))
                .header("x-twin-control", "1"),
        )
        .await;
        assert_eq!(r.status, 200, "/__twin/{path}: {}", r.text);
        r.json
    }

    /// Kills every running instance of `function` (a logical id), as a crash would: the
    /// invocations they hold fail. How many were killed.
    pub async fn kill_instances(&self, function: &str) -> usize {
        let out = self
            .twin(reqwest::Method::POST, &format!("functions/{function}/kill"))
            .await;
        out["killed"].as_u64().expect("killed") as usize
    }

    /// Messages (visible + in flight + delayed) in the queue with this name.
    pub async fn queue_depth(&self, name: &str) -> u64 {
        let stats = self.twin(reqwest::Method::GET, "queues").await;
        let q = stats["queues"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == name))
            .unwrap_or_else(|| panic!("no queue {name} in {stats}"));
        assert!(q.get("error").is_none(), "{q}");
        ["visible", "not_visible", "delayed"]
            .iter()
            .map(|k| q[*k].as_u64().unwrap_or(0))
            .sum()
    }

    /// One of the twin's event-source-mapping counts (Lambda's metric names, e.g.
    /// `DeletedEventCount`), summed over `function`'s mappings.
    pub async fn mapping_metric(&self, function: &str, metric: &str) -> u64 {
        let all = self.twin(reqwest::Method::GET, "event-sources").await;
        let mine: Vec<&serde_json::Value> = all
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["function"] == function)
            .collect();
        assert!(!mine.is_empty(), "no event source for {function} in {all}");
        mine.iter()
            .map(|m| {
                m["metrics"][metric]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no {metric} in {m}"))
            })
            .sum()
    }

    /// Creates a checkout and settles it with a signed `checkout.session.completed` (the
    /// sandbox's webhook secret), as the PSP would after a good card.
    pub async fn paid_checkout(&self, acct: &Account, body: serde_json::Value) -> serde_json::Value {
        let r = acct.create(&body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let c = r.json;
        let amount_total: i64 = c["payment_orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| stripe_minor(o["amount"].as_str().unwrap(), o["currency"].as_str().unwrap()))
            .sum();
        let event = serde_json::json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": "checkout.session.completed",
            "created": chrono::Utc::now().timestamp(), "data": {"object": {"id": c["psp_token"], "object": "checkout.session",
            "client_reference_id": c["checkout_id"], "amount_total": amount_total, "currency": c["currency"].as_str().unwrap().to_lowercase(),
            "payment_status": "paid"}}})
        .to_string();
        let resp = send(
            reqwest::Client::new()
                .post(format!("{}/webhooks/psp", self.api))
                .header(
                    "stripe-signature",
                    shared::domain::psp::sign(
                        event.as_bytes(),
                        PSP_WEBHOOK_SECRET,
                        chrono::Utc::now().timestamp(),
                    ),
                )
                .header("content-type", "application/json")
                .body(event),
        )
        .await;
        assert_eq!(
            (resp.status, resp.json["outcome"].as_str()),
            (200, Some("applied")),
            "{}",
            resp.text
        );
        c
    }

    /// Waits until the invariants hold and `ready` says the pipeline has caught up.
    pub async fn settled(
        &self,
        what: &str,
        ready: impl Fn(&Report, &BTreeMap<(String, String), i64>) -> bool,
    ) -> BTreeMap<(String, String), i64> {
        let started = Instant::now();
        loop {
            let report = self.invariants().await;
            let wallets = self.wallets().await;
            if report.ok && ready(&report, &wallets) {
                return wallets;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: pipeline did not settle: {}",
                serde_json::to_string_pretty(&report).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn store(&self) -> DynamoStore {
        let config =
            shared::adapters::aws::static_sdk_config(&self.dynamodb, "us-east-1", "local", "local").await;
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            Tables {
                payments: "PaymentsTable".into(),
                idempotency: "IdempotencyTable".into(),
                api_keys: "ApiKeysTable".into(),
                wallets: "WalletsTable".into(),
            },
        )
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config =
            shared::adapters::aws::static_sdk_config(&self.moto, "us-east-1", "local", "local").await;
        aws_sdk_sqs::Client::new(&config)
    }

    /// An S3 client for the stack's moto (path-style: a bucket cannot be a subdomain of an IP).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let config =
            shared::adapters::aws::static_sdk_config(&self.moto, "us-east-1", "local", "local").await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    }

    /// The physical name of the bucket with this logical id, as the twin created it (its
    /// `BucketName`, else the lowercased logical id).
    pub async fn bucket(&self, logical_id: &str) -> String {
        let all = self.twin(reqwest::Method::GET, "buckets").await;
        all["buckets"]
            .as_array()
            .and_then(|bs| bs.iter().find(|b| b["logical_id"] == logical_id))
            .and_then(|b| b["name"].as_str())
            .unwrap_or_else(|| panic!("no bucket {logical_id} in {all}"))
            .to_owned()
    }

    /// Puts `bytes` at `key` in the bucket with this logical id (an upload, as the PSP fetcher
    /// or an operator makes one: it notifies the bucket's queues); panics unless S3 takes it.
    pub async fn put_object(&self, bucket_logical_id: &str, key: &str, bytes: impl Into<Vec<u8>>) {
        let bucket = self.bucket(bucket_logical_id).await;
        self.s3()
            .await
            .put_object()
            .bucket(&bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes.into()))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "put s3://{bucket}/{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }

    /// The object at `key` in the bucket with this logical id, as UTF-8 text; None if there is
    /// no such key.
    pub async fn get_object_text(&self, bucket_logical_id: &str, key: &str) -> Option<String> {
        let bucket = self.bucket(bucket_logical_id).await;
        let out = match self.s3().await.get_object().bucket(&bucket).key(key).send().await {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return None,
            Err(e) => panic!(
                "get s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            ),
        };
        let bytes = out
            .body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("read s3://{bucket}/{key}: {e}"))
            .into_bytes();
        Some(
            String::from_utf8(bytes.to_vec())
                .unwrap_or_else(|e| panic!("s3://{bucket}/{key} is not UTF-8: {e}")),
        )
    }

    pub async fn ledger(&self) -> LedgerStore {
        LedgerStore {
            client: self.store().await.client,
            ledger_table: "LedgerTable".into(),
            wallets_table: "WalletsTable".into(),
            balances_table: "LedgerBalancesTable".into(),
        }
    }

    /// The invariant report, as `check_invariants` makes it.
    pub async fn invariants(&self) -> Report {
        let store = InvariantStore {
            ledger: self.ledger().await,
            payments_table: "PaymentsTable".into(),
        };
        check_invariants(&store).await.expect("invariant check")
    }

    /// Every item of a table (tests and the bench only: it holds them all).
    pub async fn scan_all(&self, table: &str) -> Vec<Item> {
        let client = self.store().await.client;
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan");
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return out,
            }
        }
    }

    /// Every wallet: ("<account>/<seller>", currency) → balance in minor units.
    pub async fn wallets(&self) -> BTreeMap<(String, String), i64> {
        let s = |i: &Item, k: &str| i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        self.scan_all("WalletsTable")
            .await
            .iter()
            .filter(|i| s(i, "entity") == "wallet")
            .map(|i| {
                let balance = i
                    .get("balance_minor")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .expect("balance_minor");
                (
                    (
                        format!("{}/{}", s(i, "account_id"), s(i, "seller_id")),
                        s(i, "sk"),
                    ),
                    balance,
                )
            })
            .collect()
    }

    /// The ids of every ledger transaction, sorted.
    pub async fn ledger_transaction_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .scan_all("LedgerTable")
            .await
            .iter()
            .filter(|i| {
                i.get("entity").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("ledger_transaction")
            })
            .filter_map(|i| i.get("transaction_id").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        ids.sort();
        ids
    }

    /// Outbox records of one event type.
    pub async fn outbox_records(&self, event_type: &str) -> u64 {
        self.scan_all("PaymentsTable")
            .await
            .iter()
            .filter(|i| i.get("entity").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("outbox"))
            .filter(|i| {
                i.get("event_type")
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(event_type)
            })
            .count() as u64
    }

    /// A fresh account with its own API key (optionally with its own rate limit).
    pub async fn new_account(&self, limit: Option<RateLimit>) -> Account {
        let store = self.store().await;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let account_id = AccountId::parse(&format!("acct_{}", &suffix[..12])).unwrap();
        let key = format!("psys_test_{suffix}");
        let key_id = seed_api_key(&store.client, &store.tables.api_keys, &key, &account_id, limit)
            .await
            .expect("seed api key");
        Account {
            api: self.api.clone(),
            key,
            account_id,
            key_id: key_id.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// Everything the functions logged so far.
    pub fn function_logs(&self) -> String {
        let mut all = String::new();
        if let Ok(dir) = std::fs::read_dir(&self.log_dir) {
            for entry in dir.flatten() {
                all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        all
    }
}

pub struct Account {
    pub api: String,
    pub key: String,
    pub account_id: AccountId,
    pub key_id: String,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl Account {
    pub async fn post(&self, path: &str, idem: Option<&str>, body: &str) -> Resp {
        let mut req = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        send(req).await
    }

    pub async fn put(&self, path: &str, body: &str) -> Resp {
        send(
            self.http
                .put(format!("{}{path}", self.api))
                .bearer_auth(&self.key)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        send(
            self.http
                .get(format!("{}{path}", self.api))
                .bearer_auth(&self.key),
        )
        .await
    }

    pub async fn create(&self, body: &serde_json::Value) -> Resp {
        self.post("/v1/payments", Some(&new_key()), &body.to_string())
            .await
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Resp {
    let started = Instant::now();
    let resp = req.send().await.expect("request reached the twin");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "request took {:?}",
        started.elapsed()
    );
    Resp {
        status,
        headers,
        text,
        json,
    }
}

pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn single(amount: serde_json::Value, currency: &str) -> serde_json::Value {
    serde_json::json!({
        "buyer_id": "user_123", "seller_id": "seller_456", "amount": amount,
        "currency": currency, "order_id": format!("order_{}", &new_key()[..8]),
    })
}

impl Stack {
    async fn queue_url(&self, sqs: &aws_sdk_sqs::Client, name: &str) -> String {
        sqs.get_queue_url()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// The message in queue `dlq` whose body contains `needle`, once it is there (fails after
    /// `secs`), with its attributes; it is visible again a second later.
    pub async fn dead_letter(&self, dlq: &str, needle: &str, secs: u64) -> aws_sdk_sqs::types::Message {
        let sqs = self.sqs().await;
        let url = self.queue_url(&sqs, dlq).await;
        eventually(&format!("{needle} in {dlq}"), secs, || async {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .message_attribute_names("All")
                .visibility_timeout(1)
                .send()
                .await
                .unwrap();
            out.messages
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.body().unwrap_or("").contains(needle))
        })
        .await
    }

    /// What `make redrive QUEUE=<dlq>` does, for the one message whose body contains `needle`:
    /// sent back to `queue`, then deleted from `dlq`.
    pub async fn redrive_one(&self, dlq: &str, queue: &str, needle: &str) {
        let sqs = self.sqs().await;
        let (dlq_url, queue_url) = (self.queue_url(&sqs, dlq).await, self.queue_url(&sqs, queue).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = eventually("the dead letter visible again", 10, || async {
            let out = sqs
                .receive_message()
                .queue_url(&dlq_url)
                .visibility_timeout(5)
                .send()
                .await
                .unwrap();
            out.messages
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.body().unwrap_or("").contains(needle))
        })
        .await;
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(again.body().unwrap())
            .send()
            .await
            .unwrap();
        sqs.delete_message()
            .queue_url(&dlq_url)
            .receipt_handle(again.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }

    /// Waits until the pipeline has drained and every invariant holds (fails after 30 s).
    pub async fn assert_invariants(&self) -> shared::domain::invariants::Report {
        let started = Instant::now();
        loop {
            let report = self.invariants().await;
            if report.ok {
                return report;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "invariants broken: {:#?}",
                report.violations
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Waits for `check` to return `Some`, or fails after `secs` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "{what}: timed out after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A decimal amount in the PSP's integer minor units.
pub fn stripe_minor(amount: &str, currency: &str) -> i64 {
    let c = shared::domain::Currency::parse(currency).unwrap();
    let m = shared::domain::Money::parse(amount, c).unwrap();
    shared::adapters::stripe::to_stripe_amount(m).unwrap()
}

/// A wallet balance (minor units) from a `settled` map; 0 if the seller has none.
pub fn wallet(w: &BTreeMap<(String, String), i64>, acct: &Account, seller: &str, currency: &str) -> i64 {
    w.get(&(format!("{}/{seller}", acct.account_id), currency.to_owned()))
        .copied()
        .unwrap_or(0)
}
