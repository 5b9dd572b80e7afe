//! The reconciliation API's store: runs and breaks read by id and listed through `by_account`,
//! and a break's resolution. A resolution sets `resolution`, `resolved_note`, `resolved_by`
//! and `resolved_at` on the break (status `resolved`) and appends an entry
//! `RUN#<run_id>` / `BRK#<break_id>#RES#<resolved_at>` (entity `reconciliation_resolution`,
//! so the run's own reading of its breaks skips it), with the idempotency claim, in one
//! transaction.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::codec::{built, get_s, get_time, opt_s, parse, s, time, unavailable, Item};
use super::cursor::Cursors;
use super::reconciliation::{break_from, run_from, BY_ACCOUNT_INDEX};
use super::tx::put_if_absent;
use super::DynamoStore;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, ApiKeyId, BreakId, ReconRunId};
use crate::domain::reconciliation::{Break, BreakStatus, BreakType, Resolution, Run};
use crate::domain::time::format_time;
use crate::ports::reconciliation_api::{
    BreakFilter, BreakRecord, BreakResolutions, ReconLists, ReconReader, ResolutionEntry,
};
use crate::ports::{Begin, Page, Refusal, StoreError};

fn run_key(id: &ReconRunId) -> Item {
    HashMap::from([("pk".into(), s(format!("RUN#{id}"))), ("sk".into(), s("RUN"))])
}

const RESOLUTION_ENTITY: &str = "reconciliation_resolution";

/// The table, for reads by id and resolutions.
#[derive(Debug, Clone)]
pub struct ReconTable {
    pub store: DynamoStore,
    pub table: String,
}

/// The lists: the table and the seal on their cursors.
#[derive(Debug, Clone)]
pub struct ReconListReads {
    pub table: ReconTable,
    pub cursors: Cursors,
}

/// A break item with its resolution, if a person resolved it.
pub fn break_record_from(item: &Item) -> Result<BreakRecord, StoreError> {
    let brk = break_from(item)?;
    let resolution = match opt_s(item, "resolution")? {
        None => None,
        Some(_) => Some(ResolutionEntry {
            resolution: parse(item, "resolution", str::parse::<Resolution>)?,
            note: opt_s(item, "resolved_note")?.map(str::to_owned),
            resolved_by: parse(item, "resolved_by", ApiKeyId::parse)?,
            resolved_at: get_time(item, "resolved_at")?,
        }),
    };
    Ok(BreakRecord { brk, resolution })
}

/// The append-only entry a resolution leaves.
pub fn resolution_item(brk: &Break, e: &ResolutionEntry) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(format!("RUN#{}", brk.run_id))),
        (
            "sk".into(),
            s(format!("BRK#{}#RES#{}", brk.id, format_time(e.resolved_at))),
        ),
        ("entity".into(), s(RESOLUTION_ENTITY)),
        ("break_id".into(), s(brk.id.as_str())),
        ("run_id".into(), s(brk.run_id.as_str())),
        ("account_id".into(), s(brk.account_id.as_str())),
        ("resolution".into(), s(e.resolution.as_str())),
        ("resolved_by".into(), s(e.resolved_by.as_str())),
        ("resolved_at".into(), time(e.resolved_at)),
    ]);
    if let Some(note) = &e.note {
        item.insert("note".into(), s(note));
    }
    item
}

impl ReconTable {
    async fn get(&self, key: Item, op: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .store
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(op, e))?;
        Ok(out.item)
    }
}

impl ReconReader for ReconTable {
    async fn get_run(&self, account: &AccountId, id: &ReconRunId) -> Result<Option<Run>, StoreError> {
        match self.get(run_key(id), "GetItem run").await? {
            Some(item) => {
                let run = run_from(&item)?;
                Ok((&run.account_id == account).then_some(run))
            }
            None => Ok(None),
        }
    }

