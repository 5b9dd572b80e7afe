//! The reconciliation API's capabilities: runs and breaks read by id and listed for an
//! account, and a person's resolution of a break (the run itself is `reconciliation`'s).

use std::future::Future;

use chrono::{DateTime, Utc};

use super::idempotency::Begin;
use super::ledger::Page;
use super::StoreError;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, ApiKeyId, BreakId, ReconRunId};
use crate::domain::reconciliation::{Break, BreakStatus, BreakType, Resolution, Run};

/// A person's resolution of a break, as recorded (an append-only entry, and on the break).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolutionEntry {
    pub resolution: Resolution,
    pub note: Option<String>,
    /// The API key that resolved it.
    pub resolved_by: ApiKeyId,
    pub resolved_at: DateTime<Utc>,
}

/// A break as the API shows it: the break and, once a person resolved it, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakRecord {
    pub brk: Break,
    pub resolution: Option<ResolutionEntry>,
}

/// Which of an account's breaks a list wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BreakFilter {
    pub run_id: Option<ReconRunId>,
    pub status: Option<BreakStatus>,
    pub kind: Option<BreakType>,
}

/// Runs and breaks by id: another account's is `None`, as an unknown one.
pub trait ReconReader: Send + Sync {
    fn get_run(
        &self,
        account: &AccountId,
        id: &ReconRunId,
    ) -> impl Future<Output = Result<Option<Run>, StoreError>> + Send;

    fn get_break(
        &self,
        account: &AccountId,
        id: &BreakId,
    ) -> impl Future<Output = Result<Option<BreakRecord>, StoreError>> + Send;
}

/// The runs and breaks lists (cursor-paged like the other lists).
pub trait ReconLists: Send + Sync {
    /// An account's runs, newest first.
    fn list_runs(
        &self,
        account: &AccountId,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Run>, StoreError>> + Send;

    /// An account's breaks, by run then break id. Filters apply after the limit: a page may
    /// hold fewer, and the cursor goes on.
    fn list_breaks(
        &self,
        account: &AccountId,
        filter: &BreakFilter,
        limit: i32,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<BreakRecord>, StoreError>> + Send;
}

pub trait BreakResolutions: Send + Sync {
    /// Atomically: claims the idempotency record (completed with its answer), moves the break
    /// from `open` to `resolved` with `entry` on it, and appends `entry` as its own item.
    /// `Begin::Refused` (a conflict, `break_not_open`) when the break is no longer open.
    fn resolve_break(
        &self,
        record: &IdempotencyRecord,
        brk: &Break,
        entry: &ResolutionEntry,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;
}
