//! DynamoDB adapter: implements the ports with conditional writes and transactions.
//!
//! Tables (see `infra/template.yaml`):
//! - payments (`pk`, `sk`): checkouts `CO#<id>`/`CO`, payment orders `PO#<id>`/`PO`, PSP event
//!   markers, outbox records and anomalies; GSI `by_psp_ref` (any PSP object id → its item);
//!   stream → the outbox relay;
//! - idempotency (`pk` = `<api key id>#<Idempotency-Key>`), TTL on `expires_at`;
//! - api keys (`key_hash` = SHA-256 of the key), with the key's rate-limit state;
//! - ledger, ledger balances and wallets (`ledger`, `wallets`);
//! - refunds `RF#<id>`/`RF` in the payments table (`refunds`), GSI `by_parent` (an order's
//!   refunds).

pub mod api_keys;
pub mod batch;
pub mod codec;
pub mod cursor;
pub mod idempotency;
pub mod invariants;
pub mod ledger;
pub mod open;
pub mod pay_in;
pub mod payouts;
pub mod reconciliation;
pub mod reconciliation_api;
pub mod refunds;
pub mod stuck;
pub mod tx;
pub mod wallets;
pub mod webhooks;

use aws_sdk_dynamodb::Client;

/// Table names, from the environment the template sets.
#[derive(Debug, Clone)]
pub struct Tables {
    pub payments: String,
    pub idempotency: String,
    pub api_keys: String,
    /// Creating a refund holds the seller's part in their wallet, in the same transaction.
    pub wallets: String,
}

impl Tables {
    pub fn from_env() -> Result<Self, String> {
        Ok(Tables {
            payments: crate::adapters::config::var("PAYMENTS_TABLE")?,
            idempotency: crate::adapters::config::var("IDEMPOTENCY_TABLE")?,
            api_keys: crate::adapters::config::var("API_KEYS_TABLE")?,
            wallets: crate::adapters::config::var("WALLETS_TABLE")?,
        })
    }
}

/// The store every request-side function uses; cheap to share (the client is an `Arc` inside).
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
