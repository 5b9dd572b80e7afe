//! Use cases, each written against the ports it needs and never against an adapter.
//!
//! - request side: [`auth`], [`idempotent`] (one mechanism for every POST), [`pay_in`],
//!   [`ledger`] (the read APIs);
//! - event side: [`relay`] (outbox routing), [`consumers`] (ledger and wallet),
//!   [`invariants`];
//! - [`errors`]: the one map from a store's or the PSP's failure to what the caller sees.

pub mod auth;
pub mod consumers;
pub mod errors;
pub mod idempotent;
pub mod invariants;
pub mod ledger;
#[cfg(test)]
pub(crate) mod memory;
pub mod pay_in;
pub mod relay;

/// A response the HTTP adapter sends as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Sent again from the idempotency record (`Idempotent-Replayed: true`).
    pub replayed: bool,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::stored(status, value.to_string(), false)
    }

    /// A JSON body as stored for replay.
    pub fn stored(status: u16, body: String, replayed: bool) -> Self {
        Reply {
            status,
            body,
            replayed,
            content_type: "application/json",
        }
    }

    pub fn html(status: u16, body: String) -> Self {
        Reply {
            status,
            body,
            replayed: false,
            content_type: "text/html; charset=utf-8",
        }
    }
}

/// Who is calling: the account an authenticated API key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: crate::domain::ids::AccountId,
    pub key_id: crate::domain::ids::ApiKeyId,
}
