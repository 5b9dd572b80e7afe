//! Test-only admin API under `/__sandbox/`: no API key, loopback callers only. Not part of
//! Stripe's API; nothing in production code may depend on it.

use crate::faults::FaultRequest;
use crate::store::{self, format_minor, Cause, SessionStatus, State};
use crate::{stripe_error, unrecognized, App, Req, Resp};
use serde_json::{json, Value};

fn bad(message: &str) -> Resp {
    stripe_error(400, "invalid_request_error", None, message, None)
}

fn query_param(req: &Req, name: &str) -> Option<String> {
    crate::form::pairs(req.query.as_bytes())
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn json_body(req: &Req) -> Result<Value, Resp> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&req.body).map_err(|e| bad(&format!("invalid JSON body: {e}")))
}

pub fn handle(app: &App, req: &Req) -> Resp {
    if !req.peer.ip().is_loopback() {
        return stripe_error(
            403,
            "invalid_request_error",
            None,
            "The sandbox admin API is loopback-only.",
            None,
        );
    }
    let path = req.path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(2).collect();
    let get = req.method == hyper::Method::GET;
    let post = req.method == hyper::Method::POST;
    match (segs.as_slice(), get, post) {
        (["faults"], true, _) => Resp::json(200, &app.lock().faults.describe()),
        (["faults"], _, true) => {
            let parsed: FaultRequest = match json_body(req).and_then(|v| {
                serde_json::from_value(v).map_err(|e| bad(&format!("invalid fault request: {e}")))
            }) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let (result, now) = {
                let mut st = app.lock();
                let r = st.faults.apply(parsed);
                (r, st.faults.describe())
            };
            match result {
                Ok(release) => {
                    app.release(release);
                    Resp::json(200, &now)
                }
                Err(msg) => bad(&msg),
            }
        }
        (["reset"], _, true) => {
            let release = app.lock().faults.reset();
            let released = release.len();
            app.release(release);
            Resp::json(200, &json!({"reset": true, "released_deliveries": released}))
        }
        (["requests"], true, _) => {
            let st = app.lock();
            Resp::json(
                200,
                &json!({"object": "list", "data": st.requests.iter().collect::<Vec<_>>()}),
            )
        }
        (["deliveries"], true, _) => {
            let st = app.lock();
            Resp::json(
                200,
                &json!({"object": "list", "data": st.deliveries.iter().collect::<Vec<_>>()}),
            )
        }
        (["sessions"], true, _) => {
            let st = app.lock();
            let data: Vec<Value> = st
                .session_order
                .iter()
                .filter_map(|id| st.sessions.get(id))
                .map(|s| st.session_json(s, &app.cfg.public_url, &["payment_intent".to_string()]))
                .collect();
            Resp::json(200, &json!({"object": "list", "data": data}))
        }
        (["sessions", id, "async"], _, true) => {
            let outcome = match json_body(req) {
                Ok(v) => v.get("outcome").and_then(Value::as_str).unwrap_or("").to_string(),
                Err(r) => return r,
            };
            let public_url = app.cfg.public_url.clone();
            app.with_state(|st| async_payment(st, id, &outcome, &public_url))
        }
        (["sessions", id, "lapse"], _, true) => {
            let public_url = app.cfg.public_url.clone();
            app.with_state(|st| {
                let Some(s) = st.sessions.get_mut(*id) else {
                    return stripe_error(
                        404,
                        "invalid_request_error",
                        Some("resource_missing"),
                        "No such session",
                        None,
                    );
                };
                if s.status != SessionStatus::Open {
                    return bad("only open sessions can lapse");
                }
                s.expires_at = store::now();
                crate::api::expire_if_due(st, id, &public_url);
                match st.sessions.get(*id) {
                    Some(s) => Resp::json(200, &st.session_json(s, &public_url, &[])),
                    None => bad("session vanished"),
                }
            })
        }
        (["settlement.csv"], true, _) => {
            let Some(date) = query_param(req, "date") else {
                return bad("date=YYYY-MM-DD is required");
            };
            let Ok(day) = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d") else {
                return bad("date must be YYYY-MM-DD");
            };
            let start = day
                .and_hms_opt(0, 0, 0)
                .map(|d| d.and_utc().timestamp())
                .unwrap_or(0);
            let csv = settlement_csv(&app.lock(), start, start + 86_400);
            Resp::text(200, "text/csv; charset=utf-8", csv).with_header(
                "Content-Disposition",
                &format!("attachment; filename=\"settlement-{date}.csv\""),
            )
        }
        _ => unrecognized(req),
    }
}

