//! Reconciliation in DynamoDB. The reconciliation table holds:
//! - runs: `RUN#<run_id>` / `RUN` (GSI `by_account`: `list_pk` = `<account_id>#RUN`,
//!   `list_sk` = `<started_at>#<run_id>`);
//! - breaks: `RUN#<run_id>` / `BRK#<break_id>` (GSI: `<account_id>#BRK`,
//!   `<run_id>#<break_id>`), with a pointer `BRK#<break_id>` / `BRK` → its run, so a break is
//!   found by its id alone; resolutions are appended as `RUN#<run_id>` / `BRK#<break_id>#RES#…`;
//! - marks: `MARK#<account_id>#<window>` / `MARK`, one item per ten seconds of balance
//!   transactions (by when the PSP created them), its map `chunks` holding, per run and first
//!   line (`<run_id>#<line>`), the text of what that chunk of rows reconciled: each
//!   transaction's id, line and record, a text line each. A chunk of a settlement file shares
//!   a few windows, so it writes a few map entries where a mark per row was 250 items, and its
//!   windows' keys ride in the same `BatchGetItem` as its records.
//!
//! Our records are read from the payments table (`CO#`, `RF#`, `PAYOUT#`), and what we posted in
//! an interval from the ledger's `psp_receivable` lines and their transactions' headers.

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::batch::{batch_get, batch_put};
use super::codec::{get_s, get_time, opt_n, opt_s, parse, s, time, unavailable, Item};
use super::ledger::LedgerStore;
use super::pay_in::{checkout_from, checkout_key, payment_order_key};
use super::payouts::{payout_from, payout_key};
use super::refunds::{refund_from, refund_key};
use super::DynamoStore;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, BreakId, CheckoutId, PaymentOrderId, PayoutId, ReconRunId, RefundId};
use crate::domain::ledger::{Direction, LedgerAccount};
use crate::domain::money::Money;
use crate::domain::psp::{PspRef, PspRefundId, PspSessionId, PspTransferId};
use crate::domain::reconciliation::row::Category;
use crate::domain::reconciliation::{
    Break, BreakStatus, BreakType, FileRef, Interval, Mark, OurRecord, OurStatus, RecordRef, Run, RunStatus,
    Tally,
};
use crate::domain::time::format_time;
use crate::ports::reconciliation::{Lookup, PostedPage, ReconStore, RunBegun};
use crate::ports::StoreError;

/// Ledger lines read per page of our side (a page's records are judged, then dropped).
const POSTED_PAGE: i32 = 1000;

/// The reconciliation table's index of an account's runs and breaks.
pub const BY_ACCOUNT_INDEX: &str = "by_account";

#[derive(Debug, Clone)]
pub struct ReconDynamo {
    pub store: DynamoStore,
    pub ledger: LedgerStore,
    pub table: String,
}

fn run_key(id: &ReconRunId) -> Item {
    HashMap::from([("pk".into(), s(format!("RUN#{id}"))), ("sk".into(), s("RUN"))])
}

fn marks_key(account: &AccountId, window: &str) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("MARK#{account}#{window}"))),
        ("sk".into(), s("MARK")),
    ])
}

/// A window's marks of one chunk, one per text line: `<balance transaction>\t<line>\t<record
/// key or empty>`. Neither a balance transaction id nor a record key holds a tab or a newline
/// (the CSV reader keeps them, so they are refused here rather than written ambiguous).
fn marks_text(marks: &[&Mark]) -> Result<String, StoreError> {
    let mut out = String::with_capacity(marks.len() * 80);
    for m in marks {
        let record = m.record.as_deref().unwrap_or("");
        if [m.balance_transaction_id.as_str(), record]
            .iter()
            .any(|f| f.contains(['\t', '\n']))
        {
            return Err(StoreError::Corrupt(format!(
                "a mark cannot hold a tab or a newline: {:?}",
                m.balance_transaction_id
            )));
        }
        out.push_str(&format!("{}\t{}\t{record}\n", m.balance_transaction_id, m.line));
    }
    Ok(out)
}

