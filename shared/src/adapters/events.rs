//! Event-driven Lambdas: the outbox relay (DynamoDB Streams → SQS) and the ledger and wallet
//! consumers (SQS). At least once everywhere; every write below is idempotent by event id.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as DynamoDbEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use lambda_runtime::LambdaEvent;
use rust_decimal::Decimal;

use crate::adapters::aws::sdk_config;
use crate::adapters::config::FromEnv;
use crate::adapters::dynamo::ledger::{LedgerStore, Written};
use crate::domain::checkout::format_time;
use crate::domain::ledger::{postings, wallet_credits, PostingError};
use crate::domain::outbox::OutboxEvent;

/// After this many receives a failing message goes to the DLQ with its reason (the queue's
/// RedrivePolicy has the same count as a safety net for crashes).
pub const RECEIVES_MAX: u32 = 5;

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

// --- Relay -------------------------------------------------------------------------------

pub struct RelayEnv {
    pub sqs: aws_sdk_sqs::Client,
    /// One queue per consumer: the event fans out to each.
    pub queue_urls: Vec<String>,
}

impl FromEnv for RelayEnv {
    async fn load() -> Result<Self, String> {
        Ok(RelayEnv {
            sqs: aws_sdk_sqs::Client::new(&sdk_config().await),
            queue_urls: vec![var("LEDGER_QUEUE_URL")?, var("WALLET_QUEUE_URL")?],
        })
    }
}

fn image_string(image: &serde_json::Value, name: &str) -> Option<String> {
    image.get(name)?.get("S")?.as_str().map(str::to_owned)
}

/// One outbox record of a stream batch, ready to publish.
struct Outgoing {
    sequence: Option<String>,
    event_id: String,
    event_type: String,
    payload: String,
}

/// Publishes each outbox record of the batch to every consumer queue, ten to a
/// `SendMessageBatch` call and the queues at once. If any record fails, the first failed one
/// is reported: Lambda retries from it, so it and everything after it come again (what was
/// sent already is sent twice, which the consumers make harmless).
pub async fn handle_relay(
    env: &RelayEnv,
    event: LambdaEvent<DynamoDbEvent>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let mut outgoing = Vec::new();
    for record in event.payload.records {
        let sequence = record.change.sequence_number.clone();
        let image = serde_json::to_value(&record.change.new_image).unwrap_or_default();
        if image_string(&image, "entity").as_deref() != Some("outbox") {
            continue;
        }
        let (Some(event_id), Some(event_type), Some(payload)) = (
            image_string(&image, "event_id"),
            image_string(&image, "event_type"),
            image_string(&image, "payload"),
        ) else {
            tracing::error!(
                ?sequence,
                "outbox record without event_id/event_type/payload; skipped"
            );
            continue;
        };
        outgoing.push(Outgoing {
            sequence,
            event_id,
            event_type,
            payload,
        });
    }
    let per_queue =
        futures_util::future::join_all(env.queue_urls.iter().map(|url| publish(&env.sqs, url, &outgoing)))
            .await;
    let first_failed = per_queue.into_iter().flatten().min();
    let mut response = DynamoDbEventResponse::default();
    let sent = first_failed.unwrap_or(outgoing.len());
    for o in &outgoing[..sent] {
        tracing::info!(event_id = %o.event_id, event_type = %o.event_type, "outbox event relayed");
    }
    if let Some(i) = first_failed {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = outgoing[i].sequence.clone();
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

/// Sends every record to one queue; the index of the first record that failed, if any.
async fn publish(sqs: &aws_sdk_sqs::Client, url: &str, outgoing: &[Outgoing]) -> Option<usize> {
    for (c, chunk) in outgoing.chunks(10).enumerate() {
        let base = c * 10;
        let built: Result<Vec<SendMessageBatchRequestEntry>, _> = chunk
            .iter()
            .enumerate()
            .map(|(i, o)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&o.payload)
                    .message_attributes("event_id", string_attr(&o.event_id))
                    .message_attributes("event_type", string_attr(&o.event_type))
                    .build()
            })
            .collect();
        // An entry that cannot be built is never dropped: the chunk counts as failed from its
        // start, so the stream hands it to us again.
        let entries = match built {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(queue = %url, error = %e, "relay could not build a batch entry");
                return Some(base);
            }
        };
        let failed = match sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out
                .failed()
                .iter()
                .map(|f| {
                    tracing::error!(queue = %url, code = f.code(), message = f.message().unwrap_or(""), "relay failed for one message");
                    base + f.id().parse::<usize>().unwrap_or(0)
                })
                .min(),
            Err(e) => {
                tracing::error!(queue = %url, error = %crate::adapters::dynamo::codec::unavailable("SendMessageBatch", e), "relay failed");
                Some(base)
            }
        };
        if failed.is_some() {
            // Everything from here comes again with the retry.
            return failed;
        }
    }
    None
}

