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

/// Publishes to one queue per destination: the relay to its consumers' queues, the payout
/// scheduler to its own.
pub struct SqsPublisher {
    pub sqs: aws_sdk_sqs::Client,
    pub queues: Vec<(Destination, String)>,
}

impl SqsPublisher {
    fn url(&self, d: Destination) -> Option<&str> {
        self.queues
            .iter()
            .find(|(x, _)| *x == d)
            .map(|(_, url)| url.as_str())
    }
}

impl Publisher for SqsPublisher {
    /// Ten to a `SendMessageBatch` call, the calls at once (a stream batch of 100 is ten calls:
    /// one after another they were most of the relay's time). The index of the first message
    /// that did not go, if any: everything from it comes again with the stream's retry, so
    /// what went after it is sent twice, which every consumer makes harmless.
    async fn publish(&self, destination: Destination, messages: &[Outgoing]) -> Option<usize> {
        if messages.is_empty() {
            return None;
        }
        let Some(url) = self.url(destination) else {
            tracing::error!(?destination, "no queue configured for this destination");
            return Some(0);
        };
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