/// The marks of a window's item that runs other than `except` wrote.
fn marks_from(item: &Item, except: &ReconRunId) -> Result<Vec<Mark>, StoreError> {
    let Some(AttributeValue::M(chunks)) = item.get("chunks") else {
        return Err(StoreError::Corrupt("a marks item without its chunks".into()));
    };
    let mut out = Vec::new();
    for (key, text) in chunks {
        let run = key.split('#').next().unwrap_or_default();
        if run == except.as_str() {
            continue;
        }
        let run_id =
            ReconRunId::parse(run).map_err(|e| StoreError::Corrupt(format!("a marks chunk {key:?}: {e}")))?;
        let AttributeValue::S(text) = text else {
            return Err(StoreError::Corrupt(format!(
                "the marks chunk {key:?} is not text"
            )));
        };
        for l in text.lines() {
            let mut f = l.split('\t');
            match (f.next(), f.next().and_then(|n| n.parse().ok()), f.next()) {
                (Some(txn), Some(line), Some(record)) => out.push(Mark {
                    run_id: run_id.clone(),
                    balance_transaction_id: txn.to_owned(),
                    line,
                    record: (!record.is_empty()).then(|| record.to_owned()),
                }),
                _ => return Err(StoreError::Corrupt(format!("a mark line {l:?}"))),
            }
        }
    }
    Ok(out)
}

fn string_map(m: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

fn minor_map(m: &BTreeMap<String, i64>) -> AttributeValue {
    AttributeValue::M(
        m.iter()
            .map(|(k, v)| (k.clone(), AttributeValue::N(v.to_string())))
            .collect(),
    )
}

fn read_string_map(item: &Item, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
    match item.get(name) {
        None => Ok(BTreeMap::new()),
        Some(AttributeValue::M(m)) => m
            .iter()
            .map(|(k, v)| match v {
                AttributeValue::S(v) => Ok((k.clone(), v.clone())),
                _ => Err(StoreError::Corrupt(format!("{name}.{k} is not a string"))),
            })
            .collect(),
        Some(_) => Err(StoreError::Corrupt(format!("{name} is not a map"))),
    }
}

fn read_minor_map(item: &Item, name: &str) -> Result<BTreeMap<String, i64>, StoreError> {
    match item.get(name) {
        None => Ok(BTreeMap::new()),
        Some(AttributeValue::M(m)) => m
            .iter()
            .map(|(k, v)| match v {
                AttributeValue::N(n) => n
                    .parse()
                    .map(|n| (k.clone(), n))
                    .map_err(|_| StoreError::Corrupt(format!("{name}.{k} is not a number"))),
                _ => Err(StoreError::Corrupt(format!("{name}.{k} is not a number"))),
            })
            .collect(),
        Some(_) => Err(StoreError::Corrupt(format!("{name} is not a map"))),
    }
}

pub fn run_item(r: &Run) -> Item {
    let mut item = run_key(&r.id);
    let breaks: BTreeMap<String, i64> = r
        .tally
        .breaks
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), *v as i64))
        .collect();
    item.extend([
        ("entity".into(), s("reconciliation_run")),
        ("run_id".into(), s(r.id.as_str())),
        ("account_id".into(), s(r.account_id.as_str())),
        ("list_pk".into(), s(format!("{}#RUN", r.account_id))),
        (
            "list_sk".into(),
            s(format!("{}#{}", format_time(r.started_at), r.id)),
        ),
        ("bucket".into(), s(&r.file.bucket)),
        ("object_key".into(), s(&r.file.key)),
        ("sha256".into(), s(&r.file.sha256)),
        ("run_status".into(), s(r.status.as_str())),
        ("rows".into(), AttributeValue::N(r.tally.rows.to_string())),
        ("matched".into(), AttributeValue::N(r.tally.matched.to_string())),
        ("expected".into(), AttributeValue::N(r.tally.expected.to_string())),
        ("foreign".into(), AttributeValue::N(r.tally.foreign.to_string())),
        (
            "fees_booked".into(),
            AttributeValue::N(r.tally.fees_booked.to_string()),
        ),
        (
            "auto_resolved".into(),
            AttributeValue::N(r.tally.auto_resolved.to_string()),
        ),
        ("breaks_by_type".into(), minor_map(&breaks)),
        ("psp_receivable".into(), minor_map(&r.psp_receivable)),
        ("psp_balance".into(), minor_map(&r.psp_balance)),
        ("started_at".into(), time(r.started_at)),
    ]);
    if let Some(i) = &r.interval {
        item.insert("interval_start".into(), time(i.start));
        item.insert("interval_end".into(), time(i.end));
    }
    if let Some(f) = &r.failure_reason {
        item.insert("failure_reason".into(), s(f));
    }
    if let Some(t) = r.finished_at {
        item.insert("finished_at".into(), time(t));
    }
    item
}

