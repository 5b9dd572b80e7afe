//! The one SQS batch harness every queue consumer runs in (the ledger and wallet consumers and
//! the refund executor today, the payout executor next):
//! - each message goes to the consumer; messages that contend (the consumer says on what, e.g. one
//!   seller's wallet) in order, all others at once;
//! - poison (it will never apply) goes straight to the DLQ with its reason, and is acknowledged
//!   so the rest of the batch goes on;
//! - a retryable failure comes back after a backoff of 1, 2, 4, 8, 16 s (set through the
//!   message's visibility), and after [`RECEIVES_MAX`] receives goes to the DLQ with its reason;
//! - only the messages that must come back are reported (`ReportBatchItemFailures`); nothing is
//!   acknowledged that was not applied or dead-lettered.

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;

use crate::adapters::config::{var, FromEnv};
use crate::adapters::dynamo::codec::unavailable;
use crate::adapters::sqs::string_attr;
use crate::app::consumers::{Consumer, Failure};

/// After this many receives a failing message goes to the DLQ with its reason (the queue's
/// RedrivePolicy has the same count as a safety net for crashes).
pub const RECEIVES_MAX: u32 = 5;
/// The backoff doubles from 1 s up to this.
pub const BACKOFF_S_MAX: u64 = 16;
/// A reason is cut to this many characters in the DLQ's attributes.
const REASON_CHARS_MAX: usize = 1000;

/// The backoff after the `receives`-th failed receive, from a base of `base_s` seconds (1 in
/// production): 1 s, 2 s, 4 s, 8 s, 16 s, 16 s …
pub fn backoff(receives: u32, base_s: u64) -> Duration {
    let s = base_s.saturating_mul(1u64 << receives.saturating_sub(1).min(10));
    Duration::from_secs(s.min(BACKOFF_S_MAX.saturating_mul(base_s)))
}

/// The queue a consumer reads and its DLQ.
pub struct SqsBatch {
    pub sqs: aws_sdk_sqs::Client,
    /// The queue this consumer reads (for ChangeMessageVisibility).
    pub source_queue_url: String,
    pub dlq_url: String,
    /// `RETRY_BACKOFF_BASE_S` (default 1; a test stack may use 0 for immediate retries).
    pub backoff_base_s: u64,
}

impl SqsBatch {
    pub async fn from_env(sqs: aws_sdk_sqs::Client) -> Result<Self, String> {
        Ok(SqsBatch {
            sqs,
            source_queue_url: var("SOURCE_QUEUE_URL")?,
            dlq_url: var("DLQ_URL")?,
            backoff_base_s: match std::env::var("RETRY_BACKOFF_BASE_S") {
                Ok(v) => v
                    .parse()
                    .ok()
                    .filter(|s| *s <= 60)
                    .ok_or("RETRY_BACKOFF_BASE_S must be a whole number of seconds, 0 to 60")?,
                Err(_) => 1,
            },
        })
    }
}

/// A consumer and its queue, built once per cold start.
pub struct ConsumerEnv<C> {
    pub batch: SqsBatch,
    pub consumer: C,
}

/// How a consumer is built from the environment.
pub trait ConsumerFromEnv: Sized + Send + Sync + 'static {
    fn load(config: &aws_config::SdkConfig)
        -> impl std::future::Future<Output = Result<Self, String>> + Send;
}

impl<C: ConsumerFromEnv> FromEnv for ConsumerEnv<C> {
    async fn load() -> Result<Self, String> {
        let config = crate::adapters::aws::sdk_config().await;
        Ok(ConsumerEnv {
            batch: SqsBatch::from_env(aws_sdk_sqs::Client::new(&config)).await?,
            consumer: C::load(&config).await?,
        })
    }
}