    async fn get_break(&self, account: &AccountId, id: &BreakId) -> Result<Option<BreakRecord>, StoreError> {
        let pointer_key = HashMap::from([("pk".into(), s(format!("BRK#{id}"))), ("sk".into(), s("BRK"))]);
        let Some(pointer) = self.get(pointer_key, "GetItem break pointer").await? else {
            return Ok(None);
        };
        if get_s(&pointer, "account_id")? != account.as_str() {
            return Ok(None);
        }
        let run = get_s(&pointer, "run_id")?;
        let key = HashMap::from([
            ("pk".into(), s(format!("RUN#{run}"))),
            ("sk".into(), s(format!("BRK#{id}"))),
        ]);
        match self.get(key, "GetItem break").await? {
            Some(item) => {
                let b = break_record_from(&item)?;
                Ok((&b.brk.account_id == account).then_some(b))
            }
            None => Ok(None),
        }
    }
}

impl BreakResolutions for ReconTable {
    async fn resolve_break(
        &self,
        record: &IdempotencyRecord,
        brk: &Break,
        entry: &ResolutionEntry,
    ) -> Result<Begin, StoreError> {
        // Only an open break of the caller's account moves; the entry is new by its key.
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(format!("RUN#{}", brk.run_id)))
            .key("sk", s(format!("BRK#{}", brk.id)))
            .condition_expression("break_status = :open AND account_id = :account")
            .expression_attribute_values(":open", s(BreakStatus::Open.as_str()))
            .expression_attribute_values(":account", s(brk.account_id.as_str()))
            .expression_attribute_values(":resolved", s(BreakStatus::Resolved.as_str()))
            .expression_attribute_values(":resolution", s(entry.resolution.as_str()))
            .expression_attribute_values(":by", s(entry.resolved_by.as_str()))
            .expression_attribute_values(":at", time(entry.resolved_at));
        let mut set =
            "SET break_status = :resolved, resolution = :resolution, resolved_by = :by, resolved_at = :at"
                .to_owned();
        if let Some(note) = &entry.note {
            set.push_str(", resolved_note = :note");
            update = update.expression_attribute_values(":note", s(note));
        }
        let update = built(update.update_expression(set).build())?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            put_if_absent(&self.table, resolution_item(brk, entry))?,
        ];
        let id = brk.id.clone();
        self.store
            .begin_with_claim(record, items, |c| {
                // Items: 0 the claim, 1 the break, 2 the entry.
                c.condition_failed(1).then(|| Refusal {
                    code: "break_not_open",
                    param: None,
                    message: format!("break {id} is no longer open: only an open break can be resolved"),
                    conflict: true,
                })
            })
            .await
    }
}

impl ReconListReads {
    /// One page of `by_account` under `list_pk` (and `list_sk` prefix), newest or oldest
    /// first, with an optional filter applied after the limit.
    async fn page(&self, q: ListQuery<'_>) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let mut key = "list_pk = :pk".to_owned();
        let mut query = self
            .table
            .store
            .client
            .query()
            .table_name(&self.table.table)
            .index_name(BY_ACCOUNT_INDEX)
            .expression_attribute_values(":pk", s(q.list_pk))
            .scan_index_forward(!q.newest_first)
            .limit(q.limit)
            .set_exclusive_start_key(self.cursors.open(q.scope, q.cursor)?);
        if let Some(prefix) = q.sk_prefix {
            key.push_str(" AND begins_with(list_sk, :prefix)");
            query = query.expression_attribute_values(":prefix", s(prefix));
        }
        let mut filters = Vec::new();
        for (i, (attribute, value)) in q.only.iter().enumerate() {
            filters.push(format!("#f{i} = :f{i}"));
            query = query
                .expression_attribute_names(format!("#f{i}"), *attribute)
                .expression_attribute_values(format!(":f{i}"), s(*value));
        }
        if !filters.is_empty() {
            query = query.filter_expression(filters.join(" AND "));
        }
        let out = query
            .key_condition_expression(key)
            .send()
            .await
            .map_err(|e| unavailable(q.op, e))?;
        let next = self.cursors.seal(q.scope, out.last_evaluated_key.as_ref());
        Ok((out.items.unwrap_or_default(), next))
    }
}

