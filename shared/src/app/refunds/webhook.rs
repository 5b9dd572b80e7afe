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

pub async fn apply_refund_notices<S: Refunds + Webhooks>(
    store: &S,
    event: &PspEventId,
    notices: &[PspRefundNotice],
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    if notices.is_empty() {
        store.mark_event(event.as_str(), "no refunds listed").await?;
        return Ok(ack("ignored"));
    }
    // One marker per event; an event listing several refunds (charge.refunded) marks each.
    let single = notices.len() == 1;
    let mut outcome = "applied";
    for n in notices {
        let marker = if single {
            event.as_str().to_owned()
        } else {
            format!("{}:{}", event.as_str(), n.refund.id)
        };
        outcome = apply_one(store, &marker, n, now).await?;
    }
    Ok(ack(if single { outcome } else { "applied" }))
}

/// `marker`: the event's (it describes this refund alone) or the event's and the refund's (a
/// `charge.refunded` lists every refund of the charge, so a charge refunded in many parts is
/// listed again and again). It is written only with a move or an anomaly: a refund already
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
