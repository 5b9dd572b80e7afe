//! `GET /v1/refunds/{id}` and `GET /v1/refunds?payment_order_id=…`. A caller sees only its own
//! account's refunds: another account's id is answered exactly like an unknown one (404).

use crate::api::ledger::{parse_limit, required_param};
use crate::api::refunds::{refund_list_view, refund_view};
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::{PaymentOrderId, RefundId};
use crate::ports::{Checkouts, RefundReader, Refunds};

pub async fn get_refund<S: Refunds>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("refund", raw_id);
    let id = RefundId::parse(raw_id).map_err(|_| missing())?;
    match store.get_refund(&id).await? {
        Some(r) if r.account_id == caller.account_id => Ok(Reply::json(200, &refund_view(&r))),
        _ => Err(missing()),
    }
}

pub async fn list_refunds<O: Checkouts, S: RefundReader>(
    orders: &O,
    store: &S,
    caller: &Caller,
    payment_order_id: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let raw = required_param(payment_order_id, "payment_order_id")?;
    let limit = parse_limit(limit)?;
    let missing = || ApiError::not_found("payment order", raw).with_param("payment_order_id");
    let id = PaymentOrderId::parse(raw).map_err(|_| missing())?;
    match orders.get_payment_order(&id).await? {
        Some(o) if o.account_id == caller.account_id => {}
        _ => return Err(missing()),
    }
    let page = store.list_refunds(&caller.account_id, &id, limit, cursor).await?;
    Ok(Reply::json(
        200,
        &refund_list_view(&page.data, page.next_cursor.as_deref()),
    ))
}
