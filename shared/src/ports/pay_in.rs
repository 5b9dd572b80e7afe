//! Pay-in storage and the PSP's session API.

use std::future::Future;

use super::idempotency::{Begin, Completion};
use super::StoreError;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{CheckoutId, PaymentOrderId};
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::pay_in::{Checkout, PaymentOrder, PaymentStatus, PspSession, SessionRequest};
use crate::domain::psp::{PspError, PspSessionId};

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
    /// The checkout paid through this session, through the `psp_ref` index.
    fn checkout_by_session(
        &self,
        session: &PspSessionId,
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
