//! Test-only admin API under `/__sandbox/`: no API key, loopback callers only. Not part of
//! Stripe's API; nothing in production code may depend on it.

use crate::faults::FaultRequest;
use crate::refunds::{RefundFlow, RefundStatus, SettleError, FAILURE_REASONS};
use crate::store::{self, Cause, SessionStatus, State};
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
        (["report_faults"], true, _) => Resp::json(200, &app.lock().faults.report.describe()),
        (["report_faults"], _, true) => {
            let parsed: crate::reports::ReportFaults = match json_body(req).and_then(|v| {
                serde_json::from_value(v).map_err(|e| bad(&format!("invalid report fault request: {e}")))
            }) {
                Ok(p) => p,
                Err(r) => return r,
            };
            if let Err(msg) = parsed.validate() {
                return bad(&msg);
            }
            let mut st = app.lock();
            st.faults.report.merge(parsed);
            Resp::json(200, &st.faults.report.describe())
        }
        (["report_faults"], _, _) if req.method == hyper::Method::DELETE => {
            let mut st = app.lock();
            st.faults.report = Default::default();
            Resp::json(200, &st.faults.report.describe())
        }
        (["balance_transactions"], _, true) => {
            let body = match json_body(req) {
                Ok(v) => v,
                Err(r) => return r,
            };
            app.with_state(|st| admin_balance_txn(st, &body))
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
        (["refunds"], true, _) => {
            let st = app.lock();
            let data: Vec<Value> = st
                .refund_order
                .iter()
                .filter_map(|id| st.refunds.get(id))
                .map(admin_refund_json)
                .collect();
            Resp::json(200, &json!({"object": "list", "data": data}))
        }
        (["payouts", id, "settle"], _, true) => {
            let body = match json_body(req) {
                Ok(v) => v,
                Err(r) => return r,
            };
            app.with_state(|st| settle_payout(st, id, &body))
        }
        (["refunds", id, "settle"], _, true) => {
            let body = match json_body(req) {
                Ok(v) => v,
                Err(r) => return r,
            };
            app.with_state(|st| settle(st, id, &body))
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
            let csv = crate::reports::settlement_csv(&app.lock(), start, start + 86_400);
            Resp::text(200, "text/csv; charset=utf-8", csv).with_header(
                "Content-Disposition",
                &format!("attachment; filename=\"settlement-{date}.csv\""),
            )
        }
        _ => unrecognized(req),
    }
}

/// `POST /__sandbox/payouts/{id}/settle` `{"status": "in_transit"|"paid"|"failed",
/// "failure_code"?}`: a payout's next move now, including Stripe's "paid, then failed"
/// (`failed` on a `paid` payout). Without `failure_code` a failure takes its bank account's.
fn settle_payout(st: &mut State, id: &str, body: &Value) -> Resp {
    use crate::connect::{PayoutError, PayoutOutcome, PayoutStatus, TEST_ACCOUNT_NUMBERS};
    let to = match body["status"].as_str() {
        Some("in_transit") => PayoutStatus::InTransit,
        Some("paid") => PayoutStatus::Paid,
        Some("failed") => PayoutStatus::Failed,
        _ => return bad("status must be in_transit, paid or failed"),
    };
    let code = match body["failure_code"].as_str() {
        None => None,
        Some(c) => match TEST_ACCOUNT_NUMBERS.iter().find_map(|(_, o)| match o {
            PayoutOutcome::Fails(k) if *k == c => Some(*k),
            _ => None,
        }) {
            Some(k) => Some(k),
            None if c == "could_not_process" => Some("could_not_process"),
            None => return bad("failure_code must be one of Stripe's payout failure codes the test accounts use, or could_not_process"),
        },
    };
    match st.move_payout(id, to, code, &Cause::default()) {
        Ok(v) => Resp::json(200, &v),
        Err(PayoutError::NoPayout) => stripe_error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            "No such payout",
            None,
        ),
        Err(e) => bad(&format!("cannot move the payout: {e:?}")),
    }
}

