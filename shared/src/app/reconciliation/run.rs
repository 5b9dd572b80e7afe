//! One reconciliation run (design §10): a settlement file, streamed a chunk of rows at a time.
//!
//! Each chunk: the rows parsed (a bad row is a `malformed_row` break, and the file goes on),
//! our records and their marks read in one batch, each row judged, then written in this order,
//! each write idempotent so a retried run (the store down, a crash) redoes the same writes:
//! 1. the ledger: the chunk's PSP fees (one transaction per currency), the platform's bank
//!    payouts and unexplained money (one transaction per balance transaction);
//! 2. the breaks (ids from the run and the line);
//! 3. the marks: a record reconciled by this row, or a balance transaction seen.
//!
//! A chunk's writes run on their own task while the next chunks are read and judged (at most
//! [`WRITES_IN_FLIGHT`] at once); judging reads the marks still in flight as this file's
//! earlier lines, so a duplicate across chunks is found either way.
//!
//! Then our side: every record of ours posted inside the file's interval with no row is
//! `missing_at_psp` (or `expected` inside the settling window); then our `psp_receivable` next
//! to the PSP's balance, the report in S3, and the run `SUCCEEDED`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::app::consumers::Failure;
use crate::domain::currency::Currency;
use crate::domain::ids::AccountId;
use crate::domain::reconciliation::books::{fee_cost, fee_postings, is_unexplained, row_posting};
use crate::domain::reconciliation::row::{signed_text, Columns, SettlementRow};
use crate::domain::reconciliation::{
    judge, mark_key, missing_at_psp, named_record, row_kind, row_values, Break, BreakStatus, BreakType,
    FileRef, Interval, Mark, OurRecord, RecordRef, RowKind, Run, RunStatus, Verdict,
};
use crate::domain::time::format_time;
use crate::ports::reconciliation::{
    CsvRecord, CsvRecords, Lookup, ReadError, ReconPsp, ReconStore, RunBegun, SettlementFiles,
};
use crate::ports::{LedgerWriter, StoreError};

use super::repair::Repairer;

