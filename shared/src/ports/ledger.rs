//! The ledger and the wallets: what the consumers write and the read APIs read.

use std::collections::BTreeMap;
use std::future::Future;

use super::StoreError;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, PaymentOrderId, SellerId};
use crate::domain::ledger::balances::Totals;
use crate::domain::ledger::{Entry, LedgerAccount, LedgerTransaction, WalletChange, WalletFigures};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    /// Already there (a redelivered event): nothing new was written.
    AlreadyApplied,
}

/// A page of items and the cursor for the next one (`None`: the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

pub trait LedgerWriter: Send + Sync {
    /// Appends one balanced transaction with all its entries, and adds them to the accounts'
    /// running totals, atomically, if its id is new.
    fn append(&self, tx: &LedgerTransaction) -> impl Future<Output = Result<Written, StoreError>> + Send;
}

pub trait WalletWriter: Send + Sync {
    /// Applies each change to its seller's wallet, once per event (`event_id`).
    fn apply_wallet_changes(
        &self,
        event_id: &str,
        account_id: &AccountId,
        changes: &[WalletChange],
        now: &str,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;
}

pub trait LedgerReader: Send + Sync {
    /// A seller's wallet: its figures per currency (empty: no wallet yet).
    fn wallet_balances(
        &self,
        account_id: &AccountId,
        seller_id: &SellerId,
    ) -> impl Future<Output = Result<Vec<WalletFigures>, StoreError>> + Send;

    /// The caller's ledger transactions of one payment order, a page at a time.
    fn transactions_for_order(
        &self,
        account_id: &AccountId,
        payment_order_id: &PaymentOrderId,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<LedgerTransaction>, StoreError>> + Send;

    /// An account's running totals per currency (its shards summed): a few items, whatever
    /// the number of entries.
    fn account_totals(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
    ) -> impl Future<Output = Result<BTreeMap<Currency, Totals>, StoreError>> + Send;

    /// One page of an account's entries, oldest first, as (transaction id, created_at, entry).
    fn account_entries(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<(String, String, Entry)>, StoreError>> + Send;
}

impl<T: LedgerWriter + ?Sized> LedgerWriter for &T {
    fn append(&self, tx: &LedgerTransaction) -> impl Future<Output = Result<Written, StoreError>> + Send {
        (**self).append(tx)
    }
}

impl<T: WalletWriter + ?Sized> WalletWriter for &T {
    fn apply_wallet_changes(
        &self,
        event_id: &str,
        account_id: &AccountId,
        changes: &[WalletChange],
        now: &str,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send {
        (**self).apply_wallet_changes(event_id, account_id, changes, now)
    }
}
