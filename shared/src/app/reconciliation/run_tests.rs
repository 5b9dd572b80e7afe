//! The run's logic on in-memory ports (the twin's tests drive the real ones): duplicates across
//! chunks further apart than the writes in flight and across runs, our side's settling window,
//! and a run that goes again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::*;
use crate::app::reconciliation::Repairer;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, BreakId, CheckoutId, ReconRunId};
use crate::domain::ledger::{Direction, LedgerAccount, LedgerTransaction};
use crate::domain::money::Money;
use crate::domain::pay_in::PaymentStatus;
use crate::domain::reconciliation::row::Category;
use crate::domain::reconciliation::{
    BreakType, Interval, Mark, OurRecord, OurStatus, RecordRef, Run, RunStatus,
};
use crate::ports::reconciliation::{
    CsvRecord, CsvRecords, Lookup, PostedPage, ReadError, ReconPsp, ReconStore, RunBegun, SettlementFiles,
};
use crate::ports::{LedgerWriter, StoreError, Written};

#[derive(Default)]
struct State {
    files: HashMap<String, String>,
    runs: HashMap<ReconRunId, Run>,
    records: HashMap<RecordRef, OurRecord>,
    /// (window, run and first line) → marks, as the table keeps them.
    marks: BTreeMap<(String, String), Vec<Mark>>,
    breaks: BTreeMap<BreakId, Break>,
    ledger: BTreeMap<String, LedgerTransaction>,
    posted: Vec<(DateTime<Utc>, OurRecord, Category)>,
}

#[derive(Clone, Default)]
struct Mem(Arc<Mutex<State>>);

impl Mem {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

struct Lines(std::vec::IntoIter<CsvRecord>);

impl CsvRecords for Lines {
    async fn next_record(&mut self) -> Result<Option<CsvRecord>, ReadError> {
        Ok(self.0.next())
    }
}

impl SettlementFiles for Mem {
    type Records = Lines;

    async fn sha256(&self, _bucket: &str, key: &str) -> Result<String, StoreError> {
        Ok(self.with(|s| hex::encode(Sha256::digest(s.files[key].as_bytes()))))
    }

    async fn interval(&self, _bucket: &str, _key: &str) -> Result<Option<Interval>, StoreError> {
        Ok(None)
    }

    async fn open(&self, _bucket: &str, key: &str) -> Result<Lines, StoreError> {
        let text = self.with(|s| s.files[key].clone());
        let records: Vec<CsvRecord> = text
            .lines()
            .enumerate()
            .map(|(i, l)| CsvRecord {
                line: i as u64 + 1,
                fields: l.split(',').map(str::to_owned).collect(),
            })
            .collect();
        Ok(Lines(records.into_iter()))
    }

    async fn put_report(&self, _bucket: &str, _key: &str, _csv: Vec<u8>) -> Result<(), StoreError> {
        Ok(())
    }
}

impl ReconStore for Mem {
    async fn begin_run(&self, run: &Run) -> Result<RunBegun, StoreError> {
        Ok(self.with(|s| match s.runs.get(&run.id) {
            None => {
                s.runs.insert(run.id.clone(), run.clone());
                RunBegun::Started
            }
            Some(r) if r.status == RunStatus::Running => RunBegun::Resumed(Box::new(r.clone())),
            Some(r) => RunBegun::Finished(Box::new(r.clone())),
        }))
    }

    async fn finish_run(&self, run: &Run) -> Result<(), StoreError> {
        self.with(|s| s.runs.insert(run.id.clone(), run.clone()));
        Ok(())
    }

    async fn run(&self, _account: &AccountId, id: &ReconRunId) -> Result<Option<Run>, StoreError> {
        Ok(self.with(|s| s.runs.get(id).cloned()))
    }

    async fn lookup(
        &self,
        _account: &AccountId,
        run: &ReconRunId,
        refs: &[RecordRef],
        windows: &[String],
    ) -> Result<Lookup, StoreError> {
        Ok(self.with(|s| Lookup {
            records: refs
                .iter()
                .filter_map(|r| s.records.get(r).map(|o| (r.clone(), o.clone())))
                .collect(),
            marks: s
                .marks
                .iter()
                .filter(|((window, sk), _)| windows.contains(window) && !sk.starts_with(&format!("{run}#")))
                .flat_map(|(_, marks)| {
                    marks
                        .iter()
                        .map(|m| (m.balance_transaction_id.clone(), m.clone()))
                })
                .collect(),
        }))
    }

