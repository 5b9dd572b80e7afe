//! Read APIs over the wallet and the ledger: `GET /v1/wallets/{seller_id}`,
//! `GET /v1/ledger/transactions?payment_order_id=…`, `GET /v1/ledger/accounts/{account}`.
//! A caller sees only its own account's wallets and ledger.

use crate::api::ledger::{
    account_view, list_view, parse_limit, required_param, transaction_view, wallet_view,
};
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::{PaymentOrderId, SellerId};
use crate::domain::ledger::LedgerAccount;
use crate::ports::LedgerReader;

pub async fn get_wallet<S: LedgerReader>(
    store: &S,
    caller: &Caller,
    raw_seller: &str,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("wallet", raw_seller);
    let seller = SellerId::parse(raw_seller).map_err(|_| missing())?;
    let balances = store.wallet_balances(&caller.account_id, &seller).await?;
    if balances.is_empty() {
        return Err(missing());
    }
    Ok(Reply::json(200, &wallet_view(&seller, &balances)))
}

pub async fn list_transactions<S: LedgerReader>(
    store: &S,
    caller: &Caller,
    payment_order_id: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let raw = required_param(payment_order_id, "payment_order_id")?;
    let limit = parse_limit(limit)?;
    let Ok(po) = PaymentOrderId::parse(raw) else {
        // No such order can have transactions.
        return Ok(Reply::json(200, &list_view(Vec::new(), None)));
    };
    let page = store
        .transactions_for_order(&caller.account_id, &po, limit, cursor)
        .await?;
    let data = page.data.iter().map(transaction_view).collect();
    Ok(Reply::json(200, &list_view(data, page.next_cursor.as_deref())))
}

/// The account's running totals (a few items, however long its history) and one page of its
/// entries.
pub async fn get_account<S: LedgerReader>(
    store: &S,
    caller: &Caller,
    raw_account: &str,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let account =
        LedgerAccount::parse(raw_account).map_err(|_| ApiError::not_found("ledger account", raw_account))?;
    let limit = parse_limit(limit)?;
    let (totals, page) = futures_util::future::join(
        store.account_totals(&caller.account_id, &account),
        store.account_entries(&caller.account_id, &account, limit, cursor),
    )
    .await;
    let page = page?;
    Ok(Reply::json(
        200,
        &account_view(&account, &totals?, &page.data, page.next_cursor.as_deref()),
    ))
}
