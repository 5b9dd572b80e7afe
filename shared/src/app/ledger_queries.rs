//! Read APIs over the wallet and the ledger: `GET /v1/wallets/{seller_id}`,
//! `GET /v1/ledger/transactions?payment_order_id=…`, `GET /v1/ledger/accounts/{account}`.
//! A caller sees only its own account's wallets and ledger.

use std::collections::BTreeMap;

use super::{Caller, Reply};
use crate::adapters::dynamo::ledger::{decode_cursor, LedgerStore};
use crate::domain::ids::SellerId;
use crate::domain::ledger::{Direction, LedgerAccount, LedgerTransaction};
use crate::domain::{ApiError, Currency, Money};
use crate::ports::StoreError;

pub const LIMIT_DEFAULT: i32 = 20;
pub const LIMIT_MAX: i32 = 100;
/// Entries summed for an account's balances (a bound on one request's work).
const BALANCE_ENTRIES_MAX: usize = 100_000;

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "ledger store failed");
    ApiError::unavailable(1, "The ledger is temporarily unavailable; retry shortly")
}

pub fn parse_limit(raw: Option<&str>) -> Result<i32, ApiError> {
    match raw {
        None => Ok(LIMIT_DEFAULT),
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "limit",
                    "parameter_invalid",
                    format!("limit must be 1 to {LIMIT_MAX}"),
                )
            }),
    }
}

fn cursor(raw: Option<&str>) -> Result<Option<crate::adapters::dynamo::codec::Item>, ApiError> {
    raw.map(|c| {
        decode_cursor(c)
            .ok_or_else(|| ApiError::invalid_param("cursor", "parameter_invalid", "cursor is not valid"))
    })
    .transpose()
}

fn amount(minor: i64, currency: &str) -> String {
    Currency::parse(currency)
        .map(|c| Money::from_minor(minor, c).to_string())
        .unwrap_or_else(|_| minor.to_string())
}

fn tx_view(tx: &LedgerTransaction) -> serde_json::Value {
    serde_json::json!({
        "transaction_id": tx.id,
        "event_id": tx.event_id,
        "payment_order_id": tx.payment_order_id,
        "created_at": tx.created_at,
        "entries": tx.entries.iter().map(|e| serde_json::json!({
            "account": e.account.to_string(),
            "direction": e.direction.as_str(),
            "amount": e.amount.to_string(),
            "currency": e.amount.currency().code(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn get_wallet(store: &LedgerStore, caller: &Caller, raw_seller: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("wallet", raw_seller);
    let seller = SellerId::parse(raw_seller).map_err(|_| missing())?;
    let balances = store
        .wallet_balances(caller.account_id.as_str(), seller.as_str())
        .await
        .map_err(store_error)?;
    if balances.is_empty() {
        return Err(missing());
    }
    Ok(Reply::json(
        200,
        &serde_json::json!({
            "object": "wallet",
            "seller_id": seller,
            "balances": balances.iter().map(|(c, m)| serde_json::json!({"currency": c, "balance": amount(*m, c)})).collect::<Vec<_>>(),
        }),
    ))
}

pub async fn list_transactions(
    store: &LedgerStore,
    caller: &Caller,
    payment_order_id: Option<&str>,
    limit: Option<&str>,
    raw_cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let po = payment_order_id.filter(|p| !p.is_empty()).ok_or_else(|| {
        ApiError::invalid_param(
            "payment_order_id",
            "parameter_missing",
            "Missing required parameter: payment_order_id",
        )
    })?;
    let page = store
        .transactions_for_order(po, parse_limit(limit)?, cursor(raw_cursor)?)
        .await
        .map_err(store_error)?;
    let data: Vec<_> = page
        .data
        .iter()
        .filter(|t| t.account_id == caller.account_id.as_str())
        .map(tx_view)
        .collect();
    Ok(Reply::json(
        200,
        &serde_json::json!({"object": "list", "data": data, "has_more": page.next_cursor.is_some(), "next_cursor": page.next_cursor}),
    ))
}

pub async fn get_account(
    store: &LedgerStore,
    caller: &Caller,
    raw_account: &str,
    limit: Option<&str>,
    raw_cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let account =
        LedgerAccount::parse(raw_account).map_err(|_| ApiError::not_found("ledger account", raw_account))?;
    let acct = caller.account_id.as_str();
    // Balances over every entry (paged internally, bounded).
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (mut next, mut seen) = (None, 0usize);
    loop {
        let page = store
            .account_entries(acct, &account, None, next.take())
            .await
            .map_err(store_error)?;
        for (_, _, e) in &page.data {
            let t = totals.entry(e.amount.currency().code().to_owned()).or_default();
            match e.direction {
                Direction::Debit => t.0 += e.amount.minor(),
                Direction::Credit => t.1 += e.amount.minor(),
            }
        }
        seen += page.data.len();
        match page.next_cursor.and_then(|c| decode_cursor(&c)) {
            Some(k) if seen < BALANCE_ENTRIES_MAX => next = Some(k),
            _ => break,
        }
    }
    let page = store
        .account_entries(acct, &account, Some(parse_limit(limit)?), cursor(raw_cursor)?)
        .await
        .map_err(store_error)?;
    let balances: Vec<_> = totals
        .iter()
        .map(|(c, (d, cr))| {
            let balance = match account.normal_direction() {
                Direction::Debit => d - cr,
                Direction::Credit => cr - d,
            };
            serde_json::json!({"currency": c, "debits": amount(*d, c), "credits": amount(*cr, c), "balance": amount(balance, c)})
        })
        .collect();
    let entries: Vec<_> = page
        .data
        .iter()
        .map(|(tx, at, e)| {
            serde_json::json!({"transaction_id": tx, "created_at": at, "direction": e.direction.as_str(),
            "amount": e.amount.to_string(), "currency": e.amount.currency().code()})
        })
        .collect();
    Ok(Reply::json(
        200,
        &serde_json::json!({
            "object": "ledger_account",
            "account": account.to_string(),
            "type": account.account_type(),
            "balances": balances,
            "entries": {"data": entries, "has_more": page.next_cursor.is_some(), "next_cursor": page.next_cursor},
        }),
    ))
}