/// `POST /__sandbox/balance_transactions` `{"type": "adjustment"|"stripe_fee", "amount":
/// <signed minor units>, "currency", "description"?}`: a platform balance transaction Stripe
/// writes on its own (no source, no fee, available at once). A `stripe_fee` is a debit
/// (negative amount). Answers the balance transaction.
pub fn admin_balance_txn(st: &mut State, body: &Value) -> Resp {
    let Some(fields) = body.as_object() else {
        return bad("the body must be a JSON object");
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !["type", "amount", "currency", "description"].contains(&k.as_str()))
    {
        return bad(&format!("unknown field {k:?}"));
    }
    let kind = match body["type"].as_str() {
        Some("adjustment") => store::TXN_ADJUSTMENT,
        Some("stripe_fee") => store::TXN_STRIPE_FEE,
        _ => return bad("type must be \"adjustment\" or \"stripe_fee\""),
    };
    let Some(amount) = body["amount"]
        .as_i64()
        .filter(|a| *a != 0 && a.unsigned_abs() <= 999_999_999_999)
    else {
        return bad("amount must be a non-zero integer in minor units");
    };
    if kind == store::TXN_STRIPE_FEE && amount > 0 {
        return bad("a stripe_fee is a debit: its amount is negative");
    }
    let currency = body["currency"].as_str().unwrap_or("").to_ascii_lowercase();
    if !store::is_currency(&currency) {
        return bad("currency must be a currency code the sandbox knows (e.g. \"usd\")");
    }
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()).filter(|d| !d.is_empty()),
        Some(_) => return bad("description must be a string"),
    };
    let t = st.admin_txn(kind, amount, &currency, description);
    Resp::json(200, &State::balance_txn_json(&t))
}

/// A refund as the API shows it, plus a `sandbox` member: its scheduled move, if any.
fn admin_refund_json(r: &crate::refunds::Refund) -> Value {
    let mut v = State::refund_json(r);
    v["sandbox"] = match r.scheduled {
        Some((at_ms, to)) => json!({"scheduled_status": to.as_str(), "settle_at_ms": at_ms}),
        None => json!({"scheduled_status": null, "settle_at_ms": null}),
    };
    v
}

