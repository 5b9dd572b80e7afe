//! One reconciliation run (design §10): a settlement file, streamed a chunk of rows at a time.
//!
//! Each chunk: the rows parsed (a bad row is a `malformed_row` break, and the file goes on),
//! our records and the marks of the rows' ten-second windows read at once, each row judged, then written
//! in this order, each write idempotent so a retried run (the store down, a crash) redoes the
//! same writes:
//! 1. the ledger: the platform's bank payouts and unexplained money (one transaction per
//!    balance transaction);
//! 2. the breaks (ids from the run and the line);
//! 3. the marks: each balance transaction reconciled, with its line and record, kept by the
//!    ten seconds in which the PSP created it (one write per window of the chunk, not one per
//!    row).
//!
//! A chunk's writes run on their own task while the next chunks are read and judged (at most
//! [`WRITES_IN_FLIGHT`] at once). What this file's earlier lines reconciled is kept in memory
//! for the whole run ([`Seen`]), so a duplicate in the file is found however far apart.
//! A balance transaction an earlier run reconciled is found by its mark; another payment of a
//! record we hold (a second charge of one checkout) by the PSP id the record keeps.
//!
//! Then our side: every record of ours posted inside the file's interval with no row is
//! `missing_at_psp` (or `expected` inside the settling window; one posted just after the
//! interval began may have its row in the file before, which its marks say); then our
//! `psp_receivable` next to the PSP's balance, the report in S3, and the run `SUCCEEDED`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::app::consumers::Failure;
use crate::domain::currency::Currency;
use crate::domain::ids::AccountId;
use crate::domain::reconciliation::books::{fee_cost, fee_postings, is_unexplained, row_posting};
use crate::domain::reconciliation::row::{signed_text, Columns, SettlementRow};
use crate::domain::reconciliation::{
    judge, mark_key, mark_window, missing_at_psp, named_record, row_kind, row_values, Break, BreakStatus,
    BreakType, FileRef, Interval, Mark, OurRecord, RecordRef, RowKind, Run, RunStatus, Verdict, MARK_WINDOW,
};
use crate::domain::time::format_time;
use crate::ports::reconciliation::{
    CsvRecord, CsvRecords, Lookup, ReadError, ReconPsp, ReconStore, RunBegun, SettlementFiles,
};
use crate::ports::{LedgerWriter, StoreError};

use super::repair::Repairer;

/// Rows judged together: one batch read of their records and marks, and their writes.
pub const CHUNK_ROWS: usize = 250;

/// The most breaks a run's report lists.
pub const REPORT_BREAKS_MAX: usize = 50_000;

/// The longest raw line a `malformed_row` break keeps.
const RAW_CHARS_MAX: usize = 300;

/// What a run needs.
pub struct Reconciler<'a, F, S, L, P, R> {
    pub files: &'a F,
    pub store: &'a S,
    pub ledger: &'a L,
    pub psp: &'a P,
    pub repair: &'a R,
    /// Records this close to the interval's end are `expected` in the next file.
    pub settling: chrono::Duration,
}

/// How a run ended, for the caller's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Done(Box<Run>),
    /// The same content was reconciled before, by this run.
    AlreadyDone(Box<Run>),
}

fn retryable(e: StoreError) -> Failure {
    Failure::from(e)
}

