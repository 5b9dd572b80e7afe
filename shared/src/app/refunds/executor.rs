//! The refund executor (design §13): consumes `REFUND_REQUESTED` from the refund queue and asks
//! the PSP, with the refund id as the PSP's idempotency key (the design's key B), so however
//! often a message comes back the PSP refunds once.
//!
//! - The PSP answers `succeeded` → `SUCCEEDED` now; `failed`/`canceled` → `FAILED`;
//!   `pending` → noted, and the webhook finishes it.
//! - The PSP refuses (a 4xx such as `charge_already_refunded`) → `FAILED` with its code; the
//!   wallet's hold is released.
//! - Timeouts, 5xx and 429 are retryable: the batch harness brings the message back after 1, 2,
//!   4, 8, 16 s, then dead-letters it with its reason. The refund stays `PENDING` with its hold;
//!   a redrive finishes it with the same PSP key.

use chrono::Utc;

use super::settle::{settle, PspWord, Settled};
use crate::app::consumers::{parse_event, Consumer, Failure};
use crate::domain::outbox::OutboxBody;
use crate::domain::psp::PspError;
use crate::domain::refunds::{PspRefundRequest, RefundEvent, RefundStatus};
use crate::ports::{RefundPsp, Refunds, Written};

pub struct RefundExecutor<S, P> {
    pub store: S,
    pub psp: P,
}

impl<S: Refunds, P: RefundPsp> Consumer for RefundExecutor<S, P> {
    const NAME: &'static str = "refund_executor";
    // Each message is its own refund; refunds of one order meet only in the order's counters,
    // which `settle` re-reads on a conflict.
    // (So a batch is applied all at once: `contends_on` is empty.)

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let event = parse_event(body)?;
        let OutboxBody::RefundRequested(notice) = &event.body else {
            return Err(Failure::Poison(format!(
                "{} is not a refund request",
                event.body.event_type()
            )));
        };
        let refund = self
            .store
            .get_refund(&notice.refund_id)
            .await?
            .ok_or_else(|| Failure::Poison(format!("unknown refund {}", notice.refund_id)))?;
        if refund.status != RefundStatus::Pending {
            // Redelivered (or redriven) after it settled: nothing more to ask.
            return Ok(Written::AlreadyApplied);
        }
        let word = match self.psp.create_refund(&PspRefundRequest::of(&refund)).await {
            Ok(psp) => PspWord {
                psp_refund: Some(psp.id),
                event: psp.status.event(),
                failure: psp.failure_reason.map(|r| {
                    (
                        r.clone(),
                        format!("The payment provider reports the refund failed: {r}"),
                    )
                }),
            },
            Err(PspError::Rejected {
                status,
                code,
                message,
            }) => {
                tracing::warn!(refund_id = %refund.id, psp_status = status, psp_code = %code, "PSP refused the refund");
                PspWord {
                    psp_refund: None,
                    event: Some(RefundEvent::PspFailed),
                    failure: Some((code, message)),
                }
            }
            Err(PspError::Unavailable(why)) => {
                return Err(Failure::Retryable(format!("PSP unavailable: {why}")))
            }
        };
        let id = refund.id.clone();
        match settle(&self.store, refund, &word, None, Utc::now()).await? {
            Settled::Moved(_) => Ok(Written::Written),
            Settled::Unchanged(RefundStatus::Pending) => {
                tracing::info!(refund_id = %id, "refund pending at the PSP; its webhook finishes it");
                Ok(Written::Written)
            }
            Settled::Unchanged(_) | Settled::Duplicate => Ok(Written::AlreadyApplied),
            Settled::Illegal(illegal) => {
                // The PSP's answer contradicts what a webhook already moved it to: nothing
                // moves; reconciliation compares with the PSP's settlement file.
                tracing::error!(refund_id = %id, error = %illegal, "PSP answer contradicts the refund's state");
                Ok(Written::AlreadyApplied)
            }
            Settled::Unknown => Err(Failure::Poison(format!("unknown refund {id}"))),
        }
    }
}
