//! The narrow capabilities the use cases need from storage. DynamoDB implements them in
//! `adapters::dynamo`; unit tests use an in-memory twin.

use std::future::Future;

use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, ApiKeyId, CheckoutId, PaymentOrderId};
use crate::domain::rate_limit::RateLimit;
use crate::domain::{Checkout, PaymentOrder};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer or failed; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored item does not parse into the domain: a bug or tampering, never the caller's fault.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was free: the record, the checkout and its orders were written atomically.
    Created,
    /// The key is taken; here is its record.
    Exists(IdempotencyRecord),
    /// Another request is writing the same key right now (a transaction conflict).
    Contended,
}

pub trait Checkouts: Send + Sync {
    /// Atomically: claims the idempotency record (if absent or expired) and creates the
    /// checkout with its payment orders.
    fn begin_checkout(
        &self,
        record: &IdempotencyRecord,
        checkout: &Checkout,
        orders: &[PaymentOrder],
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    fn get_checkout(
        &self,
        id: &CheckoutId,
    ) -> impl Future<Output = Result<Option<(Checkout, Vec<PaymentOrder>)>, StoreError>> + Send;

    fn get_payment_order(
        &self,
        id: &PaymentOrderId,
    ) -> impl Future<Output = Result<Option<PaymentOrder>, StoreError>> + Send;
}

pub trait Idempotency: Send + Sync {
    fn get_record(
        &self,
        record_id: &str,
    ) -> impl Future<Output = Result<Option<IdempotencyRecord>, StoreError>> + Send;

    /// Moves a lapsed lease to a new holder; `false` if someone else got there first.
    fn take_over(
        &self,
        record_id: &str,
        stale_token: &str,
        new_token: &str,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores the final response; `false` if the lease was no longer ours.
    fn complete(
        &self,
        record_id: &str,
        lease_token: &str,
        status: u16,
        body: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
