//! Reconciliation (design §10): the PSP's settlement file, row by row, against our checkouts,
//! refunds and payouts; the breaks it finds; the PSP's fees and the platform's bank payouts it
//! books. Pure: the rows come parsed ([`row`]), our records as [`OurRecord`]s, and the
//! verdicts ([`judge`]) and postings ([`books`]) go back out as values.

pub mod books;
pub mod row;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::domain::ids::{AccountId, BreakId, CheckoutId, PayoutId, ReconRunId, RefundId};
use crate::domain::money::Money;
use crate::domain::pay_in::PaymentStatus;
use crate::domain::payouts::PayoutStatus;
use crate::domain::refunds::RefundStatus;
use row::{signed_text, Category, SettlementRow};

/// Declares a closed set of lower-case names with `as_str`, `FromStr` and `ALL`.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "must be one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(
    /// What kind of disagreement a break is.
    BreakType {
        MissingInOurs = "missing_in_ours",
        MissingAtPsp = "missing_at_psp",
        AmountMismatch = "amount_mismatch",
        CurrencyMismatch = "currency_mismatch",
        StatusMismatch = "status_mismatch",
        UnexplainedAdjustment = "unexplained_adjustment",
        Duplicate = "duplicate",
        MalformedRow = "malformed_row",
    }
);

names!(
    /// `open` until a person resolves it; `auto_resolved` when the run repaired it itself.
    BreakStatus {
        Open = "open",
        Resolved = "resolved",
        AutoResolved = "auto_resolved",
    }
);

names!(
    /// How a person resolved a break.
    Resolution {
        Adjusted = "adjusted",
        WrittenOff = "written_off",
        Refunded = "refunded",
        Ignored = "ignored",
    }
);

names!(
    RunStatus {
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
    }
);

/// A record of ours that a row can be about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordRef {
    Checkout(CheckoutId),
    Refund(RefundId),
    Payout(PayoutId),
}

impl RecordRef {
    pub fn as_str(&self) -> &str {
        match self {
            RecordRef::Checkout(id) => id.as_str(),
            RecordRef::Refund(id) => id.as_str(),
            RecordRef::Payout(id) => id.as_str(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            RecordRef::Checkout(_) => "checkout",
            RecordRef::Refund(_) => "refund",
            RecordRef::Payout(_) => "payout",
        }
    }
}

/// Our side of a record, as much as matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurRecord {
    pub reference: RecordRef,
    pub account_id: AccountId,
    /// Positive: the checkout's total, the refund's or the payout's amount.
    pub amount: Money,
    pub status: OurStatus,
    /// The PSP object that moved the money, once we know it: a checkout's payment intent, a
    /// refund's `re_…`, a payout's transfer `tr_…`. A row for the same record naming another
    /// is a second payment of it.
    pub psp_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OurStatus {
    Checkout(PaymentStatus),
    Refund(RefundStatus),
    /// A payout, and whether its transfer went out (it has a PSP transfer id).
    Payout(PayoutStatus, bool),
}

impl OurStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OurStatus::Checkout(s) => s.as_str(),
            OurStatus::Refund(s) => s.as_str(),
            OurStatus::Payout(s, _) => s.as_str(),
        }
    }
}

/// What a row of this category says about the PSP balance, and so what it needs of us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A record of ours, of this kind, with this sign of gross.
    Record { kind: &'static str, sign: i64 },
    /// The platform's payout to its bank (−) or its return (+): booked to `bank_in_transit`.
    BankPayout,
    /// A PSP fee outside any charge: booked as a fee.
    Fee,
    /// Money nobody explained: booked to suspense, a break for a person.
    Unexplained,
}

pub fn row_kind(category: &Category) -> RowKind {
    match category {
        Category::Charge => RowKind::Record {
            kind: "checkout",
            sign: 1,
        },
        Category::Refund => RowKind::Record {
            kind: "refund",
            sign: -1,
        },
        Category::RefundFailure => RowKind::Record {
            kind: "refund",
            sign: 1,
        },
        Category::Transfer => RowKind::Record {
            kind: "payout",
            sign: -1,
        },
        Category::TransferReversal => RowKind::Record {
            kind: "payout",
            sign: 1,
        },
        Category::Payout | Category::PayoutReversal => RowKind::BankPayout,
        Category::Fee => RowKind::Fee,
        Category::Adjustment | Category::Other(_) => RowKind::Unexplained,
    }
}

