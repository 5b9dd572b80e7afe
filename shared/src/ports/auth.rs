//! API keys: authentication and the per-key rate limit in one conditional write.

use std::future::Future;

use super::StoreError;
use crate::domain::ids::{AccountId, ApiKeyId};
use crate::domain::rate_limit::RateLimit;

/// An API key as stored (by hash), with its rate-limit state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: ApiKeyId,
    pub account_id: AccountId,
    pub active: bool,
    pub tat_us: Option<i64>,
    /// The key's own limit; `None` means the deployment default.
    pub limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consume {
    /// The key is active and one request was counted.
    Allowed(ApiKeyRecord),
    /// The condition failed: the stored key as it was (`None`: no such key).
    Refused(Option<ApiKeyRecord>),
}

/// One request counted against a key, written inside another transaction (a POST's claim), as
/// `consume_idle` (`busy_limit_us: None`) or `consume_busy` would write it alone. A refused
/// charge writes nothing and hands back the key as it was, to decide again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCharge {
    pub key_hash: String,
    pub now_us: i64,
    pub default_interval_us: i64,
    /// `Some(limit)`: the key is within its burst (`now <= tat <= limit`): `tat += interval`.
    pub busy_limit_us: Option<i64>,
}

/// Authentication plus rate limiting in one conditional write per request.
pub trait ApiKeys: Send + Sync {
    /// Counts a request for an idle key: `tat = now + interval` if `tat < now` or absent.
    fn consume_idle(
        &self,
        key_hash: &str,
        now_us: i64,
        default_interval_us: i64,
    ) -> impl Future<Output = Result<Consume, StoreError>> + Send;

    /// Counts a request within the burst: `tat += interval` if `now <= tat <= limit_us`.
    fn consume_busy(
        &self,
        key_hash: &str,
        now_us: i64,
        limit_us: i64,
        default_interval_us: i64,
    ) -> impl Future<Output = Result<Consume, StoreError>> + Send;
}
