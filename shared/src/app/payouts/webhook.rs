//! Payout webhooks on `/webhooks/psp` (`payout.paid`, `payout.failed`, `payout.canceled`, and
//! `payout.created`/`payout.updated` which move nothing): Connect events that happened on the
//! seller's connected account. The move, the event's marker and the outbox record are one
//! transaction, so a duplicate is harmless.
//!
//! - `payout.paid` → `PAID`; `payout.failed` (also after `paid`: Stripe warns a paid payout can
//!   still fail) → `FAILED` with the PSP's `failure_code` and `failure_message`, and
//!   `PAYOUT_FAILED` sends the executor to reverse the transfer.
//! - Out of order: `paid` arriving after `failed` is an older event (a failed payout never
//!   becomes paid): acknowledged as stale. An event for a payout we have not yet recorded as
//!   sent (the executor's answer is still on its way, or waits in the DLQ) answers `503`, so
//!   the PSP delivers it again later.
//! - An unknown payout, another account or another amount are acknowledged and recorded as
//!   anomalies for reconciliation.

use chrono::{DateTime, Utc};

use crate::api::ApiError;
use crate::app::pay_in::webhook::{ack, anomaly};
use crate::app::Reply;
use crate::domain::ids::PayoutId;
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::{Payout, PayoutEvent, PayoutStatus, PspPayoutNotice};
use crate::domain::psp::PspEventId;
use crate::ports::{Applied, Payouts, Webhooks};

/// A move that met another writer is read and tried again this many times.
const MOVE_ATTEMPTS: u32 = 4;

pub async fn apply_payout_notice<S: Payouts + Webhooks>(
    store: &S,
    event: &PspEventId,
    n: &PspPayoutNotice,
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let marker = event.as_str();
    let psp_id = &n.payout.id;
    let Some(mut payout) = find(store, n).await? else {
        let detail = format!(
            "no payout for PSP payout {psp_id} (metadata payout_id {:?})",
            n.payout_ref
        );
        return anomaly(store, marker, "unknown_payout", detail, None, now).await;
    };
    if n.account.as_ref().is_some_and(|a| *a != payout.destination) {
        let detail = format!(
            "PSP payout {psp_id} is on account {:?}; payout {} goes to {}",
            n.account, payout.id, payout.destination
        );
        return anomaly(store, marker, "account_mismatch", detail, None, now).await;
    }
    if n.amount_minor != payout.amount.minor() || n.currency != payout.amount.currency() {
        let detail = format!(
            "PSP payout {psp_id} is for {} {} (minor units); payout {} is for {}",
            n.amount_minor, n.currency, payout.id, payout.amount
        );
        return anomaly(store, marker, "amount_mismatch", detail, None, now).await;
    }
    let Some(event) = n.payout.status.event() else {
        // pending / in_transit at the PSP: what IN_TRANSIT already says.
        return marked(store, marker, "payout on its way", "unchanged").await;
    };
    for _ in 0..MOVE_ATTEMPTS {
        match (payout.status, event) {
            (PayoutStatus::Pending, _) => {
                tracing::warn!(psp_event_id = marker, payout_id = %payout.id, "payout webhook before the payout was recorded as sent; asking the PSP to retry");
                return Err(
                    ApiError::unavailable(30, "payout not yet recorded as sent; retry")
                        .with_code("not_ready"),
                );
            }
            (PayoutStatus::Paid, PayoutEvent::PspPaid) | (PayoutStatus::Failed, PayoutEvent::PspFailed)
                if payout.psp_transfer.is_some() =>
            {
                return marked(store, marker, "payout already there", "unchanged").await;
            }
            (PayoutStatus::Failed, PayoutEvent::PspPaid) if payout.psp_transfer.is_some() => {
                // Only paid → failed exists: this `paid` is older than the failure we have.
                return marked(store, marker, "stale: the payout failed since", "stale").await;
            }
            _ => {}
        }
        let from = payout.status;
        if event == PayoutEvent::PspFailed {
            payout.failure_code = Some(n.payout.failure_code.clone().unwrap_or_else(|| "unknown".into()));
            payout.failure_message = Some(
                n.payout
                    .failure_message
                    .clone()
                    .unwrap_or_else(|| "The payment provider reports the payout failed.".into()),
            );
        }
        let moved = match payout.apply(event, now) {
            Ok(m) => m,
            Err(illegal) => {
                let detail = format!("{illegal} (payout {}, PSP payout {psp_id})", payout.id);
                return anomaly(store, marker, "illegal_transition", detail, None, now).await;
            }
        };
        let outbox = OutboxEvent::payout(&payout, Some(moved), marker, now);
        match store
            .save_payout_move(&payout, from, &outbox, Some(marker))
            .await?
        {
            Applied::Applied => {
                tracing::info!(payout_id = %payout.id, from = %from, to = %payout.status, "payout moved by the PSP");
                return Ok(ack("applied"));
            }
            Applied::Duplicate => return Ok(ack("duplicate")),
            Applied::Conflict => {
                payout = store
                    .get_payout(&payout.id)
                    .await?
                    .ok_or_else(ApiError::internal)?;
            }
        }
    }
    Err(ApiError::unavailable(1, "payout kept moving; retry").with_code("conflict"))
}