/// A balance transaction reconciled: by which run and line, and the record it reconciled (its
/// [`mark_key`]; none for a row that is not a record of ours). Each balance transaction is
/// reconciled at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub run_id: ReconRunId,
    pub balance_transaction_id: String,
    pub line: u64,
    pub record: Option<String>,
}

/// Where a balance transaction's mark is kept: the ten seconds in which the PSP created it. A
/// settlement file lists its rows in that order, so a chunk of rows shares a few windows, and
/// the same transaction in another file is found in the same place.
pub fn mark_window(created: DateTime<Utc>) -> String {
    use chrono::Timelike;
    let tens = created.second() / 10;
    format!("{}{tens}0", created.format("%Y-%m-%dT%H:%M:"))
}

/// The length of a [`mark_window`].
pub const MARK_WINDOW: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The object a row says moved the money, as our records keep it (see [`OurRecord::psp_id`]).
fn row_psp_id(row: &SettlementRow) -> Option<&str> {
    match row.category {
        Category::Charge => row.payment_intent_id.as_deref(),
        Category::Refund | Category::Transfer => Some(row.source_id.as_str()),
        _ => None,
    }
}

/// What one row about a record of ours comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Agreed: mark the record reconciled by this row.
    Matched,
    /// The record belongs to another of our accounts: not this run's.
    Foreign,
    /// The PSP charged, we are still waiting for the webhook: fetch the PSP's event and apply it.
    MissedWebhook,
    Break {
        kind: BreakType,
        reason: String,
    },
}

/// Judges a row about one of our records (`record` found by its ids, `mark` the record's
/// earlier reconciliation for this category, if any).
pub fn judge(
    row: &SettlementRow,
    record: Option<&OurRecord>,
    mark: Option<&Mark>,
    run: &ReconRunId,
    account: &AccountId,
) -> Verdict {
    let brk = |kind, reason: String| Verdict::Break { kind, reason };
    let Some(record) = record else {
        return brk(
            BreakType::MissingInOurs,
            format!(
                "no {} of ours for {} {}",
                expected_kind(row),
                row.category.as_str(),
                row.source_id
            ),
        );
    };
    if &record.account_id != account {
        return Verdict::Foreign;
    }
    if let Some(m) = mark {
        if &m.run_id != run || m.line != row.line {
            return brk(
                BreakType::Duplicate,
                format!(
                    "{} {} was already reconciled (line {} of run {})",
                    record.reference.kind(),
                    record.reference.as_str(),
                    m.line,
                    m.run_id
                ),
            );
        }
    }
    if let (Some(ours), Some(theirs)) = (record.psp_id.as_deref(), row_psp_id(row)) {
        if ours != theirs {
            return brk(
                BreakType::Duplicate,
                format!(
                    "{} {} was paid through {ours}; this row is another one, {theirs}",
                    record.reference.kind(),
                    record.reference.as_str(),
                ),
            );
        }
    }
    if record.amount.currency() != row.currency {
        return brk(
            BreakType::CurrencyMismatch,
            format!(
                "the PSP says {}, we say {}",
                row.currency,
                record.amount.currency()
            ),
        );
    }
    let sign = match row_kind(&row.category) {
        RowKind::Record { sign, .. } => sign,
        _ => 1,
    };
    if row.gross.minor() != sign * record.amount.minor() {
        return brk(
            BreakType::AmountMismatch,
            format!(
                "the PSP's gross is {}, ours is {}",
                signed_text(row.gross),
                signed_text(Money::from_minor(
                    sign * record.amount.minor(),
                    record.amount.currency()
                ))
            ),
        );
    }
    match status_agrees(&row.category, record.status) {
        StatusCheck::Agrees => Verdict::Matched,
        StatusCheck::Waiting => Verdict::MissedWebhook,
        StatusCheck::Disagrees(expected) => brk(
            BreakType::StatusMismatch,
            format!(
                "a {} row needs our {} to be {expected}; it is {}",
                row.category.as_str(),
                record.reference.kind(),
                record.status.as_str()
            ),
        ),
    }
}

fn expected_kind(row: &SettlementRow) -> &'static str {
    match row_kind(&row.category) {
        RowKind::Record { kind, .. } => kind,
        _ => "record",
    }
}

