//! Client idempotency records (design §14, key A), for every POST. The claim itself is written
//! by each capability's port, in the same transaction as the resource it creates
//! (`Checkouts::begin_checkout`, and refunds and payouts next); these are the record's other
//! moves.

use std::future::Future;

use super::StoreError;
use crate::domain::idempotency::IdempotencyRecord;

/// How a claim written together with its resource came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The key was free: the record and the resource were written atomically (and the key's
    /// charge, when one was given).
    Created,
    /// The key is taken; here is its record. Nothing was written.
    Exists(IdempotencyRecord),
    /// Another request is writing the same items right now (a transaction conflict).
    Contended,
    /// The resource's own condition failed (an order no longer has the amount to refund):
    /// nothing was written, and the request is refused (`400`) without being stored.
    Refused(Refusal),
}

/// Why a resource could not be written, for its client: a stable code, the parameter it is
/// about, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub param: Option<&'static str>,
    pub message: String,
    /// The resource's state forbids it (`409`: a break already resolved), rather than the
    /// request being impossible (`400`).
    pub conflict: bool,
}

pub trait Claims: Send + Sync {
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

/// A final reply stored with the lease holder's last write (in the same transaction as the
/// resource's own change, where there is one).
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    pub record_id: &'a str,
    pub lease_token: &'a str,
    pub status: u16,
    pub body: &'a str,
}