/// The Lambda handler of every queue consumer.
pub async fn handle_batch<C: Consumer>(
    env: &ConsumerEnv<C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let records = &event.payload.records;
    // Lanes: messages that contend (say, one seller's wallet) in order, the others at once.
    let keys: Vec<Vec<String>> = records
        .iter()
        .map(|m| env.consumer.contends_on(m.body.as_deref().unwrap_or("")))
        .collect();
    let lanes = crate::app::consumers::lanes(&keys);
    let done = futures_util::future::join_all(lanes.into_iter().map(|lane| async move {
        let mut out = Vec::with_capacity(lane.len());
        for i in lane {
            out.push((i, env.batch.handle(&env.consumer, &records[i]).await));
        }
        out
    }))
    .await;
    let mut retry = vec![false; records.len()];
    for (i, again) in done.into_iter().flatten() {
        retry[i] = again;
    }
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

impl SqsBatch {
    /// Applies one message; true if it must come back (its visibility already set to the
    /// backoff).
    async fn handle<C: Consumer>(&self, consumer: &C, msg: &SqsMessage) -> bool {
        let id = msg.message_id.as_deref().unwrap_or_default();
        let name = C::NAME;
        let receives: u32 = msg
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        match consumer.apply(msg.body.as_deref().unwrap_or("")).await {
            Ok(written) => {
                tracing::info!(message_id = %id, consumer = name, ?written, "applied");
                false
            }
            Err(Failure::Poison(reason)) => {
                tracing::error!(message_id = %id, consumer = name, reason = %reason, "poison message: to the DLQ");
                !self.dead_letter(name, msg, &reason, receives).await
            }
            Err(Failure::Retryable(reason)) if receives >= RECEIVES_MAX => {
                tracing::error!(message_id = %id, consumer = name, reason = %reason, receives, "retries exhausted: to the DLQ");
                !self.dead_letter(name, msg, &reason, receives).await
            }
            Err(Failure::Retryable(reason)) => {
                let wait = backoff(receives, self.backoff_base_s);
                tracing::warn!(message_id = %id, consumer = name, reason = %reason, receives, retry_in_s = wait.as_secs(), "will retry");
                self.delay(msg, wait).await;
                true
            }
        }
    }

    /// Sets the message's visibility to `wait`. If that fails the message still comes back,
    /// after the queue's visibility timeout instead of the backoff: logged, not fatal.
    async fn delay(&self, msg: &SqsMessage, wait: Duration) {
        let Some(handle) = &msg.receipt_handle else {
            tracing::warn!("message without a receipt handle; it returns after the visibility timeout");
            return;
        };
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.source_queue_url)
            .receipt_handle(handle)
            .visibility_timeout(i32::try_from(wait.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await
        {
            tracing::warn!(
                error = %unavailable("ChangeMessageVisibility", e),
                "could not set the backoff; the message returns after the visibility timeout"
            );
        }
    }

    /// Moves a message to the DLQ with its reason as message attributes; `false` if that failed
    /// (then it stays in its queue and comes back).
    async fn dead_letter(&self, consumer: &str, msg: &SqsMessage, reason: &str, receives: u32) -> bool {
        let reason: String = reason.chars().take(REASON_CHARS_MAX).collect();
        let mut attributes: Vec<(String, String)> = vec![
            ("failure_reason".into(), reason),
            ("failed_consumer".into(), consumer.to_owned()),
            ("receive_count".into(), receives.to_string()),
            (
                "original_message_id".into(),
                msg.message_id.clone().unwrap_or_default(),
            ),
        ];
        for (name, attr) in &msg.message_attributes {
            if let (Some(v), false) = (&attr.string_value, name.starts_with("failure")) {
                attributes.push((name.clone(), v.clone()));
            }
        }
        let mut send = self
            .sqs
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(msg.body.clone().unwrap_or_default());
        for (name, value) in attributes {
            if let Some(attr) = string_attr(&value) {
                send = send.message_attributes(name, attr);
            }
        }
        match send.send().await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %unavailable("SendMessage DLQ", e), "could not dead-letter");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let s: Vec<u64> = (1..=7).map(|r| backoff(r, 1).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(0, 1).as_secs(), 1);
        assert_eq!(backoff(u32::MAX, 1).as_secs(), BACKOFF_S_MAX);
        assert_eq!(backoff(3, 0).as_secs(), 0, "a test stack retries at once");
    }
}
