//! `PUT /v1/sellers/{seller_id}/payout_account` `{psp_account_id}`: records the seller's
//! connected account at the PSP (the seller onboards there, which gives the id). The PSP must
//! know the account, else `400 payout_account_invalid`. A `PUT` is idempotent by nature: the
//! same body twice records the same account.
//!
//! `GET /v1/sellers/{seller_id}`: the seller's payout account together with its wallet's
//! balances (balance, available, held per currency); `404` for a seller with neither.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::api::json::{id_error, reject_card_fields, reject_unknown, req_str, Fields};
use crate::api::ledger::wallet_view;
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::SellerId;
use crate::domain::psp::PspAccountId;
use crate::domain::time::format_time;
use crate::ports::{LedgerReader, PayoutPsp, Payouts};

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

pub async fn get_seller<S: Payouts, L: LedgerReader>(
    store: &S,
    ledger: &L,
    caller: &Caller,
    raw_seller: &str,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("seller", raw_seller);
    let seller = SellerId::parse(raw_seller).map_err(|_| missing())?;
    let (account, balances) = futures_util::future::join(
        store.payout_account(&caller.account_id, &seller),
        ledger.wallet_balances(&caller.account_id, &seller),
    )
    .await;
    let (account, balances) = (account?, balances?);
    if account.is_none() && balances.is_empty() {
        return Err(missing());
    }
    let wallet = wallet_view(&seller, &balances);
    Ok(Reply::json(
        200,
        &json!({
            "object": "seller",
            "seller_id": seller,
            "payout_account": account.map(|a| json!({"psp_account_id": a})),
            "balances": wallet["balances"],
        }),
    ))
}
