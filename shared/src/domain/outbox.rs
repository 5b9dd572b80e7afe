//! Outbox events: written in the same DynamoDB transaction as the state change they announce,
//! relayed from the table's stream to the wallet and ledger consumers (at least once; the
//! consumers deduplicate by `event_id`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::checkout::{format_time, Checkout, PaymentOrder};
use super::status::PaymentStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboxKind {
    PaymentSucceeded,
    PaymentFailed,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::PaymentSucceeded => "PAYMENT_SUCCEEDED",
            OutboxKind::PaymentFailed => "PAYMENT_FAILED",
        }
    }
}

/// One seller's line as the consumers need it: exact minor units and the currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxOrder {
    pub payment_order_id: String,
    pub seller_id: String,
    pub sub_order_id: Option<String>,
    pub amount_minor: i64,
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxEvent {
    /// Deterministic: derived from the PSP event that caused it, so a redelivered webhook can
    /// never write a second one (and the ledger's transaction ids derive from it in turn).
    pub event_id: String,
    pub event_type: OutboxKind,
    pub checkout_id: String,
    pub account_id: String,
    pub order_id: String,
    pub buyer_id: String,
    pub psp_token: Option<String>,
    pub psp_event_id: String,
    pub total_minor: i64,
    pub currency: String,
    pub payment_orders: Vec<OutboxOrder>,
    pub occurred_at: String,
}

impl OutboxEvent {
    /// The event announcing a checkout that has just reached SUCCESS or FAILED.
    pub fn settled(
        checkout: &Checkout,
        orders: &[PaymentOrder],
        psp_event_id: &str,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let kind = match checkout.status {
            PaymentStatus::Success => OutboxKind::PaymentSucceeded,
            PaymentStatus::Failed => OutboxKind::PaymentFailed,
            PaymentStatus::Created | PaymentStatus::Executing => return None,
        };
        Some(OutboxEvent {
            event_id: format!("obx_{psp_event_id}"),
            event_type: kind,
            checkout_id: checkout.id.to_string(),
            account_id: checkout.account_id.to_string(),
            order_id: checkout.order_id.to_string(),
            buyer_id: checkout.buyer_id.to_string(),
            psp_token: checkout.psp_token.clone(),
            psp_event_id: psp_event_id.to_owned(),
            total_minor: checkout.total.minor(),
            currency: checkout.total.currency().code().to_owned(),
            payment_orders: orders
                .iter()
                .map(|o| OutboxOrder {
                    payment_order_id: o.id.to_string(),
                    seller_id: o.seller_id.to_string(),
                    sub_order_id: o.sub_order_id.as_ref().map(ToString::to_string),
                    amount_minor: o.amount.minor(),
                    amount: o.amount.to_string(),
                    currency: o.amount.currency().code().to_owned(),
                })
                .collect(),
            occurred_at: format_time(now),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a relayed event; amounts are integers (minor units), never floats.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not an outbox event: {e}"))
    }
}

/// Something reconciliation must look at: a verified PSP event we could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub psp_event_id: String,
    /// Stable code: `unknown_session`, `amount_mismatch`, `illegal_transition`, `unparseable_event`…
    pub kind: &'static str,
    pub detail: String,
    pub checkout_id: Option<String>,
    pub at: DateTime<Utc>,
}
