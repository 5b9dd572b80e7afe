//! The reconciliation API's wire shapes: runs and breaks out, a break's resolution in, and the
//! breaks list's filters.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::json::{opt_str, reject_card_fields, reject_unknown, req_str, Fields};
use crate::domain::currency::Currency;
use crate::domain::ids::BreakId;
use crate::domain::money::Money;
use crate::domain::reconciliation::row::signed_text;
use crate::domain::reconciliation::{BreakStatus, BreakType, Resolution, Run};
use crate::domain::time::format_time;
use crate::ports::reconciliation_api::{BreakRecord, ResolutionEntry};

const RESOLVE_FIELDS: &[&str] = &["resolution", "note"];
/// A resolution's note, in characters.
pub const NOTE_CHARS_MAX: usize = 1000;

/// A `POST /v1/reconciliation/breaks/{break_id}/resolve` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    pub resolution: Resolution,
    pub note: Option<String>,
}

impl ResolveRequest {
    /// The request's canonical fingerprint for its idempotency record: the break it is about
    /// (from the path) and what the body says, whatever its spacing or member order.
    pub fn fingerprint(&self, break_id: &BreakId) -> String {
        #[derive(Serialize)]
        struct Canon<'a> {
            kind: &'static str,
            break_id: &'a str,
            resolution: &'static str,
            note: Option<&'a str>,
        }
        let canon = Canon {
            kind: "reconciliation_break_resolution",
            break_id: break_id.as_str(),
            resolution: self.resolution.as_str(),
            note: self.note.as_deref(),
        };
        let text = serde_json::to_string(&canon).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Parses a resolve body: `resolution` (one of the names), an optional `note` of 1 to 1,000
/// characters with no card number in it; anything else is refused.
pub fn parse_resolve_request(body: &[u8]) -> Result<ResolveRequest, ApiError> {
    let mut top = Fields::parse_body(body)?;
    reject_card_fields(&top, "")?;
    reject_unknown(&top, RESOLVE_FIELDS, "")?;
    let raw = req_str(&mut top, "resolution", "")?;
    let resolution = raw.parse::<Resolution>().map_err(|why| {
        ApiError::invalid_param("resolution", "parameter_invalid", format!("resolution {why}"))
    })?;
    let note = opt_str(&mut top, "note")?;
    if let Some(n) = &note {
        let chars = n.chars().count();
        if chars == 0 || chars > NOTE_CHARS_MAX {
            return Err(ApiError::invalid_param(
                "note",
                "parameter_invalid",
                format!("note must be 1 to {NOTE_CHARS_MAX} characters"),
            ));
        }
        if crate::domain::card::contains_pan(n) {
            return Err(ApiError::invalid_param(
                "note",
                "card_data_rejected",
                "Card data is never accepted: the note must not hold a card number",
            ));
        }
    }
    Ok(ResolveRequest { resolution, note })
}

/// A query parameter naming one of a closed set (`status`, `type`): absent is no filter; a
/// value outside the set is `400 parameter_invalid` naming it.
pub fn parse_filter<T: std::str::FromStr<Err = String>>(
    raw: Option<&str>,
    param: &'static str,
) -> Result<Option<T>, ApiError> {
    raw.map(|v| {
        v.parse::<T>()
            .map_err(|why| ApiError::invalid_param(param, "parameter_invalid", format!("{param} {why}")))
    })
    .transpose()
}

/// Minor units per currency as decimal text (`{"USD": "12.34"}`).
fn amounts(m: &BTreeMap<String, i64>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(code, minor)| {
            let text = match Currency::parse(code) {
                Ok(c) => signed_text(Money::from_minor(*minor, c)),
                Err(_) => minor.to_string(),
            };
            (code.clone(), text)
        })
        .collect()
}

pub fn run_view(r: &Run) -> Value {
    let breaks: BTreeMap<&str, u64> = BreakType::ALL
        .iter()
        .map(|k| (k.as_str(), r.tally.breaks.get(k).copied().unwrap_or(0)))
        .collect();
    json!({
        "object": "reconciliation_run",
        "run_id": r.id,
        "account_id": r.account_id,
        "file": {"bucket": r.file.bucket, "key": r.file.key, "sha256": r.file.sha256},
        "interval": r.interval.map(|i| json!({"start": format_time(i.start), "end": format_time(i.end)})),
        "status": r.status.as_str(),
        "failure_reason": r.failure_reason,
        "rows": r.tally.rows,
        "matched": r.tally.matched,
        "expected": r.tally.expected,
        "breaks_by_type": breaks,
        "fees_booked": r.tally.fees_booked,
        "auto_resolved": r.tally.auto_resolved,
        "psp_receivable": amounts(&r.psp_receivable),
        "psp_balance": amounts(&r.psp_balance),
        "started_at": format_time(r.started_at),
        "finished_at": r.finished_at.map(format_time),
    })
}