/// Rows judged together: one batch read of records and marks, one fee posting per currency.
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
        match self.rows(&mut run, &mut records).await {
            Ok(true) => {}
            Ok(false) => {
                run.finished_at = Some(now_or(now));
                self.store.finish_run(&run).await.map_err(retryable)?;
                return Ok(RunOutcome::Done(Box::new(run)));
            }
            Err(e) => return Err(e),
        }
        if let Some(interval) = run.interval {
            self.our_side(&mut run, &interval).await.map_err(retryable)?;
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
    async fn rows<C: CsvRecords>(&self, run: &mut Run, records: &mut C) -> Result<bool, Failure> {
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
        // Up to WRITES_IN_FLIGHT chunks' writes go on while the next chunks are read and
        // judged; judging sees the marks in flight as this file's earlier lines.
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
                let earlier: HashMap<String, (u64, String)> = in_flight
                    .iter()
                    .flat_map(|f| f.marks.iter().map(|(k, m)| (k.clone(), m.clone())))
                    .collect();
                let t = Instant::now();
                let judged = self
                    .judge(run, chunk_no, std::mem::take(&mut chunk), earlier)
                    .await?;
                judging += t.elapsed();
                let t = Instant::now();
                while in_flight.len() >= WRITES_IN_FLIGHT {
                    finish(in_flight.pop_front()).await?;
                }
                waiting += t.elapsed();
                let marks = judged
                    .marks
                    .iter()
                    .map(|(k, m)| (k.clone(), (m.line, m.balance_transaction_id.clone())))
                    .collect();
                let (store, ledger) = (self.store.clone(), self.ledger.clone());
                in_flight.push_back(InFlight {
                    task: tokio::spawn(async move { write(&store, &ledger, judged).await }),
                    marks,
                });
                chunk_no += 1;
            }
            if done {
                let t = Instant::now();
                while let Some(f) = in_flight.pop_front() {
                    finish(Some(f)).await?;
                }
                waiting += t.elapsed();
                tracing::info!(
                    run_id = %run.id, rows = run.tally.rows, chunks = chunk_no,
                    reading_ms = reading.as_millis() as u64, judging_ms = judging.as_millis() as u64,
                    waiting_for_writes_ms = waiting.as_millis() as u64, "rows done"
                );
                return Ok(true);
            }
        }
    }

    /// Judges one chunk: its rows' records and marks read in one batch, each row's verdict,
    /// and what that writes. `earlier`: the mark keys of the chunk still being written, with
    /// their lines.
    async fn judge(
        &self,
        run: &mut Run,
        chunk_no: u64,
        rows: Vec<Parsed>,
        earlier: HashMap<String, (u64, String)>,
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
        let mark_keys: Vec<String> = rows
            .iter()
            .zip(&named)
            .filter_map(|(r, n)| r.as_ref().ok().map(|row| row_mark_key(row, n.as_ref())))
            .collect();
        let refs: Vec<RecordRef> = named.iter().flatten().cloned().collect();
        let Lookup { records, marks } = self.store.lookup(&refs, &mark_keys).await.map_err(retryable)?;

        let mut breaks = Vec::new();
        let mut new_marks: Vec<(String, Mark)> = Vec::new();
        let mut seen: HashMap<String, (u64, String)> = earlier;
        let mut fees: BTreeMap<Currency, i64> = BTreeMap::new();
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
            // An earlier line of this file with the same key reads as an earlier mark.
            let earlier_here = seen
                .get(&key)
                .filter(|(l, _)| *l != row.line)
                .map(|(l, txn)| Mark {
                    run_id: run.id.clone(),
                    balance_transaction_id: txn.clone(),
                    line: *l,
                });
            let mark = earlier_here.or_else(|| marks.get(&key).cloned());
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
                        "balance transaction {} was already seen (line {})",
                        row.balance_transaction_id,
                        mark.as_ref().map_or(0, |m| m.line)
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
            seen.insert(key.clone(), (row.line, row.balance_transaction_id.clone()));
            new_marks.push((
                key,
                Mark {
                    run_id: run.id.clone(),
                    balance_transaction_id: row.balance_transaction_id.clone(),
                    line: row.line,
                },
            ));
        }
        postings.extend(
            fee_postings(&account, &run.id, chunk_no, &fees, &format_time(now))
                .map_err(|e| Failure::Poison(e.to_string()))?,
        );
        Ok(ChunkWrites {
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
    async fn our_side(&self, run: &mut Run, interval: &Interval) -> Result<(), StoreError> {
        let now = Utc::now();
        let mut after: Option<String> = None;
        // A multi-seller checkout posts once per order, and its orders may fall on two pages:
        // each record is counted once (only the unreconciled ones are remembered).
        let mut counted: HashSet<String> = HashSet::new();
        loop {
            let page = self
                .store
                .posted_in(&run.account_id, interval, after.take())
                .await?;
            for batch in page.records.chunks(CHUNK_ROWS) {
                self.unreconciled(run, interval, batch, now, &mut counted).await?;
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
        counted: &mut HashSet<String>,
    ) -> Result<(), StoreError> {
        let keys: Vec<String> = batch.iter().map(|(_, r, c)| mark_key(&r.reference, c)).collect();
        let marks = self.store.lookup(&[], &keys).await?.marks;
        let mut breaks = Vec::new();
        for ((at, record, category), key) in batch.iter().zip(&keys) {
            if marks.contains_key(key) || !counted.insert(key.clone()) {
                continue;
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
}

/// Chunks whose writes may be in flight at once.
const WRITES_IN_FLIGHT: usize = 4;

/// A chunk being written, and its marks' keys with their lines and balance transactions.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), Failure>>,
    marks: HashMap<String, (u64, String)>,
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
    store.put_marks(&w.marks).await.map_err(retryable)
}

/// A data row: parsed, or (line, raw text, why not).
type Parsed = Result<SettlementRow, (u64, String, String)>;

/// What judging a chunk writes.
struct ChunkWrites {
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