pub fn run_from(item: &Item) -> Result<Run, StoreError> {
    let count = |name: &str| -> Result<u64, StoreError> { Ok(opt_n::<u64>(item, name)?.unwrap_or(0)) };
    let mut breaks = BTreeMap::new();
    for (k, v) in read_minor_map(item, "breaks_by_type")? {
        let kind: BreakType = k.parse().map_err(StoreError::Corrupt)?;
        breaks.insert(kind, v.max(0) as u64);
    }
    let interval = match (item.get("interval_start"), item.get("interval_end")) {
        (Some(_), Some(_)) => Some(Interval {
            start: get_time(item, "interval_start")?,
            end: get_time(item, "interval_end")?,
        }),
        _ => None,
    };
    Ok(Run {
        id: parse(item, "run_id", ReconRunId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        file: FileRef {
            bucket: get_s(item, "bucket")?.to_owned(),
            key: get_s(item, "object_key")?.to_owned(),
            sha256: get_s(item, "sha256")?.to_owned(),
        },
        interval,
        status: parse(item, "run_status", str::parse::<RunStatus>)?,
        failure_reason: opt_s(item, "failure_reason")?.map(str::to_owned),
        tally: Tally {
            rows: count("rows")?,
            matched: count("matched")?,
            expected: count("expected")?,
            foreign: count("foreign")?,
            fees_booked: count("fees_booked")?,
            breaks,
            auto_resolved: count("auto_resolved")?,
        },
        psp_receivable: read_minor_map(item, "psp_receivable")?,
        psp_balance: read_minor_map(item, "psp_balance")?,
        started_at: get_time(item, "started_at")?,
        finished_at: match item.get("finished_at") {
            Some(_) => Some(get_time(item, "finished_at")?),
            None => None,
        },
    })
}

pub fn break_items(b: &Break) -> [Item; 2] {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(format!("RUN#{}", b.run_id))),
        ("sk".into(), s(format!("BRK#{}", b.id))),
        ("entity".into(), s("reconciliation_break")),
        ("break_id".into(), s(b.id.as_str())),
        ("run_id".into(), s(b.run_id.as_str())),
        ("account_id".into(), s(b.account_id.as_str())),
        ("list_pk".into(), s(format!("{}#BRK", b.account_id))),
        ("list_sk".into(), s(format!("{}#{}", b.run_id, b.id))),
        ("break_type".into(), s(b.kind.as_str())),
        ("break_status".into(), s(b.status.as_str())),
        ("reason".into(), s(&b.reason)),
        ("row".into(), string_map(&b.row)),
        ("ours".into(), string_map(&b.ours)),
        ("created_at".into(), time(b.created_at)),
    ]);
    if let Some(line) = b.line {
        item.insert("line".into(), AttributeValue::N(line.to_string()));
    }
    if let Some(n) = &b.resolution_note {
        item.insert("resolution_note".into(), s(n));
    }
    let pointer = HashMap::from([
        ("pk".into(), s(format!("BRK#{}", b.id))),
        ("sk".into(), s("BRK")),
        ("entity".into(), s("reconciliation_break_pointer")),
        ("run_id".into(), s(b.run_id.as_str())),
        ("account_id".into(), s(b.account_id.as_str())),
    ]);
    [item, pointer]
}

