//! What every HTTP function builds once at cold start.

use crate::adapters::aws::dynamodb_client;
use crate::adapters::dynamo::{DynamoStore, Tables};
use crate::domain::rate_limit::RateLimit;

pub struct Env {
    pub store: DynamoStore,
    /// The default per-key limit (a key may carry its own).
    pub rate_limit: RateLimit,
}

impl Env {
    /// Reads the environment the template sets. Missing configuration fails the cold start
    /// (an init error), never a request.
    pub async fn load() -> Result<Env, String> {
        let tables = Tables::from_env()?;
        let number = |name: &str, default: u32| -> Result<u32, String> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a positive integer, got {v:?}")),
            }
        };
        let rate_limit = RateLimit::new(number("RATE_LIMIT_RPS", 50)?, number("RATE_LIMIT_BURST", 100)?)
            .ok_or("RATE_LIMIT_RPS and RATE_LIMIT_BURST must be at least 1")?;
        Ok(Env {
            store: DynamoStore::new(dynamodb_client().await, tables),
            rate_limit,
        })
    }
}