enum StatusCheck {
    Agrees,
    Waiting,
    Disagrees(&'static str),
}

/// A charge ⇔ our checkout `SUCCESS` (`EXECUTING`: the webhook never came); a refund ⇔ our
/// refund `SUCCEEDED` (or `FAILED`: Stripe lists a refund that later failed, and its failure);
/// `refund_failure` ⇔ `FAILED`; a transfer ⇔ a payout whose transfer went out (`IN_TRANSIT`,
/// `PAID`, or `FAILED` after it); `transfer_reversal` ⇔ a payout `FAILED`.
fn status_agrees(category: &Category, status: OurStatus) -> StatusCheck {
    use StatusCheck::*;
    match (category, status) {
        (Category::Charge, OurStatus::Checkout(PaymentStatus::Success)) => Agrees,
        (Category::Charge, OurStatus::Checkout(PaymentStatus::Executing)) => Waiting,
        (Category::Charge, _) => Disagrees("SUCCESS"),
        (Category::Refund, OurStatus::Refund(RefundStatus::Succeeded | RefundStatus::Failed)) => Agrees,
        (Category::Refund, _) => Disagrees("SUCCEEDED"),
        (Category::RefundFailure, OurStatus::Refund(RefundStatus::Failed)) => Agrees,
        (Category::RefundFailure, _) => Disagrees("FAILED"),
        (
            Category::Transfer,
            OurStatus::Payout(PayoutStatus::InTransit | PayoutStatus::Paid | PayoutStatus::Failed, true),
        ) => Agrees,
        (Category::Transfer, _) => Disagrees("IN_TRANSIT or PAID"),
        (Category::TransferReversal, OurStatus::Payout(PayoutStatus::Failed, true)) => Agrees,
        (Category::TransferReversal, _) => Disagrees("FAILED"),
        _ => Disagrees("a record of ours"),
    }
}

/// The record a row names, from our metadata on the PSP's objects (the lookup by PSP id is
/// the adapter's fallback when the metadata columns are absent).
pub fn named_record(row: &SettlementRow) -> Option<RecordRef> {
    match row_kind(&row.category) {
        RowKind::Record { kind: "checkout", .. } => row.checkout_id.clone().map(RecordRef::Checkout),
        RowKind::Record { kind: "refund", .. } => row.refund_id.clone().map(RecordRef::Refund),
        RowKind::Record { kind: "payout", .. } => row.payout_id.clone().map(RecordRef::Payout),
        _ => None,
    }
}

/// The key of a record's reconciled mark for one category (a refund has a `refund` row and,
/// if it failed, a `refund_failure` row: each reconciled once).
pub fn mark_key(record: &RecordRef, category: &Category) -> String {
    format!("{}#{}", record.as_str(), category.as_str())
}

/// Whether one of our records with no row is a break or only expected in the next file: a
/// record within `settling` of the interval's end may not have reached the PSP's report yet.
pub fn missing_at_psp(at: DateTime<Utc>, interval: &Interval, settling: chrono::Duration) -> Option<bool> {
    if at < interval.start || at >= interval.end {
        return None;
    }
    Some(at < interval.end - settling)
}

/// The period a file covers, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    /// The UTC day a key such as `psp/acct_1/2026-11-30.csv` names.
    pub fn day_of_key(key: &str) -> Option<Interval> {
        let name = key.rsplit('/').next()?;
        let day = name.strip_suffix(".csv").unwrap_or(name);
        let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let start = date.and_hms_opt(0, 0, 0)?.and_utc();
        Some(Interval {
            start,
            end: start + chrono::Duration::days(1),
        })
    }
}

/// One break, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub id: BreakId,
    pub run_id: ReconRunId,
    pub account_id: AccountId,
    pub kind: BreakType,
    pub status: BreakStatus,
    pub reason: String,
    /// The row's line number and values, when a row is involved.
    pub line: Option<u64>,
    pub row: BTreeMap<String, String>,
    /// Our record's values, when one is involved.
    pub ours: BTreeMap<String, String>,
    /// What repaired it, for `auto_resolved`.
    pub resolution_note: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Break {
    /// A break about row `line` (one per row: its id derives from the run and the line).
    pub fn of_row(
        run: &ReconRunId,
        account: &AccountId,
        kind: BreakType,
        reason: String,
        line: u64,
        row: BTreeMap<String, String>,
        now: DateTime<Utc>,
    ) -> Break {
        Break {
            id: BreakId::derived(&format!("{run}|line|{line}")),
            run_id: run.clone(),
            account_id: account.clone(),
            kind,
            status: BreakStatus::Open,
            reason,
            line: Some(line),
            row,
            ours: BTreeMap::new(),
            resolution_note: None,
            created_at: now,
        }
    }

    /// A break about a record of ours with no row (`missing_at_psp`).
    pub fn of_record(
        run: &ReconRunId,
        account: &AccountId,
        record: &OurRecord,
        category: &Category,
        reason: String,
        now: DateTime<Utc>,
    ) -> Break {
        Break {
            id: BreakId::derived(&format!("{run}|record|{}", mark_key(&record.reference, category))),
            run_id: run.clone(),
            account_id: account.clone(),
            kind: BreakType::MissingAtPsp,
            status: BreakStatus::Open,
            reason,
            line: None,
            row: BTreeMap::new(),
            ours: record_values(record),
            resolution_note: None,
            created_at: now,
        }
    }

    pub fn with_ours(mut self, record: Option<&OurRecord>) -> Self {
        if let Some(r) = record {
            self.ours = record_values(r);
        }
        self
    }
}

