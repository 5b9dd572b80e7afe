//! The payout executor (design §4, §13): consumes `PAYOUT_REQUESTED` from the payout queue and
//! sends the payout in two PSP calls, each idempotent by its own key derived from the payout
//! id: the **transfer** from the platform to the seller's connected account, then the
//! connected account's **payout** to its bank. Then the payout is `IN_TRANSIT` with both ids,
//! and `PAYOUT_SENT` books the transfer and releases the hold as the balance is debited.
//!
//! - Before the first call the payout is marked as being sent, so it can no longer be
//!   canceled; a redelivery, a redrive or a crash between the calls asks again with the same
//!   keys and gets the same transfer and payout: never a second one.
//! - Timeouts, 5xx, 429, and the platform's `balance_insufficient` (funds not yet settled)
//!   come back with backoff, then go to the DLQ with the reason; the payout stays `PENDING`
//!   with its hold.
//! - The PSP refusing the transfer for good (another 4xx) → `FAILED` with its code; nothing
//!   left the platform, so `PAYOUT_REFUSED` releases the hold.
//! - A refusal of the connected account's payout after the transfer was made is left for a
//!   person (retried, then the DLQ with the reason): the money is in the seller's account.
//! - `PAYOUT_FAILED` (the bank sent a sent payout back, so the money is in the seller's
//!   connected account): the transfer is reversed with its own key, then `PAYOUT_RETURNED`
//!   posts the reversal and gives the seller the money back. A refused reversal is retried and
//!   then left in the DLQ with the reason, for a person.

use chrono::Utc;

use crate::app::consumers::{parse_event, Consumer, Failure};
use crate::domain::ids::PayoutId;
use crate::domain::outbox::{OutboxBody, OutboxEvent};
use crate::domain::payouts::{
    PayoutEvent, PayoutStatus, PspPayoutRequest, PspReversalRequest, PspTransferRequest,
};
use crate::domain::psp::PspError;
use crate::ports::{Applied, PayoutPsp, Payouts, Written};

pub struct PayoutExecutor<S, P> {
    pub store: S,
    pub psp: P,
}

/// The platform's balance cannot cover the transfer yet: funds settle later, so retry.
const RETRYABLE_REFUSALS: &[&str] = &["balance_insufficient"];

impl<S: Payouts, P: PayoutPsp> Consumer for PayoutExecutor<S, P> {
    const NAME: &'static str = "payout_executor";

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let event = parse_event(body)?;
        let notice = match &event.body {
            OutboxBody::PayoutRequested(n) => n,
            OutboxBody::PayoutFailed(n) => return self.reverse(&n.payout_id).await,
            other => {
                return Err(Failure::Poison(format!(
                    "{} is not for the payout executor",
                    other.event_type()
                )))
            }
        };
        let mut payout = self
            .store
            .get_payout(&notice.payout_id)
            .await?
            .ok_or_else(|| Failure::Poison(format!("unknown payout {}", notice.payout_id)))?;
        if payout.status != PayoutStatus::Pending || !self.store.mark_payout_sending(&payout.id).await? {
            // Canceled, or sent before (a redelivery or a redrive): nothing more to ask.
            return Ok(Written::AlreadyApplied);
        }
        let transfer = match self.psp.create_transfer(&PspTransferRequest::of(&payout)).await {
            Ok(t) => t,
            Err(PspError::Rejected { code, .. }) if RETRYABLE_REFUSALS.contains(&code.as_str()) => {
                return Err(Failure::Retryable(format!(
                    "PSP refused the transfer for now: {code}"
                )))
            }
            Err(PspError::Rejected {
                status,
                code,
                message,
            }) => {
                tracing::warn!(payout_id = %payout.id, psp_status = status, psp_code = %code, "PSP refused the transfer");
                let from = payout.status;
                let moved = payout
                    .apply(PayoutEvent::Refused, Utc::now())
                    .map_err(|e| Failure::Poison(e.to_string()))?;
                payout.failure_code = Some(code);
                payout.failure_message = Some(message);
                let outbox = OutboxEvent::payout(&payout, Some(moved), "psp_response", Utc::now());
                return self.save(&payout, from, &outbox).await;
            }
            Err(PspError::Unavailable(why)) => {
                return Err(Failure::Retryable(format!("PSP unavailable: {why}")))
            }
        };
        payout.psp_transfer = Some(transfer.id);
        let psp_payout = match self.psp.create_payout(&PspPayoutRequest::of(&payout)).await {
            Ok(p) => p,
            Err(PspError::Unavailable(why)) => {
                return Err(Failure::Retryable(format!("PSP unavailable: {why}")))
            }
            Err(PspError::Rejected { code, message, .. }) => {
                return Err(Failure::Retryable(format!(
                    "the connected account's payout was refused after the transfer ({code}: {message}); \
                     the money is in the seller's account"
                )))
            }
        };
        payout.psp_payout = Some(psp_payout.id);
        payout.arrival_date = psp_payout.arrival_date;
        let from = payout.status;
        let moved = payout
            .apply(PayoutEvent::Sent, Utc::now())
            .map_err(|e| Failure::Poison(e.to_string()))?;
        let outbox = OutboxEvent::payout(&payout, Some(moved), "psp_response", Utc::now());
        self.save(&payout, from, &outbox).await
    }
}

