//! The wallet and ledger read APIs' wire shapes, and the paging parameters every list takes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::ApiError;
use crate::domain::currency::Currency;
use crate::domain::ids::SellerId;
use crate::domain::ledger::balances::Totals;
use crate::domain::ledger::{Entry, LedgerAccount, LedgerTransaction, WalletFigures};
use crate::domain::money::Money;

pub const PAGE_LIMIT_DEFAULT: i32 = 20;
pub const PAGE_LIMIT_MAX: i32 = 100;

/// A query parameter a list cannot do without: absent or empty → `400 parameter_missing`.
pub fn required_param<'a>(raw: Option<&'a str>, name: &'static str) -> Result<&'a str, ApiError> {
    raw.filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::invalid_param(
            name,
            "parameter_missing",
            format!("Missing required parameter: {name}"),
        )
    })
}

/// `limit=1..=100`, default 20.
pub fn parse_limit(raw: Option<&str>) -> Result<i32, ApiError> {
    match raw {
        None => Ok(PAGE_LIMIT_DEFAULT),
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=PAGE_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_param(
                    "limit",
                    "parameter_invalid",
                    format!("limit must be 1 to {PAGE_LIMIT_MAX}"),
                )
            }),
    }
}

fn amount(minor: i64, currency: Currency) -> String {
    Money::from_minor(minor, currency).to_string()
}

pub fn transaction_view(tx: &LedgerTransaction) -> Value {
    json!({
        "transaction_id": tx.id,
        "event_id": tx.event_id,
        "payment_order_id": tx.payment_order_id,
        "refund_id": tx.refund_id,
        "payout_id": tx.payout_id,
        "created_at": tx.created_at,
        "entries": tx.entries.iter().map(|e| json!({
            "account": e.account.to_string(),
            "direction": e.direction.as_str(),
            "amount": e.amount.to_string(),
            "currency": e.amount.currency().code(),
        })).collect::<Vec<_>>(),
    })
}

/// `balance = available + held`: held is set aside for refunds in flight; available may go
/// below zero (a buyer's refund never waits on the seller's balance).
pub fn wallet_view(seller: &SellerId, balances: &[WalletFigures]) -> Value {
    json!({
        "object": "wallet",
        "seller_id": seller,
        "balances": balances
            .iter()
            .map(|w| json!({
                "currency": w.currency.code(),
                "balance": amount(w.balance_minor, w.currency),
                "available": amount(w.available_minor(), w.currency),
                "held": amount(w.held_minor, w.currency),
            }))
            .collect::<Vec<_>>(),
    })
}

/// One entry line of an account statement: (transaction id, created_at, entry).
pub type StatementLine = (String, String, Entry);

/// `GET /v1/ledger/accounts/{account}`: the running totals per currency, then a page of
/// entries.
pub fn account_view(
    account: &LedgerAccount,
    totals: &BTreeMap<Currency, Totals>,
    entries: &[StatementLine],
    next_cursor: Option<&str>,
) -> Value {
    let balances: Vec<Value> = totals
        .iter()
        .map(|(c, t)| {
            json!({
                "currency": c.code(),
                "debits": amount(t.debits_minor, *c),
                "credits": amount(t.credits_minor, *c),
                "balance": t.balance_minor(account.normal_direction()).map(|b| amount(b, *c)),
                "entries": t.entries,
            })
        })
        .collect();
    let entries: Vec<Value> = entries
        .iter()
        .map(|(tx, at, e)| {
            json!({"transaction_id": tx, "created_at": at, "direction": e.direction.as_str(),
                "amount": e.amount.to_string(), "currency": e.amount.currency().code()})
        })
        .collect();
    json!({
        "object": "ledger_account",
        "account": account.to_string(),
        "type": account.account_type(),
        "balances": balances,
        "entries": {"data": entries, "has_more": next_cursor.is_some(), "next_cursor": next_cursor},
    })
}

pub fn list_view(data: Vec<Value>, next_cursor: Option<&str>) -> Value {
    json!({"object": "list", "data": data, "has_more": next_cursor.is_some(), "next_cursor": next_cursor})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::Direction;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 20);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(
                parse_limit(Some(bad)).unwrap_err().code,
                "parameter_invalid",
                "{bad}"
            );
        }
    }

    #[test]
    fn account_view_shows_running_totals_on_the_normal_side() {
        let usd = Currency::parse("USD").unwrap();
        let totals = BTreeMap::from([(
            usd,
            Totals {
                debits_minor: 10_000,
                credits_minor: 250,
                entries: 3,
            },
        )]);
        let v = account_view(&LedgerAccount::PspReceivable, &totals, &[], None);
        assert_eq!(v["balances"][0]["balance"], "97.50");
        assert_eq!(v["balances"][0]["debits"], "100.00");
        assert_eq!(v["balances"][0]["entries"], 3);
        assert_eq!(v["entries"]["has_more"], false);
        assert_eq!(LedgerAccount::PspReceivable.normal_direction(), Direction::Debit);
    }
}