pub fn break_from(item: &Item) -> Result<Break, StoreError> {
    Ok(Break {
        id: parse(item, "break_id", BreakId::parse)?,
        run_id: parse(item, "run_id", ReconRunId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        kind: parse(item, "break_type", str::parse::<BreakType>)?,
        status: parse(item, "break_status", str::parse::<BreakStatus>)?,
        reason: get_s(item, "reason")?.to_owned(),
        line: opt_n(item, "line")?,
        row: read_string_map(item, "row")?,
        ours: read_string_map(item, "ours")?,
        resolution_note: opt_s(item, "resolution_note")?.map(str::to_owned),
        created_at: get_time(item, "created_at")?,
    })
}

fn record_key(r: &RecordRef) -> Item {
    match r {
        RecordRef::Checkout(id) => checkout_key(id),
        RecordRef::Refund(id) => refund_key(id),
        RecordRef::Payout(id) => payout_key(id),
    }
}

/// Our record in an item of the payments table (a checkout, a refund or a payout).
fn record_from(item: &Item) -> Result<Option<OurRecord>, StoreError> {
    Ok(match opt_s(item, "entity")? {
        Some("checkout") => {
            let c = checkout_from(item)?;
            Some(OurRecord {
                reference: RecordRef::Checkout(c.id),
                account_id: c.account_id,
                amount: c.total,
                status: OurStatus::Checkout(c.status),
                psp_id: c.payment_intent.map(|p| p.as_str().to_owned()),
            })
        }
        Some("refund") => {
            let r = refund_from(item)?;
            Some(OurRecord {
                reference: RecordRef::Refund(r.id),
                account_id: r.account_id,
                amount: r.amount,
                status: OurStatus::Refund(r.status),
                psp_id: r.psp_refund.map(|p| p.as_str().to_owned()),
            })
        }
        Some("payout") => {
            let p = payout_from(item)?;
            Some(OurRecord {
                reference: RecordRef::Payout(p.id),
                account_id: p.account_id,
                amount: p.amount,
                status: OurStatus::Payout(p.status, p.psp_transfer.is_some()),
                psp_id: p.psp_transfer.map(|t| t.as_str().to_owned()),
            })
        }
        _ => None,
    })
}

impl ReconDynamo {
    async fn records(&self, refs: &[RecordRef]) -> Result<HashMap<RecordRef, OurRecord>, StoreError> {
        let keys: Vec<(String, Item)> = refs
            .iter()
            .map(|r| (self.store.tables.payments.clone(), record_key(r)))
            .collect();
        let mut found = HashMap::new();
        for item in batch_get(&self.store.client, &keys, true).await? {
            if let Some(r) = record_from(&item)? {
                found.insert(r.reference.clone(), r);
            }
        }
        Ok(found)
    }

    /// Puts a break unless it was resolved; its pointer item, to write next.
    async fn put_break(&self, b: &Break) -> Result<Item, StoreError> {
        let [item, pointer] = break_items(b);
        let put = self
            .store
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR break_status <> :resolved")
            .expression_attribute_values(":resolved", s(BreakStatus::Resolved.as_str()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(pointer),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(pointer)
            }
            Err(e) => Err(unavailable("PutItem break", e)),
        }
    }

    /// Sets entry `entry` of the window item's `chunks` map: into the map if the item has one,
    /// else as the item's first (two chunks of a window may race to create it: the loser adds
    /// its entry to the winner's map).
    async fn put_marks_entry(&self, key: Item, entry: String, text: String) -> Result<(), StoreError> {
        for _ in 0..3 {
            let added = self
                .store
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .update_expression("SET chunks.#e = :t")
                .condition_expression("attribute_exists(chunks)")
                .expression_attribute_names("#e", &entry)
                .expression_attribute_values(":t", s(&text))
                .send()
                .await;
            if super::tx::conditional(added, "UpdateItem")? {
                return Ok(());
            }
            let created = self
                .store
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .update_expression("SET chunks = :c, entity = :e")
                .condition_expression("attribute_not_exists(chunks)")
                .expression_attribute_values(
                    ":c",
                    AttributeValue::M(HashMap::from([(entry.clone(), s(&text))])),
                )
                .expression_attribute_values(":e", s("reconciliation_marks"))
                .send()
                .await;
            if super::tx::conditional(created, "UpdateItem")? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "the marks of {:?}: neither added nor created in 3 tries",
            key.get("pk")
        )))
    }
}