    async fn record_by_psp_id(&self, _psp_id: &str) -> Result<Option<RecordRef>, StoreError> {
        Ok(None)
    }

    async fn put_marks(&self, _account: &AccountId, marks: &[(String, Mark)]) -> Result<(), StoreError> {
        let mut by_window: BTreeMap<&String, Vec<Mark>> = BTreeMap::new();
        for (window, m) in marks {
            by_window.entry(window).or_default().push(m.clone());
        }
        self.with(|s| {
            for (window, marks) in by_window {
                let first = marks.iter().map(|m| m.line).min().unwrap();
                s.marks.insert(
                    (window.clone(), format!("{}#{first:012}", marks[0].run_id)),
                    marks,
                );
            }
        });
        Ok(())
    }

    async fn put_breaks(&self, breaks: &[Break]) -> Result<(), StoreError> {
        self.with(|s| s.breaks.extend(breaks.iter().map(|b| (b.id.clone(), b.clone()))));
        Ok(())
    }

    async fn posted_in(
        &self,
        _account: &AccountId,
        interval: &Interval,
        after: Option<String>,
    ) -> Result<PostedPage, StoreError> {
        // Two records a page, so that the paging is exercised.
        let from: usize = after.map_or(0, |a| a.parse().unwrap());
        Ok(self.with(|s| {
            let inside: Vec<_> = s
                .posted
                .iter()
                .filter(|(at, _, _)| *at >= interval.start && *at < interval.end)
                .cloned()
                .collect();
            let page: Vec<_> = inside.iter().skip(from).take(2).cloned().collect();
            PostedPage {
                next: (from + 2 < inside.len()).then(|| (from + 2).to_string()),
                records: page,
            }
        }))
    }

    async fn psp_receivable(&self, _account: &AccountId) -> Result<BTreeMap<String, i64>, StoreError> {
        Ok(self.with(|s| {
            let mut out = BTreeMap::new();
            for tx in s.ledger.values() {
                for e in tx
                    .entries
                    .iter()
                    .filter(|e| e.account == LedgerAccount::PspReceivable)
                {
                    let signed = match e.direction {
                        Direction::Debit => e.amount.minor(),
                        Direction::Credit => -e.amount.minor(),
                    };
                    *out.entry(e.amount.currency().code().to_owned()).or_default() += signed;
                }
            }
            out
        }))
    }

    async fn breaks_of(&self, run: &ReconRunId, limit: usize) -> Result<Vec<Break>, StoreError> {
        Ok(self.with(|s| {
            s.breaks
                .values()
                .filter(|b| &b.run_id == run)
                .take(limit)
                .cloned()
                .collect()
        }))
    }
}

impl LedgerWriter for Mem {
    async fn append(&self, tx: &LedgerTransaction) -> Result<Written, StoreError> {
        Ok(self.with(|s| {
            if s.ledger.contains_key(&tx.id) {
                Written::AlreadyApplied
            } else {
                s.ledger.insert(tx.id.clone(), tx.clone());
                Written::Written
            }
        }))
    }
}

impl ReconPsp for Mem {
    async fn balance(&self) -> Result<BTreeMap<String, i64>, String> {
        Ok(BTreeMap::new())
    }

