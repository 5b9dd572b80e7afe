//! `GET /v1/payouts/{id}`. A caller sees only its own account's payouts: another account's id
//! is answered exactly like an unknown one (404).

use crate::api::payouts::payout_view;
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::PayoutId;
use crate::ports::Payouts;

pub async fn get_payout<S: Payouts>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("payout", raw_id);
    let id = PayoutId::parse(raw_id).map_err(|_| missing())?;
    match store.get_payout(&id).await? {
        Some(p) if p.account_id == caller.account_id => Ok(Reply::json(200, &payout_view(&p))),
        _ => Err(missing()),
    }
}