impl ReconStore for ReconDynamo {
    async fn begin_run(&self, run: &Run) -> Result<RunBegun, StoreError> {
        let put = self
            .store
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match put {
            Ok(_) => Ok(RunBegun::Started),
            Err(e) => {
                let old = match e.as_service_error() {
                    Some(
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                            c,
                        ),
                    ) => c.item().cloned(),
                    _ => return Err(unavailable("PutItem run", e)),
                };
                let old = old.ok_or_else(|| StoreError::Corrupt("run exists but was not returned".into()))?;
                let earlier = run_from(&old)?;
                Ok(match earlier.status {
                    RunStatus::Running => RunBegun::Resumed(Box::new(earlier)),
                    _ => RunBegun::Finished(Box::new(earlier)),
                })
            }
        }
    }

    async fn finish_run(&self, run: &Run) -> Result<(), StoreError> {
        self.store
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)))
            .send()
            .await
            .map_err(|e| unavailable("PutItem run", e))?;
        Ok(())
    }

    async fn run(&self, account: &AccountId, id: &ReconRunId) -> Result<Option<Run>, StoreError> {
        let out = self
            .store
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(run_key(id)))
            .send()
            .await
            .map_err(|e| unavailable("GetItem run", e))?;
        match out.item {
            Some(item) => {
                let run = run_from(&item)?;
                Ok((&run.account_id == account).then_some(run))
            }
            None => Ok(None),
        }
    }

    async fn lookup(
        &self,
        account: &AccountId,
        run: &ReconRunId,
        refs: &[RecordRef],
        windows: &[String],
    ) -> Result<Lookup, StoreError> {
        let mut keys: Vec<(String, Item)> = refs
            .iter()
            .map(|r| (self.store.tables.payments.clone(), record_key(r)))
            .collect();
        keys.extend(
            windows
                .iter()
                .map(|w| (self.table.clone(), marks_key(account, w))),
        );
        let mut records = HashMap::new();
        let mut marks = HashMap::new();
        for item in batch_get(&self.store.client, &keys, true).await? {
            if opt_s(&item, "entity")? == Some("reconciliation_marks") {
                marks.extend(
                    marks_from(&item, run)?
                        .into_iter()
                        .map(|m| (m.balance_transaction_id.clone(), m)),
                );
            } else if let Some(r) = record_from(&item)? {
                records.insert(r.reference.clone(), r);
            }
        }
        Ok(Lookup { records, marks })
    }

    async fn record_by_psp_id(&self, psp_id: &str) -> Result<Option<RecordRef>, StoreError> {
        let psp_ref = if let Ok(id) = PspSessionId::parse(psp_id) {
            PspRef::Session(id)
        } else if let Ok(id) = PspRefundId::parse(psp_id) {
            PspRef::Refund(id)
        } else if let Ok(id) = PspTransferId::parse(psp_id) {
            PspRef::Transfer(id)
        } else {
            return Ok(None);
        };
        let keys = self.store.find_psp_ref(&psp_ref).await?;
        Ok(keys.iter().find_map(|pk| {
            if let Some(id) = pk.strip_prefix("CO#") {
                CheckoutId::parse(id).ok().map(RecordRef::Checkout)
            } else if let Some(id) = pk.strip_prefix("RF#") {
                RefundId::parse(id).ok().map(RecordRef::Refund)
            } else if let Some(id) = pk.strip_prefix("PAYOUT#") {
                PayoutId::parse(id).ok().map(RecordRef::Payout)
            } else {
                None
            }
        }))
    }

    async fn put_marks(&self, account: &AccountId, marks: &[(String, Mark)]) -> Result<(), StoreError> {
        let mut by_window: BTreeMap<&str, Vec<&Mark>> = BTreeMap::new();
        for (window, m) in marks {
            by_window.entry(window.as_str()).or_default().push(m);
        }
        let writes = by_window.into_iter().map(|(window, marks)| async move {
            // Named by the run and its first line: a run that goes again rewrites this entry.
            let first = marks.iter().map(|m| m.line).min().unwrap_or(0);
            let entry = format!("{}#{first:012}", marks[0].run_id);
            self.put_marks_entry(marks_key(account, window), entry, marks_text(&marks)?)
                .await
        });
        futures_util::future::try_join_all(writes).await?;
        Ok(())
    }

    /// Each break is put unless a person resolved it meanwhile (a run that goes again must not
    /// reopen it); its pointer alongside. Breaks are few next to rows: one conditional put each.
    async fn put_breaks(&self, breaks: &[Break]) -> Result<(), StoreError> {
        let mut pointers = Vec::with_capacity(breaks.len());
        for chunk in breaks.chunks(8) {
            pointers
                .extend(futures_util::future::try_join_all(chunk.iter().map(|b| self.put_break(b))).await?);
        }
        batch_put(&self.store.client, &self.table, pointers).await
    }

    async fn posted_in(
        &self,
        account: &AccountId,
        interval: &Interval,
        after: Option<String>,
    ) -> Result<PostedPage, StoreError> {
        // 1. A page of the psp_receivable lines posted in the interval: (transaction id, when).
        let pk = format!("ACCT#{account}#{}", LedgerAccount::PspReceivable);
        let start = after.map(|sk| HashMap::from([("pk".to_owned(), s(&pk)), ("sk".to_owned(), s(sk))]));
        let out = self
            .store
            .client
            .query()
            .table_name(&self.ledger.ledger_table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":a", s(format_time(interval.start)))
            .expression_attribute_values(":b", s(format_time(interval.end)))
            .projection_expression("sk, transaction_id, created_at")
            .limit(POSTED_PAGE)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| unavailable("Query ledger lines", e))?;
        let mut lines: Vec<(String, DateTime<Utc>)> = Vec::new();
        for item in out.items.unwrap_or_default() {
            let at = get_time(&item, "created_at")?;
            if at >= interval.start && at < interval.end {
                lines.push((get_s(&item, "transaction_id")?.to_owned(), at));
            }
        }
        let next = match out.last_evaluated_key {
            Some(k) if !k.is_empty() => Some(get_s(&k, "sk")?.to_owned()),
            _ => None,
        };
        // Our own bookings (fees, bank payouts, suspense) are not records.
        lines.retain(|(id, _)| {
            !(id.starts_with("ltx_pspfee_")
                || id.starts_with("ltx_bankpayout_")
                || id.starts_with("ltx_suspense_"))
        });
        // 2. Their headers: which record, and which way psp_receivable moved.
        let keys: Vec<(String, Item)> = lines
            .iter()
            .map(|(id, _)| {
                (
                    self.ledger.ledger_table.clone(),
                    HashMap::from([("pk".into(), s(format!("LTX#{id}"))), ("sk".into(), s("LTX"))]),
                )
            })
            .collect();
        let when: HashMap<&str, DateTime<Utc>> = lines.iter().map(|(id, at)| (id.as_str(), *at)).collect();
        let mut wanted: Vec<(DateTime<Utc>, RecordRef, Category)> = Vec::new();
        let mut orders: Vec<(DateTime<Utc>, PaymentOrderId)> = Vec::new();
        for item in batch_get(&self.store.client, &keys, false).await? {
            let tx = super::ledger::transaction_from(&item)?;
            let Some(at) = when.get(tx.id.as_str()).copied() else {
                continue;
            };
            let debit = tx
                .entries
                .iter()
                .any(|e| e.account == LedgerAccount::PspReceivable && e.direction == Direction::Debit);
            if let Some(p) = tx.payout_id {
                let c = if debit {
                    Category::TransferReversal
                } else {
                    Category::Transfer
                };
                wanted.push((at, RecordRef::Payout(p), c));
            } else if let Some(r) = tx.refund_id {
                let c = if debit {
                    Category::RefundFailure
                } else {
                    Category::Refund
                };
                wanted.push((at, RecordRef::Refund(r), c));
            } else if let Some(po) = tx.payment_order_id {
                if debit {
                    orders.push((at, po));
                }
            }
        }
        // 3. A payment order's checkout: one charge per checkout, however many sellers.
        let keys: Vec<(String, Item)> = orders
            .iter()
            .map(|(_, po)| (self.store.tables.payments.clone(), payment_order_key(po)))
            .collect();
        let order_at: HashMap<String, DateTime<Utc>> =
            orders.iter().map(|(at, po)| (po.to_string(), *at)).collect();
        let mut checkouts: HashSet<CheckoutId> = HashSet::new();
        for item in batch_get(&self.store.client, &keys, false).await? {
            let po = get_s(&item, "payment_order_id")?;
            let checkout = parse(&item, "checkout_id", CheckoutId::parse)?;
            if checkouts.insert(checkout.clone()) {
                if let Some(at) = order_at.get(po) {
                    wanted.push((*at, RecordRef::Checkout(checkout), Category::Charge));
                }
            }
        }
        // 4. The records themselves (amount and status, for the break).
        let refs: Vec<RecordRef> = wanted.iter().map(|(_, r, _)| r.clone()).collect();
        let mut records = HashMap::new();
        for chunk in refs.chunks(super::batch::GET_KEYS_MAX) {
            records.extend(self.records(chunk).await?);
        }
        let mut out: Vec<(DateTime<Utc>, OurRecord, Category)> = wanted
            .into_iter()
            .filter_map(|(at, r, c)| records.get(&r).map(|rec| (at, rec.clone(), c)))
            .collect();
        out.sort_by_key(|a| a.0);
        Ok(PostedPage { records: out, next })
    }

    async fn psp_receivable(&self, account: &AccountId) -> Result<BTreeMap<String, i64>, StoreError> {
        let totals = self.ledger.totals(account, &LedgerAccount::PspReceivable).await?;
        Ok(totals
            .into_iter()
            .map(|(c, t)| (c.code().to_owned(), t.debits_minor - t.credits_minor))
            .collect())
    }

    async fn breaks_of(&self, run: &ReconRunId, limit: usize) -> Result<Vec<Break>, StoreError> {
        let mut breaks = Vec::new();
        let mut start: Option<Item> = None;
        while breaks.len() < limit {
            let out = self
                .store
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :brk)")
                .expression_attribute_values(":pk", s(format!("RUN#{run}")))
                .expression_attribute_values(":brk", s("BRK#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Query breaks", e))?;
            for item in out.items.unwrap_or_default() {
                if opt_s(&item, "entity")? == Some("reconciliation_break") {
                    breaks.push(break_from(&item)?);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        breaks.truncate(limit);
        breaks.sort_by(|a, b| (a.line, &a.created_at).cmp(&(b.line, &b.created_at)));
        Ok(breaks)
    }
}

/// Money for a view: minor units back to the currency's decimal text.
pub fn minor_text(currency: &str, minor: i64) -> String {
    match Currency::parse(currency) {
        Ok(c) => crate::domain::reconciliation::row::signed_text(Money::from_minor(minor, c)),
        Err(_) => minor.to_string(),
    }
}
