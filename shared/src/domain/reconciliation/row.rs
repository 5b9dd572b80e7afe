//! One row of the PSP's settlement file: Stripe's itemized balance-change report
//! (`balance_change_from_activity.itemized.3`), one row per balance transaction, amounts as
//! signed decimals in major units. Columns are found by header name, in any order; extra
//! columns are ignored. Parsed at the edge: a [`SettlementRow`] in hand is well-formed.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::domain::currency::Currency;
use crate::domain::ids::{CheckoutId, PayoutId, RefundId};
use crate::domain::money::{Money, MoneyError};

/// The columns a file must have (Stripe's names).
pub const REQUIRED_COLUMNS: &[&str] = &[
    "balance_transaction_id",
    "created_utc",
    "available_on_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
    "charge_id",
    "payment_intent_id",
    "automatic_payout_id",
];

/// The metadata columns our PSP client's objects carry (requested with `parameters[columns][]`):
/// optional, but they make matching a key lookup instead of an index query.
pub const CHECKOUT_META: &str = "payment_metadata[checkout_id]";
pub const REFUND_META: &str = "refund_metadata[refund_id]";
pub const PAYOUT_META: &str = "transfer_metadata[payout_id]";
pub const METADATA_COLUMNS: &[&str] = &[CHECKOUT_META, REFUND_META, PAYOUT_META];
/// A transfer's `transfer_group`: our client sets it to the payout id, so a transfer row
/// without its metadata still names its payout.
pub const TRANSFER_GROUP: &str = "transfer_group";

/// Every column fetch_settlement asks the PSP for, in this order.
pub fn requested_columns() -> Vec<&'static str> {
    let mut all = REQUIRED_COLUMNS.to_vec();
    all.extend(["description", TRANSFER_GROUP]);
    all.extend(METADATA_COLUMNS);
    all
}

/// The report's `reporting_category`: what moved the PSP balance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Category {
    Charge,
    Refund,
    RefundFailure,
    Transfer,
    TransferReversal,
    /// The platform's own payout to its bank, and its return.
    Payout,
    PayoutReversal,
    /// A PSP fee charged apart from a charge.
    Fee,
    Adjustment,
    /// Any other category Stripe has (disputes, topups, …): booked to suspense, for a person.
    Other(String),
}

impl Category {
    pub fn parse(s: &str) -> Category {
        match s {
            "charge" => Category::Charge,
            "refund" => Category::Refund,
            "refund_failure" => Category::RefundFailure,
            "transfer" => Category::Transfer,
            "transfer_reversal" => Category::TransferReversal,
            "payout" => Category::Payout,
            "payout_reversal" => Category::PayoutReversal,
            "fee" => Category::Fee,
            "adjustment" => Category::Adjustment,
            other => Category::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Category::Charge => "charge",
            Category::Refund => "refund",
            Category::RefundFailure => "refund_failure",
            Category::Transfer => "transfer",
            Category::TransferReversal => "transfer_reversal",
            Category::Payout => "payout",
            Category::PayoutReversal => "payout_reversal",
            Category::Fee => "fee",
            Category::Adjustment => "adjustment",
            Category::Other(s) => s,
        }
    }
}

/// A file that cannot be read as a settlement report at all (the run fails, nothing booked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the file has no header row")]
    Empty,
    #[error("missing required column(s): {}", .0.join(", "))]
    Missing(Vec<String>),
    #[error("column {0:?} appears more than once")]
    Repeated(String),
}

/// Where each column we read sits in a row.
#[derive(Debug, Clone)]
pub struct Columns {
    width: usize,
    at: HashMap<&'static str, usize>,
}