struct ListQuery<'a> {
    list_pk: String,
    sk_prefix: Option<String>,
    only: Vec<(&'static str, &'a str)>,
    newest_first: bool,
    scope: &'a str,
    limit: i32,
    cursor: Option<&'a str>,
    op: &'static str,
}

impl ReconLists for ReconListReads {
    async fn list_runs(
        &self,
        account: &AccountId,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<Run>, StoreError> {
        let scope = format!("recon_runs|{account}");
        let (items, next_cursor) = self
            .page(ListQuery {
                list_pk: format!("{account}#RUN"),
                sk_prefix: None,
                only: Vec::new(),
                newest_first: true,
                scope: &scope,
                limit,
                cursor,
                op: "Query runs by account",
            })
            .await?;
        let data = items.iter().map(run_from).collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            data: data.into_iter().filter(|r| &r.account_id == account).collect(),
            next_cursor,
        })
    }

    async fn list_breaks(
        &self,
        account: &AccountId,
        filter: &BreakFilter,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<BreakRecord>, StoreError> {
        let scope = format!(
            "recon_breaks|{account}|{}|{}|{}",
            filter.run_id.as_ref().map_or("", |r| r.as_str()),
            filter.status.map_or("", BreakStatus::as_str),
            filter.kind.map_or("", BreakType::as_str),
        );
        let mut only = Vec::new();
        if let Some(st) = filter.status {
            only.push(("break_status", st.as_str()));
        }
        if let Some(k) = filter.kind {
            only.push(("break_type", k.as_str()));
        }
        let (items, next_cursor) = self
            .page(ListQuery {
                list_pk: format!("{account}#BRK"),
                sk_prefix: filter.run_id.as_ref().map(|r| format!("{r}#")),
                only,
                newest_first: false,
                scope: &scope,
                limit,
                cursor,
                op: "Query breaks by account",
            })
            .await?;
        let data = items
            .iter()
            .map(break_record_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            data: data
                .into_iter()
                .filter(|b| &b.brk.account_id == account)
                .collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::reconciliation::break_items;
    use super::*;
    use crate::domain::time::parse_time;

    #[test]
    fn a_resolved_break_reads_back_with_its_entry() {
        let at = parse_time("2026-11-30T10:00:00.000Z").unwrap();
        let brk = Break::of_row(
            &ReconRunId::derived("f"),
            &AccountId::parse("acct_a").unwrap(),
            BreakType::MalformedRow,
            "bad".into(),
            2,
            BTreeMap::new(),
            at,
        );
        let [mut item, _pointer] = break_items(&brk);
        assert_eq!(break_record_from(&item).unwrap().resolution, None);
        let entry = ResolutionEntry {
            resolution: Resolution::Ignored,
            note: Some("test row".into()),
            resolved_by: ApiKeyId::derived("k"),
            resolved_at: at,
        };
        item.insert("break_status".into(), s("resolved"));
        item.insert("resolution".into(), s("ignored"));
        item.insert("resolved_note".into(), s("test row"));
        item.insert("resolved_by".into(), s(entry.resolved_by.as_str()));
        item.insert("resolved_at".into(), time(at));
        let back = break_record_from(&item).unwrap();
        assert_eq!(back.brk.status, BreakStatus::Resolved);
        assert_eq!(back.resolution, Some(entry.clone()));
        let res = resolution_item(&brk, &entry);
        assert_eq!(
            get_s(&res, "sk").unwrap(),
            format!("BRK#{}#RES#2026-11-30T10:00:00.000Z", brk.id)
        );
        assert_eq!(get_s(&res, "entity").unwrap(), RESOLUTION_ENTITY);
        assert!(!res.contains_key("list_pk"), "entries stay out of the lists");
    }
}
