//! Payout storage (the sellers' payout accounts, their wallets as a payout reads them, the
//! payouts), and payouts' view of the PSP (Connect): the seller's connected account, the
//! transfer to it, its payout to the bank, and the reversal of a bounced payout's transfer.
//! Each PSP call is idempotent by the key its request carries.

use std::collections::HashMap;
use std::future::Future;

use super::idempotency::Begin;
use super::{Applied, StoreError};
use crate::domain::currency::Currency;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, PayoutId, SellerId};
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::schedule::WalletCandidate;
use crate::domain::payouts::{
    Available, Payout, PayoutStatus, PspAccount, PspPayout, PspPayoutRequest, PspReversal,
    PspReversalRequest, PspTransfer, PspTransferRequest,
};
use crate::domain::psp::{PspAccountId, PspError};

pub trait Payouts: Send + Sync {
    /// The seller's connected account at the PSP, if one was recorded.
    fn payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
    ) -> impl Future<Output = Result<Option<PspAccountId>, StoreError>> + Send;

    /// Records (or replaces) the seller's connected account.
    fn put_payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        psp_account: &PspAccountId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The seller's wallet in `currency` as it is now, if it has one.
    fn wallet_available(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        currency: Currency,
    ) -> impl Future<Output = Result<Option<Available>, StoreError>> + Send;

    /// Atomically: claims the idempotency record, creates the payout (`PENDING`), moves its
    /// amount from the wallet's available to held on condition that `available ≥ amount`, and
    /// writes the `PAYOUT_REQUESTED` outbox record. `Begin::Refused` (`balance_insufficient`,
    /// naming what is available) when the wallet no longer has it.
    fn begin_payout(
        &self,
        record: &IdempotencyRecord,
        payout: &Payout,
        outbox: &OutboxEvent,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    fn get_payout(&self, id: &PayoutId) -> impl Future<Output = Result<Option<Payout>, StoreError>> + Send;

    /// Marks a `PENDING` payout as being sent (the executor is about to ask the PSP), so it
    /// can no longer be canceled. `false` if it is no longer `PENDING`.
    fn mark_payout_sending(&self, id: &PayoutId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Cancels a payout that is `PENDING` and not yet being sent: `payout` (now `CANCELED`)
    /// and its outbox record in one transaction; `false` if it was no longer cancelable
    /// (nothing written).
    fn cancel_payout(
        &self,
        payout: &Payout,
        outbox: &OutboxEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes a payout's move from `from` with its outbox record, and the PSP event's marker
    /// when a webhook moved it, in one transaction conditional on the payout still being in
    /// `from` and the outbox record (and the marker) being new. `Conflict`: it moved meanwhile
    /// or this step was recorded before (nothing written; read it again); `Duplicate`: the
    /// event was applied before.
    fn save_payout_move(
        &self,
        payout: &Payout,
        from: PayoutStatus,
        outbox: &OutboxEvent,
        psp_event_id: Option<&str>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;
}

/// A seller's payouts, a page at a time.
pub trait PayoutReader: Send + Sync {
    /// The seller's payouts, oldest first, only those in `status` if given.
    fn list_payouts(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        status: Option<PayoutStatus>,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<super::Page<Payout>, StoreError>> + Send;
}

pub trait PayoutPsp: Send + Sync {
    /// The connected account, or `None` if the PSP has no such account.
    fn account(&self, id: &PspAccountId)
        -> impl Future<Output = Result<Option<PspAccount>, PspError>> + Send;

    fn create_transfer(
        &self,
        request: &PspTransferRequest,
    ) -> impl Future<Output = Result<PspTransfer, PspError>> + Send;

    /// The payout, made as the connected account.
    fn create_payout(
        &self,
        request: &PspPayoutRequest,
    ) -> impl Future<Output = Result<PspPayout, PspError>> + Send;

    fn reverse_transfer(
        &self,
        request: &PspReversalRequest,
    ) -> impl Future<Output = Result<PspReversal, PspError>> + Send;
}

/// What the payout scheduler reads: wallets a page at a time (a scan split into segments that
/// run in parallel), and the payout accounts of a page's sellers at once.
pub trait PayoutScan: Send + Sync {
    /// Wallets with something available, from `cursor` (an opaque position from a previous
    /// page) in `segment` of `segments`. The page's `next_cursor` is `None` at the segment's
    /// end.
    fn wallet_page(
        &self,
        segment: u32,
        segments: u32,
        cursor: Option<&str>,
        limit: i32,
    ) -> impl Future<Output = Result<super::Page<WalletCandidate>, StoreError>> + Send;

    /// The payout accounts recorded for these sellers (those without one are absent).
    fn payout_accounts(
        &self,
        sellers: &[(AccountId, SellerId)],
    ) -> impl Future<Output = Result<HashMap<(AccountId, SellerId), PspAccountId>, StoreError>> + Send;
}