impl Columns {
    /// Finds the columns by name (surrounding spaces and a UTF-8 byte-order mark ignored).
    pub fn from_header<'a>(header: impl IntoIterator<Item = &'a str>) -> Result<Columns, HeaderError> {
        let names: Vec<&str> = header
            .into_iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim())
            .collect();
        if names.iter().all(|n| n.is_empty()) {
            return Err(HeaderError::Empty);
        }
        let mut at = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let known = REQUIRED_COLUMNS
                .iter()
                .chain(METADATA_COLUMNS)
                .chain(&[TRANSFER_GROUP])
                .find(|c| **c == *name);
            if let Some(c) = known {
                if at.insert(*c, i).is_some() {
                    return Err(HeaderError::Repeated((*c).to_owned()));
                }
            }
        }
        let missing: Vec<String> = REQUIRED_COLUMNS
            .iter()
            .filter(|c| !at.contains_key(**c))
            .map(|c| (*c).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(HeaderError::Missing(missing));
        }
        Ok(Columns {
            width: names.len(),
            at,
        })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    fn get<'r>(&self, fields: &[&'r str], name: &str) -> Option<&'r str> {
        self.at
            .get(name)
            .and_then(|i| fields.get(*i))
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }

    /// Parses one data row (`line` is its 1-based line number in the file, header = 1).
    pub fn parse(&self, line: u64, fields: &[&str]) -> Result<SettlementRow, RowError> {
        if fields.len() != self.width {
            return Err(RowError::ColumnCount {
                expected: self.width,
                found: fields.len(),
            });
        }
        let text = |name: &'static str| self.get(fields, name);
        let required = |name: &'static str| text(name).ok_or(RowError::Empty(name));
        let currency_text = required("currency")?;
        let currency =
            Currency::parse(currency_text).map_err(|_| RowError::Currency(currency_text.into()))?;
        let amount = |name: &'static str| -> Result<Money, RowError> {
            let t = required(name)?;
            parse_signed(t, currency).map_err(|e| RowError::Amount {
                column: name,
                text: short(t),
                reason: e.to_string(),
            })
        };
        let (gross, fee, net) = (amount("gross")?, amount("fee")?, amount("net")?);
        if gross.minor().checked_sub(fee.minor()) != Some(net.minor()) {
            return Err(RowError::NetMismatch {
                gross: signed_text(gross),
                fee: signed_text(fee),
                net: signed_text(net),
            });
        }
        let time = |name: &'static str| -> Result<DateTime<Utc>, RowError> {
            let t = required(name)?;
            parse_utc(t).ok_or_else(|| RowError::Date {
                column: name,
                text: short(t),
            })
        };
        let id_of = |name: &'static str| text(name).map(str::to_owned);
        let ours = |name: &'static str| text(name).map(str::to_owned);
        Ok(SettlementRow {
            line,
            balance_transaction_id: {
                // The row's identity, kept in marks a text line each: no control characters.
                let id = required("balance_transaction_id")?;
                if id.chars().any(char::is_control) {
                    return Err(RowError::Control("balance_transaction_id"));
                }
                id.to_owned()
            },
            created: time("created_utc")?,
            available_on: time("available_on_utc")?,
            currency,
            gross,
            fee,
            net,
            category: Category::parse(required("reporting_category")?),
            source_id: id_of("source_id").unwrap_or_default(),
            charge_id: id_of("charge_id"),
            payment_intent_id: id_of("payment_intent_id"),
            automatic_payout_id: id_of("automatic_payout_id"),
            // A metadata value that is not one of our ids is simply not ours: no lookup by it.
            checkout_id: ours(CHECKOUT_META).and_then(|s| CheckoutId::parse(&s).ok()),
            refund_id: ours(REFUND_META).and_then(|s| RefundId::parse(&s).ok()),
            payout_id: ours(PAYOUT_META)
                .or_else(|| ours(TRANSFER_GROUP))
                .and_then(|s| PayoutId::parse(&s).ok()),
        })
    }
}