fn resolution_view(e: &ResolutionEntry) -> Value {
    json!({
        "resolution": e.resolution.as_str(),
        "note": e.note,
        "resolved_by": e.resolved_by,
        "resolved_at": format_time(e.resolved_at),
    })
}

pub fn break_view(b: &BreakRecord) -> Value {
    let brk = &b.brk;
    json!({
        "object": "reconciliation_break",
        "break_id": brk.id,
        "run_id": brk.run_id,
        "type": brk.kind.as_str(),
        "status": brk.status.as_str(),
        "reason": brk.reason,
        "line": brk.line,
        "row": brk.row,
        "ours": brk.ours,
        "resolution": b.resolution.as_ref().map(resolution_view),
        "auto_resolution_note": brk.resolution_note,
        "created_at": format_time(brk.created_at),
    })
}

/// The break as a resolution leaves it: `resolved`, with the entry on it.
pub fn resolved(b: &BreakRecord, entry: ResolutionEntry) -> BreakRecord {
    let mut out = b.clone();
    out.brk.status = BreakStatus::Resolved;
    out.resolution = Some(entry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, ApiKeyId, ReconRunId};
    use crate::domain::reconciliation::{Break, FileRef, Interval, RunStatus};
    use crate::domain::time::parse_time;

    fn code(body: &str) -> (&'static str, Option<String>) {
        let e = parse_resolve_request(body.as_bytes()).unwrap_err();
        (e.code, e.param.clone())
    }

    #[test]
    fn a_resolve_body_parses_exactly() {
        let r = parse_resolve_request(br#"{"resolution":"written_off","note":"fee dispute lost"}"#).unwrap();
        assert_eq!(r.resolution, Resolution::WrittenOff);
        assert_eq!(r.note.as_deref(), Some("fee dispute lost"));
        let bare = parse_resolve_request(br#"{"resolution":"ignored"}"#).unwrap();
        assert_eq!(bare.note, None);
        let same =
            parse_resolve_request(br#"{ "note": "fee dispute lost", "resolution": "written_off" }"#).unwrap();
        let b = BreakId::generate();
        assert_eq!(same.fingerprint(&b), r.fingerprint(&b));
        assert_ne!(bare.fingerprint(&b), r.fingerprint(&b));
        assert_ne!(r.fingerprint(&BreakId::generate()), r.fingerprint(&b));
    }

    #[test]
    fn bad_resolve_bodies_are_refused_with_their_param() {
        assert_eq!(code("{}"), ("parameter_missing", Some("resolution".into())));
        assert_eq!(
            code(r#"{"resolution":"later"}"#),
            ("parameter_invalid", Some("resolution".into()))
        );
        assert_eq!(
            code(r#"{"resolution":1}"#),
            ("parameter_invalid_string", Some("resolution".into()))
        );
        assert_eq!(
            code(r#"{"resolution":"adjusted","amount":"1.00"}"#).0,
            "parameter_unknown"
        );
        let long = "x".repeat(NOTE_CHARS_MAX + 1);
        assert_eq!(
            code(&format!(r#"{{"resolution":"adjusted","note":"{long}"}}"#)),
            ("parameter_invalid", Some("note".into()))
        );
        let most = "é".repeat(NOTE_CHARS_MAX);
        assert!(
            parse_resolve_request(format!(r#"{{"resolution":"adjusted","note":"{most}"}}"#).as_bytes())
                .is_ok()
        );
        assert_eq!(
            code(r#"{"resolution":"adjusted","note":""}"#),
            ("parameter_invalid", Some("note".into()))
        );
        assert_eq!(
            code(r#"{"resolution":"adjusted","note":"card 4242 4242 4242 4242"}"#).0,
            "card_data_rejected"
        );
        assert_eq!(code("[]").0, "body_not_object");
    }

    #[test]
    fn filters_name_their_param() {
        assert_eq!(parse_filter::<BreakStatus>(None, "status").unwrap(), None);
        assert_eq!(
            parse_filter::<BreakStatus>(Some("auto_resolved"), "status").unwrap(),
            Some(BreakStatus::AutoResolved)
        );
        assert_eq!(
            parse_filter::<BreakType>(Some("missing_in_ours"), "type").unwrap(),
            Some(BreakType::MissingInOurs)
        );
        let e = parse_filter::<BreakType>(Some("MISSING"), "type").unwrap_err();
        assert_eq!(
            (e.status, e.code, e.param.as_deref()),
            (400, "parameter_invalid", Some("type"))
        );
        assert!(e.message.contains("malformed_row"), "{}", e.message);
        let e = parse_filter::<BreakStatus>(Some("closed"), "status").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("status"));
    }

    #[test]
    fn a_run_shows_amounts_as_decimals_and_every_break_type() {
        let at = parse_time("2026-11-30T10:00:00Z").unwrap();
        let mut run = Run::start(
            AccountId::parse("acct_a").unwrap(),
            FileRef {
                bucket: "b".into(),
                key: "psp/acct_a/2026-11-30.csv".into(),
                sha256: "ab".into(),
            },
            Interval::day_of_key("psp/acct_a/2026-11-30.csv"),
            at,
        );
        run.status = RunStatus::Succeeded;
        run.tally.rows = 3;
        run.tally.add_break(BreakType::MalformedRow);
        run.psp_receivable = BTreeMap::from([("USD".into(), 1234), ("JPY".into(), -500)]);
        run.psp_balance = BTreeMap::from([("USD".into(), 5)]);
        run.finished_at = Some(at);
        let v = run_view(&run);
        assert_eq!(v["object"], "reconciliation_run");
        assert_eq!(v["status"], "SUCCEEDED");
        assert_eq!(v["file"]["key"], "psp/acct_a/2026-11-30.csv");
        assert_eq!(v["interval"]["start"], "2026-11-30T00:00:00.000Z");
        assert_eq!(v["interval"]["end"], "2026-12-01T00:00:00.000Z");
        assert_eq!(v["psp_receivable"], json!({"JPY": "-500", "USD": "12.34"}));
        assert_eq!(v["psp_balance"], json!({"USD": "0.05"}));
        assert_eq!(v["breaks_by_type"]["malformed_row"], 1);
        assert_eq!(v["breaks_by_type"]["duplicate"], 0);
        assert_eq!(
            v["breaks_by_type"].as_object().unwrap().len(),
            BreakType::ALL.len()
        );
        assert_eq!(v["finished_at"], "2026-11-30T10:00:00.000Z");
        assert_eq!(v["failure_reason"], Value::Null);
        run.interval = None;
        assert_eq!(run_view(&run)["interval"], Value::Null);
    }

    #[test]
    fn a_break_shows_its_resolution_once_resolved() {
        let at = parse_time("2026-11-30T10:00:00Z").unwrap();
        let brk = Break::of_row(
            &ReconRunId::derived("f"),
            &AccountId::parse("acct_a").unwrap(),
            BreakType::MissingInOurs,
            "no checkout of ours".into(),
            3,
            BTreeMap::from([("gross".into(), "10.00".into())]),
            at,
        );
        let open = BreakRecord {
            brk,
            resolution: None,
        };
        let v = break_view(&open);
        assert_eq!(v["object"], "reconciliation_break");
        assert_eq!(v["status"], "open");
        assert_eq!(v["type"], "missing_in_ours");
        assert_eq!(v["line"], 3);
        assert_eq!(v["row"]["gross"], "10.00");
        assert_eq!(v["resolution"], Value::Null);
        assert_eq!(v["auto_resolution_note"], Value::Null);
        let key = ApiKeyId::derived("k");
        let key_text = key.to_string();
        let done = resolved(
            &open,
            ResolutionEntry {
                resolution: Resolution::Refunded,
                note: None,
                resolved_by: key,
                resolved_at: at,
            },
        );
        let v = break_view(&done);
        assert_eq!(v["status"], "resolved");
        assert_eq!(
            v["resolution"],
            json!({"resolution": "refunded", "note": null, "resolved_by": key_text, "resolved_at": "2026-11-30T10:00:00.000Z"})
        );
    }
}
