//! What a settlement file books: the PSP's fees, the platform's payouts to its bank, and money
//! nobody explained. Each is a balanced ledger transaction with an id that derives from what
//! it books, so a retried run posts nothing twice.
//!
//! - **Fees.** A row's `fee` (and a `fee` row's whole net) is the PSP's: debit
//!   `psp_fee_expense`, credit `psp_receivable`. The fees of one chunk of rows are one
//!   transaction per currency, `ltx_pspfee_<run>_<chunk>_<currency>`; a row's fee is in a chunk
//!   only the first time that row is reconciled, so each balance transaction's fee is booked
//!   once. A negative fee (the PSP giving one back) is the mirror entries.
//! - **The platform's bank payouts** (`payout` rows, −A): debit `bank_in_transit`, credit
//!   `psp_receivable`; a `payout_reversal` (+A) the mirror. `ltx_bankpayout_<balance txn>`.
//! - **Adjustments** and categories we have no record for: `psp_receivable` against `suspense`,
//!   `ltx_suspense_<balance txn>`, and an `unexplained_adjustment` break for a person.

use std::collections::BTreeMap;

use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, ReconRunId};
use crate::domain::ledger::{Direction, Entry, LedgerAccount, LedgerTransaction, PostingError};
use crate::domain::money::Money;

use super::row::{Category, SettlementRow};
use super::{row_kind, RowKind};

/// What the PSP took as fees on this row (negative: gave back).
pub fn fee_cost(row: &SettlementRow) -> Money {
    match row_kind(&row.category) {
        // A fee row's amount is the fee itself: −net is what it cost.
        RowKind::Fee => Money::from_minor(row.fee.minor() - row.net.minor(), row.currency),
        _ => row.fee,
    }
}

/// Two entries moving `amount` (signed) from `credit` to `debit`; the mirror if negative.
fn pair(debit: LedgerAccount, credit: LedgerAccount, amount: Money) -> Vec<Entry> {
    let (debit, credit, amount) = if amount.minor() < 0 {
        (
            credit,
            debit,
            Money::from_minor(-amount.minor(), amount.currency()),
        )
    } else {
        (debit, credit, amount)
    };
    vec![
        Entry {
            account: debit,
            direction: Direction::Debit,
            amount,
        },
        Entry {
            account: credit,
            direction: Direction::Credit,
            amount,
        },
    ]
}

/// The fees of a run's first-time rows, one transaction per currency (none where they sum to
/// zero): a day's PSP fees as one expense per currency, as a bookkeeper would book them. A
/// run that goes again sums the same rows to the same transactions, with the same ids.
pub fn fee_postings(
    account: &AccountId,
    run: &ReconRunId,
    costs: &BTreeMap<Currency, i64>,
    at: &str,
) -> Result<Vec<LedgerTransaction>, PostingError> {
    costs
        .iter()
        .filter(|(_, minor)| **minor != 0)
        .map(|(currency, minor)| {
            LedgerTransaction::new(
                format!("ltx_pspfee_{run}_{}", currency.code()),
                format!("{run}:fees"),
                account.clone(),
                None,
                at.to_owned(),
                pair(
                    LedgerAccount::PspFeeExpense,
                    LedgerAccount::PspReceivable,
                    Money::from_minor(*minor, *currency),
                ),
            )
        })
        .collect()
}

/// What a row that is not a record of ours books, besides its fee: a bank payout or its
/// return, or unexplained money to suspense. `None` for a row about one of our records, for
/// a `fee` row (its fee is the whole of it) and for a zero amount.
pub fn row_posting(
    account: &AccountId,
    run: &ReconRunId,
    row: &SettlementRow,
    at: &str,
) -> Result<Option<LedgerTransaction>, PostingError> {
    if row.gross.minor() == 0 {
        return Ok(None);
    }
    let (id, entries) = match row_kind(&row.category) {
        // −A leaves the PSP for our bank: debit bank_in_transit, credit psp_receivable.
        RowKind::BankPayout => (
            format!("ltx_bankpayout_{}", row.balance_transaction_id),
            pair(
                LedgerAccount::BankInTransit,
                LedgerAccount::PspReceivable,
                Money::from_minor(-row.gross.minor(), row.currency),
            ),
        ),
        // +A arrives from nowhere we know: debit psp_receivable, credit suspense.
        RowKind::Unexplained => (
            format!("ltx_suspense_{}", row.balance_transaction_id),
            pair(LedgerAccount::PspReceivable, LedgerAccount::Suspense, row.gross),
        ),
        RowKind::Record { .. } | RowKind::Fee => return Ok(None),
    };
    LedgerTransaction::new(
        id,
        format!("{run}:{}", row.balance_transaction_id),
        account.clone(),
        None,
        at.to_owned(),
        entries,
    )
    .map(Some)
}

