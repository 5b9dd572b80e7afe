//! The append-only double-entry ledger: the chart of accounts, posting rules from domain events
//! to balanced transactions, and the wallet credits they imply. Pure.
//!
//! Chart of accounts (per merchant account; normal balance in brackets):
//!
//! | account | type | what it holds |
//! |---|---|---|
//! | `psp_receivable` | asset [debit] | money the PSP has collected for us and not yet paid out to our bank |
//! | `seller_payable:<seller_id>` | liability [credit] | what we owe a seller (their wallet) |
//! | `platform_fee_revenue` | income [credit] | our fee on each payment |
//! | `seller_payout_clearing:<seller_id>` | liability [credit] | payouts sent to the PSP, not yet confirmed (payouts) |
//! | `bank:<account>` | asset [debit] | our bank account (settlement, reconciliation) |
//! | `refunds` | contra-income [debit] | refunds given back to buyers (refunds) |
//!
//! The design's "debit buyer, credit seller" becomes: a buyer's payment of A with fee F is
//! **debit `psp_receivable` A, credit `seller_payable:<seller>` A−F, credit
//! `platform_fee_revenue` F** — the buyer's money is held by the PSP for us (an asset), and we
//! owe the seller their share (a liability).

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::Serialize;

use super::currency::Currency;
use super::ids::SellerId;
use super::money::{Money, MoneyError};
use super::outbox::{OutboxEvent, OutboxKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Asset,
    Liability,
    Income,
    ContraIncome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerAccount {
    PspReceivable,
    SellerPayable(SellerId),
    PlatformFeeRevenue,
    SellerPayoutClearing(SellerId),
    Bank(String),
    Refunds,
}

impl LedgerAccount {
    pub fn account_type(&self) -> AccountType {
        match self {
            LedgerAccount::PspReceivable | LedgerAccount::Bank(_) => AccountType::Asset,
            LedgerAccount::SellerPayable(_) | LedgerAccount::SellerPayoutClearing(_) => {
                AccountType::Liability
            }
            LedgerAccount::PlatformFeeRevenue => AccountType::Income,
            LedgerAccount::Refunds => AccountType::ContraIncome,
        }
    }

    /// Debit-normal accounts grow with debits; the others with credits.
    pub fn normal_direction(&self) -> Direction {
        match self.account_type() {
            AccountType::Asset | AccountType::ContraIncome => Direction::Debit,
            AccountType::Liability | AccountType::Income => Direction::Credit,
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let seller = |id: &str| SellerId::parse(id).map_err(|e| format!("seller id {e}"));
        Ok(match s.split_once(':') {
            None => match s {
                "psp_receivable" => LedgerAccount::PspReceivable,
                "platform_fee_revenue" => LedgerAccount::PlatformFeeRevenue,
                "refunds" => LedgerAccount::Refunds,
                _ => return Err(format!("unknown ledger account {s:?}")),
            },
            Some(("seller_payable", id)) => LedgerAccount::SellerPayable(seller(id)?),
            Some(("seller_payout_clearing", id)) => LedgerAccount::SellerPayoutClearing(seller(id)?),
            Some(("bank", id)) if !id.is_empty() && id.len() <= 64 => LedgerAccount::Bank(id.to_owned()),
            _ => return Err(format!("unknown ledger account {s:?}")),
        })
    }
}

impl fmt::Display for LedgerAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerAccount::PspReceivable => f.write_str("psp_receivable"),
            LedgerAccount::SellerPayable(s) => write!(f, "seller_payable:{s}"),
            LedgerAccount::PlatformFeeRevenue => f.write_str("platform_fee_revenue"),
            LedgerAccount::SellerPayoutClearing(s) => write!(f, "seller_payout_clearing:{s}"),
            LedgerAccount::Bank(b) => write!(f, "bank:{b}"),
            LedgerAccount::Refunds => f.write_str("refunds"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Direction {
    Debit,
    Credit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Debit => "DEBIT",
            Direction::Credit => "CREDIT",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "DEBIT" => Ok(Direction::Debit),
            "CREDIT" => Ok(Direction::Credit),
            _ => Err(format!("unknown direction {s:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub account: LedgerAccount,
    pub direction: Direction,
    /// Always positive; the direction says which side.
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostingError {
    #[error("unbalanced transaction {id}: {detail}")]
    Unbalanced { id: String, detail: String },
    #[error("invalid posting: {0}")]
    Invalid(String),
}

impl From<MoneyError> for PostingError {
    fn from(e: MoneyError) -> Self {
        PostingError::Invalid(e.to_string())
    }
}

/// One balanced, immutable ledger transaction. Constructed only through [`LedgerTransaction::new`],
/// which refuses anything unbalanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTransaction {
    /// Deterministic from the event (the idempotency key of the write).
    pub id: String,
    pub event_id: String,
    pub account_id: String,
    pub payment_order_id: Option<String>,
    pub created_at: String,
    pub entries: Vec<Entry>,
}

impl LedgerTransaction {
    pub fn new(
        id: String,
        event_id: String,
        account_id: String,
        payment_order_id: Option<String>,
        created_at: String,
        entries: Vec<Entry>,
    ) -> Result<Self, PostingError> {
        let tx = LedgerTransaction {
            id,
            event_id,
            account_id,
            payment_order_id,
            created_at,
            entries,
        };
        tx.check_balanced()?;
        Ok(tx)
    }

    /// Debits equal credits in every currency, with at least one of each, all amounts positive.
    /// Checked before every write and again on every read.
    pub fn check_balanced(&self) -> Result<(), PostingError> {
        let unbalanced = |detail: String| PostingError::Unbalanced {
            id: self.id.clone(),
            detail,
        };
        if self.entries.len() < 2 {
            return Err(unbalanced("fewer than two entries".into()));
        }
        let mut sums: BTreeMap<&'static str, (i64, i64)> = BTreeMap::new();
        for e in &self.entries {
            if e.amount.minor() <= 0 {
                return Err(unbalanced(format!(
                    "non-positive entry {:?} on {}",
                    e.amount, e.account
                )));
            }
            let slot = sums.entry(e.amount.currency().code()).or_default();
            let side = match e.direction {
                Direction::Debit => &mut slot.0,
                Direction::Credit => &mut slot.1,
            };
            *side = side
                .checked_add(e.amount.minor())
                .ok_or_else(|| unbalanced("overflow".into()))?;
        }
        for (currency, (debits, credits)) in sums {
            if debits != credits {
                return Err(unbalanced(format!(
                    "{currency}: debits {debits} != credits {credits} (minor units)"
                )));
            }
        }
        Ok(())
    }
}

/// The platform fee on one payment order: `rate` of the amount, half-even to the minor unit.
pub fn platform_fee(amount: Money, rate: Decimal) -> Result<Money, PostingError> {
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return Err(PostingError::Invalid(format!("fee rate {rate} outside 0..=1")));
    }
    Ok(amount.percentage_half_even(rate)?)
}

/// Posting rule: one balanced transaction per payment order of a succeeded payment; nothing
/// for a failed one.
pub fn postings(event: &OutboxEvent, fee_rate: Decimal) -> Result<Vec<LedgerTransaction>, PostingError> {
    if event.event_type != OutboxKind::PaymentSucceeded {
        return Ok(Vec::new());
    }
    event
        .payment_orders
        .iter()
        .map(|o| {
            let currency = Currency::parse(&o.currency).map_err(|e| PostingError::Invalid(e.to_string()))?;
            let amount = Money::from_minor(o.amount_minor, currency);
            amount.check_charge()?;
            let seller = SellerId::parse(&o.seller_id).map_err(|e| PostingError::Invalid(e.to_string()))?;
            let fee = platform_fee(amount, fee_rate)?;
            let net = amount.checked_sub(fee)?;
            let mut entries = vec![Entry {
                account: LedgerAccount::PspReceivable,
                direction: Direction::Debit,
                amount,
            }];
            if net.minor() > 0 {
                entries.push(Entry {
                    account: LedgerAccount::SellerPayable(seller),
                    direction: Direction::Credit,
                    amount: net,
                });
            }
            if fee.minor() > 0 {
                entries.push(Entry {
                    account: LedgerAccount::PlatformFeeRevenue,
                    direction: Direction::Credit,
                    amount: fee,
                });
            }
            LedgerTransaction::new(
                format!("ltx_{}_{}", event.event_id, o.payment_order_id),
                event.event_id.clone(),
                event.account_id.clone(),
                Some(o.payment_order_id.clone()),
                event.occurred_at.clone(),
                entries,
            )
        })
        .collect()
}

/// What the wallet consumer adds: each seller's net (amount minus fee) per currency. Derived
/// from the same rule as the ledger, so wallets equal `seller_payable` by construction.
pub fn wallet_credits(
    event: &OutboxEvent,
    fee_rate: Decimal,
) -> Result<Vec<(SellerId, Money)>, PostingError> {
    let mut credits: BTreeMap<(SellerId, &'static str), Money> = BTreeMap::new();
    for tx in postings(event, fee_rate)? {
        for e in tx.entries {
            if let (LedgerAccount::SellerPayable(seller), Direction::Credit) = (e.account, e.direction) {
                let key = (seller, e.amount.currency().code());
                let sum = match credits.get(&key) {
                    Some(prev) => prev.checked_add(e.amount)?,
                    None => e.amount,
                };
                credits.insert(key, sum);
            }
        }
    }
    Ok(credits.into_iter().map(|((s, _), m)| (s, m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbox::OutboxOrder;
    use proptest::prelude::*;

    fn event(kind: OutboxKind, lines: &[(&str, i64, &str)]) -> OutboxEvent {
        OutboxEvent {
            event_id: "obx_evt_1".into(),
            event_type: kind,
            checkout_id: "chk_1".into(),
            account_id: "acct_1".into(),
            order_id: "o".into(),
            buyer_id: "b".into(),
            psp_token: Some("cs_1".into()),
            psp_event_id: "evt_1".into(),
            total_minor: lines.iter().map(|l| l.1).sum(),
            currency: lines[0].2.into(),
            payment_orders: lines
                .iter()
                .enumerate()
                .map(|(i, (seller, minor, currency))| OutboxOrder {
                    payment_order_id: format!("po_{i}"),
                    seller_id: seller.to_string(),
                    sub_order_id: None,
                    amount_minor: *minor,
                    amount: String::new(),
                    currency: currency.to_string(),
                })
                .collect(),
            occurred_at: "2026-11-25T00:00:00.000Z".into(),
        }
    }

    fn rate() -> Decimal {
        Decimal::new(25, 3)
    }

    #[test]
    fn one_balanced_transaction_per_order() {
        let e = event(
            OutboxKind::PaymentSucceeded,
            &[("A", 4000, "USD"), ("B", 3500, "USD"), ("C", 2500, "USD")],
        );
        let txs = postings(&e, rate()).unwrap();
        assert_eq!(txs.len(), 3);
        // 40.00 * 2.5% = 1.00 fee, 39.00 to A.
        let a = &txs[0];
        assert_eq!(a.id, "ltx_obx_evt_1_po_0");
        assert_eq!(
            a.entries[0],
            Entry {
                account: LedgerAccount::PspReceivable,
                direction: Direction::Debit,
                amount: Money::from_minor(4000, Currency::parse("USD").unwrap())
            }
        );
        assert_eq!(a.entries[1].amount.minor(), 3900);
        assert_eq!(a.entries[2].amount.minor(), 100);
        // 35.00 * 2.5% = 0.875 -> 0.88 (half-even), seller gets 34.12.
        assert_eq!(txs[1].entries[2].amount.minor(), 88);
        assert_eq!(txs[1].entries[1].amount.minor(), 3412);
        let credits = wallet_credits(&e, rate()).unwrap();
        assert_eq!(
            credits.iter().map(|(_, m)| m.minor()).collect::<Vec<_>>(),
            vec![3900, 3412, 2438]
        );
    }

    #[test]
    fn failed_payments_post_nothing() {
        let e = event(OutboxKind::PaymentFailed, &[("A", 4000, "USD")]);
        assert!(postings(&e, rate()).unwrap().is_empty());
        assert!(wallet_credits(&e, rate()).unwrap().is_empty());
    }

    #[test]
    fn tiny_amounts_and_other_currencies_balance() {
        // 0.01 USD: fee 0.00025 -> 0.00; JPY 1: fee 0; KWD 1.000: fee 0.025.
        for (minor, c) in [(1, "USD"), (1, "JPY"), (1000, "KWD"), (10, "USD")] {
            let txs = postings(&event(OutboxKind::PaymentSucceeded, &[("A", minor, c)]), rate()).unwrap();
            assert!(txs[0].check_balanced().is_ok());
        }
    }

    #[test]
    fn unbalanced_is_refused() {
        let usd = Currency::parse("USD").unwrap();
        let bad = LedgerTransaction::new(
            "t".into(),
            "e".into(),
            "a".into(),
            None,
            String::new(),
            vec![
                Entry {
                    account: LedgerAccount::PspReceivable,
                    direction: Direction::Debit,
                    amount: Money::from_minor(100, usd),
                },
                Entry {
                    account: LedgerAccount::PlatformFeeRevenue,
                    direction: Direction::Credit,
                    amount: Money::from_minor(99, usd),
                },
            ],
        );
        assert!(matches!(bad, Err(PostingError::Unbalanced { .. })));
    }

    #[test]
    fn account_names_roundtrip() {
        for name in [
            "psp_receivable",
            "seller_payable:seller_A",
            "platform_fee_revenue",
            "seller_payout_clearing:s",
            "bank:main",
            "refunds",
        ] {
            assert_eq!(LedgerAccount::parse(name).unwrap().to_string(), name);
        }
        assert!(LedgerAccount::parse("cash").is_err());
        assert!(LedgerAccount::parse("seller_payable:").is_err());
        assert_eq!(LedgerAccount::PspReceivable.normal_direction(), Direction::Debit);
        assert_eq!(
            LedgerAccount::parse("seller_payable:x")
                .unwrap()
                .normal_direction(),
            Direction::Credit
        );
    }

    proptest! {
        #[test]
        fn any_orders_and_fee_rates_balance_and_wallets_equal_payables(
            lines in prop::collection::vec((0usize..5, 1i64..=99_999_999), 1..20),
            bps in 0i64..=10_000,
            which in 0usize..3,
        ) {
            let c = ["USD", "JPY", "BHD"][which];
            let sellers = ["s0", "s1", "s2", "s3", "s4"];
            let lines: Vec<(&str, i64, &str)> = lines.iter().map(|(s, m)| (sellers[*s], *m, c)).collect();
            let e = event(OutboxKind::PaymentSucceeded, &lines);
            let rate = Decimal::new(bps, 4);
            let txs = postings(&e, rate).unwrap();
            prop_assert_eq!(txs.len(), lines.len());
            let mut payable: BTreeMap<String, i64> = BTreeMap::new();
            let (mut debits, mut credits) = (0i64, 0i64);
            for tx in &txs {
                prop_assert!(tx.check_balanced().is_ok());
                for en in &tx.entries {
                    match en.direction { Direction::Debit => debits += en.amount.minor(), Direction::Credit => credits += en.amount.minor() }
                    if let LedgerAccount::SellerPayable(s) = &en.account {
                        *payable.entry(s.to_string()).or_default() += en.amount.minor();
                    }
                }
            }
            prop_assert_eq!(debits, credits);
            prop_assert_eq!(debits, lines.iter().map(|l| l.1).sum::<i64>());
            let wallets: BTreeMap<String, i64> = wallet_credits(&e, rate).unwrap().into_iter().map(|(s, m)| (s.to_string(), m.minor())).collect();
            prop_assert_eq!(wallets, payable);
        }
    }
}