    async fn session_of(&self, _payment_intent: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

struct NoRepair;

impl Repairer for NoRepair {
    async fn settle_checkout(
        &self,
        _c: &CheckoutId,
        _now: DateTime<Utc>,
    ) -> Result<Result<String, String>, Failure> {
        Ok(Err("no PSP here".into()))
    }
}

const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,\
reporting_category,source_id,charge_id,payment_intent_id,automatic_payout_id,payment_metadata[checkout_id]";

fn account() -> AccountId {
    AccountId::parse("acct_mem").unwrap()
}

/// `n` SUCCESS checkouts of 10.00 USD in `mem`: their ids.
fn checkouts(mem: &Mem, n: usize) -> Vec<CheckoutId> {
    let usd = Currency::parse("USD").unwrap();
    (0..n)
        .map(|_| {
            let id = CheckoutId::generate();
            let r = OurRecord {
                reference: RecordRef::Checkout(id.clone()),
                account_id: account(),
                amount: Money::from_minor(1000, usd),
                status: OurStatus::Checkout(PaymentStatus::Success),
                psp_id: Some(format!("pi_{id}")),
            };
            mem.with(|s| s.records.insert(r.reference.clone(), r));
            id
        })
        .collect()
}

/// A charge of 10.00 USD for `checkout` through its payment intent `pi_<checkout>`.
fn row(txn: &str, checkout: &CheckoutId) -> String {
    row_at(txn, checkout, "2026-11-30 10:00:00")
}

fn row_at(txn: &str, checkout: &CheckoutId, created: &str) -> String {
    format!("{txn},{created},2026-12-02 00:00:00,usd,10.00,0.59,9.41,charge,ch_{txn},ch_{txn},pi_{checkout},,{checkout}")
}

async fn reconcile(mem: &Mem, key: &str, text: String, settling: Duration) -> Run {
    mem.with(|s| s.files.insert(key.to_owned(), text));
    let r = Reconciler {
        files: mem,
        store: mem,
        ledger: mem,
        psp: mem,
        repair: &NoRepair,
        settling,
    };
    match r.reconcile(account(), "bucket", key, Utc::now()).await.unwrap() {
        RunOutcome::Done(run) | RunOutcome::AlreadyDone(run) => *run,
    }
}

fn fees_booked(mem: &Mem, run: &ReconRunId) -> i64 {
    mem.with(|s| {
        s.ledger
            .values()
            .filter(|t| t.id.starts_with(&format!("ltx_pspfee_{run}_")))
            .flat_map(|t| t.entries.iter())
            .filter(|e| e.account == LedgerAccount::PspFeeExpense)
            .map(|e| e.amount.minor())
            .sum()
    })
}

fn breaks(mem: &Mem, run: &ReconRunId) -> Vec<(BreakType, Option<u64>)> {
    mem.with(|s| {
        s.breaks
            .values()
            .filter(|b| &b.run_id == run)
            .map(|b| (b.kind, b.line))
            .collect()
    })
}

#[tokio::test]
async fn a_duplicate_is_found_however_far_apart_in_the_file_and_in_a_later_file() {
    let mem = Mem::default();
    let n = CHUNK_ROWS * (WRITES_IN_FLIGHT + 2) + 7;
    let ids = checkouts(&mem, n);
    let mut file = vec![HEADER.to_owned()];
    file.extend(ids.iter().enumerate().map(|(i, id)| row(&format!("txn_{i}"), id)));
    // The first row again at the very end (more chunks away than are ever in flight), and the
    // row of line 3 again as line 5 (the same chunk as its first).
    file.push(row("txn_0", &ids[0]));
    file.insert(4, row("txn_1", &ids[1]));
    let run = reconcile(&mem, "psp/acct_mem/a.csv", file.join("\n"), Duration::zero()).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.tally.rows, n as u64 + 2);
    assert_eq!(run.tally.matched, n as u64);
    let mut found = breaks(&mem, &run.id);
    found.sort();
    assert_eq!(
        found,
        vec![
            (BreakType::Duplicate, Some(5)),
            (BreakType::Duplicate, Some(n as u64 + 3))
        ],
        "both repeats, and nothing else"
    );
    // Each row's fee once: the repeats book nothing.
    assert_eq!(fees_booked(&mem, &run.id), 59 * n as i64);

    // A charge we have no record of, twice (far apart): one missing_in_ours, one duplicate,
    // its fee booked once.
    let unknown = CheckoutId::generate();
    let mut file = vec![HEADER.to_owned(), row("txn_x", &unknown)];
    let fillers = checkouts(&mem, CHUNK_ROWS * (WRITES_IN_FLIGHT + 1));
    file.extend(
        fillers
            .iter()
            .enumerate()
            .map(|(i, id)| row(&format!("txn_f{i}"), id)),
    );
    file.push(row("txn_x", &unknown));
    let twice = reconcile(&mem, "psp/acct_mem/x.csv", file.join("\n"), Duration::zero()).await;
    let mut found = breaks(&mem, &twice.id);
    found.sort();
    assert_eq!(
        found,
        vec![
            (BreakType::MissingInOurs, Some(2)),
            (BreakType::Duplicate, Some(fillers.len() as u64 + 3))
        ]
    );
    assert_eq!(fees_booked(&mem, &twice.id), 59 * (fillers.len() as i64 + 1));

    // A later file with a new row, a balance transaction the first run reconciled (found by
    // its mark), and another payment of a checkout the first run reconciled (found by the
    // payment intent our checkout keeps).
    let more = checkouts(&mem, 1);
    let later = [
        HEADER.to_owned(),
        row("txn_new", &more[0]),
        row("txn_5", &ids[5]),
        row("txn_other", &ids[6]).replace(&format!("pi_{}", ids[6]), "pi_another"),
    ]
    .join("\n");
    let second = reconcile(&mem, "psp/acct_mem/b.csv", later, Duration::zero()).await;
    assert_ne!(second.id, run.id);
    assert_eq!(second.tally.matched, 1);
    let mut found = breaks(&mem, &second.id);
    found.sort();
    assert_eq!(
        found,
        vec![(BreakType::Duplicate, Some(3)), (BreakType::Duplicate, Some(4))]
    );
    assert_eq!(
        fees_booked(&mem, &second.id),
        59,
        "the earlier run's record books nothing again"
    );
}

#[tokio::test]
async fn our_records_without_a_row_are_missing_or_expected_by_the_settling_window() {
    let mem = Mem::default();
    let ids = checkouts(&mem, 5);
    let day = Interval::day_of_key("psp/acct_mem/2026-11-30.csv").unwrap();
    // The day before: a charge two minutes before midnight, whose webhook we applied (and
    // posted) three minutes after it; that file reconciled it.
    let eve = [
        HEADER.to_owned(),
        row_at("txn_eve", &ids[4], "2026-11-29 23:58:00"),
    ]
    .join("\n");
    let before = reconcile(&mem, "psp/acct_mem/2026-11-29.csv", eve, Duration::minutes(15)).await;
    assert_eq!(before.tally.matched, 1);
    let post = |i: usize, at: DateTime<Utc>| {
        let r = mem.with(|s| s.records[&RecordRef::Checkout(ids[i].clone())].clone());
        mem.with(|s| s.posted.push((at, r, Category::Charge)));
    };
    post(0, day.start + Duration::hours(1)); // has its row
    post(1, day.start + Duration::hours(2)); // no row: missing
    post(2, day.end - Duration::minutes(5)); // no row, inside the window: expected
    post(3, day.end + Duration::minutes(5)); // the next day's: not this file's
    post(1, day.start + Duration::hours(2)); // a second order of the same checkout, a page later
    post(4, day.start + Duration::minutes(1)); // its row was in the day before's file
    let file = [HEADER.to_owned(), row("txn_a", &ids[0])].join("\n");
    let run = reconcile(&mem, "psp/acct_mem/2026-11-30.csv", file, Duration::minutes(15)).await;
    assert_eq!(run.interval, Some(day), "a day's file covers its day");
    assert_eq!((run.tally.matched, run.tally.expected), (1, 1));
    assert_eq!(
        run.tally.breaks.get(&BreakType::MissingAtPsp),
        Some(&1),
        "counted once, on two pages"
    );
    let missing = mem.with(|s| s.breaks.values().cloned().collect::<Vec<_>>());
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].kind, BreakType::MissingAtPsp);
    assert_eq!(missing[0].ours["id"], ids[1].as_str());
}

