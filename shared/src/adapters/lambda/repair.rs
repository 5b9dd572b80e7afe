//! `repair_stuck`: on its schedule, the PSP's undelivered events and our records stuck waiting
//! on the PSP, brought up to date through the webhook's code
//! (`shared::app::reconciliation::repair::StuckRepair`).

use chrono::{Duration, Utc};
use lambda_runtime::LambdaEvent;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::adapters::config::{fee_rate, psp_client, FromEnv};
use crate::adapters::dynamo::{DynamoStore, Tables};
use crate::adapters::stripe::StripeClient;
use crate::app::consumers::Failure;
use crate::app::reconciliation::StuckRepair;

/// Records of each kind looked at per run (the oldest first; the rest wait for the next run).
const BATCH: usize = 500;

pub struct RepairEnv {
    pub store: DynamoStore,
    pub psp: StripeClient,
    pub fee_rate: Decimal,
    pub stuck_after: Duration,
    pub lookback: Duration,
}

fn seconds(name: &str, default: i64) -> Result<Duration, String> {
    let s: i64 = match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number of seconds, got {v:?}"))?,
        _ => default,
    };
    Ok(Duration::seconds(s.max(0)))
}

impl FromEnv for RepairEnv {
    async fn load() -> Result<Self, String> {
        let config = crate::adapters::aws::sdk_config().await;
        Ok(RepairEnv {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), Tables::from_env()?),
            psp: psp_client()?,
            fee_rate: fee_rate()?,
            stuck_after: seconds("REPAIR_STUCK_AFTER_S", 600)?,
            // Stripe retries a webhook for up to three days.
            lookback: seconds("REPAIR_LOOKBACK_S", 3 * 24 * 3600)?,
        })
    }
}

pub async fn handle_repair(
    env: &RepairEnv,
    _event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let repair = StuckRepair {
        store: &env.store,
        events: &env.psp,
        fee_rate: env.fee_rate,
        stuck_after: env.stuck_after,
        lookback: env.lookback,
        batch: BATCH,
    };
    match repair.run(Utc::now()).await {
        Ok(summary) => Ok(serde_json::to_value(summary)?),
        // The next scheduled run tries again; EventBridge retries this one.
        Err(Failure::Poison(why) | Failure::Retryable(why)) => {
            tracing::error!(reason = %why, "repair_stuck run failed");
            Err(why.into())
        }
    }
}