/// Whether a category books to suspense and opens an `unexplained_adjustment` break.
pub fn is_unexplained(category: &Category) -> bool {
    row_kind(category) == RowKind::Unexplained
}

#[cfg(test)]
mod tests {
    use super::super::row::Columns;
    use super::*;

    fn row(category: &str, gross: &str, fee: &str, net: &str) -> SettlementRow {
        let cols = Columns::from_header(
            "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
source_id,charge_id,payment_intent_id,automatic_payout_id"
                .split(','),
        )
        .unwrap();
        let line = format!(
            "txn_9,2026-11-30 10:00:00,2026-12-02 00:00:00,usd,{gross},{fee},{net},{category},x_1,,,"
        );
        cols.parse(2, &line.split(',').collect::<Vec<_>>()).unwrap()
    }

    fn net_of(tx: &LedgerTransaction, account: &LedgerAccount) -> i64 {
        tx.entries
            .iter()
            .filter(|e| &e.account == account)
            .map(|e| match e.direction {
                Direction::Debit => e.amount.minor(),
                Direction::Credit => -e.amount.minor(),
            })
            .sum()
    }

    #[test]
    fn fees_are_an_expense_against_the_psp_balance() {
        let acct = AccountId::parse("acct_1").unwrap();
        let run = ReconRunId::derived("f");
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(fee_cost(&row("charge", "100.00", "3.20", "96.80")).minor(), 320);
        assert_eq!(fee_cost(&row("refund", "-10.00", "0.00", "-10.00")).minor(), 0);
        assert_eq!(fee_cost(&row("fee", "-5.00", "0.00", "-5.00")).minor(), 500);
        let txs = fee_postings(&acct, &run, &BTreeMap::from([(usd, 820)]), "t").unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].id, format!("ltx_pspfee_{run}_USD"));
        assert_eq!(net_of(&txs[0], &LedgerAccount::PspFeeExpense), 820);
        assert_eq!(net_of(&txs[0], &LedgerAccount::PspReceivable), -820);
        // Fees given back: the mirror; nothing for a zero sum.
        let back = fee_postings(&acct, &run, &BTreeMap::from([(usd, -30)]), "t").unwrap();
        assert_eq!(net_of(&back[0], &LedgerAccount::PspReceivable), 30);
        assert!(fee_postings(&acct, &run, &BTreeMap::from([(usd, 0)]), "t")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bank_payouts_and_adjustments_book_once_per_balance_transaction() {
        let acct = AccountId::parse("acct_1").unwrap();
        let run = ReconRunId::derived("f");
        let out = row_posting(&acct, &run, &row("payout", "-500.00", "0", "-500.00"), "t")
            .unwrap()
            .unwrap();
        assert_eq!(out.id, "ltx_bankpayout_txn_9");
        assert_eq!(net_of(&out, &LedgerAccount::BankInTransit), 50_000);
        assert_eq!(net_of(&out, &LedgerAccount::PspReceivable), -50_000);
        let back = row_posting(&acct, &run, &row("payout_reversal", "500.00", "0", "500.00"), "t")
            .unwrap()
            .unwrap();
        assert_eq!(net_of(&back, &LedgerAccount::BankInTransit), -50_000);
        let adj = row_posting(&acct, &run, &row("adjustment", "-1.23", "0", "-1.23"), "t")
            .unwrap()
            .unwrap();
        assert_eq!(adj.id, "ltx_suspense_txn_9");
        assert_eq!(net_of(&adj, &LedgerAccount::PspReceivable), -123);
        assert_eq!(net_of(&adj, &LedgerAccount::Suspense), 123);
        assert!(
            row_posting(&acct, &run, &row("charge", "1.00", "0.33", "0.67"), "t")
                .unwrap()
                .is_none()
        );
        assert!(row_posting(&acct, &run, &row("fee", "-1.00", "0", "-1.00"), "t")
            .unwrap()
            .is_none());
        assert!(is_unexplained(&Category::parse("dispute")));
    }
}