/// A well-formed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRow {
    pub line: u64,
    pub balance_transaction_id: String,
    pub created: DateTime<Utc>,
    pub available_on: DateTime<Utc>,
    pub currency: Currency,
    /// Signed: what the transaction moved into (+) or out of (−) the PSP balance, before fees.
    pub gross: Money,
    /// The PSP's fee (positive: taken from us).
    pub fee: Money,
    pub net: Money,
    pub category: Category,
    /// The object that moved the balance (`ch_…`, `re_…`, `tr_…`, `trr_…`, `po_…`).
    pub source_id: String,
    pub charge_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub automatic_payout_id: Option<String>,
    pub checkout_id: Option<CheckoutId>,
    pub refund_id: Option<RefundId>,
    pub payout_id: Option<PayoutId>,
}

/// Why a row is a `malformed_row` break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("expected {expected} columns, found {found}")]
    ColumnCount { expected: usize, found: usize },
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("unknown currency {0:?}")]
    Currency(String),
    #[error("{column} {text:?} {reason}")]
    Amount {
        column: &'static str,
        text: String,
        reason: String,
    },
    #[error("gross {gross} minus fee {fee} is not net {net}")]
    NetMismatch { gross: String, fee: String, net: String },
    #[error("{column} {text:?} is not a date such as 2026-11-30 12:00:00")]
    Date { column: &'static str, text: String },
    #[error("not CSV: {0}")]
    Csv(String),
    #[error("{0} holds a control character")]
    Control(&'static str),
}

/// A signed decimal amount, exact in `currency` (never rounded).
pub fn parse_signed(text: &str, currency: Currency) -> Result<Money, MoneyError> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = Money::parse_decimal(digits)?;
    let money = Money::from_decimal(value, currency)?;
    Ok(if negative {
        Money::from_minor(-money.minor(), currency)
    } else {
        money
    })
}

/// Money as the report writes it: signed, in major units.
pub fn signed_text(m: Money) -> String {
    if m.minor() < 0 {
        format!("-{}", Money::from_minor(-m.minor(), m.currency()))
    } else {
        m.to_string()
    }
}

/// `2026-11-30 12:00:00` (Stripe's `*_utc` columns), or RFC 3339.
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
        .or_else(|| crate::domain::time::parse_time(text))
}

fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,\
reporting_category,source_id,charge_id,payment_intent_id,automatic_payout_id";

    fn columns(header: &str) -> Columns {
        Columns::from_header(header.split(',')).unwrap()
    }

    fn row(cols: &Columns, line: &str) -> Result<SettlementRow, RowError> {
        cols.parse(7, &line.split(',').collect::<Vec<_>>())
    }

    #[test]
    fn a_charge_row_parses_exactly() {
        let cols = columns(HEADER);
        let r = row(
            &cols,
            "txn_1,2026-11-30 10:00:00,2026-12-02 00:00:00,usd,100.00,3.20,96.80,charge,ch_1,ch_1,pi_1,",
        )
        .unwrap();
        assert_eq!(r.line, 7);
        assert_eq!(
            (r.gross.minor(), r.fee.minor(), r.net.minor()),
            (10_000, 320, 9_680)
        );
        assert_eq!(r.category, Category::Charge);
        assert_eq!(r.payment_intent_id.as_deref(), Some("pi_1"));
        assert_eq!(r.automatic_payout_id, None);
        assert_eq!(r.created.to_rfc3339(), "2026-11-30T10:00:00+00:00");
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_extras_are_ignored() {
        let cols = columns(
            "extra,net,fee,gross,currency,available_on_utc,created_utc,balance_transaction_id,\
reporting_category,source_id,charge_id,payment_intent_id,automatic_payout_id,refund_metadata[refund_id]",
        );
        let r = row(
            &cols,
            "x,-5,0,-5,jpy,2026-11-30 00:00:00,2026-11-30 00:00:00,txn_2,refund,re_1,ch_1,pi_1,,rf_0192f0e0c2d87a9cb0f1e2d3c4b5a697",
        )
        .unwrap();
        assert_eq!(r.gross.minor(), -5);
        assert_eq!(r.category, Category::Refund);
        assert_eq!(
            r.refund_id.unwrap().as_str(),
            "rf_0192f0e0c2d87a9cb0f1e2d3c4b5a697"
        );
    }

    #[test]
    fn a_transfer_names_its_payout_by_metadata_or_by_its_transfer_group() {
        let cols = columns(&format!("{HEADER},transfer_group"));
        let line = "txn_t,2026-11-30 10:00:00,2026-11-30 10:00:00,usd,-50.00,0,-50.00,transfer,tr_1,,,,pout_0192f0e0c2d87a9cb0f1e2d3c4b5a697";
        let r = row(&cols, line).unwrap();
        assert_eq!(
            r.payout_id.unwrap().as_str(),
            "pout_0192f0e0c2d87a9cb0f1e2d3c4b5a697"
        );
        let theirs = row(
            &cols,
            &line.replace("pout_0192f0e0c2d87a9cb0f1e2d3c4b5a697", "group_42"),
        )
        .unwrap();
        assert_eq!(
            theirs.payout_id, None,
            "a transfer group that is not one of our payouts names nothing"
        );
    }

    #[test]
    fn a_header_without_the_required_columns_names_them() {
        let e = Columns::from_header("balance_transaction_id,gross".split(',')).unwrap_err();
        let HeaderError::Missing(m) = &e else {
            panic!("{e}")
        };
        assert!(m.contains(&"net".to_string()) && m.contains(&"reporting_category".to_string()));
        assert_eq!(Columns::from_header([""]).unwrap_err(), HeaderError::Empty);
        assert!(matches!(
            Columns::from_header(format!("{HEADER},net").split(',')),
            Err(HeaderError::Repeated(_))
        ));
    }

    #[test]
    fn each_bad_row_says_why() {
        let cols = columns(HEADER);
        let base = [
            "txn_1",
            "2026-11-30 10:00:00",
            "2026-12-02 00:00:00",
            "usd",
            "100.00",
            "3.20",
            "96.80",
            "charge",
            "ch_1",
            "ch_1",
            "pi_1",
            "",
        ];
        let with = |i: usize, v: &'static str| {
            let mut f = base.to_vec();
            f[i] = v;
            cols.parse(3, &f)
        };
        assert!(matches!(
            cols.parse(3, &base[..5]),
            Err(RowError::ColumnCount {
                expected: 12,
                found: 5
            })
        ));
        assert!(matches!(
            with(4, "ten"),
            Err(RowError::Amount { column: "gross", .. })
        ));
        assert!(matches!(with(3, "zzz"), Err(RowError::Currency(_))));
        let e = with(5, "3.201").unwrap_err();
        assert!(e.to_string().contains("more decimals"), "{e}");
        assert!(matches!(with(6, "96.81"), Err(RowError::NetMismatch { .. })));
        assert!(matches!(
            with(1, "30/11/2026"),
            Err(RowError::Date {
                column: "created_utc",
                ..
            })
        ));
        assert!(matches!(
            with(0, ""),
            Err(RowError::Empty("balance_transaction_id"))
        ));
        assert!(matches!(
            with(0, "txn_1\tx"),
            Err(RowError::Control("balance_transaction_id"))
        ));
        assert!(with(4, "1e2").is_err());
        assert!(cols.parse(3, &base).is_ok());
    }

    #[test]
    fn signed_amounts_round_trip() {
        let usd = Currency::parse("USD").unwrap();
        for t in ["-0.01", "0.00", "12.34", "-99999.99"] {
            assert_eq!(signed_text(parse_signed(t, usd).unwrap()), t);
        }
        assert_eq!(parse_signed("+1.5", usd).unwrap().minor(), 150);
        assert!(parse_signed("--1", usd).is_err());
    }
}
