//! Running balances: per account and currency, the posted debit and credit totals, kept next
//! to the entries and updated in the same transaction as each ledger transaction (as
//! TigerBeetle's accounts carry `debits_posted`/`credits_posted`). An account's balance is then
//! a read of a few items, never a sum over its history.
//!
//! Accounts every payment touches (the platform's) would make every ledger write contend for
//! one item, so their totals are split over shards; a write adds to one shard, a read sums them.

use std::collections::BTreeMap;

use super::{Direction, LedgerAccount, LedgerTransaction};
use crate::domain::currency::Currency;

/// Shards of an account touched by every payment (`psp_receivable`, `platform_fee_revenue`, …).
pub const PLATFORM_SHARDS: u32 = 16;
/// Shards of a seller's account: only that seller's payments contend for it.
pub const SELLER_SHARDS: u32 = 4;

pub fn shard_count(account: &LedgerAccount) -> u32 {
    match account {
        LedgerAccount::SellerPayable(_) | LedgerAccount::SellerPayoutClearing(_) => SELLER_SHARDS,
        LedgerAccount::PspReceivable
        | LedgerAccount::PlatformFeeRevenue
        | LedgerAccount::Bank(_)
        | LedgerAccount::Refunds
        | LedgerAccount::PspFeeExpense
        | LedgerAccount::BankInTransit
        | LedgerAccount::Suspense => PLATFORM_SHARDS,
    }
}

/// Posted totals in minor units, and how many entries made them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub debits_minor: i64,
    pub credits_minor: i64,
    pub entries: i64,
}

impl Totals {
    /// Adds `other`; `None` on overflow.
    pub fn checked_add(self, other: Totals) -> Option<Totals> {
        Some(Totals {
            debits_minor: self.debits_minor.checked_add(other.debits_minor)?,
            credits_minor: self.credits_minor.checked_add(other.credits_minor)?,
            entries: self.entries.checked_add(other.entries)?,
        })
    }

    /// The balance on the account's normal side (debits − credits for a debit-normal account).
    pub fn balance_minor(&self, normal: Direction) -> Option<i64> {
        match normal {
            Direction::Debit => self.debits_minor.checked_sub(self.credits_minor),
            Direction::Credit => self.credits_minor.checked_sub(self.debits_minor),
        }
    }
}

/// What one transaction adds to each (account, currency): one item update per pair, since a
/// DynamoDB transaction may touch an item only once.
pub fn deltas(tx: &LedgerTransaction) -> Option<BTreeMap<(LedgerAccount, Currency), Totals>> {
    let mut out: BTreeMap<(LedgerAccount, Currency), Totals> = BTreeMap::new();
    for e in &tx.entries {
        let add = match e.direction {
            Direction::Debit => Totals {
                debits_minor: e.amount.minor(),
                credits_minor: 0,
                entries: 1,
            },
            Direction::Credit => Totals {
                debits_minor: 0,
                credits_minor: e.amount.minor(),
                entries: 1,
            },
        };
        let slot = out.entry((e.account.clone(), e.amount.currency())).or_default();
        *slot = slot.checked_add(add)?;
    }
    Some(out)
}

/// Sums an account's shards per currency (a read).
pub fn sum_shards(
    shards: impl IntoIterator<Item = (Currency, Totals)>,
) -> Option<BTreeMap<Currency, Totals>> {
    let mut out: BTreeMap<Currency, Totals> = BTreeMap::new();
    for (currency, t) in shards {
        let slot = out.entry(currency).or_default();
        *slot = slot.checked_add(t)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, SellerId};
    use crate::domain::ledger::Entry;
    use crate::domain::money::Money;

    #[test]
    fn deltas_fold_entries_per_account_and_currency() {
        let usd = Currency::parse("USD").unwrap();
        let seller = LedgerAccount::SellerPayable(SellerId::parse("s").unwrap());
        let e = |account: &LedgerAccount, direction, minor| Entry {
            account: account.clone(),
            direction,
            amount: Money::from_minor(minor, usd),
        };
        let tx = LedgerTransaction::new(
            "t".into(),
            "e".into(),
            AccountId::parse("a").unwrap(),
            None,
            String::new(),
            vec![
                e(&LedgerAccount::PspReceivable, Direction::Debit, 100),
                e(&seller, Direction::Credit, 60),
                e(&seller, Direction::Credit, 38),
                e(&LedgerAccount::PlatformFeeRevenue, Direction::Credit, 2),
            ],
        )
        .unwrap();
        let d = deltas(&tx).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[&(seller.clone(), usd)],
            Totals {
                debits_minor: 0,
                credits_minor: 98,
                entries: 2
            }
        );
        let sum = sum_shards([
            (usd, d[&(seller, usd)]),
            (usd, d[&(LedgerAccount::PspReceivable, usd)]),
        ])
        .unwrap();
        assert_eq!(sum[&usd].balance_minor(Direction::Credit), Some(-2));
        assert_eq!(shard_count(&LedgerAccount::PspReceivable), PLATFORM_SHARDS);
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let big = Totals {
            debits_minor: i64::MAX,
            credits_minor: 0,
            entries: 1,
        };
        assert_eq!(big.checked_add(big), None);
        assert_eq!(
            Totals {
                debits_minor: i64::MIN,
                credits_minor: 1,
                entries: 0
            }
            .balance_minor(Direction::Debit),
            None
        );
    }
}
