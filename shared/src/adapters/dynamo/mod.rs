//! DynamoDB adapter: implements the ports with conditional writes and transactions.
//!
//! Tables (see `infra/template.yaml`):
//! - payments (`pk`, `sk`): checkouts `CO#<id>`/`CO`, payment orders `PO#<id>`/`PO`; GSI
//!   `by_psp_token`; stream for the outbox.
//! - idempotency (`pk` = `<api key id>#<Idempotency-Key>`), TTL on `expires_at`.
//! - api keys (`key_hash` = SHA-256 of the key), with the key's rate-limit state.

pub mod api_keys;
pub mod codec;
pub mod ledger;
pub mod payments;
pub mod webhooks;

use aws_sdk_dynamodb::Client;

/// Table names, from the environment the template sets.
#[derive(Debug, Clone)]
pub struct Tables {
    pub payments: String,
    pub idempotency: String,
    pub api_keys: String,
}

impl Tables {
    pub fn from_env() -> Result<Self, String> {
        let var =
            |name: &str| std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
        Ok(Tables {
            payments: var("PAYMENTS_TABLE")?,
            idempotency: var("IDEMPOTENCY_TABLE")?,
            api_keys: var("API_KEYS_TABLE")?,
        })
    }
}

/// The store every function uses; cheap to share (the client is an `Arc` inside).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub client: Client,
    pub tables: Tables,
}

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        DynamoStore { client, tables }
    }
}