/// `POST /__sandbox/refunds/{id}/settle` `{"outcome": "succeeded"|"failed", "failure_reason"?}`:
/// the delayed refund move now (Stripe documents no test card for a pending refund that fails:
/// this is how to get one). `failure_reason` defaults to `expired_or_canceled_card`.
pub fn settle(st: &mut State, id: &str, body: &Value) -> Resp {
    let Some(fields) = body.as_object() else {
        return bad("the body must be a JSON object");
    };
    if let Some(k) = fields.keys().find(|k| *k != "outcome" && *k != "failure_reason") {
        return bad(&format!("unknown field {k:?}"));
    }
    let to = match body.get("outcome").and_then(Value::as_str) {
        Some("succeeded") => RefundStatus::Succeeded,
        Some("failed") => RefundStatus::Failed,
        _ => return bad("outcome must be \"succeeded\" or \"failed\""),
    };
    let reason = match body.get("failure_reason") {
        None | Some(Value::Null) => crate::refunds::CARD_FAILURE_REASON,
        Some(v) => match v.as_str().filter(|r| FAILURE_REASONS.contains(r)) {
            Some(r) if to == RefundStatus::Failed => r,
            Some(_) => return bad("failure_reason goes with outcome \"failed\" only"),
            None => {
                return bad(&format!(
                    "failure_reason must be one of {}",
                    FAILURE_REASONS.join(", ")
                ))
            }
        },
    };
    match st.settle_refund(id, to, reason) {
        Ok(v) => Resp::json(200, &v),
        Err(SettleError::NotFound) => stripe_error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such refund: '{id}'"),
            None,
        ),
        Err(SettleError::Conflict(msg)) => bad(&msg),
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
            st.record_success(id, &pm, RefundFlow::Immediate, crate::store::Funds::Pending);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    pub fn test_app(st: State) -> std::sync::Arc<App> {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        std::sync::Arc::new(App {
            cfg: crate::Config {
                port: 0,
                secret_key: "sk_test_unit".into(),
                webhook_secret: "whsec_x".into(),
                public_url: "http://127.0.0.1:4000".into(),
                webhook_retry_base_ms: 1000,
                webhook_attempts_max: 1,
                webhook_timeout_ms: 1000,
                refund_settle_ms: 1000,
                payout_settle_ms: 1000,
                report_run_ms: 300,
                exit_on_stdin_eof: false,
            },
            state: std::sync::Mutex::new(st),
            jobs: tx,
        })
    }

    pub fn admin(app: &App, method: hyper::Method, path: &str, body: &str) -> (u16, String) {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let r = Req {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers: hyper::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_string()),
            peer: "127.0.0.1:1".parse().expect("addr"),
        };
        let resp = handle(app, &r);
        (resp.status, String::from_utf8(resp.body).expect("utf8"))
    }

    #[test]
    fn report_faults_are_set_shown_applied_and_cleared() {
        use hyper::Method;
        let t0 = 1_795_595_400; // 2026-11-25 08:30:00 UTC
        let app = test_app(crate::reports::tests::ledger_at(t0));
        let (status, body) = admin(
            &app,
            Method::POST,
            "/__sandbox/report_faults",
            r#"{"alter": [{"id": "txn_usd", "gross": "100.00"}], "omit": ["re_1"]}"#,
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = admin(
            &app,
            Method::POST,
            "/__sandbox/report_faults",
            r#"{"duplicate": ["tr_1"], "append_lines": ["x,y"]}"#,
        );
        assert_eq!(status, 200, "{body}");
        let shown: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            shown,
            json!({"alter": [{"id": "txn_usd", "gross": "100.00"}], "omit": ["re_1"],
                   "duplicate": ["tr_1"], "append_lines": ["x,y"]})
        );
        let (_, get) = admin(&app, Method::GET, "/__sandbox/report_faults", "");
        assert_eq!(serde_json::from_str::<Value>(&get).expect("json"), shown);
        for bad in [
            r#"{"nope": []}"#,
            r#"{"alter": [{"id": "x", "gross": "abc"}]}"#,
            "[1",
        ] {
            assert_eq!(
                admin(&app, Method::POST, "/__sandbox/report_faults", bad).0,
                400,
                "{bad}"
            );
        }
        let (status, csv) = admin(&app, Method::GET, "/__sandbox/settlement.csv?date=2026-11-25", "");
        assert_eq!(status, 200);
        let ids: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap_or(""))
            .collect();
        assert_eq!(
            ids,
            ["txn_usd", "txn_kwd", "txn_jpy", "txn_tr", "txn_tr", "txn_trr", "x"]
        );
        assert!(csv
            .lines()
            .nth(1)
            .expect("row")
            .contains(",usd,100.00,3.20,96.80,charge,"));
        let (status, _) = admin(&app, Method::DELETE, "/__sandbox/report_faults", "");
        assert_eq!(status, 200);
        let (_, csv) = admin(&app, Method::GET, "/__sandbox/settlement.csv?date=2026-11-25", "");
        assert_eq!(csv.lines().count(), 8);
        admin(
            &app,
            Method::POST,
            "/__sandbox/report_faults",
            r#"{"omit": ["txn_usd"]}"#,
        );
        assert_eq!(admin(&app, Method::POST, "/__sandbox/reset", "").0, 200);
        assert!(app.lock().faults.report.is_empty(), "reset clears them");
    }

    #[test]
    fn admin_adjustments_and_stripe_fees_are_platform_rows() {
        let mut st = State::new("whsec_x".into());
        let resp = admin_balance_txn(
            &mut st,
            &json!({"type": "stripe_fee", "amount": -250, "currency": "USD", "description": "Radar"}),
        );
        assert_eq!(resp.status, 200);
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(
            (
                &v["type"],
                &v["reporting_category"],
                &v["amount"],
                &v["fee"],
                &v["net"],
                &v["source"]
            ),
            (
                &json!("stripe_fee"),
                &json!("fee"),
                &json!(-250),
                &json!(0),
                &json!(-250),
                &Value::Null
            )
        );
        assert_eq!(v["description"], "Radar");
        let resp = admin_balance_txn(
            &mut st,
            &json!({"type": "adjustment", "amount": 75, "currency": "usd"}),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(st.platform_available("usd"), -175);
        for bad in [
            json!({"type": "stripe_fee", "amount": 5, "currency": "usd"}),
            json!({"type": "charge", "amount": 5, "currency": "usd"}),
            json!({"type": "adjustment", "amount": 0, "currency": "usd"}),
            json!({"type": "adjustment", "amount": 5, "currency": "xyz"}),
            json!({"type": "adjustment", "amount": 5, "currency": "usd", "extra": 1}),
        ] {
            assert_eq!(admin_balance_txn(&mut st, &bad).status, 400, "{bad}");
        }
        let csv = crate::reports::settlement_csv(&st, 0, i64::MAX);
        let cats: Vec<&str> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(7).unwrap_or(""))
            .collect();
        assert_eq!(cats, ["fee", "adjustment"]);
        assert!(csv.contains(",usd,-2.50,0.00,-2.50,fee,,Radar,,,"));
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

    /// A session paid with a card of the given refund flow, refunded in part: (state, refund id).
    fn refunded(flow: RefundFlow) -> (State, String) {
        let mut st = State::new("whsec_x".into());
        let now = store::now();
        let session = store::Session {
            id: "cs_test_1".into(),
            created: now,
            currency: "eur".into(),
            line_items: Vec::new(),
            amount_subtotal: 2500,
            amount_total: 2500,
            status: SessionStatus::Open,
            paid: false,
            payment_intent: "pi_1".into(),
            client_reference_id: None,
            customer_email: None,
            metadata: BTreeMap::new(),
            success_url: "https://shop.test/ok".into(),
            cancel_url: None,
            expires_at: now + 3600,
            payment_method_types: vec!["card".into()],
            api_version: "2024-06-20".into(),
        };
        let intent = store::PaymentIntent {
            id: "pi_1".into(),
            created: now,
            amount: 2500,
            amount_received: 0,
            currency: "eur".into(),
            status: "requires_payment_method",
            description: None,
            metadata: BTreeMap::new(),
            last_payment_error: None,
            latest_charge: None,
            payment_method: None,
            payment_method_types: vec!["card".into()],
            canceled_at: None,
            cancellation_reason: None,
            client_secret: "pi_1_secret_x".into(),
        };
        st.insert_session(session, intent);
        let charge = st
            .record_success("cs_test_1", "pm_1", flow, crate::store::Funds::Pending)
            .expect("charge");
        let r = st
            .create_refund(&charge, 1000, None, BTreeMap::new(), &Cause::default())
            .expect("refund");
        (st, r["id"].as_str().expect("id").to_string())
    }

    fn event_types(st: &State) -> Vec<String> {
        st.event_order
            .iter()
            .filter_map(|id| st.events.get(id))
            .map(|e| e.event_type.clone())
            .collect()
    }

    #[test]
    fn settle_a_pending_refund_as_failed() {
        let (mut st, id) = refunded(RefundFlow::PendingThenSucceeded);
        let resp = settle(&mut st, &id, &json!({"outcome": "failed"}));
        assert_eq!(resp.status, 200);
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(v["status"], "failed");
        assert_eq!(v["failure_reason"], "expired_or_canceled_card");
        // It never had a balance transaction, so its failure has none either.
        assert_eq!(v["balance_transaction"], Value::Null);
        assert_eq!(v["failure_balance_transaction"], Value::Null);
        assert_eq!(st.balance_txns.len(), 1, "the charge's only");
        assert_eq!(st.charges[v["charge"].as_str().expect("ch")].amount_refunded, 0);
        assert_eq!(
            event_types(&st),
            ["refund.created", "refund.updated", "refund.failed"]
        );
        // The timer has nothing left to do; a failed refund moves no more.
        assert_eq!(st.settle_due_refunds(i64::MAX), 0);
        assert_eq!(settle(&mut st, &id, &json!({"outcome": "succeeded"})).status, 400);
        assert_eq!(settle(&mut st, &id, &json!({"outcome": "failed"})).status, 400);
    }

    #[test]
    fn settle_a_pending_refund_as_succeeded_before_the_timer() {
        let (mut st, id) = refunded(RefundFlow::PendingThenSucceeded);
        let resp = settle(&mut st, &id, &json!({"outcome": "succeeded"}));
        assert_eq!(resp.status, 200);
        assert_eq!(st.refunds[&id].status.as_str(), "succeeded");
        let txn = st.balance_txns.back().expect("txn");
        assert_eq!((txn.kind, txn.amount), (store::TXN_REFUND, -1000));
        assert_eq!(st.settle_due_refunds(i64::MAX), 0, "the timer's move is dropped");
        assert_eq!(
            event_types(&st),
            ["refund.created", "refund.updated", "charge.refunded"]
        );
        let all = st.events.values().filter(|e| e.event_type == "refund.updated");
        assert!(all.into_iter().all(|e| e.json["request"]["id"].is_null()));
    }

    #[test]
    fn settle_a_succeeded_refund_as_failed_and_bad_requests() {
        let (mut st, id) = refunded(RefundFlow::Immediate);
        assert_eq!(settle(&mut st, &id, &json!({"outcome": "succeeded"})).status, 400);
        assert_eq!(settle(&mut st, &id, &json!({"outcome": "pending"})).status, 400);
        assert_eq!(settle(&mut st, &id, &json!({})).status, 400);
        assert_eq!(
            settle(
                &mut st,
                &id,
                &json!({"outcome": "failed", "failure_reason": "nope"})
            )
            .status,
            400
        );
        assert_eq!(
            settle(&mut st, &id, &json!({"outcome": "failed", "extra": 1})).status,
            400
        );
        assert_eq!(
            settle(&mut st, "re_nope", &json!({"outcome": "failed"})).status,
            404
        );
        let resp = settle(
            &mut st,
            &id,
            &json!({"outcome": "failed", "failure_reason": "lost_or_stolen_card"}),
        );
        assert_eq!(resp.status, 200);
        let v: Value = serde_json::from_slice(&resp.body).expect("json");
        assert_eq!(v["failure_reason"], "lost_or_stolen_card");
        let failure = st.balance_txns.back().expect("txn");
        assert_eq!(v["failure_balance_transaction"], failure.id.as_str());
        assert_eq!(
            (failure.kind, failure.amount, failure.net),
            (store::TXN_REFUND_FAILURE, 1000, 1000)
        );
        assert_eq!(
            admin_refund_json(&st.refunds[&id])["sandbox"]["scheduled_status"],
            Value::Null
        );
    }

    /// The admin's payout moves: the next one now, a chosen failure code, "paid, then failed".
    #[test]
    fn payouts_move_on_the_admins_word() {
        let mut st = State::new("whsec_unit".into());
        st.payout_settle_ms = 3_600_000;
        let bank = crate::connect::BankAccount {
            id: "ba_1".into(),
            country: "US".into(),
            currency: "usd".into(),
            routing_number: "110000000".into(),
            last4: "6789".into(),
            outcome: crate::connect::PayoutOutcome::Succeeds,
        };
        st.accounts.insert(
            "acct_1".into(),
            crate::connect::Account {
                id: "acct_1".into(),
                created: 0,
                country: "US".into(),
                default_currency: "usd".into(),
                email: None,
                bank,
                metadata: BTreeMap::new(),
                balance: BTreeMap::from([("usd".to_string(), 500)]),
            },
        );
        let new = crate::connect::NewPayout {
            account: "acct_1",
            amount: 500,
            currency: "usd",
            metadata: BTreeMap::new(),
            description: None,
        };
        let p = st
            .create_payout(new, &Cause::default(), "2024-06-20")
            .expect("payout");
        let id = p["id"].as_str().expect("id").to_string();
        let status = |st: &mut State, body: Value| {
            let resp = settle_payout(st, &id, &body);
            let v: Value = serde_json::from_slice(&resp.body).expect("json");
            (resp.status, v["status"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(
            status(&mut st, json!({"status": "paid"})).0,
            400,
            "pending cannot be paid"
        );
        assert_eq!(status(&mut st, json!({"status": "later"})).0, 400);
        assert_eq!(
            status(&mut st, json!({"status": "in_transit"})),
            (200, "in_transit".into())
        );
        assert_eq!(status(&mut st, json!({"status": "paid"})), (200, "paid".into()));
        assert_eq!(st.accounts["acct_1"].balance["usd"], 0);
        assert_eq!(
            status(&mut st, json!({"status": "failed", "failure_code": "made_up"})).0,
            400
        );
        assert_eq!(
            status(
                &mut st,
                json!({"status": "failed", "failure_code": "account_closed"})
            ),
            (200, "failed".into())
        );
        assert_eq!(st.payouts[&id].failure_code, Some("account_closed"));
        assert_eq!(st.accounts["acct_1"].balance["usd"], 500, "back in the account");
        assert_eq!(
            settle_payout(&mut st, "po_nope", &json!({"status": "paid"})).status,
            404
        );
    }
}