/// Move a session through a delayed (bank-debit-like) payment, as Stripe's async payment methods
/// do. `processing`: the customer submitted; the session becomes `complete`/`unpaid`, the
/// PaymentIntent `processing`, and `checkout.session.completed` is emitted. `succeeded` /
/// `failed`: the funds arrived or not (`checkout.session.async_payment_succeeded` / `_failed`);
/// on an open session the `processing` step happens first. Any open session qualifies.
pub fn async_payment(st: &mut State, id: &str, outcome: &str, public_url: &str) -> Resp {
    if !matches!(outcome, "processing" | "succeeded" | "failed") {
        return bad("outcome must be \"processing\", \"succeeded\" or \"failed\"");
    }
    crate::api::expire_if_due(st, id, public_url);
    let Some(s) = st.sessions.get(id) else {
        return stripe_error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            "No such session",
            None,
        );
    };
    let pi_id = s.payment_intent.clone();
    let processing = s.status == SessionStatus::Complete
        && !s.paid
        && st.intents.get(&pi_id).is_some_and(|p| p.status == "processing");
    let cause = Cause::default();
    if s.status == SessionStatus::Open {
        if let Some(s) = st.sessions.get_mut(id) {
            s.status = SessionStatus::Complete;
        }
        if let Some(pi) = st.intents.get_mut(&pi_id) {
            pi.status = "processing";
            pi.last_payment_error = None;
            pi.payment_method = Some(store::new_id("pm_", 24));
        }
        st.session_event("checkout.session.completed", id, public_url, &cause);
    } else if !processing {
        return stripe_error(
            409,
            "invalid_request_error",
            None,
            "Only open sessions, or complete sessions whose payment is processing, take an async outcome.",
            None,
        );
    } else if outcome == "processing" {
        return bad("the payment is already processing");
    }
    match outcome {
        "succeeded" => {
            let pm = st
                .intents
                .get(&pi_id)
                .and_then(|p| p.payment_method.clone())
                .unwrap_or_default();
            st.record_success(id, &pm);
            st.session_event("checkout.session.async_payment_succeeded", id, public_url, &cause);
        }
        "failed" => {
            if let Some(pi) = st.intents.get_mut(&pi_id) {
                let charge = store::new_id("py_", 24);
                pi.status = "requires_payment_method";
                pi.latest_charge = Some(charge.clone());
                pi.last_payment_error = Some(json!({
                    "charge": charge, "code": "payment_method_provider_decline", "decline_code": null,
                    "message": "The bank declined the debit (insufficient funds).",
                    "type": "card_error",
                }));
            }
            st.session_event("checkout.session.async_payment_failed", id, public_url, &cause);
        }
        _ => {}
    }
    match st.sessions.get(id) {
        Some(s) => Resp::json(
            200,
            &st.session_json(s, public_url, &["payment_intent".to_string()]),
        ),
        None => bad("session vanished"),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub const SETTLEMENT_COLUMNS: &str =
    "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,\
reporting_category,source_id,description,customer_facing_amount,automatic_payout_id,charge_id,\
payment_intent_id,checkout_session_id,client_reference_id";

/// Balance transactions created in `[from, to)`, oldest first, in the columns of Stripe's
/// balance-change / payout-reconciliation report (amounts in major units, exactly).
pub fn settlement_csv(st: &State, from: i64, to: i64) -> String {
    let mut out = String::from(SETTLEMENT_COLUMNS);
    out.push('\n');
    let mut rows: Vec<&store::BalanceTxn> = st
        .balance_txns
        .iter()
        .filter(|t| t.created >= from && t.created < to)
        .collect();
    rows.sort_by_key(|t| t.created);
    for t in rows {
        let fields = [
            t.id.clone(),
            store::utc_text(t.created),
            store::utc_text(t.available_on),
            t.currency.clone(),
            format_minor(t.amount, &t.currency),
            format_minor(t.fee, &t.currency),
            format_minor(t.net, &t.currency),
            "charge".to_string(),
            t.charge_id.clone(),
            t.description.clone().unwrap_or_default(),
            format_minor(t.amount, &t.currency),
            String::new(),
            t.charge_id.clone(),
            t.payment_intent_id.clone(),
            t.session_id.clone(),
            t.client_reference_id.clone().unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn settlement_rows_are_exact_and_quoted() {
        let mut st = State::new("whsec_x".into());
        let t = 1_795_595_400; // 2026-11-25 08:30:00 UTC
        for (amount, currency, cref) in [
            (9999, "usd", "po_1"),
            (12_345, "kwd", "a,\"b\""),
            (5000, "jpy", ""),
        ] {
            let fee = store::fee_for(amount, currency);
            st.balance_txns.push_back(store::BalanceTxn {
                id: format!("txn_{currency}"),
                amount,
                fee,
                net: amount - fee,
                currency: currency.into(),
                created: t,
                available_on: store::available_on(t),
                charge_id: "ch_1".into(),
                payment_intent_id: "pi_1".into(),
                session_id: "cs_test_1".into(),
                client_reference_id: Some(cref.to_string()).filter(|c| !c.is_empty()),
                metadata: BTreeMap::new(),
                description: None,
            });
        }
        let csv = settlement_csv(&st, t - 100, t + 100);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], SETTLEMENT_COLUMNS);
        assert_eq!(
            lines[1],
            "txn_usd,2026-11-25 08:30:00,2026-11-27 00:00:00,usd,99.99,3.20,96.79,charge,ch_1,,99.99,,ch_1,pi_1,cs_test_1,po_1"
        );
        assert!(
            lines[2].starts_with("txn_kwd,2026-11-25 08:30:00,2026-11-27 00:00:00,kwd,12.345,0.658,11.687,")
        );
        assert!(lines[2].ends_with(",\"a,\"\"b\"\"\""));
        assert!(lines[3].contains(",jpy,5000,145,4855,"));
        assert_eq!(settlement_csv(&st, 0, 1).lines().count(), 1);
    }

    #[test]
    fn async_outcomes() {
        let mut st = State::new("whsec_x".into());
        assert_eq!(
            async_payment(&mut st, "cs_test_nope", "succeeded", "http://x").status,
            404
        );
        assert_eq!(
            async_payment(&mut st, "cs_test_nope", "bogus", "http://x").status,
            400
        );
    }
}