#[tokio::test]
async fn a_run_that_goes_again_writes_the_same_and_a_finished_one_is_not_run_twice() {
    let mem = Mem::default();
    let ids = checkouts(&mem, CHUNK_ROWS + 3);
    let mut file = vec![HEADER.to_owned()];
    file.extend(ids.iter().enumerate().map(|(i, id)| row(&format!("txn_{i}"), id)));
    file.push("not,a,row".to_owned());
    let text = file.join("\n");
    let first = reconcile(&mem, "psp/acct_mem/c.csv", text.clone(), Duration::zero()).await;
    let snapshot = |m: &Mem| {
        m.with(|s| {
            let breaks: Vec<_> = s
                .breaks
                .values()
                .map(|b| (b.id.clone(), b.kind, b.line, b.reason.clone()))
                .collect();
            (s.ledger.clone(), s.marks.clone(), breaks)
        })
    };
    let before = snapshot(&mem);
    // Cut short: the run is RUNNING again, and its notification comes back.
    mem.with(|s| s.runs.get_mut(&first.id).unwrap().status = RunStatus::Running);
    let again = reconcile(&mem, "psp/acct_mem/c.csv", text.clone(), Duration::zero()).await;
    assert_eq!(again.id, first.id);
    assert_eq!(again.tally, first.tally);
    assert_eq!(snapshot(&mem), before, "the same ledger, marks and breaks");
    // Finished: the same bytes under another key are that run.
    let third = reconcile(&mem, "psp/acct_mem/copy.csv", text, Duration::zero()).await;
    assert_eq!((third.id, third.status), (first.id, RunStatus::Succeeded));
    assert_eq!(snapshot(&mem), before);
}
