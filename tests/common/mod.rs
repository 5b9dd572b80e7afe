//! Test harness: one real local twin per test binary (DynamoDB Local, moto, the runner and the
//! very bootstraps Lambda would run), on free ports, in memory. Each test makes its own account
//! and API key, so tests run in parallel without seeing each other.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
#[cfg(test)]
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shared::adapters::dynamo::{api_keys::seed_api_key, DynamoStore, Tables};
use shared::domain::ids::AccountId;
use shared::domain::rate_limit::RateLimit;

pub const DEV_API_KEY: &str = "psys_test_devkey_4f2a9c7e1b5d";

pub struct Stack {
    pub api: String,
    pub dynamodb: String,
    /// The sandbox PSP (Stripe's wire format, plus `/__sandbox/...` for tests).
    pub psp: String,
    /// moto (SQS, S3).
    pub moto: String,
    pub log_dir: String,
    _child: Mutex<Child>,
    // Closing this pipe (when the test process exits) tells the twin to stop everything.
    _stdin: Mutex<ChildStdin>,
}

#[cfg(test)]
static STACK: OnceLock<Stack> = OnceLock::new();

/// The test binary's stack, started on first use with the debug binaries cargo just built.
#[cfg(test)]
pub fn stack() -> &'static Stack {
    STACK.get_or_init(|| {
        let twin = Path::new(env!("CARGO_BIN_EXE_twin"));
        start(twin, twin.parent().expect("bin dir"), "test", &[])
    })
}

/// Starts a twin from `twin`, running the function binaries in `bin_dir`, with template
/// parameter overrides (`--param Name=Value`).
pub fn start(twin: &Path, bin_dir: &Path, label: &str, params: &[(&str, &str)]) -> Stack {
    let root = env!("CARGO_MANIFEST_DIR");
    let log_dir = format!("{root}/target/twin-logs/{label}-{}", std::process::id());
    let mut child = Command::new(twin)
        .current_dir(root)
        .args([
            "--template",
            "infra/template.yaml",
            "--in-memory",
            "--exit-on-stdin-eof",
        ])
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(["--log-dir", &log_dir])
        .env("API_PORT", "0")
        .env("DYNAMODB_PORT", "0")
        .env("MOTO_PORT", "0")
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
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the twin (run `make deps` first)");
    let stdin = child.stdin.take().expect("stdin");
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
        log_dir,
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    }
}

impl Stack {
    pub async fn store(&self) -> DynamoStore {
        let config =
            shared::adapters::aws::static_sdk_config(&self.dynamodb, "us-east-1", "local", "local").await;
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&config),
            Tables {
                payments: "PaymentsTable".into(),
                idempotency: "IdempotencyTable".into(),
                api_keys: "ApiKeysTable".into(),
            },
        )
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config =
            shared::adapters::aws::static_sdk_config(&self.moto, "us-east-1", "local", "local").await;
        aws_sdk_sqs::Client::new(&config)
    }

    pub async fn ledger(&self) -> shared::adapters::dynamo::ledger::LedgerStore {
        shared::adapters::dynamo::ledger::LedgerStore {
            client: self.store().await.client,
            ledger_table: "LedgerTable".into(),
            wallets_table: "WalletsTable".into(),
        }
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
    /// Waits until the pipeline has drained and every invariant holds (fails after 30 s).
    pub async fn assert_invariants(&self) -> shared::domain::invariants::Report {
        let started = Instant::now();
        loop {
            let snap = shared::adapters::dynamo::ledger::snapshot(&self.ledger().await, "PaymentsTable")
                .await
                .expect("snapshot");
            let report = shared::domain::invariants::check(&snap);
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
