//! Refund webhooks on `/webhooks/psp` (`refund.created`, `refund.updated`, `refund.failed`,
//! `charge.refunded`): each refund the event describes moves through [`settle`] with the
//! event's marker in the same transaction. Duplicates and out-of-order deliveries are harmless
//! (a refund already where the PSP says is left alone); an unknown refund, a mismatched amount
//! or an illegal move is acknowledged and recorded as an anomaly.

use chrono::{DateTime, Utc};

use super::settle::{settle, PspWord, Settled};
use crate::api::ApiError;
use crate::app::pay_in::webhook::{ack, anomaly};
use crate::app::Reply;
use crate::domain::ids::RefundId;
use crate::domain::psp::PspEventId;
use crate::domain::refunds::{PspRefundNotice, Refund};
use crate::ports::{Refunds, Webhooks};

/// `notices`: one for a `refund.*` event; for `charge.refunded`, the charge's refunds as it
/// lists them, newest first. A `charge.refunded` is sent as a refund is made, so it is about
/// the newest; each older one was announced by its own `refund.*` events (and by the
/// `charge.refunded` of its own creation). Only the newest is applied: a charge refunded in k
/// parts costs one read per event, not k.
pub async fn apply_refund_notices<S: Refunds + Webhooks>(
    store: &S,
    event: &PspEventId,
    notices: &[PspRefundNotice],
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let Some(newest) = notices.first() else {
        // Nothing to apply, nothing to remember: a redelivery finds nothing again.
        return Ok(ack("ignored"));
    };
    Ok(ack(apply_one(store, event.as_str(), newest, now).await?))
}

/// `marker`: the event's. It is written only with a move or an anomaly: a refund already
/// where the PSP says costs a read, not a write (the executor has usually moved it before the
/// PSP's `refund.created` and `charge.refunded` arrive), and a redelivery of such an event is
/// the same read again.
async fn apply_one<S: Refunds + Webhooks>(
    store: &S,
    marker: &str,
    n: &PspRefundNotice,
    now: DateTime<Utc>,
) -> Result<&'static str, ApiError> {
    let Some(refund) = find(store, n).await? else {
        let detail = format!(
            "no refund for PSP refund {} (metadata refund_id {:?})",
            n.refund.id, n.refund_ref
        );
        anomaly(store, marker, "unknown_refund", detail, None, now).await?;
        return Ok("unknown_refund");
    };
    if n.amount_minor != refund.amount.minor() || n.currency != refund.amount.currency() {
        let detail = format!(
            "PSP refund {} is for {} {} (minor units); refund {} is for {:?}",
            n.refund.id, n.amount_minor, n.currency, refund.id, refund.amount
        );
        anomaly(
            store,
            marker,
            "amount_mismatch",
            detail,
            Some(&refund.checkout_id),
            now,
        )
        .await?;
        return Ok("amount_mismatch");
    }
    let word = PspWord {
        psp_refund: Some(n.refund.id.clone()),
        event: n.refund.status.event(),
        failure: n.refund.failure_reason.clone().map(|r| {
            let message = format!("The payment provider reports the refund failed: {r}");
            (r, message)
        }),
    };
    let (id, checkout_id) = (refund.id.clone(), refund.checkout_id.clone());
    Ok(match settle(store, refund, &word, Some(marker), now).await? {
        Settled::Moved(_) => "applied",
        Settled::Duplicate => "duplicate",
        Settled::Unchanged(_) => "unchanged",
        Settled::Illegal(illegal) => {
            let detail = format!("{illegal} (refund {id}, PSP refund {})", n.refund.id);
            anomaly(
                store,
                marker,
                "illegal_transition",
                detail,
                Some(&checkout_id),
                now,
            )
            .await?;
            "illegal_transition"
        }
        Settled::Unknown => {
            let detail = format!("refund {id} vanished");
            anomaly(store, marker, "unknown_refund", detail, None, now).await?;
            "unknown_refund"
        }
    })
}

/// Our refund: by the id we sent as metadata (checked against the PSP id it already has), else
/// by the PSP's refund id through the index.
async fn find<S: Refunds>(store: &S, n: &PspRefundNotice) -> Result<Option<Refund>, ApiError> {
    if let Some(id) = n.refund_ref.as_deref().and_then(|r| RefundId::parse(r).ok()) {
        if let Some(r) = store.get_refund(&id).await? {
            if r.psp_refund.as_ref().is_none_or(|p| *p == n.refund.id) {
                return Ok(Some(r));
            }
        }
    }
    match store.refund_by_psp_id(&n.refund.id).await? {
        Some(id) => Ok(store.get_refund(&id).await?),
        None => Ok(None),
    }
}
