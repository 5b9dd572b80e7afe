//! The invariants, checked over a snapshot of everything: the ledger balances, wallets equal
//! the ledger, one ledger transaction per successful payment order, no checkout charged twice.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ledger::{Direction, LedgerAccount, LedgerTransaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletBalance {
    pub account_id: String,
    pub seller_id: String,
    pub currency: String,
    pub balance_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderState {
    pub payment_order_id: String,
    pub checkout_id: String,
    pub status: String,
}

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub transactions: Vec<LedgerTransaction>,
    /// Items that failed to read back as balanced transactions.
    pub corrupt_transactions: Vec<String>,
    pub wallets: Vec<WalletBalance>,
    pub orders: Vec<OrderState>,
    /// (checkout id, outbox event type) for every outbox record.
    pub outbox: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    pub ledger_transactions: usize,
    pub wallets: usize,
    pub payment_orders: usize,
    /// Per currency: (total debits, total credits), in minor units.
    pub totals_minor: BTreeMap<String, (i64, i64)>,
    pub violations: Vec<String>,
}

pub fn check(s: &Snapshot) -> Report {
    let mut violations: Vec<String> = s
        .corrupt_transactions
        .iter()
        .map(|c| format!("unbalanced or unreadable ledger transaction: {c}"))
        .collect();
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut payable: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut per_order: BTreeMap<&str, usize> = BTreeMap::new();
    for tx in &s.transactions {
        if let Err(e) = tx.check_balanced() {
            violations.push(e.to_string());
        }
        if let Some(po) = &tx.payment_order_id {
            *per_order.entry(po).or_default() += 1;
        }
        for e in &tx.entries {
            let t = totals.entry(e.amount.currency().code().to_owned()).or_default();
            let signed = match e.direction {
                Direction::Debit => {
                    t.0 += e.amount.minor();
                    -e.amount.minor()
                }
                Direction::Credit => {
                    t.1 += e.amount.minor();
                    e.amount.minor()
                }
            };
            if let LedgerAccount::SellerPayable(seller) = &e.account {
                *payable
                    .entry((
                        tx.account_id.clone(),
                        seller.to_string(),
                        e.amount.currency().code().to_owned(),
                    ))
                    .or_default() += signed;
            }
        }
    }
    for (currency, (debits, credits)) in &totals {
        if debits != credits {
            violations.push(format!(
                "{currency}: total debits {debits} != total credits {credits}"
            ));
        }
    }
    let mut wallets: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for w in &s.wallets {
        wallets.insert(
            (w.account_id.clone(), w.seller_id.clone(), w.currency.clone()),
            w.balance_minor,
        );
    }
    for key in payable.keys().chain(wallets.keys()) {
        let (l, w) = (
            payable.get(key).copied().unwrap_or(0),
            wallets.get(key).copied().unwrap_or(0),
        );
        if l != w {
            violations.push(format!(
                "wallet {key:?} is {w} but seller_payable in the ledger is {l}"
            ));
        }
    }
    for o in &s.orders {
        let n = per_order.get(o.payment_order_id.as_str()).copied().unwrap_or(0);
        match (o.status.as_str(), n) {
            ("SUCCESS", 1) | ("CREATED" | "EXECUTING" | "FAILED", 0) => {}
            (status, n) => violations.push(format!(
                "payment order {} is {status} with {n} ledger transactions",
                o.payment_order_id
            )),
        }
    }
    let mut charged: BTreeMap<&str, usize> = BTreeMap::new();
    for (checkout, kind) in &s.outbox {
        if kind == "PAYMENT_SUCCEEDED" {
            *charged.entry(checkout).or_default() += 1;
        }
    }
    for (checkout, n) in charged {
        if n > 1 {
            violations.push(format!("checkout {checkout} charged {n} times"));
        }
    }
    Report {
        ok: violations.is_empty(),
        ledger_transactions: s.transactions.len(),
        wallets: s.wallets.len(),
        payment_orders: s.orders.len(),
        totals_minor: totals,
        violations,
    }
}
