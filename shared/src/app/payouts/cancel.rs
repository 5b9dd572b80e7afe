//! `POST /v1/payouts/{payout_id}/cancel`: only a payout that is `PENDING` and not yet being sent
//! can be canceled. It becomes `CANCELED` and `PAYOUT_CANCELED` releases its hold. Canceling a
//! canceled payout answers it again (idempotent); any other state is
//! `409 payout_not_cancelable`.

use chrono::{DateTime, Utc};

use crate::api::payouts::payout_view;
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::PayoutId;
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::{Payout, PayoutEvent, PayoutStatus};
use crate::ports::Payouts;

pub async fn cancel_payout<S: Payouts>(
    store: &S,
    caller: &Caller,
    raw_id: &str,
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("payout", raw_id);
    let id = PayoutId::parse(raw_id).map_err(|_| missing())?;
    let read = || async {
        match store.get_payout(&id).await? {
            Some(p) if p.account_id == caller.account_id => Ok::<Payout, ApiError>(p),
            _ => Err(missing()),
        }
    };
    let not_cancelable = |status: PayoutStatus| {
        ApiError::state_conflict(
            "payout_not_cancelable",
            format!("payout {id} is {status}: only a PENDING payout not yet sent can be canceled"),
        )
    };
    let mut payout = read().await?;
    match payout.status {
        PayoutStatus::Canceled => return Ok(Reply::json(200, &payout_view(&payout))),
        PayoutStatus::Pending => {}
        other => return Err(not_cancelable(other)),
    }
    let moved = payout
        .apply(PayoutEvent::Cancel, now)
        .map_err(|e| not_cancelable(e.from))?;
    let outbox = OutboxEvent::payout(&payout, Some(moved), "request", now);
    if store.cancel_payout(&payout, &outbox).await? {
        tracing::info!(payout_id = %id, "payout canceled");
        return Ok(Reply::json(200, &payout_view(&payout)));
    }
    // Not cancelable any more: the executor started sending it, or a concurrent cancel won.
    let now_is = read().await?;
    match now_is.status {
        PayoutStatus::Canceled => Ok(Reply::json(200, &payout_view(&now_is))),
        status => Err(not_cancelable(status)),
    }
}
