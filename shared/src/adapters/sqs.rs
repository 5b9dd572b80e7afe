//! SQS: the relay's publisher (one queue per destination) and the helpers the batch harness
//! sends with.

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};

use crate::adapters::dynamo::codec::unavailable;
use crate::ports::{Destination, Outgoing, Publisher};

/// `SendMessageBatch` takes at most this many messages.
pub const BATCH_MESSAGES_MAX: usize = 10;

/// A string message attribute; `None` only for a value SQS could never take (logged).
pub fn string_attr(value: &str) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| tracing::error!(error = %e, "message attribute"))
        .ok()
}

/// Publishes to one queue per destination.
pub struct SqsPublisher {
    pub sqs: aws_sdk_sqs::Client,
    pub ledger_queue_url: String,
    pub wallet_queue_url: String,
    pub refund_queue_url: String,
    pub payout_queue_url: String,
}

impl SqsPublisher {
    fn url(&self, d: Destination) -> &str {
        match d {
            Destination::Ledger => &self.ledger_queue_url,
            Destination::Wallet => &self.wallet_queue_url,
            Destination::Refund => &self.refund_queue_url,
            Destination::Payout => &self.payout_queue_url,
        }
    }
}

impl Publisher for SqsPublisher {
    /// Ten to a `SendMessageBatch` call, the calls at once (a stream batch of 100 is ten calls:
    /// one after another they were most of the relay's time). The index of the first message
    /// that did not go, if any: everything from it comes again with the stream's retry, so
    /// what went after it is sent twice, which every consumer makes harmless.
    async fn publish(&self, destination: Destination, messages: &[Outgoing]) -> Option<usize> {
        let url = self.url(destination);
        let chunks = messages
            .chunks(BATCH_MESSAGES_MAX)
            .enumerate()
            .map(|(c, chunk)| self.send_chunk(url, c * BATCH_MESSAGES_MAX, chunk));
        futures_util::future::join_all(chunks)
            .await
            .into_iter()
            .flatten()
            .min()
    }
}

impl SqsPublisher {
    /// One `SendMessageBatch`; the index of its first message that did not go.
    async fn send_chunk(&self, url: &str, base: usize, chunk: &[Outgoing]) -> Option<usize> {
        let built: Result<Vec<SendMessageBatchRequestEntry>, _> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_message_attributes(Some(
                        [("event_id", m.event_id.as_str()), ("event_type", m.event_type)]
                            .into_iter()
                            .filter_map(|(k, v)| Some((k.to_owned(), string_attr(v)?)))
                            .collect(),
                    ))
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
        match self
            .sqs
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
                tracing::error!(queue = %url, error = %unavailable("SendMessageBatch", e), "relay failed");
                Some(base)
            }
        }
    }
}
