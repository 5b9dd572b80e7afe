//! Stripe's itemized balance report (`balance_change_from_activity.itemized.1|2|3`): one CSV row
//! per platform balance transaction created in `[interval_start, interval_end)`, oldest first,
//! amounts in major units exactly. One renderer serves the Reporting API's report runs and the
//! admin's `/__sandbox/settlement.csv`, and both go through the report faults
//! (`/__sandbox/report_faults`): rows altered, omitted, duplicated, raw lines appended.

use crate::api::{integer, invalid, list, no_such, only, required, string, Ctx, ListQuery, Out};
use crate::form::Node;
use crate::store::{self, format_minor, reporting_category, BalanceTxn, State};
use crate::Resp;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The columns of a report when none are asked for (Stripe's default set for the itemized
/// balance report, the parts the sandbox can fill).
pub const DEFAULT_COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "charge_id",
    "payment_intent_id",
];

/// Every plain column the sandbox knows (besides `payment_metadata[k]`, `refund_metadata[k]`,
/// `transfer_metadata[k]`). `created` / `available_on` / `*_effective_at` are in the report's
/// timezone, which is always UTC here. `checkout_session_id` and `client_reference_id` are the
/// sandbox's own (not Stripe's).
pub const KNOWN_COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "created",
    "available_on_utc",
    "available_on",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "automatic_payout_effective_at_utc",
    "automatic_payout_effective_at",
    "charge_id",
    "payment_intent_id",
    "charge_created_utc",
    "charge_created",
    "invoice_id",
    "subscription_id",
    "customer_id",
    "customer_email",
    "connected_account",
    "transfer_group",
    "checkout_session_id",
    "client_reference_id",
];

/// The settlement CSV's columns (`/__sandbox/settlement.csv`): all the defaults, the metadata
/// keys this project's client sets, and the sandbox's own two.
pub const SETTLEMENT_COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "description",
    "customer_facing_amount",
    "customer_facing_currency",
    "automatic_payout_id",
    "charge_id",
    "payment_intent_id",
    "checkout_session_id",
    "client_reference_id",
    "connected_account",
    "transfer_group",
    "payment_metadata[checkout_id]",
    "refund_metadata[refund_id]",
    "refund_metadata[payment_order_id]",
    "transfer_metadata[payout_id]",
];

/// Stripe's reporting categories of the rows the sandbox writes.
pub const REPORTING_CATEGORIES: &[&str] = &[
    "charge",
    "refund",
    "refund_failure",
    "transfer",
    "transfer_reversal",
    "payout",
    "payout_reversal",
    "fee",
    "adjustment",
];

/// A column of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Plain(&'static str),
    PaymentMetadata(String),
    RefundMetadata(String),
    TransferMetadata(String),
}

impl Column {
    /// `None` for a column the sandbox does not know.
    pub fn parse(name: &str) -> Option<Column> {
        if let Some(c) = KNOWN_COLUMNS.iter().find(|c| **c == name) {
            return Some(Column::Plain(c));
        }
        let meta = |prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(']'))
                .filter(|k| !k.is_empty() && k.chars().count() <= 40 && !k.contains(['[', ']']))
                .map(str::to_string)
        };
        if let Some(k) = meta("payment_metadata[") {
            return Some(Column::PaymentMetadata(k));
        }
        if let Some(k) = meta("refund_metadata[") {
            return Some(Column::RefundMetadata(k));
        }
        meta("transfer_metadata[").map(Column::TransferMetadata)
    }

    pub fn name(&self) -> String {
        match self {
            Column::Plain(c) => c.to_string(),
            Column::PaymentMetadata(k) => format!("payment_metadata[{k}]"),
            Column::RefundMetadata(k) => format!("refund_metadata[{k}]"),
            Column::TransferMetadata(k) => format!("transfer_metadata[{k}]"),
        }
    }
}

/// Parse column names; `Err(name)` for the first one not known.
pub fn parse_columns<S: AsRef<str>>(names: &[S]) -> Result<Vec<Column>, String> {
    names
        .iter()
        .map(|n| Column::parse(n.as_ref()).ok_or_else(|| n.as_ref().to_string()))
        .collect()
}

pub fn default_columns() -> Vec<Column> {
    DEFAULT_COLUMNS.iter().map(|c| Column::Plain(c)).collect()
}

pub fn settlement_columns() -> Vec<Column> {
    SETTLEMENT_COLUMNS
        .iter()
        .filter_map(|c| Column::parse(c))
        .collect()
}

/// What a report covers.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    pub interval_start: i64,
    pub interval_end: i64,
    pub columns: Vec<Column>,
    /// Lowercase currency, if filtered.
    pub currency: Option<String>,
    pub reporting_category: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Report faults (`/__sandbox/report_faults`).

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportFaults {
    #[serde(default)]
    pub alter: Vec<Alter>,
    #[serde(default)]
    pub omit: Vec<String>,
    #[serde(default)]
    pub duplicate: Vec<String>,
    #[serde(default)]
    pub append_lines: Vec<String>,
}

/// A row (by balance transaction id or source id) whose gross is written as `gross` (major
/// units, e.g. `"12.34"`); its net is recomputed as gross − fee, so the row stays well-formed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alter {
    pub id: String,
    pub gross: String,
}

/// `-?digits(.digits)?` → (mantissa, decimals).
fn parse_decimal(s: &str) -> Option<(i128, u32)> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty()
        || int.len() > 18
        || frac.len() > 6
        || (body.contains('.') && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let m: i128 = format!("{int}{frac}").parse().ok()?;
    Some((if neg { -m } else { m }, frac.len() as u32))
}

