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
//! | `psp_fee_expense` | expense [debit] | the PSP's processing fees, booked from its settlement file (reconciliation) |
//! | `bank_in_transit` | asset [debit] | the platform's payouts from the PSP to its bank, not yet on a bank statement (reconciliation) |
//! | `suspense` | liability [credit] | PSP balance moves nobody has explained yet (adjustments): a person clears it (reconciliation) |
//!
//! The design's "debit buyer, credit seller" becomes: a buyer's payment of A with fee F is
//! **debit `psp_receivable` A, credit `seller_payable:<seller>` A−F, credit
//! `platform_fee_revenue` F** — the buyer's money is held by the PSP for us (an asset), and we
//! owe the seller their share (a liability).

pub mod balances;
pub mod postings;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::ids::{AccountId, PaymentOrderId, PayoutId, RefundId, SellerId};
use super::money::{Money, MoneyError};

pub use postings::{platform_fee, postings, wallet_changes, WalletChange, WalletFigures};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Asset,
    Liability,
    Income,
    ContraIncome,
    Expense,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LedgerAccount {
    PspReceivable,
    SellerPayable(SellerId),
    PlatformFeeRevenue,
    SellerPayoutClearing(SellerId),
    Bank(String),
    Refunds,
    PspFeeExpense,
    BankInTransit,
    Suspense,
}

impl LedgerAccount {
    pub fn account_type(&self) -> AccountType {
        match self {
            LedgerAccount::PspReceivable | LedgerAccount::Bank(_) | LedgerAccount::BankInTransit => {
                AccountType::Asset
            }
            LedgerAccount::SellerPayable(_)
            | LedgerAccount::SellerPayoutClearing(_)
            | LedgerAccount::Suspense => AccountType::Liability,
            LedgerAccount::PspFeeExpense => AccountType::Expense,
            LedgerAccount::PlatformFeeRevenue => AccountType::Income,
            LedgerAccount::Refunds => AccountType::ContraIncome,
        }
    }

    /// Debit-normal accounts grow with debits; the others with credits.
    pub fn normal_direction(&self) -> Direction {
        match self.account_type() {
            AccountType::Asset | AccountType::ContraIncome | AccountType::Expense => Direction::Debit,
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
                "psp_fee_expense" => LedgerAccount::PspFeeExpense,
                "bank_in_transit" => LedgerAccount::BankInTransit,
                "suspense" => LedgerAccount::Suspense,
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
            LedgerAccount::PspFeeExpense => f.write_str("psp_fee_expense"),
            LedgerAccount::BankInTransit => f.write_str("bank_in_transit"),
            LedgerAccount::Suspense => f.write_str("suspense"),
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
    pub account_id: AccountId,
    pub payment_order_id: Option<PaymentOrderId>,
    /// The refund it books, for a refund's reversal or its correction.
    pub refund_id: Option<RefundId>,
    /// The payout it books, for a payout's transfer or its return.
    pub payout_id: Option<PayoutId>,
    pub created_at: String,
    pub entries: Vec<Entry>,
}

impl LedgerTransaction {
    pub fn new(
        id: String,
        event_id: String,
        account_id: AccountId,
        payment_order_id: Option<PaymentOrderId>,
        created_at: String,
        entries: Vec<Entry>,
    ) -> Result<Self, PostingError> {
        let tx = LedgerTransaction {
            id,
            event_id,
            account_id,
            payment_order_id,
            refund_id: None,
            payout_id: None,
            created_at,
            entries,
        };
        tx.check_balanced()?;
        Ok(tx)
    }

    /// The same transaction, booking `refund`.
    pub fn for_refund(mut self, refund: RefundId) -> Self {
        self.refund_id = Some(refund);
        self
    }

    pub fn for_payout(mut self, payout: PayoutId) -> Self {
        self.payout_id = Some(payout);
        self
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;

    #[test]
    fn unbalanced_is_refused() {
        let usd = Currency::parse("USD").unwrap();
        let entry = |account, direction, minor| Entry {
            account,
            direction,
            amount: Money::from_minor(minor, usd),
        };
        let tx = |entries| {
            LedgerTransaction::new(
                "t".into(),
                "e".into(),
                AccountId::parse("a").unwrap(),
                None,
                String::new(),
                entries,
            )
        };
        let bad = tx(vec![
            entry(LedgerAccount::PspReceivable, Direction::Debit, 100),
            entry(LedgerAccount::PlatformFeeRevenue, Direction::Credit, 99),
        ]);
        assert!(matches!(bad, Err(PostingError::Unbalanced { .. })));
        let one_sided = tx(vec![entry(LedgerAccount::PspReceivable, Direction::Debit, 100)]);
        assert!(matches!(one_sided, Err(PostingError::Unbalanced { .. })));
        let zero = tx(vec![
            entry(LedgerAccount::PspReceivable, Direction::Debit, 0),
            entry(LedgerAccount::PlatformFeeRevenue, Direction::Credit, 0),
        ]);
        assert!(matches!(zero, Err(PostingError::Unbalanced { .. })));
        assert!(tx(vec![
            entry(LedgerAccount::PspReceivable, Direction::Debit, 100),
            entry(LedgerAccount::PlatformFeeRevenue, Direction::Credit, 100),
        ])
        .is_ok());
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
}
