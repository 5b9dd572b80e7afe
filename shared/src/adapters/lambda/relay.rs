//! The outbox relay's Lambda glue: DynamoDB stream records → `app::relay`. The stream's filter
//! passes only inserts of outbox records; anything else that arrives is not ours and is left.

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use serde::Deserialize;

use crate::adapters::aws::sdk_config;
use crate::adapters::config::{var, FromEnv};
use crate::adapters::sqs::SqsPublisher;
use crate::app::relay::{relay, OutboxRecord};
use crate::domain::outbox::OutboxEvent;
use crate::ports::Destination;

pub struct RelayEnv {
    pub publisher: SqsPublisher,
}

impl FromEnv for RelayEnv {
    async fn load() -> Result<Self, String> {
        Ok(RelayEnv {
            publisher: SqsPublisher {
                sqs: aws_sdk_sqs::Client::new(&sdk_config().await),
                queues: vec![
                    (Destination::Ledger, var("LEDGER_QUEUE_URL")?),
                    (Destination::Wallet, var("WALLET_QUEUE_URL")?),
                    (Destination::Refund, var("REFUND_QUEUE_URL")?),
                    (Destination::Payout, var("PAYOUT_QUEUE_URL")?),
                ],
            },
        })
    }
}

/// The outbox item as its stream image carries it.
#[derive(Deserialize)]
struct OutboxImage {
    entity: String,
    event_id: String,
    event_type: String,
    payload: String,
}

/// An outbox record of the batch (`None`: another entity, not ours to relay).
fn outbox_record(record: EventRecord) -> Option<OutboxRecord> {
    let sequence = record.change.sequence_number.clone();
    let is_outbox = record
        .change
        .new_image
        .get("entity")
        .is_some_and(|v| matches!(v, serde_dynamo::AttributeValue::S(s) if s == "outbox"));
    if !is_outbox {
        return None;
    }
    let event = serde_dynamo::from_item::<_, OutboxImage>(record.change.new_image)
        .map_err(|e| format!("outbox image: {e}"))
        .and_then(|image| {
            debug_assert_eq!(image.entity, "outbox");
            let event = OutboxEvent::from_json(&image.payload)?;
            if event.event_id() != image.event_id || event.body.event_type() != image.event_type {
                return Err(format!(
                    "outbox item {} / {} disagrees with its payload",
                    image.event_id, image.event_type
                ));
            }
            Ok((event, image.payload))
        });
    Some(OutboxRecord { sequence, event })
}

/// Publishes the batch's outbox records; reports the first that must come again.
pub async fn handle_relay(
    env: &RelayEnv,
    event: LambdaEvent<DynamoDbEvent>,
) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let records: Vec<OutboxRecord> = event
        .payload
        .records
        .into_iter()
        .filter_map(outbox_record)
        .collect();
    let mut response = DynamoDbEventResponse::default();
    if let Some(i) = relay(&env.publisher, &records).await {
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = records[i].sequence.clone();
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::paid_event;

    fn record(seq: &str, image: serde_json::Value) -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "eventID": seq, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:dynamodb:us-east-1:0:table/P/stream/x",
            "dynamodb": {"SequenceNumber": seq, "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES",
                "Keys": {"pk": {"S": "OUTBOX#x"}}, "NewImage": image}
        }))
        .unwrap()
    }

    #[test]
    fn stream_images_become_outbox_records_and_bad_ones_fail() {
        let e = paid_event("evt_1");
        let good = record(
            "1",
            serde_json::json!({"entity": {"S": "outbox"}, "event_id": {"S": e.event_id()},
                "event_type": {"S": "PAYMENT_SUCCEEDED"}, "payload": {"S": e.to_json()}}),
        );
        let r = outbox_record(good).unwrap();
        assert_eq!(r.sequence.as_deref(), Some("1"));
        assert_eq!(r.event.unwrap().0, e);
        let missing = record(
            "2",
            serde_json::json!({"entity": {"S": "outbox"}, "event_id": {"S": "x"}}),
        );
        assert!(outbox_record(missing).unwrap().event.is_err(), "never skipped");
        let bad_payload = record(
            "3",
            serde_json::json!({"entity": {"S": "outbox"}, "event_id": {"S": "x"},
                "event_type": {"S": "PAYMENT_SUCCEEDED"}, "payload": {"S": "{}"}}),
        );
        assert!(outbox_record(bad_payload).unwrap().event.is_err());
        let checkout = record("4", serde_json::json!({"entity": {"S": "checkout"}}));
        assert!(outbox_record(checkout).is_none(), "not an outbox record");
    }
}