fn format_scaled(m: i128, scale: u32) -> String {
    let sign = if m < 0 { "-" } else { "" };
    let abs = m.unsigned_abs();
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    let p = 10u128.pow(scale);
    format!("{sign}{}.{:0w$}", abs / p, abs % p, w = scale as usize)
}

impl ReportFaults {
    /// Check a request before it is applied (nothing changes on an error).
    pub fn validate(&self) -> Result<(), String> {
        for a in &self.alter {
            if a.id.is_empty() {
                return Err("alter[].id must name a balance transaction or source id".into());
            }
            if parse_decimal(&a.gross).is_none() {
                return Err(format!(
                    "alter[].gross must be a decimal amount in major units (e.g. \"12.34\"), not {:?}",
                    a.gross
                ));
            }
        }
        if self.append_lines.iter().any(|l| l.contains(['\n', '\r'])) {
            return Err("append_lines[] are single lines (no line breaks)".into());
        }
        Ok(())
    }

    /// Add `more` to these faults (lists are extended; a later `alter` of the same id wins).
    pub fn merge(&mut self, more: ReportFaults) {
        self.alter.extend(more.alter);
        self.omit.extend(more.omit);
        self.duplicate.extend(more.duplicate);
        self.append_lines.extend(more.append_lines);
    }

    pub fn is_empty(&self) -> bool {
        self.alter.is_empty()
            && self.omit.is_empty()
            && self.duplicate.is_empty()
            && self.append_lines.is_empty()
    }

    pub fn describe(&self) -> Value {
        json!({
            "alter": self.alter.iter().map(|a| json!({"id": a.id, "gross": a.gross})).collect::<Vec<_>>(),
            "omit": self.omit, "duplicate": self.duplicate, "append_lines": self.append_lines,
        })
    }

    fn hits(list: &[String], t: &BalanceTxn) -> bool {
        list.iter()
            .any(|id| *id == t.id || (!t.source.is_empty() && *id == t.source))
    }

