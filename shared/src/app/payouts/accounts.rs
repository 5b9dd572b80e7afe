//! `PUT /v1/sellers/{seller_id}/payout_account` `{psp_account_id}`: records the seller's
//! connected account at the PSP (the seller onboards there, which gives the id). The PSP must
//! know the account, else `400 payout_account_invalid`. A `PUT` is idempotent by nature: the
//! same body twice records the same account.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::api::json::{id_error, reject_card_fields, reject_unknown, req_str, Fields};
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::SellerId;
use crate::domain::psp::PspAccountId;
use crate::domain::time::format_time;
use crate::ports::{PayoutPsp, Payouts};

pub async fn put_payout_account<S: Payouts, P: PayoutPsp>(
    store: &S,
    psp: &P,
    caller: &Caller,
    raw_seller: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let seller = SellerId::parse(raw_seller).map_err(id_error("seller_id"))?;
    let mut top = Fields::parse_body(body)?;
    reject_card_fields(&top, "")?;
    reject_unknown(&top, &["psp_account_id"], "")?;
    let raw = req_str(&mut top, "psp_account_id", "")?;
    let invalid = |why: String| ApiError::invalid_param("psp_account_id", "payout_account_invalid", why);
    let account = PspAccountId::parse(&raw).map_err(|e| invalid(format!("psp_account_id {e}")))?;
    match psp.account(&account).await? {
        Some(_) => {}
        None => {
            return Err(invalid(format!(
                "the payment provider has no connected account {account}: the seller onboards there first"
            )))
        }
    }
    store
        .put_payout_account(&caller.account_id, &seller, &account, now)
        .await?;
    tracing::info!(seller_id = %seller, "payout account recorded");
    Ok(Reply::json(
        200,
        &json!({"object": "seller_payout_account", "seller_id": seller, "psp_account_id": account,
                "updated_at": format_time(now)}),
    ))
}