fn string_attr(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set")
}

// --- Consumers ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    Ledger,
    Wallet,
}

pub struct ConsumerEnv {
    pub store: LedgerStore,
    pub sqs: aws_sdk_sqs::Client,
    /// The queue this consumer reads (for ChangeMessageVisibility).
    pub source_queue_url: String,
    pub dlq_url: String,
    pub fee_rate: Decimal,
}

impl FromEnv for ConsumerEnv {
    async fn load() -> Result<Self, String> {
        let config = sdk_config().await;
        let fee_rate: Decimal = std::env::var("PLATFORM_FEE_RATE")
            .unwrap_or_else(|_| "0.025".into())
            .parse()
            .map_err(|_| "PLATFORM_FEE_RATE must be a decimal such as 0.025")?;
        if fee_rate < Decimal::ZERO || fee_rate > Decimal::ONE {
            return Err("PLATFORM_FEE_RATE must be between 0 and 1".into());
        }
        Ok(ConsumerEnv {
            store: LedgerStore {
                client: aws_sdk_dynamodb::Client::new(&config),
                ledger_table: var("LEDGER_TABLE")?,
                wallets_table: var("WALLETS_TABLE")?,
            },
            sqs: aws_sdk_sqs::Client::new(&config),
            source_queue_url: var("SOURCE_QUEUE_URL")?,
            dlq_url: var("DLQ_URL")?,
            fee_rate,
        })
    }
}

enum Failure {
    /// Will never succeed (unparseable, unbalanced): straight to the DLQ with the reason.
    Poison(String),
    /// May succeed later (DynamoDB unavailable): back off and retry.
    Retryable(String),
}

async fn apply(env: &ConsumerEnv, consumer: Consumer, body: &str) -> Result<Written, Failure> {
    let event = OutboxEvent::from_json(body).map_err(Failure::Poison)?;
    let poison = |e: PostingError| Failure::Poison(e.to_string());
    match consumer {
        Consumer::Ledger => {
            let mut written = Written::AlreadyApplied;
            for tx in postings(&event, env.fee_rate).map_err(poison)? {
                if env
                    .store
                    .append(&tx)
                    .await
                    .map_err(|e| Failure::Retryable(e.to_string()))?
                    == Written::Written
                {
                    written = Written::Written;
                }
            }
            Ok(written)
        }
        Consumer::Wallet => {
            let credits = wallet_credits(&event, env.fee_rate).map_err(poison)?;
            if credits.is_empty() {
                return Ok(Written::AlreadyApplied);
            }
            let now = format_time(chrono::Utc::now());
            env.store
                .credit_wallets(&event.event_id, &event.account_id, &credits, &now)
                .await
                .map_err(|e| Failure::Retryable(e.to_string()))
        }
    }
}

/// Moves a message to the DLQ with its reason as message attributes; `false` if that failed.
async fn dead_letter(
    env: &ConsumerEnv,
    consumer: Consumer,
    msg: &SqsMessage,
    reason: &str,
    receives: u32,
) -> bool {
    let mut send = env
        .sqs
        .send_message()
        .queue_url(&env.dlq_url)
        .message_body(msg.body.clone().unwrap_or_default())
        .message_attributes(
            "failure_reason",
            string_attr(&reason.chars().take(1000).collect::<String>()),
        )
        .message_attributes(
            "failed_consumer",
            string_attr(&format!("{consumer:?}").to_lowercase()),
        )
        .message_attributes("receive_count", string_attr(&receives.to_string()))
        .message_attributes(
            "original_message_id",
            string_attr(msg.message_id.as_deref().unwrap_or("")),
        );
    for (name, attr) in &msg.message_attributes {
        if let (Some(v), false) = (&attr.string_value, name.starts_with("failure")) {
            send = send.message_attributes(name, string_attr(v));
        }
    }
    match send.send().await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %crate::adapters::dynamo::codec::unavailable("SendMessage DLQ", e), "could not dead-letter");
            false
        }
    }
}