/// Acknowledged without a move: the marker alone (a redelivery finds it).
async fn marked<S: Webhooks>(store: &S, marker: &str, note: &str, outcome: &str) -> Result<Reply, ApiError> {
    Ok(ack(if store.mark_event(marker, note).await? {
        outcome
    } else {
        "duplicate"
    }))
}

/// Our payout, by the id we sent as metadata, checked against the PSP payout it already has.
async fn find<S: Payouts>(store: &S, n: &PspPayoutNotice) -> Result<Option<Payout>, ApiError> {
    let Some(id) = n.payout_ref.as_deref().and_then(|r| PayoutId::parse(r).ok()) else {
        return Ok(None);
    };
    Ok(store
        .get_payout(&id)
        .await?
        .filter(|p| p.psp_payout.as_ref().is_none_or(|x| *x == n.payout.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::Memory;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, SellerId};
    use crate::domain::outbox::OutboxBody;
    use crate::domain::payouts::{PayoutRequest, PspPayout, PspPayoutStatus};
    use crate::domain::psp::{PspAccountId, PspPayoutId, PspTransferId};
    use crate::ports::Payouts;

    async fn sent(store: &Memory) -> Payout {
        let usd = Currency::parse("USD").unwrap();
        let mut p = Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_a").unwrap(),
            &PayoutRequest::new(SellerId::parse("s1").unwrap(), "5".parse().unwrap(), usd).unwrap(),
            Some(PspAccountId::parse("acct_1S").unwrap()),
            false,
            Utc::now(),
        )
        .unwrap();
        store.payouts.lock().unwrap().insert(p.id.clone(), p.clone());
        p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
        p.psp_payout = Some(PspPayoutId::parse("po_1").unwrap());
        p.apply(PayoutEvent::Sent, Utc::now()).unwrap();
        let outbox = OutboxEvent::payout(
            &p,
            Some(crate::domain::payouts::PayoutMove::Transferred),
            "t",
            Utc::now(),
        );
        assert_eq!(
            store
                .save_payout_move(&p, PayoutStatus::Pending, &outbox, None)
                .await
                .unwrap(),
            Applied::Applied
        );
        p
    }

    fn notice(p: &Payout, status: &str, failure: Option<&str>) -> PspPayoutNotice {
        PspPayoutNotice {
            payout: PspPayout {
                id: PspPayoutId::parse("po_1").unwrap(),
                status: PspPayoutStatus::parse(status).unwrap(),
                arrival_date: None,
                failure_code: failure.map(str::to_owned),
                failure_message: failure.map(|f| format!("bank says {f}")),
            },
            payout_ref: Some(p.id.to_string()),
            account: Some(PspAccountId::parse("acct_1S").unwrap()),
            amount_minor: p.amount.minor(),
            currency: p.amount.currency(),
        }
    }

    fn outcome(r: &Reply) -> String {
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn deliver(store: &Memory, id: &str, n: &PspPayoutNotice) -> String {
        let event = PspEventId::parse(id).unwrap();
        outcome(&apply_payout_notice(store, &event, n, Utc::now()).await.unwrap())
    }

    #[tokio::test]
    async fn paid_then_failed_then_duplicates_and_stale_events() {
        let store = Memory::default();
        let p = sent(&store).await;
        assert_eq!(
            deliver(&store, "evt_u", &notice(&p, "in_transit", None)).await,
            "unchanged"
        );
        assert_eq!(
            deliver(&store, "evt_p", &notice(&p, "paid", None)).await,
            "applied"
        );
        assert_eq!(
            deliver(&store, "evt_p", &notice(&p, "paid", None)).await,
            "duplicate"
        );
        let failed = notice(&p, "failed", Some("account_closed"));
        assert_eq!(deliver(&store, "evt_f", &failed).await, "applied");
        assert_eq!(deliver(&store, "evt_f", &failed).await, "duplicate");
        // A late copy of an older paid event, under another id.
        assert_eq!(
            deliver(&store, "evt_p2", &notice(&p, "paid", None)).await,
            "stale"
        );
        let now = store.get_payout(&p.id).await.unwrap().unwrap();
        assert_eq!(now.status, PayoutStatus::Failed);
        assert_eq!(now.failure_code.as_deref(), Some("account_closed"));
        let kinds: Vec<_> = store
            .outbox
            .lock()
            .unwrap()
            .iter()
            .map(|o| o.body.event_type())
            .collect();
        assert_eq!(kinds, ["PAYOUT_SENT", "PAYOUT_PAID", "PAYOUT_FAILED"]);
        assert!(matches!(
            store.outbox.lock().unwrap().last().unwrap().body,
            OutboxBody::PayoutFailed(_)
        ));
    }

    #[tokio::test]
    async fn anomalies_and_an_unsent_payout() {
        let store = Memory::default();
        let p = sent(&store).await;
        let mut other_amount = notice(&p, "paid", None);
        other_amount.amount_minor += 1;
        assert_eq!(deliver(&store, "evt_a", &other_amount).await, "amount_mismatch");
        let mut other_account = notice(&p, "paid", None);
        other_account.account = Some(PspAccountId::parse("acct_other").unwrap());
        assert_eq!(deliver(&store, "evt_b", &other_account).await, "account_mismatch");
        let mut unknown = notice(&p, "paid", None);
        unknown.payout_ref = Some(PayoutId::generate().to_string());
        assert_eq!(deliver(&store, "evt_c", &unknown).await, "unknown_payout");
        assert_eq!(store.anomalies.lock().unwrap().len(), 3);
        assert_eq!(
            store.get_payout(&p.id).await.unwrap().unwrap().status,
            PayoutStatus::InTransit
        );

        // Not yet recorded as sent: the PSP is asked to deliver it again.
        let store = Memory::default();
        let mut pending = sent(&store).await;
        pending.status = PayoutStatus::Pending;
        pending.psp_payout = None;
        store
            .payouts
            .lock()
            .unwrap()
            .insert(pending.id.clone(), pending.clone());
        let event = PspEventId::parse("evt_early").unwrap();
        let err = apply_payout_notice(&store, &event, &notice(&pending, "paid", None), Utc::now())
            .await
            .unwrap_err();
        assert_eq!(err.status, 503);
        assert!(
            store.events.lock().unwrap().is_empty(),
            "no marker: the retry must apply"
        );
    }
}
