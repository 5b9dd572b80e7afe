//! Reconciliation: the settlement files (S3), the runs, breaks and marks (DynamoDB), our
//! records as matching sees them, and the PSP's balance.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::ids::{AccountId, CheckoutId, PayoutId, ReconRunId, RefundId};
use crate::domain::pay_in::PspNotice;
use crate::domain::psp::{PspAccountId, PspEventId, PspPayoutId, PspRefundId, PspSessionId};
use crate::domain::reconciliation::row::Category;
use crate::domain::reconciliation::{Break, BreakType, Interval, Mark, OurRecord, RecordRef, Run};

/// One CSV record of a file, as text, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvRecord {
    pub line: u64,
    pub fields: Vec<String>,
}

/// A file's records, read as they stream in (never the whole file in memory).
pub trait CsvRecords: Send {
    /// The next record; `Ok(None)` at the end. `Err(Malformed)` for a record that is not
    /// CSV (bad UTF-8): the reading goes on after it.
    fn next_record(&mut self) -> impl Future<Output = Result<Option<CsvRecord>, ReadError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// This record is not CSV text; the next one may be.
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    /// The file could not be read (the store's fault): retry the run.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub trait SettlementFiles: Send + Sync {
    type Records: CsvRecords;

    /// The object's SHA-256 in hex: its stored checksum if it has one, else by reading it.
    fn sha256(&self, bucket: &str, key: &str) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The interval its uploader recorded (object metadata `interval-start`/`interval-end`).
    fn interval(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Interval>, StoreError>> + Send;

    fn open(&self, bucket: &str, key: &str)
        -> impl Future<Output = Result<Self::Records, StoreError>> + Send;

    /// Writes a run's report (`reports/<run_id>.csv`).
    fn put_report(
        &self,
        bucket: &str,
        key: &str,
        csv: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Our records and marks, found by [`ReconStore::lookup`].
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    pub records: HashMap<RecordRef, OurRecord>,
    /// The marks other runs left in the windows asked for, by balance transaction id.
    pub marks: HashMap<String, Mark>,
}

/// A page of [`ReconStore::posted_in`].
#[derive(Debug, Clone, Default)]
pub struct PostedPage {
    pub records: Vec<(DateTime<Utc>, OurRecord, Category)>,
    pub next: Option<String>,
}

/// What [`ReconStore::begin_run`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunBegun {
    /// New: go.
    Started,
    /// A run of this content was interrupted (a crash, the store down): go again; every write
    /// is idempotent.
    Resumed(Box<Run>),
    /// This content was reconciled before: nothing to do.
    Finished(Box<Run>),
}

pub trait ReconStore: Send + Sync {
    fn begin_run(&self, run: &Run) -> impl Future<Output = Result<RunBegun, StoreError>> + Send;

    fn finish_run(&self, run: &Run) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn run(
        &self,
        account: &AccountId,
        id: &ReconRunId,
    ) -> impl Future<Output = Result<Option<Run>, StoreError>> + Send;

    /// Our records (any of `refs`, in bounded batches), and the marks other runs than `run`
    /// left on `account`'s balance transactions created in `windows` (see
    /// [`crate::domain::reconciliation::mark_window`]; a run knows its own lines itself).
    fn lookup(
        &self,
        account: &AccountId,
        run: &ReconRunId,
        refs: &[RecordRef],
        windows: &[String],
    ) -> impl Future<Output = Result<Lookup, StoreError>> + Send;

    /// The record that owns a PSP object id (`re_…`, `tr_…`, a session's `cs_…`), when the
    /// row has no metadata.
    fn record_by_psp_id(
        &self,
        psp_id: &str,
    ) -> impl Future<Output = Result<Option<RecordRef>, StoreError>> + Send;

    /// Marks balance transactions reconciled: each `(window, mark)` is kept with the marks of
    /// its window, one write per window (rewriting the same marks is a no-op).
    fn put_marks(
        &self,
        account: &AccountId,
        marks: &[(String, Mark)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records breaks, each once (a retried run rewrites the same ids to the same content).
    fn put_breaks(&self, breaks: &[Break]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One page of the money-moving records of ours posted in `interval` (from the ledger's
    /// `psp_receivable` lines, after position `after`): when, which record, and the category of
    /// the row it should have; and the position of the next page (`None`: the last).
    fn posted_in(
        &self,
        account: &AccountId,
        interval: &Interval,
        after: Option<String>,
    ) -> impl Future<Output = Result<PostedPage, StoreError>> + Send;

    /// Our ledger's `psp_receivable` per currency (minor units, debit-normal).
    fn psp_receivable(
        &self,
        account: &AccountId,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, StoreError>> + Send;

    /// A run's breaks, at most `limit` of them, by line (for its report).
    fn breaks_of(
        &self,
        run: &ReconRunId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Break>, StoreError>> + Send;
}

/// The PSP as reconciliation needs it.
pub trait ReconPsp: Send + Sync {
    /// The platform's balance, available + pending, per currency (minor units).
    fn balance(&self) -> impl Future<Output = Result<BTreeMap<String, i64>, String>> + Send;

    /// The checkout session that created payment intent `payment_intent`, if any: how a
    /// charge row without our metadata is traced to our checkout.
    fn session_of(&self, payment_intent: &str)
        -> impl Future<Output = Result<Option<String>, String>> + Send;
}

/// Counts of a run's breaks by type, for the API.
pub type BreakCounts = BTreeMap<BreakType, u64>;

/// The PSP's events, for repairing webhooks that never arrived: each as the webhook would
/// have parsed it, oldest first.
pub trait PspEvents: Send + Sync {
    /// The events about checkout session `session` since `since`.
    fn session_events(
        &self,
        session: &PspSessionId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(PspEventId, PspNotice)>, String>> + Send;

    /// The events about refund `refund` since `since`.
    fn refund_events(
        &self,
        refund: &PspRefundId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(PspEventId, PspNotice)>, String>> + Send;

    /// The events about connected account `account`'s payout `payout` since `since`.
    fn payout_events(
        &self,
        payout: &PspPayoutId,
        account: &PspAccountId,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(PspEventId, PspNotice)>, String>> + Send;

    /// The events of the kinds we act on that the PSP has not delivered to us since `since`
    /// (Stripe's `delivery_success=false`).
    fn undelivered(
        &self,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(PspEventId, PspNotice)>, String>> + Send;
}

/// A record of ours that waits on the PSP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stuck {
    Checkout(CheckoutId),
    Refund {
        id: RefundId,
        psp: PspRefundId,
        since: DateTime<Utc>,
    },
    Payout {
        id: PayoutId,
        psp: PspPayoutId,
        account: PspAccountId,
        since: DateTime<Utc>,
    },
}

pub trait StuckRecords: Send + Sync {
    /// What has waited on the PSP since before `before`, oldest first per kind, at most
    /// `limit` of each kind.
    fn stuck(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Stuck>, StoreError>> + Send;
}