/// A row's values as a break shows them.
pub fn row_values(row: &SettlementRow) -> BTreeMap<String, String> {
    let mut v = BTreeMap::from([
        (
            "balance_transaction_id".to_owned(),
            row.balance_transaction_id.clone(),
        ),
        (
            "created_utc".to_owned(),
            row.created.format("%Y-%m-%d %H:%M:%S").to_string(),
        ),
        ("currency".to_owned(), row.currency.code().to_owned()),
        ("gross".to_owned(), signed_text(row.gross)),
        ("fee".to_owned(), signed_text(row.fee)),
        ("net".to_owned(), signed_text(row.net)),
        ("reporting_category".to_owned(), row.category.as_str().to_owned()),
        ("source_id".to_owned(), row.source_id.clone()),
    ]);
    let optional = [
        ("charge_id", row.charge_id.as_deref()),
        ("payment_intent_id", row.payment_intent_id.as_deref()),
        ("checkout_id", row.checkout_id.as_ref().map(|x| x.as_str())),
        ("refund_id", row.refund_id.as_ref().map(|x| x.as_str())),
        ("payout_id", row.payout_id.as_ref().map(|x| x.as_str())),
    ];
    v.extend(
        optional
            .into_iter()
            .filter_map(|(k, x)| x.map(|x| (k.to_owned(), x.to_owned()))),
    );
    v
}

pub fn record_values(r: &OurRecord) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kind".to_owned(), r.reference.kind().to_owned()),
        ("id".to_owned(), r.reference.as_str().to_owned()),
        ("amount".to_owned(), r.amount.to_string()),
        ("currency".to_owned(), r.amount.currency().code().to_owned()),
        ("status".to_owned(), r.status.as_str().to_owned()),
    ])
}

/// A run's counters, as the API shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: u64,
    pub matched: u64,
    pub expected: u64,
    pub foreign: u64,
    pub fees_booked: u64,
    pub breaks: BTreeMap<BreakType, u64>,
    pub auto_resolved: u64,
}

impl Tally {
    pub fn add_break(&mut self, kind: BreakType) {
        *self.breaks.entry(kind).or_default() += 1;
    }

    pub fn breaks_total(&self) -> u64 {
        self.breaks.values().sum()
    }
}

/// The file a run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub bucket: String,
    pub key: String,
    pub sha256: String,
}

/// One reconciliation run: one settlement file's content, whatever key it arrived under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: ReconRunId,
    pub account_id: AccountId,
    pub file: FileRef,
    pub interval: Option<Interval>,
    pub status: RunStatus,
    pub failure_reason: Option<String>,
    pub tally: Tally,
    /// Per currency, in minor units, after the run: our ledger's `psp_receivable`, and the
    /// PSP's balance (available + pending) as it answered.
    pub psp_receivable: BTreeMap<String, i64>,
    pub psp_balance: BTreeMap<String, i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Run {
    /// The run of a file's content for an account: its id derives from both, so the same
    /// bytes under any of the account's keys are one run.
    pub fn start(
        account_id: AccountId,
        file: FileRef,
        interval: Option<Interval>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            id: ReconRunId::derived(&format!("{account_id}:sha256:{}", file.sha256)),
            account_id,
            file,
            interval,
            status: RunStatus::Running,
            failure_reason: None,
            tally: Tally::default(),
            psp_receivable: BTreeMap::new(),
            psp_balance: BTreeMap::new(),
            started_at: now,
            finished_at: None,
        }
    }
}

