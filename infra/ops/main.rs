//! `ops`: operator commands against the deployed tables and queues (locally: the twin, through
//! the standard `AWS_ENDPOINT_URL_*` variables the Makefile sets).
//!
//! - `ops check`: reads everything and prints the invariant report as JSON; exit 1 if broken.
//! - `ops dlq`: lists what sits in each DLQ, with its failure reason.
//! - `ops redrive <QUEUE>`: moves a DLQ's messages back to their source queue (after a fix).
//! - `ops reconcile <FILE> [ACCOUNT]`: uploads a settlement file to the settlement bucket at
//!   `psp/<ACCOUNT>/<file name>` (which starts a reconciliation run), S3 checking its SHA-256.
//!
//! Names: `PAYMENTS_TABLE`, `LEDGER_TABLE`, `WALLETS_TABLE`, `LEDGER_BALANCES_TABLE` (default:
//! the template's logical ids, as the twin names them); queues by name; `SETTLEMENT_BUCKET`
//! (default `settlementbucket`, the twin's name for SettlementBucket) and `SETTLEMENT_ACCOUNT_ID`
//! (default `acct_platform`).

use std::collections::HashMap;
use std::process::ExitCode;

use shared::adapters::aws::sdk_config;
use shared::adapters::dynamo::invariants::InvariantStore;
use shared::adapters::dynamo::ledger::LedgerStore;
use shared::app::invariants::check_invariants;

const DLQS: &[(&str, &str)] = &[
    ("LedgerDLQ", "LedgerQueue"),
    ("WalletDLQ", "WalletQueue"),
    ("RefundDLQ", "RefundQueue"),
    ("PayoutDLQ", "PayoutQueue"),
    ("PayoutScanDLQ", "PayoutScanQueue"),
    ("ReconcileDLQ", "ReconcileQueue"),
];

/// Where Lambda puts a scheduled invocation that still failed after its retries (the event,
/// with Lambda's `ErrorMessage`): listed, not redriven (invoke the function with it again).
const ASYNC_DLQS: &[&str] = &["FetchSettlementDLQ"];

/// The twin's name for `SettlementBucket` (a bucket without `BucketName` is its lowercased
/// logical id there).
const DEFAULT_SETTLEMENT_BUCKET: &str = "settlementbucket";
const DEFAULT_SETTLEMENT_ACCOUNT: &str = "acct_platform";
const RECONCILE_USAGE: &str = "usage: ops reconcile <FILE> [ACCOUNT]";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| format!("queue {name}: {e}"))?
        .queue_url
        .ok_or_else(|| format!("queue {name} has no URL"))
}

/// Message attributes as plain strings.
fn attributes_of(msg: &aws_sdk_sqs::types::Message) -> HashMap<String, String> {
    msg.message_attributes()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// An S3 client from the shared config; path-style addressing when an endpoint is set (a local
/// one: `http://localhost:PORT` has no `<bucket>.localhost` subdomains).
fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let local = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|u| !u.is_empty()));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(local)
            .build(),
    )
}

