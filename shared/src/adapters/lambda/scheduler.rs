//! The payout scheduler's Lambda glue. One function, two event sources from the template: its
//! `Schedule` (EventBridge's "Scheduled Event": a new run for the period of its `time`) and its
//! own queue (the scan tasks a run hands off), which runs in the one SQS batch harness.

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Utc};
use lambda_runtime::LambdaEvent;
use serde_json::Value;

use crate::adapters::dynamo::DynamoStore;
use crate::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
use crate::adapters::sqs::SqsPublisher;
use crate::app::consumers::Failure;
use crate::app::payouts::schedule::PayoutScheduler;

pub type SchedulerEnv = ConsumerEnv<PayoutScheduler<DynamoStore, SqsPublisher>>;

/// The event's scheduled time (EventBridge's `time`), else now (a manual invocation).
fn scheduled_time(event: &Value) -> DateTime<Utc> {
    event
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(Utc::now)
}

pub async fn handle_scheduler(
    env: &SchedulerEnv,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let (payload, context) = (event.payload, event.context);
    if payload.get("Records").is_some() {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        let response = handle_batch(env, LambdaEvent::new(batch, context)).await?;
        return Ok(serde_json::to_value(response)?);
    }
    match env.consumer.start(scheduled_time(&payload)).await {
        Ok(summary) => Ok(serde_json::to_value(summary)?),
        // EventBridge retries a failed invocation; a run that did part of the work before is
        // harmless to repeat (each payout is claimed once per period).
        Err(Failure::Poison(why) | Failure::Retryable(why)) => {
            tracing::error!(reason = %why, "payout schedule run failed");
            Err(why.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_belongs_to_its_scheduled_time() {
        let event = serde_json::json!({"version": "0", "detail-type": "Scheduled Event",
            "source": "aws.events", "time": "2026-12-01T06:00:00Z", "detail": {}});
        assert_eq!(
            scheduled_time(&event),
            "2026-12-01T06:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let before = Utc::now();
        assert!(scheduled_time(&serde_json::json!({})) >= before);
    }
}
