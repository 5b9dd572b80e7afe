//! Refund storage and the PSP's refunds API.

use std::future::Future;

use super::idempotency::Begin;
use super::ledger::Page;
use super::pay_in::Applied;
use super::StoreError;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, PaymentOrderId, RefundId};
use crate::domain::outbox::OutboxEvent;
use crate::domain::pay_in::OrderRefunds;
use crate::domain::psp::{PspError, PspRefundId};
use crate::domain::refunds::{PspRefund, PspRefundRequest, Refund, RefundStatus};

/// A refund's move as one write: the refund from `from` to its new state, its order's
/// counters from `before` to `after`, its outbox record, and the PSP event's marker when a
/// webhook moved it.
#[derive(Debug, Clone, Copy)]
pub struct RefundWrite<'a> {
    pub refund: &'a Refund,
    pub from: RefundStatus,
    pub before: OrderRefunds,
    pub after: OrderRefunds,
    pub outbox: &'a OutboxEvent,
    pub psp_event_id: Option<&'a str>,
}

pub trait Refunds: Send + Sync {
    /// Atomically: claims the idempotency record, creates the refund (`PENDING`), reserves its
    /// amount on the order (on condition that the order is `SUCCESS` and the reservation stays
    /// within its amount), moves the seller's part to held in their wallet, writes the
    /// `REFUND_REQUESTED` outbox record. `Begin::Refused` when the order no longer has the
    /// amount to refund.
    fn begin_refund(
        &self,
        record: &IdempotencyRecord,
        refund: &Refund,
        outbox: &OutboxEvent,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    fn get_refund(&self, id: &RefundId) -> impl Future<Output = Result<Option<Refund>, StoreError>> + Send;

    /// The order's refund counters as they are now.
    fn order_refunds(
        &self,
        payment_order_id: &PaymentOrderId,
    ) -> impl Future<Output = Result<Option<OrderRefunds>, StoreError>> + Send;

    /// Writes a move. `Conflict`: the refund or the order changed since they were read
    /// (nothing written; read again). `Duplicate`: the PSP event was applied before.
    fn save_refund_move(
        &self,
        write: RefundWrite<'_>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Notes what the PSP said about a refund that has not moved (its id, a pending status),
    /// on condition that it is still in `status`; `false` if it moved meanwhile.
    fn note_refund(
        &self,
        refund: &Refund,
        status: RefundStatus,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The refund that owns a PSP refund id, through the `psp_ref` index.
    fn refund_by_psp_id(
        &self,
        psp_refund: &PspRefundId,
    ) -> impl Future<Output = Result<Option<RefundId>, StoreError>> + Send;
}

/// The refunds list (cursor-paged like the ledger's lists).
pub trait RefundReader: Send + Sync {
    /// A payment order's refunds, oldest first, a page at a time.
    fn list_refunds(
        &self,
        account_id: &AccountId,
        payment_order_id: &PaymentOrderId,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Refund>, StoreError>> + Send;
}

/// The refund executor's view of the PSP.
pub trait RefundPsp: Send + Sync {
    /// Creates the refund at the PSP, or (for the same `refund_id`, its idempotency key)
    /// returns the one created before.
    fn create_refund(
        &self,
        request: &PspRefundRequest,
    ) -> impl Future<Output = Result<PspRefund, PspError>> + Send;
}
