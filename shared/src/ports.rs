//! The narrow capabilities the use cases need from storage. DynamoDB implements them in
//! `adapters::dynamo`; unit tests use an in-memory twin.

use std::future::Future;

use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, ApiKeyId, CheckoutId, PaymentOrderId};
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::psp::{PspError, PspSession, SessionRequest};
use crate::domain::rate_limit::RateLimit;
use crate::domain::PaymentStatus;
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

    /// Atomically: moves the checkout and its orders from `from` to their new state (as given)
    /// and stores the final reply under the lease. `false` if the checkout was no longer in
    /// `from` or the lease was lost: nothing was written.
    fn save_transition(
        &self,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        completion: Completion<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A final reply stored with the lease holder's last write.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    pub record_id: &'a str,
    pub lease_token: &'a str,
    pub status: u16,
    pub body: &'a str,
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

    /// Ends our lease at once (after a retryable failure), so the client's retry can take over
    /// without waiting for the deadline. `false` if the lease was no longer ours.
    fn release(
        &self,
        record_id: &str,
        lease_token: &str,
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

/// The payment executor's view of the PSP.
pub trait Psp: Send + Sync {
    /// Creates (or, for the same checkout, returns again) the hosted-page session. The
    /// checkout id is the PSP idempotency key.
    fn create_session(
        &self,
        request: &SessionRequest,
    ) -> impl Future<Output = Result<PspSession, PspError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The transition, the event marker and the outbox record were written.
    Applied,
    /// This PSP event was applied before: nothing written.
    Duplicate,
    /// The checkout moved or another writer was busy: nothing written; retry later.
    Conflict,
}

/// What the webhook needs from storage.
pub trait Webhooks: Send + Sync {
    fn checkout_id_by_psp_token(
        &self,
        psp_token: &str,
    ) -> impl Future<Output = Result<Option<CheckoutId>, StoreError>> + Send;

    /// In one transaction: the PSP event's marker (must be new), the checkout and its orders
    /// moving from `from`, and the outbox record.
    fn apply_event(
        &self,
        psp_event_id: &str,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        outbox: &OutboxEvent,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// The marker alone, for an event acknowledged without a transition; `false` if seen before.
    fn mark_event(
        &self,
        psp_event_id: &str,
        note: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records an anomaly for reconciliation together with the event's marker, in one
    /// transaction; `false` if the event was seen before (nothing written).
    fn record_anomaly(&self, anomaly: &Anomaly) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
