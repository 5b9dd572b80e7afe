//! A refund's moves: what the PSP answered (the executor) or notified (a webhook) applied
//! through the machine, in one transaction with the order's counters and the outbox record
//! (and the webhook's marker). Shared by both, so a refund moves the same way whoever learns
//! of it first; the loser of a race re-reads and finds nothing left to do.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::outbox::OutboxEvent;
use crate::domain::psp::PspRefundId;
use crate::domain::refunds::{
    IllegalRefundTransition, Refund, RefundApplyError, RefundEvent, RefundMove, RefundStatus,
};
use crate::ports::{Applied, RefundWrite, Refunds, StoreError};

/// A move that met another writer (the order's counters moved) is read and tried again this
/// many times.
const MOVE_ATTEMPTS: u32 = 6;

/// What the PSP says about one refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspWord {
    pub psp_refund: Option<PspRefundId>,
    /// `None`: still being worked on (pending).
    pub event: Option<RefundEvent>,
    /// Why it failed: a code and a message.
    pub failure: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The refund moved (and its outbox record was written).
    Moved(RefundMove),
    /// Nothing to do: still pending (its PSP id noted), or already where the PSP says.
    Unchanged(RefundStatus),
    /// This PSP event was applied before.
    Duplicate,
    /// The machine forbids it (a success after a failure): nothing moved; the caller records
    /// an anomaly.
    Illegal(IllegalRefundTransition),
    /// No such refund.
    Unknown,
}

/// Applies `word` to `read`, the refund as the caller just read it (consistently); a move that
/// meets another writer reads it again. `psp_event_id`: the webhook's event (its marker is
/// written with the move), or `None` for the executor's own answer.
pub async fn settle<S: Refunds>(
    store: &S,
    read: Refund,
    word: &PspWord,
    psp_event_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Settled, StoreError> {
    let id = &read.id.clone();
    let mut fresh = Some(read);
    for attempt in 0..MOVE_ATTEMPTS {
        let mut refund = match fresh.take() {
            Some(r) => r,
            None => match store.get_refund(id).await? {
                Some(r) => r,
                None => return Ok(Settled::Unknown),
            },
        };
        let noted = note(&mut refund, word);
        let Some(event) = word.event else {
            if noted && refund.status == RefundStatus::Pending {
                store.note_refund(&refund, RefundStatus::Pending).await?;
            }
            return Ok(Settled::Unchanged(refund.status));
        };
        if already(refund.status, event) {
            return Ok(Settled::Unchanged(refund.status));
        }
        let before = store
            .order_refunds(&refund.payment_order_id)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "refund {id} names missing payment order {}",
                    refund.payment_order_id
                ))
            })?;
        let from = refund.status;
        if event == RefundEvent::PspFailed {
            if let Some((code, message)) = &word.failure {
                refund.failure_code = Some(code.clone());
                refund.failure_message = Some(message.clone());
            }
        }
        let (moved, after) = match refund.apply(event, before, now) {
            Ok(m) => m,
            Err(RefundApplyError::Illegal(illegal)) => return Ok(Settled::Illegal(illegal)),
            Err(e) => return Err(StoreError::Corrupt(format!("refund {id}: {e}"))),
        };
        let cause = psp_event_id.unwrap_or("psp_response");
        let outbox = OutboxEvent::refund(&refund, Some(moved), cause, now);
        let write = RefundWrite {
            refund: &refund,
            from,
            before,
            after,
            outbox: &outbox,
            psp_event_id,
        };
        match store.save_refund_move(write).await? {
            Applied::Applied => {
                tracing::info!(refund_id = %id, from = %from, to = %refund.status, "refund moved");
                return Ok(Settled::Moved(moved));
            }
            Applied::Duplicate => return Ok(Settled::Duplicate),
            Applied::Conflict => {
                let jitter = uuid::Uuid::new_v4().as_u128() % 20;
                tokio::time::sleep(Duration::from_millis((10u64 << attempt) + jitter as u64)).await;
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "refund {id} kept meeting other writers; try again"
    )))
}

/// Where the PSP's word leaves a refund that is already there: nothing to do.
fn already(status: RefundStatus, event: RefundEvent) -> bool {
    matches!(
        (status, event),
        (RefundStatus::Succeeded, RefundEvent::PspSucceeded) | (RefundStatus::Failed, RefundEvent::PspFailed)
    )
}

/// Takes the PSP's refund id if we had none; true if anything changed.
fn note(refund: &mut Refund, word: &PspWord) -> bool {
    match (&refund.psp_refund, &word.psp_refund) {
        (None, Some(id)) => {
            refund.psp_refund = Some(id.clone());
            true
        }
        _ => false,
    }
}
