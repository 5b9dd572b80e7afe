//! Client idempotency (design §14 "Key A", IETF draft "The Idempotency-Key HTTP Header Field").
//!
//! The first request with a key claims it with a conditional put (state `IN_PROGRESS`, holding a
//! lease that ends with the invocation's deadline), in the same transaction that creates the
//! resource it asks for. It finishes by storing its final response (`COMPLETED`). Every later
//! request with the key is decided here, from the stored record alone. The same record serves
//! every POST: it names the resource it creates by kind and id.

use std::fmt;

use super::ids::{ApiKeyId, BreakId, CheckoutId, PayoutId, RefundId};

pub const KEY_LEN_MAX: usize = 255;
/// Records are kept for replay this long (DynamoDB TTL deletes them afterwards).
pub const RECORD_TTL_S: i64 = 24 * 60 * 60;

#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Idempotency-Key must be 1 to 255 characters")]
    Length,
    #[error(
        "Idempotency-Key must contain only printable ASCII characters (letters, digits, punctuation, spaces)"
    )]
    NotPrintableAscii,
    /// API Gateway joins repeated headers with commas, so a comma means several were sent.
    #[error("send exactly one Idempotency-Key header, with no comma in it (repeated headers arrive joined by commas)")]
    Several,
    #[error("Idempotency-Key looks like it holds a card number; card data is never accepted")]
    CardNumber,
}

impl IdempotencyKey {
    /// 1–255 printable ASCII characters, no comma, no card number (the header's bytes, as
    /// sent).
    pub fn parse(value: &[u8]) -> Result<Self, KeyError> {
        if value.is_empty() || value.len() > KEY_LEN_MAX {
            return Err(KeyError::Length);
        }
        if !value.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(KeyError::NotPrintableAscii);
        }
        if value.contains(&b',') {
            return Err(KeyError::Several);
        }
        // Printable ASCII: valid UTF-8.
        let text = String::from_utf8_lossy(value).into_owned();
        if super::card::contains_pan(&text) {
            return Err(KeyError::CardNumber);
        }
        Ok(IdempotencyKey(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The record's primary key: keys are scoped to the API key that sent them.
    pub fn record_id(&self, scope: &ApiKeyId) -> String {
        format!("{scope}#{}", self.0)
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey({} chars)", self.0.len())
    }
}

/// What kind of resource a POST creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Checkout,
    Refund,
    Payout,
    /// A reconciliation break's resolution (the break exists; the POST resolves it).
    ReconciliationBreak,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Checkout => "checkout",
            ResourceKind::Refund => "refund",
            ResourceKind::Payout => "payout",
            ResourceKind::ReconciliationBreak => "reconciliation_break",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "checkout" => Some(ResourceKind::Checkout),
            "refund" => Some(ResourceKind::Refund),
            "payout" => Some(ResourceKind::Payout),
            "reconciliation_break" => Some(ResourceKind::ReconciliationBreak),
            _ => None,
        }
    }
}

/// The resource an idempotency record creates: a takeover resumes it instead of making another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    pub id: String,
}

impl ResourceRef {
    pub fn checkout(id: &CheckoutId) -> Self {
        ResourceRef {
            kind: ResourceKind::Checkout,
            id: id.to_string(),
        }
    }
}

impl ResourceRef {
    pub fn refund(id: &RefundId) -> Self {
        ResourceRef {
            kind: ResourceKind::Refund,
            id: id.to_string(),
        }
    }
}

impl ResourceRef {
    pub fn payout(id: &PayoutId) -> Self {
        ResourceRef {
            kind: ResourceKind::Payout,
            id: id.to_string(),
        }
    }
}

