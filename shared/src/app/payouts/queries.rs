//! `GET /v1/payouts/{id}` and `GET /v1/payouts?seller_id=…&status=…`. A caller sees only its
//! own account's payouts: another account's id is answered exactly like an unknown one (404).

use crate::api::ledger::{parse_limit, required_param};
use crate::api::payouts::payout_view;
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::PayoutId;
use crate::domain::ids::SellerId;
use crate::domain::payouts::PayoutStatus;
use crate::ports::{PayoutReader, Payouts};

pub async fn list_payouts<S: PayoutReader>(
    store: &S,
    caller: &Caller,
    seller_id: Option<&str>,
    status: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let raw = required_param(seller_id, "seller_id")?;
    let seller = SellerId::parse(raw).map_err(crate::api::json::id_error("seller_id"))?;
    let status = status
        .map(|s| {
            s.parse::<PayoutStatus>().map_err(|_| {
                ApiError::invalid_param(
                    "status",
                    "parameter_invalid",
                    "status must be one of PENDING, IN_TRANSIT, PAID, FAILED, CANCELED",
                )
            })
        })
        .transpose()?;
    let limit = parse_limit(limit)?;
    let page = store
        .list_payouts(&caller.account_id, &seller, status, limit, cursor)
        .await?;
    let data = page.data.iter().map(payout_view).collect();
    Ok(Reply::json(
        200,
        &crate::api::ledger::list_view(data, page.next_cursor.as_deref()),
    ))
}

pub async fn get_payout<S: Payouts>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("payout", raw_id);
    let id = PayoutId::parse(raw_id).map_err(|_| missing())?;
    match store.get_payout(&id).await? {
        Some(p) if p.account_id == caller.account_id => Ok(Reply::json(200, &payout_view(&p))),
        _ => Err(missing()),
    }
}