impl<F, S, L, P, R> Reconciler<'_, F, S, L, P, R>
where
    F: SettlementFiles,
    S: ReconStore + Clone + 'static,
    L: LedgerWriter + Clone + 'static,
    P: ReconPsp,
    R: Repairer,
{
    /// Reconciles the file at `bucket`/`key` for `account`. A failure on our side is
    /// `Retryable` (the queue brings the file back); a bad file is a `FAILED` run, not a
    /// failure.
    pub async fn reconcile(
        &self,
        account: AccountId,
        bucket: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<RunOutcome, Failure> {
        let sha256 = self.files.sha256(bucket, key).await.map_err(retryable)?;
        let interval = match self.files.interval(bucket, key).await.map_err(retryable)? {
            Some(i) => Some(i),
            None => Interval::day_of_key(key),
        };
        let file = FileRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            sha256,
        };
        let mut run = Run::start(account, file, interval, now);
        match self.store.begin_run(&run).await.map_err(retryable)? {
            RunBegun::Finished(first) => {
                tracing::info!(run_id = %first.id, key, "this content was reconciled before: nothing to do");
                return Ok(RunOutcome::AlreadyDone(first));
            }
            RunBegun::Resumed(earlier) => {
                tracing::warn!(run_id = %earlier.id, "resuming an interrupted run");
                run.started_at = earlier.started_at;
            }
            RunBegun::Started => {}
        }
        let mut records = self.files.open(bucket, key).await.map_err(retryable)?;
        let mut seen = Seen::default();
        match self.rows(&mut run, &mut records, &mut seen).await {
            Ok(true) => {}
            Ok(false) => {
                run.finished_at = Some(now_or(now));
                self.store.finish_run(&run).await.map_err(retryable)?;
                return Ok(RunOutcome::Done(Box::new(run)));
            }
            Err(e) => return Err(e),
        }
        if let Some(interval) = run.interval {
            self.our_side(&mut run, &interval, &seen)
                .await
                .map_err(retryable)?;
        }
        run.psp_receivable = self
            .store
            .psp_receivable(&run.account_id)
            .await
            .map_err(retryable)?;
        run.psp_balance = self
            .psp
            .balance()
            .await
            .map_err(|e| Failure::Retryable(format!("the PSP's balance: {e}")))?;
        // The report lists the breaks up to a bound (a file of nothing but bad rows must not
        // make it unbounded in memory); past it, a last line says how many more the API has.
        let breaks = self
            .store
            .breaks_of(&run.id, REPORT_BREAKS_MAX)
            .await
            .map_err(retryable)?;
        let mut report = report_csv(&breaks);
        let total = run.tally.breaks_total() as usize;
        if total > breaks.len() {
            report.extend_from_slice(
                format!(
                    "# {} more break(s): GET /v1/reconciliation/breaks?run_id={}\n",
                    total - breaks.len(),
                    run.id
                )
                .as_bytes(),
            );
        }
        self.files
            .put_report(&run.file.bucket, &format!("reports/{}.csv", run.id), report)
            .await
            .map_err(retryable)?;
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(now_or(now));
        self.store.finish_run(&run).await.map_err(retryable)?;
        tracing::info!(
            run_id = %run.id, rows = run.tally.rows, matched = run.tally.matched,
            breaks = run.tally.breaks_total(), "reconciliation run succeeded"
        );
        Ok(RunOutcome::Done(Box::new(run)))
    }

    /// Streams the rows through the chunks. `Ok(false)`: the file is not a settlement report
    /// (the run is `FAILED` with the reason, nothing booked).
    async fn rows<C: CsvRecords>(
        &self,
        run: &mut Run,
        records: &mut C,
        seen: &mut Seen,
    ) -> Result<bool, Failure> {
        let header = match records.next_record().await {
            Ok(Some(r)) => r,
            // An empty file: a run of 0 rows.
            Ok(None) => return Ok(true),
            Err(ReadError::Malformed { reason, .. }) => {
                return Ok(fail(run, format!("not a CSV file: {reason}")));
            }
            Err(ReadError::Store(e)) => return Err(retryable(e)),
        };
        let columns = match Columns::from_header(header.fields.iter().map(String::as_str)) {
            Ok(c) => c,
            Err(e) => return Ok(fail(run, format!("not a settlement report: {e}"))),
        };
        let mut chunk: Vec<Parsed> = Vec::with_capacity(CHUNK_ROWS);
        let mut chunk_no = 0u64;
        // The PSP's fees of the rows seen first here, per currency: booked once the rows are
        // done, one transaction per currency for the whole file.
        let mut fees: BTreeMap<Currency, i64> = BTreeMap::new();
        // Up to WRITES_IN_FLIGHT chunks' writes go on while the next chunks are read and
        // judged.
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // Where the time goes, for the run's log line: reading the file, judging (its batch
        // reads included), waiting for earlier chunks' writes.
        let (mut reading, mut judging, mut waiting) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        loop {
            let t = Instant::now();
            let record = records.next_record().await;
            reading += t.elapsed();
            let next = match record {
                Ok(Some(CsvRecord { line, fields })) => {
                    let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
                    Some(
                        columns
                            .parse(line, &refs)
                            .map_err(|e| (line, raw(&refs), e.to_string())),
                    )
                }
                Ok(None) => None,
                Err(ReadError::Malformed { line, reason }) => Some(Err((line, String::new(), reason))),
                Err(ReadError::Store(e)) => return Err(retryable(e)),
            };
            let done = next.is_none();
            if let Some(r) = next {
                run.tally.rows += 1;
                chunk.push(r);
            }
            if chunk.len() == CHUNK_ROWS || (done && !chunk.is_empty()) {
                let t = Instant::now();
                let judged = self
                    .judge(run, std::mem::take(&mut chunk), seen, &mut fees)
                    .await?;
                judging += t.elapsed();
                let t = Instant::now();
                while in_flight.len() >= WRITES_IN_FLIGHT {
                    finish(in_flight.pop_front()).await?;
                }
                waiting += t.elapsed();
                let (store, ledger) = (self.store.clone(), self.ledger.clone());
                in_flight.push_back(InFlight {
                    task: tokio::spawn(async move { write(&store, &ledger, judged).await }),
                });
                chunk_no += 1;
            }
            if done {
                let t = Instant::now();
                while let Some(f) = in_flight.pop_front() {
                    finish(Some(f)).await?;
                }
                waiting += t.elapsed();
                // After every chunk's marks: a run cut short books nothing here, and going
                // again sums the same rows to the same transactions.
                let booked_at = format_time(Utc::now());
                for tx in fee_postings(&run.account_id, &run.id, &fees, &booked_at)
                    .map_err(|e| Failure::Poison(e.to_string()))?
                {
                    self.ledger.append(&tx).await.map_err(retryable)?;
                }
                tracing::info!(
                    run_id = %run.id, rows = run.tally.rows, chunks = chunk_no,
                    reading_ms = reading.as_millis() as u64, judging_ms = judging.as_millis() as u64,
                    waiting_for_writes_ms = waiting.as_millis() as u64, "rows done"
                );
                return Ok(true);
            }
        }
    }

    /// Judges one chunk: its rows' records and the marks of its windows read at once, each
    /// row's verdict, and what that writes. `seen`: what this file's earlier lines reconciled.
    async fn judge(
        &self,
        run: &mut Run,
        rows: Vec<Parsed>,
        seen: &mut Seen,
        fees: &mut BTreeMap<Currency, i64>,
    ) -> Result<ChunkWrites, Failure> {
        let now = Utc::now();
        let account = run.account_id.clone();
        // The record each row names (metadata first, then the PSP id it carries).
        let mut named: Vec<Option<RecordRef>> = Vec::with_capacity(rows.len());
        for r in &rows {
            let found = match r {
                Ok(row) => match named_record(row) {
                    Some(r) => Some(r),
                    None if matches!(row_kind(&row.category), RowKind::Record { .. }) => {
                        self.by_psp_id(row).await?
                    }
                    None => None,
                },
                Err(_) => None,
            };
            named.push(found);
        }
        let windows: Vec<String> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|row| mark_window(row.created)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let refs: Vec<RecordRef> = named.iter().flatten().cloned().collect();
        let Lookup { records, marks } = self
            .store
            .lookup(&account, &run.id, &refs, &windows)
            .await
            .map_err(retryable)?;

        let mut breaks = Vec::new();
        let mut new_marks: Vec<(String, Mark)> = Vec::new();
        let mut postings = Vec::new();
        for (r, reference) in rows.into_iter().zip(named) {
            let row = match r {
                Ok(row) => row,
                Err((line, raw, reason)) => {
                    let values = BTreeMap::from([("raw".to_owned(), raw)]);
                    run.tally.add_break(BreakType::MalformedRow);
                    breaks.push(Break::of_row(
                        &run.id,
                        &account,
                        BreakType::MalformedRow,
                        reason,
                        line,
                        values,
                        now,
                    ));
                    continue;
                }
            };
            let key = row_mark_key(&row, reference.as_ref());
            // An earlier line of this file with the same key reads as an earlier mark; else
            // this balance transaction's own mark, if a run reconciled it.
            let earlier_here = seen.line(&key).filter(|l| *l != row.line).map(|l| Mark {
                run_id: run.id.clone(),
                balance_transaction_id: String::new(),
                line: l,
                record: None,
            });
            let mark = earlier_here.or_else(|| marks.get(&row.balance_transaction_id).cloned());
            let record = reference.as_ref().and_then(|r| records.get(r));
            let fresh = mark
                .as_ref()
                .is_none_or(|m| m.run_id == run.id && m.line == row.line);
            let verdict = match row_kind(&row.category) {
                RowKind::Record { .. } if record.is_some() => {
                    judge(&row, record, mark.as_ref(), &run.id, &account)
                }
                // Not ours (or no record): seen before by its balance transaction, it is a
                // duplicate like any other row.
                _ if !fresh => Verdict::Break {
                    kind: BreakType::Duplicate,
                    reason: format!(
                        "balance transaction {} was already seen (line {} of run {})",
                        row.balance_transaction_id,
                        mark.as_ref().map_or(0, |m| m.line),
                        mark.as_ref().map_or(run.id.as_str(), |m| m.run_id.as_str())
                    ),
                },
                RowKind::Record { .. } => judge(&row, None, None, &run.id, &account),
                _ if is_unexplained(&row.category) => Verdict::Break {
                    kind: BreakType::UnexplainedAdjustment,
                    reason: format!(
                        "{} of {} booked to suspense: nothing of ours explains it",
                        row.category.as_str(),
                        signed_text(row.gross)
                    ),
                },
                _ => Verdict::Matched,
            };
            let verdict = match verdict {
                Verdict::MissedWebhook => self.repair_missed(run, &row, record, &mut breaks, now).await?,
                v => v,
            };
            match &verdict {
                Verdict::Foreign => {
                    run.tally.foreign += 1;
                    continue;
                }
                Verdict::Break {
                    kind: BreakType::Duplicate,
                    reason,
                } => {
                    run.tally.add_break(BreakType::Duplicate);
                    breaks.push(
                        Break::of_row(
                            &run.id,
                            &account,
                            BreakType::Duplicate,
                            reason.clone(),
                            row.line,
                            row_values(&row),
                            now,
                        )
                        .with_ours(record),
                    );
                    // Booked with its first row; nothing is booked twice.
                    continue;
                }
                Verdict::Break { kind, reason } => {
                    run.tally.add_break(*kind);
                    breaks.push(
                        Break::of_row(
                            &run.id,
                            &account,
                            *kind,
                            reason.clone(),
                            row.line,
                            row_values(&row),
                            now,
                        )
                        .with_ours(record),
                    );
                }
                Verdict::Matched => {
                    if matches!(row_kind(&row.category), RowKind::Record { .. }) {
                        run.tally.matched += 1;
                    }
                }
                Verdict::MissedWebhook => unreachable!("repaired above"),
            }
            // First time this row is seen: its fee and its own posting are booked now.
            let cost = fee_cost(&row);
            if cost.minor() != 0 {
                *fees.entry(row.currency).or_default() += cost.minor();
                run.tally.fees_booked += 1;
            }
            if let Some(tx) = row_posting(&account, &run.id, &row, &format_time(now))
                .map_err(|e| Failure::Poison(e.to_string()))?
            {
                postings.push(tx);
            }
            seen.insert(&key, row.line);
            new_marks.push((
                mark_window(row.created),
                Mark {
                    run_id: run.id.clone(),
                    balance_transaction_id: row.balance_transaction_id.clone(),
                    line: row.line,
                    record: reference.as_ref().map(|r| mark_key(r, &row.category)),
                },
            ));
        }
        Ok(ChunkWrites {
            account,
            postings,
            breaks,
            marks: new_marks,
        })
    }

    /// A charge row whose checkout still waits for its webhook: the PSP's event, applied as
    /// the webhook would have; the break is recorded `auto_resolved`. If the event cannot be
    /// found or applied, the break stays open as a status mismatch.
    async fn repair_missed(
        &self,
        run: &mut Run,
        row: &SettlementRow,
        record: Option<&OurRecord>,
        breaks: &mut Vec<Break>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, Failure> {
        let Some(RecordRef::Checkout(checkout)) = record.map(|r| &r.reference) else {
            return Ok(Verdict::Break {
                kind: BreakType::StatusMismatch,
                reason: "the record waits for a webhook but is not a checkout".into(),
            });
        };
        match self.repair.settle_checkout(checkout, now).await? {
            Ok(note) => {
                run.tally.auto_resolved += 1;
                run.tally.add_break(BreakType::StatusMismatch);
                let mut b = Break::of_row(
                    &run.id,
                    &run.account_id,
                    BreakType::StatusMismatch,
                    "the PSP charged but its webhook never arrived (our checkout was EXECUTING)".into(),
                    row.line,
                    row_values(row),
                    now,
                )
                .with_ours(record);
                b.status = BreakStatus::AutoResolved;
                b.resolution_note = Some(note);
                breaks.push(b);
                Ok(Verdict::Matched)
            }
            Err(why) => Ok(Verdict::Break {
                kind: BreakType::StatusMismatch,
                reason: format!("the PSP charged, our checkout is EXECUTING, and the repair failed: {why}"),
            }),
        }
    }

    /// A row without our metadata: its record through the PSP's ids — a refund's `re_…` or a
    /// transfer's `tr_…` (our `by_psp_ref` index), a charge's payment intent through its
    /// checkout session (asked of the PSP).
    async fn by_psp_id(&self, row: &SettlementRow) -> Result<Option<RecordRef>, Failure> {
        let id = row.source_id.as_str();
        if id.starts_with("re_") || id.starts_with("tr_") {
            return self.store.record_by_psp_id(id).await.map_err(retryable);
        }
        if let (crate::domain::reconciliation::row::Category::Charge, Some(pi)) =
            (&row.category, &row.payment_intent_id)
        {
            let session = self
                .psp
                .session_of(pi)
                .await
                .map_err(|e| Failure::Retryable(format!("the PSP's session of {pi}: {e}")))?;
            if let Some(session) = session {
                return self.store.record_by_psp_id(&session).await.map_err(retryable);
            }
        }
        Ok(None)
    }

    /// Our records posted in the interval that no row reconciled.
    async fn our_side(&self, run: &mut Run, interval: &Interval, seen: &Seen) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut after: Option<String> = None;
        // A multi-seller checkout posts once per order, and its orders may fall on two pages:
        // each record is counted once (only the unreconciled ones are remembered).
        let mut counted: HashSet<String> = HashSet::new();
        let mut before: Option<HashSet<String>> = None;
        loop {
            let page = self
                .store
                .posted_in(&run.account_id, interval, after.take())
                .await?;
            let mut ours = Ours {
                seen,
                counted: &mut counted,
                before: &mut before,
            };
            for batch in page.records.chunks(CHUNK_ROWS) {
                self.unreconciled(run, interval, batch, now, &mut ours).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Of `batch`, the records no row reconciled: breaks, or expected in the next file.
    async fn unreconciled(
        &self,
        run: &mut Run,
        interval: &Interval,
        batch: &[(
            DateTime<Utc>,
            OurRecord,
            crate::domain::reconciliation::row::Category,
        )],
        now: DateTime<Utc>,
        ours: &mut Ours<'_>,
    ) -> Result<(), StoreError> {
        let mut breaks = Vec::new();
        for (at, record, category) in batch {
            let key = mark_key(&record.reference, category);
            if ours.seen.contains(&key) || !ours.counted.insert(key.clone()) {
                continue;
            }
            // Posted by us just after the interval began, its row may be in the file before
            // (the PSP created it first): the marks of that file's last windows say.
            if *at < interval.start + self.settling {
                if ours.before.is_none() {
                    *ours.before = Some(self.marked_before(run, interval).await?);
                }
                if ours.before.as_ref().is_some_and(|b| b.contains(&key)) {
                    continue;
                }
            }
            match missing_at_psp(*at, interval, self.settling) {
                Some(true) => {
                    run.tally.add_break(BreakType::MissingAtPsp);
                    breaks.push(Break::of_record(
                        &run.id,
                        &run.account_id,
                        record,
                        category,
                        format!(
                            "our {} {} ({}, posted {}) has no {} row",
                            record.reference.kind(),
                            record.reference.as_str(),
                            record.status.as_str(),
                            format_time(*at),
                            category.as_str()
                        ),
                        now,
                    ));
                }
                Some(false) => run.tally.expected += 1,
                None => {}
            }
        }
        self.store.put_breaks(&breaks).await?;
        Ok(())
    }

    /// The records whose balance transactions, created in the settling window before
    /// `interval`, an earlier run reconciled.
    async fn marked_before(&self, run: &Run, interval: &Interval) -> Result<HashSet<String>, StoreError> {
        let mut windows = Vec::new();
        let mut at = interval.start - self.settling;
        while at < interval.start {
            windows.push(mark_window(at));
            at += MARK_WINDOW;
        }
        let marks = self
            .store
            .lookup(&run.account_id, &run.id, &[], &windows)
            .await?
            .marks;
        Ok(marks.into_values().filter_map(|m| m.record).collect())
    }
}

/// What our side needs of the rows: what they reconciled, the records already counted, and
/// (read once, when first needed) what the file before reconciled in its last windows.
struct Ours<'a> {
    seen: &'a Seen,
    counted: &'a mut HashSet<String>,
    before: &'a mut Option<HashSet<String>>,
}

/// What this file's lines reconciled, by [`row_mark_key`] (a record and category, or a
/// balance transaction of no record), with the first line of each: the whole run's, so a
/// duplicate is found however far apart, and our side knows which records had a row. A key is
/// held as 16 bytes of its SHA-256 (a collision is a 2^-128 chance) and its line in 4: some 20
/// to 40 bytes a row, the run's only memory that grows with the file.
#[derive(Default)]
pub(crate) struct Seen(HashMap<[u8; 16], u32>);

impl Seen {
    fn digest(key: &str) -> [u8; 16] {
        use sha2::Digest;
        let d = sha2::Sha256::digest(key.as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        first
    }

    fn line(&self, key: &str) -> Option<u64> {
        self.0.get(&Self::digest(key)).map(|l| u64::from(*l))
    }

    fn contains(&self, key: &str) -> bool {
        self.0.contains_key(&Self::digest(key))
    }

    /// The first line is kept.
    fn insert(&mut self, key: &str, line: u64) {
        let line = u32::try_from(line).unwrap_or(u32::MAX);
        self.0.entry(Self::digest(key)).or_insert(line);
    }
}

/// Chunks whose writes may be in flight at once.
const WRITES_IN_FLIGHT: usize = 4;

/// A chunk being written.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), Failure>>,
}

async fn finish(f: Option<InFlight>) -> Result<(), Failure> {
    match f {
        Some(f) => f
            .task
            .await
            .map_err(|e| Failure::Retryable(format!("a chunk's writes did not finish: {e}")))?,
        None => Ok(()),
    }
}

/// A chunk's writes, in their order: the ledger and the breaks, then the marks (a crash before
/// the marks leaves the rows to be judged again, and the ledger's ids make the second booking
/// a no-op).
async fn write<S: ReconStore, L: LedgerWriter>(store: &S, ledger: &L, w: ChunkWrites) -> Result<(), Failure> {
    let booking = async {
        for tx in &w.postings {
            ledger.append(tx).await?;
        }
        Ok::<(), StoreError>(())
    };
    let (booked, broke) = futures_util::future::join(booking, store.put_breaks(&w.breaks)).await;
    booked.map_err(retryable)?;
    broke.map_err(retryable)?;
    store.put_marks(&w.account, &w.marks).await.map_err(retryable)
}

/// A data row: parsed, or (line, raw text, why not).
type Parsed = Result<SettlementRow, (u64, String, String)>;

/// What judging a chunk writes.
struct ChunkWrites {
    account: AccountId,
    postings: Vec<crate::domain::ledger::LedgerTransaction>,
    breaks: Vec<Break>,
    marks: Vec<(String, Mark)>,
}

fn row_mark_key(row: &SettlementRow, reference: Option<&RecordRef>) -> String {
    match reference {
        Some(r) => mark_key(r, &row.category),
        None => format!("bt#{}", row.balance_transaction_id),
    }
}

fn fail(run: &mut Run, reason: String) -> bool {
    tracing::warn!(run_id = %run.id, reason = %reason, "reconciliation run failed");
    run.status = RunStatus::Failed;
    run.failure_reason = Some(reason);
    false
}

fn now_or(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc::now().max(now)
}

fn raw(fields: &[&str]) -> String {
    fields.join(",").chars().take(RAW_CHARS_MAX).collect()
}

/// The run's report: one line per break.
pub fn report_csv(breaks: &[Break]) -> Vec<u8> {
    let mut out = String::from(
        "break_id,type,status,line,reason,balance_transaction_id,reporting_category,currency,gross,our_kind,our_id,our_amount,our_status\n",
    );
    for b in breaks {
        let row = |k: &str| b.row.get(k).cloned().unwrap_or_default();
        let ours = |k: &str| b.ours.get(k).cloned().unwrap_or_default();
        let fields = [
            b.id.to_string(),
            b.kind.as_str().to_owned(),
            b.status.as_str().to_owned(),
            b.line.map(|l| l.to_string()).unwrap_or_default(),
            b.reason.clone(),
            row("balance_transaction_id"),
            row("reporting_category"),
            row("currency"),
            row("gross"),
            ours("kind"),
            ours("id"),
            ours("amount"),
            ours("status"),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