impl ResourceRef {
    pub fn reconciliation_break(id: &BreakId) -> Self {
        ResourceRef {
            kind: ResourceKind::ReconciliationBreak,
            id: id.to_string(),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// Being processed by the holder of `lease_token` until `lease_until_ms`.
    InProgress {
        lease_until_ms: i64,
        lease_token: String,
    },
    /// Finished: the response every replay gets, byte for byte.
    Completed { status: u16, body: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub record_id: String,
    pub request_hash: String,
    /// What this key creates; a takeover resumes it instead of creating another.
    pub resource: ResourceRef,
    pub state: RecordState,
    pub created_at_ms: i64,
    /// Epoch seconds; the table's TTL attribute.
    pub expires_at_s: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Same request, already answered: send the stored response again.
    Replay { status: u16, body: String },
    /// Same key, different body: 422.
    Mismatch,
    /// The twin request is still running and its lease is live: 409.
    InFlight,
    /// The holder crashed or timed out (lease over): take the lease and finish the same resource.
    TakeOver {
        resource: ResourceRef,
        stale_token: String,
    },
}

impl IdempotencyRecord {
    pub fn new_in_progress(
        record_id: String,
        request_hash: String,
        resource: ResourceRef,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Self {
        IdempotencyRecord {
            record_id,
            request_hash,
            resource,
            state: RecordState::InProgress {
                lease_until_ms,
                lease_token: uuid::Uuid::new_v4().simple().to_string(),
            },
            created_at_ms: now_ms,
            expires_at_s: now_ms / 1000 + RECORD_TTL_S,
        }
    }

    /// A record whose answer is known before anything is written: stored with the claim.
    pub fn new_completed(
        record_id: String,
        request_hash: String,
        resource: ResourceRef,
        now_ms: i64,
        status: u16,
        body: String,
    ) -> Self {
        IdempotencyRecord {
            record_id,
            request_hash,
            resource,
            state: RecordState::Completed { status, body },
            created_at_ms: now_ms,
            expires_at_s: now_ms / 1000 + RECORD_TTL_S,
        }
    }

    pub fn lease_token(&self) -> Option<&str> {
        match &self.state {
            RecordState::InProgress { lease_token, .. } => Some(lease_token),
            RecordState::Completed { .. } => None,
        }
    }

    /// What a request with `request_hash` does, given this stored record.
    pub fn decide(&self, request_hash: &str, now_ms: i64) -> Decision {
        if self.request_hash != request_hash {
            return Decision::Mismatch;
        }
        match &self.state {
            RecordState::Completed { status, body } => Decision::Replay {
                status: *status,
                body: body.clone(),
            },
            RecordState::InProgress { lease_until_ms, .. } if *lease_until_ms > now_ms => Decision::InFlight,
            RecordState::InProgress { lease_token, .. } => Decision::TakeOver {
                resource: self.resource.clone(),
                stale_token: lease_token.clone(),
            },
        }
    }
}

/// Only final answers are stored for replay: successes and the caller's own mistakes. A 5xx
/// (or 409/429, which say "try again") must leave the key free for a retry.
pub fn is_storable(status: u16) -> bool {
    (200..300).contains(&status)
        || ((400..500).contains(&status) && !matches!(status, 401 | 408 | 409 | 425 | 429))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: RecordState) -> IdempotencyRecord {
        IdempotencyRecord {
            record_id: "key_x#k".into(),
            request_hash: "h1".into(),
            resource: ResourceRef::checkout(&CheckoutId::generate()),
            state,
            created_at_ms: 0,
            expires_at_s: RECORD_TTL_S,
        }
    }

    #[test]
    fn key_rules() {
        let parse = |s: &str| IdempotencyKey::parse(s.as_bytes());
        assert!(parse("d7e8f9a0-1b2c-3d4e-5f6a-7b8c9d0e1f2a").is_ok());
        assert!(parse(&"k".repeat(255)).is_ok());
        assert_eq!(parse(""), Err(KeyError::Length));
        assert_eq!(parse(&"k".repeat(256)), Err(KeyError::Length));
        assert_eq!(parse("tab\there"), Err(KeyError::NotPrintableAscii));
        assert_eq!(parse("ключ"), Err(KeyError::NotPrintableAscii));
        assert_eq!(parse("one-X,two-X"), Err(KeyError::Several));
        assert_eq!(parse("4242 4242 4242 4242"), Err(KeyError::CardNumber));
        let scope = ApiKeyId::generate();
        assert_eq!(parse("a").unwrap().record_id(&scope), format!("{scope}#a"));
    }

    #[test]
    fn decisions() {
        let done = record(RecordState::Completed {
            status: 201,
            body: "{}".into(),
        });
        assert_eq!(
            done.decide("h1", 5),
            Decision::Replay {
                status: 201,
                body: "{}".into()
            }
        );
        assert_eq!(done.decide("h2", 5), Decision::Mismatch);

        let running = record(RecordState::InProgress {
            lease_until_ms: 100,
            lease_token: "t".into(),
        });
        assert_eq!(running.decide("h1", 99), Decision::InFlight);
        assert_eq!(
            running.decide("h2", 99),
            Decision::Mismatch,
            "a different body is 422 even while in flight"
        );
        assert_eq!(
            running.decide("h1", 100),
            Decision::TakeOver {
                resource: running.resource.clone(),
                stale_token: "t".into()
            }
        );
    }

    #[test]
    fn storable_statuses() {
        for s in [200, 201, 400, 402, 404, 422] {
            assert!(is_storable(s), "{s}");
        }
        for s in [401, 409, 429, 500, 502, 503] {
            assert!(!is_storable(s), "{s}");
        }
    }
}