    fn altered(&self, t: &BalanceTxn) -> Option<&str> {
        self.alter
            .iter()
            .rev()
            .find(|a| a.id == t.id || (!t.source.is_empty() && a.id == t.source))
            .map(|a| a.gross.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What one row needs besides its balance transaction.
struct RowCtx<'a> {
    t: &'a BalanceTxn,
    payment_metadata: BTreeMap<String, String>,
    refund_metadata: Option<&'a BTreeMap<String, String>>,
    transfer: Option<&'a crate::connect::Transfer>,
    /// (gross, net) as written, when a fault alters the row.
    altered: Option<(String, String)>,
}

fn value(st: &State, row: &RowCtx<'_>, col: &Column) -> String {
    let t = row.t;
    let cur = t.currency.as_str();
    let charge_related = matches!(
        t.kind,
        store::TXN_CHARGE | store::TXN_REFUND | store::TXN_REFUND_FAILURE
    );
    match col {
        Column::PaymentMetadata(k) => row.payment_metadata.get(k).cloned().unwrap_or_default(),
        Column::RefundMetadata(k) => row
            .refund_metadata
            .and_then(|m| m.get(k).cloned())
            .unwrap_or_default(),
        Column::TransferMetadata(k) => match row.transfer {
            Some(tr) => tr.metadata.get(k).cloned().unwrap_or_default(),
            None if t.kind == store::TXN_TRANSFER => t.metadata.get(k).cloned().unwrap_or_default(),
            None => String::new(),
        },
        Column::Plain(c) => match *c {
            "balance_transaction_id" => t.id.clone(),
            "created_utc" | "created" => store::utc_text(t.created),
            "available_on_utc" | "available_on" => store::utc_text(t.available_on),
            "currency" => t.currency.clone(),
            "gross" => match &row.altered {
                Some((g, _)) => g.clone(),
                None => format_minor(t.amount, cur),
            },
            "fee" => format_minor(t.fee, cur),
            "net" => match &row.altered {
                Some((_, n)) => n.clone(),
                None => format_minor(t.net, cur),
            },
            "reporting_category" => reporting_category(t.kind).to_string(),
            "source_id" => t.source.clone(),
            "description" => t.description.clone().unwrap_or_default(),
            "customer_facing_amount" if charge_related => format_minor(t.amount, cur),
            "customer_facing_currency" if charge_related => t.currency.clone(),
            "charge_id" => t.charge_id.clone(),
            "payment_intent_id" => t.payment_intent_id.clone(),
            "charge_created_utc" | "charge_created" => st
                .charges
                .get(&t.charge_id)
                .map(|c| store::utc_text(c.created))
                .unwrap_or_default(),
            "customer_email" => st
                .sessions
                .get(&t.session_id)
                .and_then(|s| s.customer_email.clone())
                .unwrap_or_default(),
            "connected_account" => row.transfer.map(|tr| tr.destination.clone()).unwrap_or_default(),
            "transfer_group" => row
                .transfer
                .and_then(|tr| tr.transfer_group.clone())
                .unwrap_or_default(),
            "checkout_session_id" => t.session_id.clone(),
            "client_reference_id" => t.client_reference_id.clone().unwrap_or_default(),
            // automatic_payout_* (every payout here is manual), invoice, subscription, customer.
            _ => String::new(),
        },
    }
}

/// The itemized balance report: the header line, then one row per platform balance transaction
/// created in `[interval_start, interval_end)` (never a connected account's), oldest first,
/// filtered by currency and reporting category, with the report faults applied, then the
/// faults' appended lines.
pub fn itemized_csv(st: &State, q: &ReportQuery) -> String {
    let faults = &st.faults.report;
    let header: Vec<String> = q.columns.iter().map(|c| csv_field(&c.name())).collect();
    let mut out = header.join(",");
    out.push('\n');
    let mut rows: Vec<&BalanceTxn> = st
        .balance_txns
        .iter()
        .filter(|t| t.created >= q.interval_start && t.created < q.interval_end)
        .filter(|t| q.currency.as_deref().is_none_or(|c| c == t.currency))
        .filter(|t| {
            q.reporting_category
                .as_deref()
                .is_none_or(|c| c == reporting_category(t.kind))
        })
        .collect();
    // Stable: transactions of the same second keep the order they were written in.
    rows.sort_by_key(|t| t.created);
    let needs_transfers = q.columns.iter().any(|c| {
        matches!(
            c,
            Column::TransferMetadata(_) | Column::Plain("connected_account" | "transfer_group")
        )
    });
    let reversal_of: HashMap<&str, &str> = if needs_transfers {
        st.transfers
            .values()
            .flat_map(|tr| tr.reversals.iter().map(move |r| (r.id.as_str(), tr.id.as_str())))
            .collect()
    } else {
        HashMap::new()
    };
    for t in rows {
        if ReportFaults::hits(&faults.omit, t) {
            continue;
        }
        let mut payment_metadata = BTreeMap::new();
        if !t.charge_id.is_empty() {
            payment_metadata = t.metadata.clone();
            if let Some(pi) = st.intents.get(&t.payment_intent_id) {
                payment_metadata.extend(pi.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let refund_metadata = match t.kind {
            store::TXN_REFUND | store::TXN_REFUND_FAILURE => st.refunds.get(&t.source).map(|r| &r.metadata),
            _ => None,
        };
        let transfer = match t.kind {
            store::TXN_TRANSFER => st.transfers.get(&t.source),
            store::TXN_TRANSFER_REVERSAL => reversal_of
                .get(t.source.as_str())
                .and_then(|id| st.transfers.get(*id)),
            _ => None,
        };
        let altered = faults.altered(t).and_then(|g| {
            let (m, given) = parse_decimal(g)?;
            let d = store::decimals(&t.currency);
            let scale = given.max(d);
            let gross = m * 10i128.pow(scale - given);
            let fee = i128::from(t.fee) * 10i128.pow(scale - d);
            Some((format_scaled(gross, scale), format_scaled(gross - fee, scale)))
        });
        let row = RowCtx {
            t,
            payment_metadata,
            refund_metadata,
            transfer,
            altered,
        };
        let fields: Vec<String> = q.columns.iter().map(|c| csv_field(&value(st, &row, c))).collect();
        let line = fields.join(",");
        let times = if ReportFaults::hits(&faults.duplicate, t) {
            2
        } else {
            1
        };
        for _ in 0..times {
            out.push_str(&line);
            out.push('\n');
        }
    }
    for l in &faults.append_lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The admin's settlement CSV for `[from, to)`: every settlement column, no filter.
pub fn settlement_csv(st: &State, from: i64, to: i64) -> String {
    itemized_csv(
        st,
        &ReportQuery {
            interval_start: from,
            interval_end: to,
            columns: settlement_columns(),
            currency: None,
            reporting_category: None,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The Reporting API: report runs and their files.

/// Default of `SANDBOX_REPORT_RUN_MS`.
pub const REPORT_RUN_MS_DEFAULT: u64 = 300;
/// The report types the sandbox runs (all three versions render the same columns).
pub const REPORT_TYPES: &[&str] = &[
    "balance_change_from_activity.itemized.1",
    "balance_change_from_activity.itemized.2",
    "balance_change_from_activity.itemized.3",
];
/// How long a report's file is kept (`expires_at`).
const FILE_TTL_S: i64 = 30 * 86_400;

#[derive(Debug, Clone)]
pub struct ReportRun {
    pub id: String,
    pub created: i64,
    pub report_type: String,
    /// The `parameters` as given (Stripe echoes them).
    pub parameters: Value,
    pub query: ReportQuery,
    /// `pending` or `succeeded`.
    pub status: &'static str,
    pub due_ms: i64,
    /// The file (`file_…`) once succeeded.
    pub result: Option<String>,
    pub succeeded_at: Option<i64>,
    /// Base of the file's `url` (`PSP_PUBLIC_URL`, or the sandbox's own address).
    pub public_url: String,
    pub api_version: String,
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    pub filename: String,
    pub title: String,
    pub url: String,
    pub bytes: Vec<u8>,
}

impl StoredFile {
    /// Stripe's `file` object.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "file", "created": self.created, "expires_at": self.expires_at,
            "filename": self.filename,
            "links": {"object": "list", "data": [], "has_more": false,
                      "url": format!("/v1/file_links?file={}", self.id)},
            "purpose": "finance_report_run", "size": self.bytes.len(), "title": self.title,
            "type": "csv", "url": self.url,
        })
    }
}

fn push_capped<T>(order: &mut VecDeque<String>, map: &mut HashMap<String, T>, id: String, item: T) {
    if order.len() >= store::RECORDS_MAX {
        if let Some(old) = order.pop_front() {
            map.remove(&old);
        }
    }
    order.push_back(id.clone());
    map.insert(id, item);
}

impl State {
    /// Stripe's `reporting.report_run` object, its `result` the file object once succeeded.
    pub fn report_run_json(&self, r: &ReportRun) -> Value {
        json!({
            "id": r.id, "object": "reporting.report_run", "created": r.created, "error": null,
            "livemode": false, "parameters": r.parameters, "report_type": r.report_type,
            "result": r.result.as_ref().and_then(|f| self.files.get(f)).map(StoredFile::json),
            "status": r.status, "succeeded_at": r.succeeded_at,
        })
    }

    /// Render the report runs due by `now_ms` (a snapshot of the ledger and the report faults
    /// at that moment), store their files, emit `reporting.report_run.succeeded`. How many.
    pub fn settle_due_reports(&mut self, now_ms: i64) -> usize {
        let mut done = 0;
        while let Some((at, id)) = self.report_timers.first().cloned() {
            if at > now_ms {
                break;
            }
            self.report_timers.pop_first();
            let Some(run) = self.report_runs.get(&id).filter(|r| r.status == "pending") else {
                continue;
            };
            let csv = itemized_csv(self, &run.query);
            let created = store::now();
            let file_id = store::new_id("file_", 24);
            let file = StoredFile {
                id: file_id.clone(),
                created,
                expires_at: created + FILE_TTL_S,
                filename: format!("{id}.csv"),
                title: format!("FinanceReportRun {id}"),
                url: format!("{}/v1/files/{file_id}/contents", run.public_url),
                bytes: csv.into_bytes(),
            };
            let version = run.api_version.clone();
            push_capped(&mut self.file_order, &mut self.files, file_id.clone(), file);
            if let Some(r) = self.report_runs.get_mut(&id) {
                r.status = "succeeded";
                r.result = Some(file_id);
                r.succeeded_at = Some(created);
            }
            if let Some(r) = self.report_runs.get(&id) {
                let object = self.report_run_json(r);
                self.emit(
                    "reporting.report_run.succeeded",
                    object,
                    &version,
                    &store::Cause::default(),
                );
            }
            done += 1;
        }
        done
    }

    /// Where the sandbox's report data ends: now (Stripe's lags by hours).
    fn data_available(&self) -> (i64, i64) {
        let end = store::now();
        let start = self
            .balance_txns
            .iter()
            .map(|t| t.created)
            .min()
            .map_or(end, |t| t.div_euclid(86_400) * 86_400);
        (start.min(end), end)
    }
}

const UTC_NAMES: &[&str] = &["UTC", "Etc/UTC", "GMT", "Etc/GMT"];

/// `POST /v1/reporting/report_runs`.
pub fn create_run(st: &mut State, ctx: &Ctx, root: &Node) -> Out {
    only(root, &["report_type", "parameters", "expand"], "")?;
    let report_type = required(root.get("report_type"), "report_type")?;
    if !REPORT_TYPES.contains(&report_type) {
        return Err(crate::stripe_error(
            400,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such report type: '{report_type}'"),
            Some("report_type"),
        ));
    }
    let empty = Node::Map(BTreeMap::new());
    let p = root.get("parameters").unwrap_or(&empty);
    only(
        p,
        &[
            "interval_start",
            "interval_end",
            "columns",
            "currency",
            "reporting_category",
            "timezone",
        ],
        "parameters",
    )?;
    let start = integer(
        required(p.get("interval_start"), "parameters[interval_start]")?,
        "parameters[interval_start]",
    )?;
    let end = integer(
        required(p.get("interval_end"), "parameters[interval_end]")?,
        "parameters[interval_end]",
    )?;
    if start >= end {
        return Err(invalid(
            "parameters[interval_end] must be after parameters[interval_start].",
            Some("parameters[interval_end]"),
        ));
    }
    let (_, available_end) = st.data_available();
    if end > available_end {
        return Err(invalid(
            &format!(
                "parameters[interval_end] ({end}) must be on or before the report type's data_available_end ({available_end})."
            ),
            Some("parameters[interval_end]"),
        ));
    }
    let mut parameters = json!({"interval_start": start, "interval_end": end});
    let mut columns = default_columns();
    if let Some(node) = p.get("columns") {
        let l = node
            .as_list()
            .ok_or_else(|| invalid("Invalid array: parameters[columns]", Some("parameters[columns]")))?;
        let mut names = Vec::new();
        for (i, n) in l {
            names.push(
                string(Some(n), &format!("parameters[columns][{i}]"))?
                    .unwrap_or("")
                    .to_string(),
            );
        }
        if !names.is_empty() {
            columns = parse_columns(&names).map_err(|bad| {
                invalid(
                    &format!("Invalid column '{bad}' for report type {report_type}."),
                    Some("parameters[columns]"),
                )
            })?;
            parameters["columns"] = json!(names);
        }
    }
    let currency = match string(p.get("currency"), "parameters[currency]")?.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) if store::is_currency(&c.to_ascii_lowercase()) => Some(c.to_ascii_lowercase()),
        Some(c) => {
            return Err(invalid(
                &format!("Invalid currency: {c}"),
                Some("parameters[currency]"),
            ))
        }
    };
    if let Some(c) = &currency {
        parameters["currency"] = json!(c);
    }
    let category = match string(p.get("reporting_category"), "parameters[reporting_category]")?
        .filter(|c| !c.is_empty())
    {
        None => None,
        Some(c) if REPORTING_CATEGORIES.contains(&c) => Some(c.to_string()),
        Some(c) => {
            return Err(invalid(
                &format!(
                    "Invalid reporting_category '{c}': one of {}.",
                    REPORTING_CATEGORIES.join(", ")
                ),
                Some("parameters[reporting_category]"),
            ))
        }
    };
    if let Some(c) = &category {
        parameters["reporting_category"] = json!(c);
    }
    match string(p.get("timezone"), "parameters[timezone]")?.filter(|t| !t.is_empty()) {
        None => {}
        Some(tz) if UTC_NAMES.contains(&tz) => parameters["timezone"] = json!(tz),
        Some(_) => {
            return Err(invalid(
                "The sandbox PSP renders reports in UTC only (timezone UTC or Etc/UTC).",
                Some("parameters[timezone]"),
            ))
        }
    }
    crate::api::expand(root, &[])?;
    let id = store::new_id("frr_", 24);
    let due_ms = store::now_ms().saturating_add(st.report_run_ms);
    let run = ReportRun {
        id: id.clone(),
        created: store::now(),
        report_type: report_type.to_string(),
        parameters,
        query: ReportQuery {
            interval_start: start,
            interval_end: end,
            columns,
            currency,
            reporting_category: category,
        },
        status: "pending",
        due_ms,
        result: None,
        succeeded_at: None,
        public_url: ctx.public_url.to_string(),
        api_version: ctx.api_version.to_string(),
    };
    let body = st.report_run_json(&run);
    st.report_timers.insert((due_ms, id.clone()));
    push_capped(&mut st.report_run_order, &mut st.report_runs, id, run);
    // A zero delay succeeds before the answer, as a run that was quick.
    if st.report_run_ms <= 0 {
        st.settle_due_reports(store::now_ms());
    }
    Ok(Resp::json(200, &body))
}

pub fn retrieve_run(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    st.settle_due_reports(store::now_ms());
    let r = st
        .report_runs
        .get(id)
        .ok_or_else(|| no_such("reporting.report_run", id, "id"))?;
    Ok(Resp::json(200, &st.report_run_json(r)))
}

pub fn list_runs(st: &mut State, root: &Node) -> Out {
    only(root, &["limit", "starting_after", "ending_before", "created"], "")?;
    let q = ListQuery::parse(root)?;
    st.settle_due_reports(store::now_ms());
    let all: Vec<&ReportRun> = st
        .report_run_order
        .iter()
        .rev()
        .filter_map(|id| st.report_runs.get(id))
        .collect();
    let (page, has_more) = q.page(&all, |r| r.id.as_str(), |r| q.created_ok(r.created))?;
    let data: Vec<Value> = page.iter().map(|r| st.report_run_json(r)).collect();
    Ok(list(data, has_more, "/v1/reporting/report_runs"))
}

fn report_type_json(st: &State, id: &str) -> Value {
    let (start, end) = st.data_available();
    let version: u32 = id.rsplit('.').next().and_then(|v| v.parse().ok()).unwrap_or(1);
    json!({
        "id": id, "object": "reporting.report_type", "data_available_start": start,
        "data_available_end": end, "default_columns": DEFAULT_COLUMNS, "livemode": false,
        "name": format!("Itemized balance change from activity (v{version})"), "updated": end,
        "version": version,
    })
}

pub fn retrieve_type(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    if !REPORT_TYPES.contains(&id) {
        return Err(no_such("report type", id, "id"));
    }
    Ok(Resp::json(200, &report_type_json(st, id)))
}

pub fn list_types(st: &mut State, root: &Node) -> Out {
    only(root, &[], "")?;
    let data: Vec<Value> = REPORT_TYPES.iter().map(|t| report_type_json(st, t)).collect();
    Ok(list(data, false, "/v1/reporting/report_types"))
}

pub fn retrieve_file(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let f = st.files.get(id).ok_or_else(|| no_such("file", id, "file"))?;
    Ok(Resp::json(200, &f.json()))
}

/// The file's bytes (Stripe serves them from files.stripe.com; the sandbox at the `url` it
/// gives, on its own port, with the same key).
pub fn file_contents(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &[], "")?;
    let f = st.files.get(id).ok_or_else(|| no_such("file", id, "file"))?;
    Ok(Resp {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/csv".into()),
            (
                "Content-Disposition".into(),
                format!("attachment; filename=\"{}\"", f.filename),
            ),
        ],
        body: f.bytes.clone(),
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn txn(
        id: &str,
        kind: &'static str,
        source: &str,
        amount: i64,
        fee: i64,
        currency: &str,
        at: i64,
    ) -> BalanceTxn {
        BalanceTxn {
            id: id.into(),
            kind,
            source: source.into(),
            account: None,
            transfer: None,
            transfer_reversal: None,
            amount,
            fee,
            net: amount - fee,
            currency: currency.into(),
            created: at,
            available_on: at,
            charge_id: String::new(),
            payment_intent_id: String::new(),
            session_id: String::new(),
            client_reference_id: None,
            metadata: BTreeMap::new(),
            description: None,
        }
    }

    const T: i64 = 1_795_595_400; // 2026-11-25 08:30:00 UTC

    /// A ledger with a charge in three currencies, a refund of the USD one and its failure, a
    /// transfer and its reversal; the refund and transfer stored with their metadata.
    pub fn ledger_at(t0: i64) -> State {
        let mut st = State::new("whsec_x".into());
        for (amount, currency, cref) in [
            (9999, "usd", "po_1"),
            (12_345, "kwd", "a,\"b\""),
            (5000, "jpy", ""),
        ] {
            let fee = store::fee_for(amount, currency);
            let mut t = txn(
                &format!("txn_{currency}"),
                store::TXN_CHARGE,
                "ch_1",
                amount,
                fee,
                currency,
                t0,
            );
            t.available_on = store::available_on(t0);
            t.charge_id = "ch_1".into();
            t.payment_intent_id = "pi_1".into();
            t.session_id = "cs_test_1".into();
            t.client_reference_id = Some(cref.to_string()).filter(|c| !c.is_empty());
            t.metadata = BTreeMap::from([("checkout_id".to_string(), "chk_1".to_string())]);
            st.balance_txns.push_back(t);
        }
        for (kind, amount, at) in [
            (store::TXN_REFUND, -1000, t0 + 1),
            (store::TXN_REFUND_FAILURE, 1000, t0 + 2),
        ] {
            let mut t = txn(&format!("txn_{kind}"), kind, "re_1", amount, 0, "usd", at);
            t.charge_id = "ch_1".into();
            t.payment_intent_id = "pi_1".into();
            t.session_id = "cs_test_1".into();
            t.client_reference_id = Some("po_1".into());
            t.metadata = BTreeMap::from([("checkout_id".to_string(), "chk_1".to_string())]);
            st.balance_txns.push_back(t);
        }
        st.refunds.insert(
            "re_1".into(),
            crate::refunds::Refund {
                id: "re_1".into(),
                created: t0 + 1,
                amount: 1000,
                currency: "usd".into(),
                charge_id: "ch_1".into(),
                payment_intent_id: "pi_1".into(),
                status: crate::refunds::RefundStatus::Failed,
                reason: None,
                metadata: BTreeMap::from([
                    ("refund_id".to_string(), "rf_1".to_string()),
                    ("payment_order_id".to_string(), "ord_1".to_string()),
                ]),
                balance_transaction: Some("txn_refund".into()),
                failure_balance_transaction: Some("txn_refund_failure".into()),
                failure_reason: Some("declined".into()),
                scheduled: None,
                api_version: "2024-06-20".into(),
            },
        );
        let md = BTreeMap::from([("payout_id".to_string(), "pout_1".to_string())]);
        let mut tr = txn("txn_tr", store::TXN_TRANSFER, "tr_1", -3000, 0, "usd", t0 + 3);
        tr.metadata = md.clone();
        st.balance_txns.push_back(tr);
        st.balance_txns.push_back(txn(
            "txn_trr",
            store::TXN_TRANSFER_REVERSAL,
            "trr_1",
            500,
            0,
            "usd",
            t0 + 4,
        ));
        st.transfers.insert(
            "tr_1".into(),
            crate::connect::Transfer {
                id: "tr_1".into(),
                created: t0 + 3,
                amount: 3000,
                currency: "usd".into(),
                destination: "acct_1".into(),
                transfer_group: Some("pout_1".into()),
                description: None,
                metadata: md,
                balance_transaction: "txn_tr".into(),
                destination_payment: "py_1".into(),
                reversals: vec![crate::connect::Reversal {
                    id: "trr_1".into(),
                    amount: 500,
                    created: t0 + 4,
                    balance_transaction: "txn_trr".into(),
                    destination_payment_refund: "pyr_1".into(),
                    metadata: BTreeMap::new(),
                }],
            },
        );
        st
    }

    const KEY: &str = "sk_test_unit";

    fn req(method: hyper::Method, path: &str, body: &str, idem: Option<&str>) -> crate::Req {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {KEY}").parse().expect("header"));
        if let Some(k) = idem {
            headers.insert("idempotency-key", k.parse().expect("header"));
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        crate::Req {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: bytes::Bytes::from(body.to_string()),
            peer: "127.0.0.1:1".parse().expect("addr"),
        }
    }

    pub fn call(
        st: &mut State,
        method: hyper::Method,
        path: &str,
        body: &str,
        idem: Option<&str>,
    ) -> (Resp, Value) {
        let r = req(method, path, body, idem);
        let ctx = Ctx {
            public_url: "http://127.0.0.1:4000",
            request_id: "req_unit",
            idempotency_key: r.header("idempotency-key"),
            api_version: store::DEFAULT_API_VERSION,
        };
        let resp = crate::api::execute(st, &ctx, KEY, &r);
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp, v)
    }

    #[test]
    fn a_report_run_goes_pending_then_succeeded_with_its_file() {
        use hyper::Method;
        let t = store::now() - 3600;
        let mut st = ledger_at(t);
        st.report_run_ms = 3_600_000;
        let body = format!(
            "report_type=balance_change_from_activity.itemized.3&parameters[interval_start]={}\
             &parameters[interval_end]={}&parameters[columns][]=balance_transaction_id\
             &parameters[columns][]=gross&parameters[columns][]=payment_metadata%5Bcheckout_id%5D\
             &parameters[currency]=USD",
            t - 10,
            t + 3
        );
        let (resp, run) = call(
            &mut st,
            Method::POST,
            "/v1/reporting/report_runs",
            &body,
            Some("rr-1"),
        );
        assert_eq!(resp.status, 200, "{run}");
        let id = run["id"].as_str().expect("id").to_string();
        assert!(id.starts_with("frr_"));
        assert_eq!(run["object"], "reporting.report_run");
        assert_eq!(run["status"], "pending");
        assert_eq!(run["result"], Value::Null);
        assert_eq!(run["succeeded_at"], Value::Null);
        assert_eq!(run["error"], Value::Null);
        assert_eq!(run["livemode"], false);
        assert_eq!(run["report_type"], "balance_change_from_activity.itemized.3");
        assert_eq!(
            run["parameters"],
            json!({"interval_start": t - 10, "interval_end": t + 3, "currency": "usd",
                   "columns": ["balance_transaction_id", "gross", "payment_metadata[checkout_id]"]})
        );
        // The same key and parameters: the stored answer, nothing new.
        let (again, _) = call(
            &mut st,
            Method::POST,
            "/v1/reporting/report_runs",
            &body,
            Some("rr-1"),
        );
        assert_eq!(again.body, resp.body);
        assert_eq!(st.report_runs.len(), 1);
        let (_, got) = call(
            &mut st,
            Method::GET,
            &format!("/v1/reporting/report_runs/{id}"),
            "",
            None,
        );
        assert_eq!(got["status"], "pending");

        // Due: rendered now, a snapshot (a later row is not in it).
        assert_eq!(st.settle_due_reports(i64::MAX), 1);
        let (_, got) = call(
            &mut st,
            Method::GET,
            &format!("/v1/reporting/report_runs/{id}"),
            "",
            None,
        );
        assert_eq!(got["status"], "succeeded", "{got}");
        assert!(got["succeeded_at"].is_i64());
        let file = &got["result"];
        let fid = file["id"].as_str().expect("file id").to_string();
        assert!(fid.starts_with("file_"));
        assert_eq!(file["object"], "file");
        assert_eq!(file["purpose"], "finance_report_run");
        assert_eq!(file["type"], "csv");
        assert_eq!(file["filename"], format!("{id}.csv"));
        assert_eq!(
            file["url"],
            format!("http://127.0.0.1:4000/v1/files/{fid}/contents")
        );
        let (resp, _) = call(
            &mut st,
            Method::GET,
            &format!("/v1/files/{fid}/contents"),
            "",
            None,
        );
        assert_eq!(resp.status, 200);
        assert!(resp
            .headers
            .iter()
            .any(|(k, v)| k == "Content-Type" && v == "text/csv"));
        let csv = String::from_utf8(resp.body.clone()).expect("utf8");
        assert_eq!(
            csv,
            "balance_transaction_id,gross,payment_metadata[checkout_id]\n\
             txn_usd,99.99,chk_1\ntxn_refund,-10.00,chk_1\ntxn_refund_failure,10.00,chk_1\n"
        );
        assert_eq!(file["size"], csv.len());
        let (_, f) = call(&mut st, Method::GET, &format!("/v1/files/{fid}"), "", None);
        assert_eq!(&f, file);
        let events: Vec<&str> = st.events.values().map(|e| e.event_type.as_str()).collect();
        assert_eq!(events, ["reporting.report_run.succeeded"]);
        let (_, l) = call(
            &mut st,
            Method::GET,
            "/v1/reporting/report_runs?limit=1",
            "",
            None,
        );
        assert_eq!(l["data"][0]["id"], id.as_str());
        assert_eq!(l["has_more"], false);
        let (resp, _) = call(&mut st, Method::GET, "/v1/files/file_nope/contents", "", None);
        assert_eq!(resp.status, 404);
        let (_, ty) = call(
            &mut st,
            Method::GET,
            "/v1/reporting/report_types/balance_change_from_activity.itemized.3",
            "",
            None,
        );
        assert_eq!(ty["object"], "reporting.report_type");
        assert!(ty["data_available_end"].as_i64().expect("end") >= t);
        assert!(ty["data_available_start"].as_i64().expect("start") <= t);
    }

    #[test]
    fn report_run_requests_are_validated() {
        use hyper::Method;
        let mut st = State::new("whsec_x".into());
        let now = store::now();
        let ok = format!(
            "report_type=balance_change_from_activity.itemized.1&parameters[interval_start]={}&parameters[interval_end]={}",
            now - 100,
            now - 1
        );
        for (body, param) in [
            (ok.replace("itemized.1", "itemized.9"), "report_type"),
            (ok.replace("report_type=balance_change_from_activity.itemized.1&", ""), "report_type"),
            (format!("{ok}&parameters[columns][]=nope"), "parameters[columns]"),
            (format!("{ok}&parameters[columns][]=gross&parameters[columns][]=refund_metadata"), "parameters[columns]"),
            (
                format!("report_type=balance_change_from_activity.itemized.1&parameters[interval_start]={}&parameters[interval_end]={}", now - 1, now - 1),
                "parameters[interval_end]",
            ),
            (
                format!("report_type=balance_change_from_activity.itemized.1&parameters[interval_start]={}&parameters[interval_end]={}", now - 1, now + 3600),
                "parameters[interval_end]",
            ),
            ("report_type=balance_change_from_activity.itemized.1".to_string(), "parameters[interval_start]"),
            (format!("{ok}&parameters[reporting_category]=bogus"), "parameters[reporting_category]"),
            (format!("{ok}&parameters[currency]=xyz"), "parameters[currency]"),
            (format!("{ok}&parameters[timezone]=Europe/Paris"), "parameters[timezone]"),
            (format!("{ok}&parameters[payout]=po_1"), "parameters[payout]"),
        ] {
            let (resp, e) = call(&mut st, Method::POST, "/v1/reporting/report_runs", &body, None);
            assert_eq!((resp.status, e["error"]["param"].as_str()), (400, Some(param)), "{body}: {e}");
        }
        let (_, e) = call(
            &mut st,
            Method::POST,
            "/v1/reporting/report_runs",
            &ok.replace("itemized.1", "itemized.9"),
            None,
        );
        assert_eq!(e["error"]["code"], "resource_missing");
        assert!(st.report_runs.is_empty());
        let (resp, _) = call(&mut st, Method::POST, "/v1/reporting/report_runs", &ok, None);
        assert_eq!(resp.status, 200);
        let (resp, _) = call(
            &mut st,
            Method::GET,
            "/v1/reporting/report_runs/frr_nope",
            "",
            None,
        );
        assert_eq!(resp.status, 404);
    }

    #[test]
    fn settlement_rows_are_exact_quoted_and_carry_metadata() {
        let st = ledger_at(T);
        let csv = settlement_csv(&st, T - 100, T + 100);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], SETTLEMENT_COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "txn_usd,2026-11-25 08:30:00,2026-11-27 00:00:00,usd,99.99,3.20,96.79,charge,ch_1,,99.99,usd,,ch_1,pi_1,cs_test_1,po_1,,,chk_1,,,"
        );
        assert!(
            lines[2].starts_with("txn_kwd,2026-11-25 08:30:00,2026-11-27 00:00:00,kwd,12.345,0.658,11.687,")
        );
        assert!(lines[2].contains(",\"a,\"\"b\"\"\","));
        assert!(lines[3].contains(",jpy,5000,145,4855,"));
        assert_eq!(
            lines[4],
            "txn_refund,2026-11-25 08:30:01,2026-11-25 08:30:01,usd,-10.00,0.00,-10.00,refund,re_1,,-10.00,usd,,ch_1,pi_1,cs_test_1,po_1,,,chk_1,rf_1,ord_1,"
        );
        assert_eq!(
            lines[5],
            "txn_refund_failure,2026-11-25 08:30:02,2026-11-25 08:30:02,usd,10.00,0.00,10.00,refund_failure,re_1,,10.00,usd,,ch_1,pi_1,cs_test_1,po_1,,,chk_1,rf_1,ord_1,"
        );
        assert_eq!(
            lines[6],
            "txn_tr,2026-11-25 08:30:03,2026-11-25 08:30:03,usd,-30.00,0.00,-30.00,transfer,tr_1,,,,,,,,,acct_1,pout_1,,,,pout_1"
        );
        assert_eq!(
            lines[7],
            "txn_trr,2026-11-25 08:30:04,2026-11-25 08:30:04,usd,5.00,0.00,5.00,transfer_reversal,trr_1,,,,,,,,,acct_1,pout_1,,,,pout_1"
        );
        assert_eq!(lines.len(), 8);
        assert_eq!(settlement_csv(&st, 0, 1).lines().count(), 1);
        // The interval is half-open.
        assert_eq!(settlement_csv(&st, T, T + 1).lines().count(), 4);
    }

    #[test]
    fn chosen_columns_in_order_and_filters() {
        let st = ledger_at(T);
        let q = ReportQuery {
            interval_start: T,
            interval_end: T + 10,
            columns: parse_columns(&["net", "refund_metadata[refund_id]", "balance_transaction_id"])
                .expect("cols"),
            currency: Some("usd".into()),
            reporting_category: Some("refund".into()),
        };
        assert_eq!(
            itemized_csv(&st, &q),
            "net,refund_metadata[refund_id],balance_transaction_id\n-10.00,rf_1,txn_refund\n"
        );
        let q = ReportQuery {
            columns: default_columns(),
            currency: None,
            reporting_category: None,
            ..q
        };
        let csv = itemized_csv(&st, &q);
        assert_eq!(csv.lines().next(), Some(DEFAULT_COLUMNS.join(",").as_str()));
        assert_eq!(csv.lines().count(), 1 + 7);
        for line in csv.lines().skip(1).filter(|l| !l.contains('"')) {
            assert_eq!(line.split(',').count(), DEFAULT_COLUMNS.len(), "{line}");
        }
    }

    #[test]
    fn report_faults_alter_omit_duplicate_append() {
        let mut st = ledger_at(T);
        let add: ReportFaults = serde_json::from_value(json!({
            "alter": [{"id": "ch_1", "gross": "12.3"}, {"id": "txn_tr", "gross": "-29.99"}],
            "omit": ["txn_refund_failure", "trr_1"],
            "duplicate": ["re_1"],
            "append_lines": ["txn_bogus,not,a,row"],
        }))
        .expect("faults");
        add.validate().expect("valid");
        st.faults.report.merge(add);
        let q = ReportQuery {
            interval_start: T,
            interval_end: T + 10,
            columns: parse_columns(&["balance_transaction_id", "gross", "fee", "net"]).expect("cols"),
            currency: None,
            reporting_category: None,
        };
        assert_eq!(
            itemized_csv(&st, &q),
            "balance_transaction_id,gross,fee,net\n\
             txn_usd,12.30,3.20,9.10\n\
             txn_kwd,12.300,0.658,11.642\n\
             txn_jpy,12.3,145,-132.7\n\
             txn_refund,-10.00,0.00,-10.00\n\
             txn_refund,-10.00,0.00,-10.00\n\
             txn_tr,-29.99,0.00,-29.99\n\
             txn_bogus,not,a,row\n"
        );
        assert!(serde_json::from_value::<ReportFaults>(json!({"nope": 1})).is_err());
        assert!(serde_json::from_value::<ReportFaults>(
            json!({"alter": [{"id": "x", "gross": "1", "fee": "2"}]})
        )
        .is_err());
        let bad: ReportFaults =
            serde_json::from_value(json!({"alter": [{"id": "x", "gross": "1,00"}]})).expect("parses");
        assert!(bad.validate().is_err());
        st.faults.reset();
        assert!(
            st.faults.report.is_empty(),
            "the sandbox reset clears report faults"
        );
    }

    #[test]
    fn columns_parse_and_name() {
        assert_eq!(Column::parse("gross"), Some(Column::Plain("gross")));
        assert_eq!(
            Column::parse("payment_metadata[checkout_id]"),
            Some(Column::PaymentMetadata("checkout_id".into()))
        );
        assert_eq!(
            Column::parse("refund_metadata[refund_id]").map(|c| c.name()),
            Some("refund_metadata[refund_id]".into())
        );
        assert_eq!(Column::parse("payment_metadata[]"), None);
        assert_eq!(Column::parse("payment_metadata[a][b]"), None);
        assert_eq!(Column::parse("bogus"), None);
        assert_eq!(parse_columns(&["gross", "nope", "fee"]), Err("nope".to_string()));
        assert_eq!(settlement_columns().len(), SETTLEMENT_COLUMNS.len());
    }

    #[test]
    fn decimals_scale_exactly() {
        assert_eq!(parse_decimal("12.34"), Some((1234, 2)));
        assert_eq!(parse_decimal("-0.5"), Some((-5, 1)));
        assert_eq!(parse_decimal("7"), Some((7, 0)));
        for bad in ["", "1.", ".5", "1,00", "abc", "1.2.3", "--1"] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
        assert_eq!(format_scaled(-5, 2), "-0.05");
        assert_eq!(format_scaled(123_456, 3), "123.456");
    }
}