/// Exponential backoff through the visibility timeout: 1 s, 2 s, 4 s, 8 s, 16 s.
fn backoff(receives: u32) -> Duration {
    Duration::from_secs(1u64 << receives.saturating_sub(1).min(4))
}

impl Consumer {
    /// Whether a batch's messages may be applied at once. The ledger's writes for different
    /// events touch disjoint items (deterministic transaction ids, their own entry lines); the
    /// wallet's would contend for the same seller's balance item, so it applies in order.
    fn concurrent_in_batch(self) -> bool {
        matches!(self, Consumer::Ledger)
    }
}

/// Processes an SQS batch; only the messages that must come back are reported as failures.
pub async fn handle_consumer(
    env: &ConsumerEnv,
    consumer: Consumer,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let records = &event.payload.records;
    let retry: Vec<bool> = if consumer.concurrent_in_batch() {
        futures_util::future::join_all(records.iter().map(|m| handle_message(env, consumer, m))).await
    } else {
        let mut out = Vec::with_capacity(records.len());
        for m in records {
            out.push(handle_message(env, consumer, m).await);
        }
        out
    };
    let mut response = SqsBatchResponse::default();
    for (msg, retry) in records.iter().zip(retry) {
        if retry {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = msg.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

/// Applies one message; true if it must come back (its visibility already set to the backoff).
async fn handle_message(env: &ConsumerEnv, consumer: Consumer, msg: &SqsMessage) -> bool {
    let id = msg.message_id.clone().unwrap_or_default();
    let receives: u32 = msg
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let outcome = apply(env, consumer, msg.body.as_deref().unwrap_or("")).await;
    match outcome {
        Ok(written) => {
            tracing::info!(message_id = %id, ?consumer, ?written, "applied");
            false
        }
        Err(Failure::Poison(reason)) => {
            tracing::error!(message_id = %id, ?consumer, reason = %reason, "poison message: to the DLQ");
            !dead_letter(env, consumer, msg, &reason, receives).await
        }
        Err(Failure::Retryable(reason)) if receives >= RECEIVES_MAX => {
            tracing::error!(message_id = %id, ?consumer, reason = %reason, receives, "retries exhausted: to the DLQ");
            !dead_letter(env, consumer, msg, &reason, receives).await
        }
        Err(Failure::Retryable(reason)) => {
            let wait = backoff(receives);
            tracing::warn!(message_id = %id, ?consumer, reason = %reason, receives, retry_in_s = wait.as_secs(), "will retry");
            if let Some(handle) = &msg.receipt_handle {
                let _ = env
                    .sqs
                    .change_message_visibility()
                    .queue_url(&env.source_queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(i32::try_from(wait.as_secs()).unwrap_or(16))
                    .send()
                    .await;
            }
            true
        }
    }
}

/// Message attributes as plain strings (for tools like `make dlq`).
pub fn attributes_of(msg: &aws_sdk_sqs::types::Message) -> HashMap<String, String> {
    msg.message_attributes()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

// --- Invariants ----------------------------------------------------------------------------

pub struct InvariantsEnv {
    pub ledger: LedgerStore,
    pub payments_table: String,
}

impl FromEnv for InvariantsEnv {
    async fn load() -> Result<Self, String> {
        Ok(InvariantsEnv {
            ledger: LedgerStore {
                client: aws_sdk_dynamodb::Client::new(&sdk_config().await),
                ledger_table: var("LEDGER_TABLE")?,
                wallets_table: var("WALLETS_TABLE")?,
            },
            payments_table: var("PAYMENTS_TABLE")?,
        })
    }
}

/// Reads everything and reports the invariants as JSON; a broken invariant is logged at error
/// level (alarm on it) and fails the invocation.
pub async fn handle_check_invariants(
    env: &InvariantsEnv,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<crate::domain::invariants::Report, lambda_runtime::Error> {
    let snap = crate::adapters::dynamo::ledger::snapshot(&env.ledger, &env.payments_table).await?;
    let report = crate::domain::invariants::check(&snap);
    if report.ok {
        tracing::info!(
            transactions = report.ledger_transactions,
            wallets = report.wallets,
            "invariants hold"
        );
        Ok(report)
    } else {
        tracing::error!(violations = ?report.violations, "INVARIANT BROKEN");
        Err(format!(
            "{} invariant violation(s): {:?}",
            report.violations.len(),
            report.violations
        )
        .into())
    }
}
