//! Use cases: each takes only the ports it needs and returns a reply or an `ApiError`.

pub mod auth;
pub mod create_payment;
#[cfg(test)]
pub(crate) mod memory;
pub mod queries;

/// A response the HTTP adapter sends as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Sent again from the idempotency record (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply {
            status,
            body: value.to_string(),
            replayed: false,
        }
    }
}

/// Who is calling: the account an authenticated API key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: crate::domain::ids::AccountId,
    pub key_id: crate::domain::ids::ApiKeyId,
}