/// The account a settlement key belongs to: `psp/<account_id>/<name>`.
pub fn account_of_key(key: &str) -> Result<AccountId, String> {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("psp"), Some(account), Some(name)) if !name.is_empty() && !name.ends_with('/') => {
            AccountId::parse(account).map_err(|e| format!("the key's account {account:?} {e}"))
        }
        _ => Err(format!("{key:?} is not psp/<account_id>/<file>")),
    }
}

#[cfg(test)]
mod tests {
    use super::row::Columns;
    use super::*;
    use crate::domain::currency::Currency;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::parse("USD").unwrap())
    }

    fn charge(gross: &str, currency: &str) -> SettlementRow {
        let cols = Columns::from_header(
            "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
source_id,charge_id,payment_intent_id,automatic_payout_id"
                .split(','),
        )
        .unwrap();
        let line = format!("txn_1,2026-11-30 10:00:00,2026-12-02 00:00:00,{currency},{gross},0,{gross},charge,ch_1,ch_1,pi_1,");
        cols.parse(2, &line.split(',').collect::<Vec<_>>()).unwrap()
    }

    fn checkout(status: PaymentStatus, amount: Money) -> OurRecord {
        OurRecord {
            reference: RecordRef::Checkout(CheckoutId::generate()),
            account_id: AccountId::parse("acct_1").unwrap(),
            amount,
            status: OurStatus::Checkout(status),
            psp_id: Some("pi_1".into()),
        }
    }

    fn kind(v: Verdict) -> Option<BreakType> {
        match v {
            Verdict::Break { kind, .. } => Some(kind),
            _ => None,
        }
    }

    #[test]
    fn a_row_agrees_or_says_how_it_differs() {
        let run = ReconRunId::derived("file");
        let acct = AccountId::parse("acct_1").unwrap();
        let row = charge("100.00", "usd");
        let ok = checkout(PaymentStatus::Success, usd(10_000));
        assert_eq!(judge(&row, Some(&ok), None, &run, &acct), Verdict::Matched);
        assert_eq!(
            kind(judge(&row, None, None, &run, &acct)),
            Some(BreakType::MissingInOurs)
        );
        let less = checkout(PaymentStatus::Success, usd(9_999));
        let v = judge(&row, Some(&less), None, &run, &acct);
        assert!(
            matches!(&v, Verdict::Break { kind: BreakType::AmountMismatch, reason } if reason.contains("100.00") && reason.contains("99.99")),
            "{v:?}"
        );
        let eur = checkout(
            PaymentStatus::Success,
            Money::from_minor(10_000, Currency::parse("EUR").unwrap()),
        );
        assert_eq!(
            kind(judge(&row, Some(&eur), None, &run, &acct)),
            Some(BreakType::CurrencyMismatch)
        );
        let failed = checkout(PaymentStatus::Failed, usd(10_000));
        assert_eq!(
            kind(judge(&row, Some(&failed), None, &run, &acct)),
            Some(BreakType::StatusMismatch)
        );
        let waiting = checkout(PaymentStatus::Executing, usd(10_000));
        assert_eq!(
            judge(&row, Some(&waiting), None, &run, &acct),
            Verdict::MissedWebhook
        );
        let other = AccountId::parse("acct_2").unwrap();
        assert_eq!(judge(&row, Some(&ok), None, &run, &other), Verdict::Foreign);
    }

    #[test]
    fn a_record_is_reconciled_once() {
        let run = ReconRunId::derived("file");
        let acct = AccountId::parse("acct_1").unwrap();
        let row = charge("100.00", "usd");
        let ok = checkout(PaymentStatus::Success, usd(10_000));
        // The same row again in a retried run: still matched.
        let same = Mark {
            run_id: run.clone(),
            balance_transaction_id: "txn_1".into(),
            line: 2,
            record: None,
        };
        assert_eq!(judge(&row, Some(&ok), Some(&same), &run, &acct), Verdict::Matched);
        // Another line of this file, or an earlier run: a duplicate.
        let other_line = Mark {
            line: 9,
            ..same.clone()
        };
        assert_eq!(
            kind(judge(&row, Some(&ok), Some(&other_line), &run, &acct)),
            Some(BreakType::Duplicate)
        );
        let earlier = Mark {
            run_id: ReconRunId::derived("older"),
            ..same
        };
        assert_eq!(
            kind(judge(&row, Some(&ok), Some(&earlier), &run, &acct)),
            Some(BreakType::Duplicate)
        );
        // No mark, but our checkout was paid through another payment intent: a second payment.
        let paid_elsewhere = OurRecord {
            psp_id: Some("pi_other".into()),
            ..ok.clone()
        };
        assert_eq!(
            kind(judge(&row, Some(&paid_elsewhere), None, &run, &acct)),
            Some(BreakType::Duplicate)
        );
        // Not known yet (its webhook has not come): nothing to compare.
        let unknown = OurRecord { psp_id: None, ..ok };
        assert_eq!(judge(&row, Some(&unknown), None, &run, &acct), Verdict::Matched);
    }

    #[test]
    fn a_mark_lives_in_its_transactions_ten_seconds() {
        let at = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
        };
        assert_eq!(mark_window(at("2026-11-30 10:00:09")), "2026-11-30T10:00:00");
        assert_eq!(mark_window(at("2026-11-30 10:00:10")), "2026-11-30T10:00:10");
        assert_eq!(mark_window(at("2026-11-30 10:00:59")), "2026-11-30T10:00:50");
        let start = at("2026-11-30 10:00:50");
        assert_eq!(mark_window(start + MARK_WINDOW), "2026-11-30T10:01:00");
    }

    #[test]
    fn refunds_and_transfers_carry_their_sign_and_status() {
        let r = |status| OurStatus::Refund(status);
        assert!(matches!(
            status_agrees(&Category::Refund, r(RefundStatus::Succeeded)),
            StatusCheck::Agrees
        ));
        assert!(matches!(
            status_agrees(&Category::Refund, r(RefundStatus::Pending)),
            StatusCheck::Disagrees(_)
        ));
        assert!(matches!(
            status_agrees(&Category::RefundFailure, r(RefundStatus::Failed)),
            StatusCheck::Agrees
        ));
        assert!(matches!(
            status_agrees(&Category::RefundFailure, r(RefundStatus::Succeeded)),
            StatusCheck::Disagrees(_)
        ));
        let p = |s, t| OurStatus::Payout(s, t);
        assert!(matches!(
            status_agrees(&Category::Transfer, p(PayoutStatus::Paid, true)),
            StatusCheck::Agrees
        ));
        assert!(matches!(
            status_agrees(&Category::Transfer, p(PayoutStatus::Pending, false)),
            StatusCheck::Disagrees(_)
        ));
        assert!(matches!(
            status_agrees(&Category::TransferReversal, p(PayoutStatus::Failed, true)),
            StatusCheck::Agrees
        ));
        assert!(matches!(
            status_agrees(&Category::TransferReversal, p(PayoutStatus::Paid, true)),
            StatusCheck::Disagrees(_)
        ));
        assert_eq!(
            row_kind(&Category::Refund),
            RowKind::Record {
                kind: "refund",
                sign: -1
            }
        );
        assert_eq!(row_kind(&Category::Other("dispute".into())), RowKind::Unexplained);
    }

    #[test]
    fn the_settling_window_defers_the_last_minutes() {
        let iv = Interval::day_of_key("psp/acct_1/2026-11-30.csv").unwrap();
        let w = chrono::Duration::seconds(900);
        let at = |s: &str| crate::domain::time::parse_time(s).unwrap();
        assert_eq!(missing_at_psp(at("2026-11-30T12:00:00Z"), &iv, w), Some(true));
        assert_eq!(missing_at_psp(at("2026-11-30T23:50:00Z"), &iv, w), Some(false));
        assert_eq!(missing_at_psp(at("2026-12-01T00:00:00Z"), &iv, w), None);
        assert_eq!(Interval::day_of_key("psp/acct_1/upload.csv"), None);
    }

    #[test]
    fn break_ids_are_stable_per_run_and_line() {
        let run = ReconRunId::derived("file");
        let acct = AccountId::parse("acct_1").unwrap();
        let now = Utc::now();
        let a = Break::of_row(
            &run,
            &acct,
            BreakType::MalformedRow,
            "x".into(),
            4,
            BTreeMap::new(),
            now,
        );
        let b = Break::of_row(
            &run,
            &acct,
            BreakType::MalformedRow,
            "y".into(),
            4,
            BTreeMap::new(),
            now,
        );
        let c = Break::of_row(
            &run,
            &acct,
            BreakType::MalformedRow,
            "x".into(),
            5,
            BTreeMap::new(),
            now,
        );
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.as_str().starts_with("brk_"));
        assert_eq!("written_off".parse::<Resolution>(), Ok(Resolution::WrittenOff));
        assert!("later"
            .parse::<Resolution>()
            .unwrap_err()
            .contains("adjusted, written_off"));
    }
}