impl<S: Payouts, P: PayoutPsp> PayoutExecutor<S, P> {
    /// A payout that failed after its transfer: the transfer reversed (its own key, so once),
    /// then the reversal recorded with `PAYOUT_RETURNED`, at most once.
    async fn reverse(&self, id: &PayoutId) -> Result<Written, Failure> {
        let mut payout = self
            .store
            .get_payout(id)
            .await?
            .ok_or_else(|| Failure::Poison(format!("unknown payout {id}")))?;
        if payout.psp_reversal.is_some() {
            return Ok(Written::AlreadyApplied);
        }
        let request = match (payout.status, PspReversalRequest::of(&payout)) {
            (PayoutStatus::Failed, Some(r)) => r,
            (status, _) => {
                return Err(Failure::Poison(format!(
                    "payout {id} is {status} without a transfer to reverse"
                )))
            }
        };
        let reversal = match self.psp.reverse_transfer(&request).await {
            Ok(r) => r,
            Err(PspError::Unavailable(why)) => {
                return Err(Failure::Retryable(format!("PSP unavailable: {why}")))
            }
            Err(PspError::Rejected { code, message, .. }) => {
                return Err(Failure::Retryable(format!(
                    "PSP refused to reverse transfer {} ({code}: {message}); \
                     the money is still in the seller's connected account",
                    request.transfer
                )))
            }
        };
        let now = Utc::now();
        match payout.reversed(reversal.id, now) {
            Ok(true) => {}
            Ok(false) => return Ok(Written::AlreadyApplied),
            Err(e) => return Err(Failure::Poison(e.to_string())),
        }
        let outbox = OutboxEvent::payout_returned(&payout, "psp_response", now);
        self.save(&payout, PayoutStatus::Failed, &outbox).await
    }
}

impl<S: Payouts, P> PayoutExecutor<S, P> {
    async fn save(
        &self,
        payout: &crate::domain::payouts::Payout,
        from: PayoutStatus,
        outbox: &OutboxEvent,
    ) -> Result<Written, Failure> {
        match self.store.save_payout_move(payout, from, outbox, None).await? {
            Applied::Applied => {
                tracing::info!(payout_id = %payout.id, from = %from, to = %payout.status, event = outbox.body.event_type(), "payout moved");
                Ok(Written::Written)
            }
            // Moved meanwhile, or this step recorded before (a concurrent delivery won).
            Applied::Conflict | Applied::Duplicate => Ok(Written::AlreadyApplied),
        }
    }
}
