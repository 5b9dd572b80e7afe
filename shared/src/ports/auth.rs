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