/// `ops reconcile <FILE> [ACCOUNT]`: the file to `psp/<ACCOUNT>/<its base name>`, with its
/// SHA-256 sent along for S3 to check and store.
async fn reconcile(config: &aws_config::SdkConfig, args: &[String]) -> Result<(), String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let file = args.get(1).filter(|f| !f.is_empty()).ok_or(RECONCILE_USAGE)?;
    let account = match args.get(2).filter(|a| !a.is_empty()) {
        Some(a) => a.clone(),
        None => std::env::var("SETTLEMENT_ACCOUNT_ID")
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| DEFAULT_SETTLEMENT_ACCOUNT.to_owned()),
    };
    if account.contains('/') {
        return Err(format!("account {account:?} must not contain '/'"));
    }
    let bucket = std::env::var("SETTLEMENT_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| DEFAULT_SETTLEMENT_BUCKET.to_owned());
    let path = std::path::Path::new(file);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{file}: no file name"))?;
    let bytes = std::fs::read(path).map_err(|e| format!("{file}: {e}"))?;
    let digest = sha2::Sha256::digest(&bytes);
    let key = format!("psp/{account}/{name}");
    let out = s3_client(config)
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .content_type("text/csv")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .body(aws_sdk_s3::primitives::ByteStream::from(bytes.clone()))
        .send()
        .await
        .map_err(|e| {
            format!(
                "upload to s3://{bucket}/{key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })?;
    let sha256 = hex::encode(digest);
    // S3 answers with the checksum it stored: it must be ours.
    if let Some(stored) = out.checksum_sha256() {
        let stored = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .map(hex::encode)
            .unwrap_or_else(|_| stored.to_owned());
        if stored != sha256 {
            return Err(format!("S3 stored SHA-256 {stored}, the file's is {sha256}"));
        }
    }
    println!("bucket  {bucket}");
    println!("key     {key}");
    println!("size    {}", bytes.len());
    println!("sha256  {sha256}");
    if let Some(v) = out.version_id() {
        println!("version {v}");
    }
    Ok(())
}

async fn run(args: &[String]) -> Result<bool, String> {
    let config = sdk_config().await;
    match args.first().map(String::as_str) {
        Some("check") => {
            let store = InvariantStore {
                ledger: LedgerStore {
                    client: aws_sdk_dynamodb::Client::new(&config),
                    ledger_table: env_or("LEDGER_TABLE", "LedgerTable"),
                    wallets_table: env_or("WALLETS_TABLE", "WalletsTable"),
                    balances_table: env_or("LEDGER_BALANCES_TABLE", "LedgerBalancesTable"),
                },
                payments_table: env_or("PAYMENTS_TABLE", "PaymentsTable"),
            };
            let report = check_invariants(&store).await.map_err(|e| e.to_string())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            );
            Ok(report.ok)
        }
        Some("dlq") => {
            let sqs = aws_sdk_sqs::Client::new(&config);
            for dlq in DLQS.iter().map(|(d, _)| d).chain(ASYNC_DLQS) {
                let url = queue_url(&sqs, dlq).await?;
                // Peek: a short visibility timeout so the messages stay where they are.
                let got = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .visibility_timeout(1)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .map_err(|e| format!("receive {dlq}: {e}"))?;
                let messages = got.messages.unwrap_or_default();
                println!("{dlq}: {} message(s) shown (up to 10)", messages.len());
                for m in &messages {
                    let attrs = attributes_of(m);
                    println!(
                        "  {}  event {}  reason: {}",
                        m.message_id().unwrap_or("?"),
                        attrs.get("event_id").map(String::as_str).unwrap_or("-"),
                        attrs
                            .get("failure_reason")
                            .or_else(|| attrs.get("ErrorMessage"))
                            .map(String::as_str)
                            .unwrap_or("(redriven by SQS after maxReceiveCount)")
                    );
                }
            }
            Ok(true)
        }
        Some("redrive") => {
            let dlq = args.get(1).ok_or(
                "usage: ops redrive <LedgerDLQ|WalletDLQ|RefundDLQ|PayoutDLQ|PayoutScanDLQ|ReconcileDLQ>",
            )?;
            let source = DLQS
                .iter()
                .find(|(d, _)| d == dlq)
                .map(|(_, s)| *s)
                .ok_or_else(|| format!("unknown DLQ {dlq}; one of {DLQS:?}"))?;
            let sqs = aws_sdk_sqs::Client::new(&config);
            let (from, to) = (queue_url(&sqs, dlq).await?, queue_url(&sqs, source).await?);
            // Move what is there now, not what lands there meanwhile: a message that still
            // fails comes straight back, and must not be redriven in a loop.
            let waiting: usize = sqs
                .get_queue_attributes()
                .queue_url(&from)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                .send()
                .await
                .map_err(|e| format!("attributes of {dlq}: {e}"))?
                .attributes
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                        .cloned()
                })
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut moved = 0usize;
            while moved < waiting {
                let got = sqs
                    .receive_message()
                    .queue_url(&from)
                    .max_number_of_messages(i32::try_from((waiting - moved).min(10)).unwrap_or(10))
                    .wait_time_seconds(1)
                    .message_attribute_names("All")
                    .send()
                    .await
                    .map_err(|e| format!("receive {dlq}: {e}"))?;
                let messages = got.messages.unwrap_or_default();
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    let mut send = sqs
                        .send_message()
                        .queue_url(&to)
                        .message_body(m.body().unwrap_or_default());
                    for (k, v) in attributes_of(&m) {
                        if matches!(k.as_str(), "event_id" | "event_type") {
                            send = send.message_attributes(
                                k,
                                aws_sdk_sqs::types::MessageAttributeValue::builder()
                                    .data_type("String")
                                    .string_value(v)
                                    .build()
                                    .map_err(|e| e.to_string())?,
                            );
                        }
                    }
                    send.send().await.map_err(|e| format!("send to {source}: {e}"))?;
                    if let Some(h) = m.receipt_handle() {
                        sqs.delete_message()
                            .queue_url(&from)
                            .receipt_handle(h)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    moved += 1;
                }
            }
            println!("moved {moved} message(s) from {dlq} back to {source}");
            Ok(true)
        }
        Some("reconcile") => reconcile(&config, args).await.map(|()| true),
        _ => Err("usage: ops check | ops dlq | ops redrive <DLQ> | ops reconcile <FILE> [ACCOUNT]".into()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ops: {e}");
            ExitCode::from(2)
        }
    }
}
