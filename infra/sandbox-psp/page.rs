//! The hosted payment page at a session's `url` (`/pay/{id}`): the merchant's line items, the
//! amount, one `card_number` field. Stripe's test cards decide the outcome. The card number
//! never leaves this module: it is not logged, stored, or put in any event.

use crate::api::expire_if_due;
use crate::refunds::RefundFlow;
use crate::store::{self, format_minor, Cause, Funds, Session, SessionStatus, State};
use crate::{App, Req, Resp};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    /// Paid; the charge's refunds will follow the flow, and its funds become available as
    /// `Funds` says (the card is remembered only as those two).
    Success(RefundFlow, Funds),
    Declined {
        decline_code: &'static str,
        message: &'static str,
    },
    NotATestCard,
}

/// Stripe's test cards (spaces are allowed in the input). 7726 and 5126 pay like 4242; they
/// differ in how refunds of the charge behave, as Stripe documents for them.
pub fn card_outcome(input: &str) -> CardOutcome {
    let digits: String = input.chars().filter(|c| *c != ' ').collect();
    match digits.as_str() {
        "4242424242424242" => CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
        "4000000000007726" => CardOutcome::Success(RefundFlow::PendingThenSucceeded, Funds::Pending),
        "4000000000005126" => CardOutcome::Success(RefundFlow::SucceededThenFailed, Funds::Pending),
        // Stripe: "the charge succeeds and funds are added directly to your available balance,
        // bypassing your pending balance" (what a platform needs to transfer at once).
        "4000000000000077" => CardOutcome::Success(RefundFlow::Immediate, Funds::Available),
        "4000000000000002" => CardOutcome::Declined {
            decline_code: "generic_decline",
            message: "Your card was declined.",
        },
        "4000000000009995" => CardOutcome::Declined {
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
        },
        _ => CardOutcome::NotATestCard,
    }
}

pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn money(amount: i64, currency: &str) -> String {
    format!(
        "{} {}",
        format_minor(amount, currency),
        currency.to_ascii_uppercase()
    )
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f6f9fc;color:#1a1f36;\
margin:0;padding:2rem}main{max-width:32rem;margin:auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;\
box-shadow:0 2px 8px rgba(0,0,0,.08)}table{width:100%;border-collapse:collapse}td{padding:.35rem 0}\
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{border-top:1px solid #e3e8ee;font-weight:600}\
.banner{background:#fff8e1;border:1px solid #f5d67a;border-radius:4px;padding:.3rem .6rem;font-size:.85rem}\
.msg{border-radius:4px;padding:.6rem;margin:1rem 0}.err{background:#fde8e8;color:#9b1c1c}\
.ok{background:#e6f6ec;color:#1e6b3a}input{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;\
letter-spacing:.05em}button{margin-top:.8rem;width:100%;padding:.6rem;font-size:1rem;background:#635bff;color:#fff;\
border:0;border-radius:4px;cursor:pointer}small{color:#697386}";

fn layout(title: &str, inner: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
<style>{STYLE}</style></head><body><main><p class=\"banner\">Sandbox PSP · test mode · no real money moves</p>\
{inner}</main></body></html>\n",
        esc(title)
    )
}

fn items_table(s: &Session) -> String {
    let mut rows = String::new();
    for li in &s.line_items {
        let total = li.unit_amount.saturating_mul(li.quantity);
        rows.push_str(&format!(
            "<tr><td>{}{}<br><small>{} × {}</small></td><td class=\"n\">{}</td></tr>",
            esc(&li.name),
            li.description
                .as_deref()
                .map(|d| format!("<br><small>{}</small>", esc(d)))
                .unwrap_or_default(),
            li.quantity,
            esc(&money(li.unit_amount, &li.currency)),
            esc(&money(total, &li.currency)),
        ));
    }
    format!(
        "<table>{rows}<tr class=\"total\"><td>Total</td><td class=\"n\" id=\"amount\">{}</td></tr></table>",
        esc(&money(s.amount_total, &s.currency))
    )
}

/// The page for a session, with an optional message (`class` is `err` or `ok`).
fn render(s: &Session, message: Option<(&str, &str)>) -> String {
    let msg = message
        .map(|(class, text)| format!("<p class=\"msg {class}\" role=\"alert\">{}</p>", esc(text)))
        .unwrap_or_default();
    let body = match s.status {
        SessionStatus::Open => {
            let cancel = s
                .cancel_url
                .as_deref()
                .map(|u| {
                    format!(
                        "<p><a href=\"{}\" id=\"cancel\">Cancel and return</a></p>",
                        esc(u)
                    )
                })
                .unwrap_or_default();
            let bank = if s.payment_method_types.iter().any(|t| t == "us_bank_account") {
                "<p><small>Bank debits (us_bank_account) settle later: the sandbox completes them \
                 through POST /__sandbox/sessions/{id}/async.</small></p>"
            } else {
                ""
            };
            format!(
                "<h1>Pay {amount}</h1>{table}{msg}<form method=\"post\" autocomplete=\"off\">\
<label for=\"card_number\">Card number</label>\
<input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" autocomplete=\"off\" \
placeholder=\"4242 4242 4242 4242\" required>\
<button type=\"submit\">Pay {amount}</button></form>\
<p><small>Test cards: 4242 4242 4242 4242 succeeds · 4000 0000 0000 0002 is declined · \
4000 0000 0000 9995 is declined (insufficient funds) · 4000 0000 0000 7726 succeeds, its refunds \
start pending · 4000 0000 0000 5126 succeeds, its refunds fail later.</small></p>{bank}{cancel}",
                amount = esc(&money(s.amount_total, &s.currency)),
                table = items_table(s),
            )
        }
        SessionStatus::Complete => format!(
            "<h1>Already paid</h1>{}{msg}<p class=\"msg ok\">This checkout session is complete; \
             nothing more will be charged.</p>",
            items_table(s)
        ),
        SessionStatus::Expired => format!(
            "<h1>Session expired</h1>{}{msg}<p class=\"msg err\">This checkout session has expired; \
             nothing was charged. Return to the merchant to start again.</p>",
            items_table(s)
        ),
    };
    layout("Sandbox checkout", &body)
}

fn not_found() -> Resp {
    Resp::html(
        404,
        layout(
            "Not found",
            "<h1>Not found</h1><p class=\"msg err\">There is no checkout session at this address.</p>",
        ),
    )
}

pub fn handle(app: &App, req: &Req, id: &str) -> Resp {
    if id.is_empty() || id.contains('/') {
        return not_found();
    }
    let public_url = app.cfg.public_url.clone();
    match req.method {
        hyper::Method::GET | hyper::Method::HEAD => app.with_state(|st| {
            expire_if_due(st, id, &public_url);
            match st.sessions.get(id) {
                Some(s) => Resp::html(200, render(s, None)),
                None => not_found(),
            }
        }),
        hyper::Method::POST => {
            let card = crate::form::pairs(&req.body)
                .into_iter()
                .rev()
                .find(|(k, _)| k == "card_number")
                .map(|(_, v)| v)
                .unwrap_or_default();
            let outcome = card_outcome(&card);
            app.with_state(|st| pay(st, id, outcome, &public_url))
        }
        _ => Resp::text(405, "text/plain; charset=utf-8", "method not allowed\n".into())
            .with_header("Allow", "GET, POST"),
    }
}

/// Charge the session with a card outcome (the card number itself is not passed in).
pub fn pay(st: &mut State, id: &str, outcome: CardOutcome, public_url: &str) -> Resp {
    expire_if_due(st, id, public_url);
    let Some(s) = st.sessions.get(id) else {
        return not_found();
    };
    match s.status {
        SessionStatus::Complete => return Resp::html(409, render(s, None)),
        SessionStatus::Expired => return Resp::html(410, render(s, None)),
        SessionStatus::Open => {}
    }
    match outcome {
        CardOutcome::NotATestCard => Resp::html(
            400,
            render(
                s,
                Some((
                    "err",
                    "That is not a Stripe test card number; nothing was charged. Use 4242 4242 4242 4242.",
                )),
            ),
        ),
        CardOutcome::Success(flow, funds) => {
            let success_url = s.success_url.replace("{CHECKOUT_SESSION_ID}", id);
            let pm = store::new_id("pm_", 24);
            if st.record_success(id, &pm, flow, funds).is_none() {
                return not_found();
            }
            st.session_event("checkout.session.completed", id, public_url, &Cause::default());
            Resp::redirect(&success_url)
        }
        CardOutcome::Declined {
            decline_code,
            message,
        } => {
            let pi_id = s.payment_intent.clone();
            let charge = store::new_id("ch_", 24);
            let pm = store::new_id("pm_", 24);
            if let Some(pi) = st.intents.get_mut(&pi_id) {
                pi.status = "requires_payment_method";
                pi.latest_charge = Some(charge.clone());
                pi.payment_method = None;
                pi.last_payment_error = Some(json!({
                    "charge": charge, "code": "card_declined", "decline_code": decline_code,
                    "doc_url": "https://stripe.com/docs/error-codes/card-declined",
                    "message": message,
                    "payment_method": {"id": pm, "object": "payment_method", "type": "card",
                                       "card": {"brand": "visa", "country": "US", "funding": "credit"}},
                    "type": "card_error",
                }));
            }
            st.intent_event("payment_intent.payment_failed", id, &Cause::default());
            let Some(s) = st.sessions.get(id) else {
                return not_found();
            };
            Resp::html(402, render(s, Some(("err", message))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LineItem, PaymentIntent};
    use std::collections::BTreeMap;

    fn state_with_session(currency: &str, unit: i64) -> State {
        let mut st = State::new("whsec_x".into());
        let now = store::now();
        st.endpoints.push(store::Endpoint {
            id: "we_1".into(),
            created: now,
            url: "http://127.0.0.1:9/hook".into(),
            enabled_events: vec!["*".into()],
            description: None,
            metadata: BTreeMap::new(),
            api_version: None,
            secret: "whsec_x".into(),
        });
        let session = Session {
            id: "cs_test_1".into(),
            created: now,
            currency: currency.into(),
            line_items: vec![LineItem {
                id: "li_1".into(),
                name: "Mug <b>".into(),
                description: None,
                quantity: 1,
                unit_amount: unit,
                currency: currency.into(),
                product_id: "prod_1".into(),
                price_id: "price_1".into(),
            }],
            amount_subtotal: unit,
            amount_total: unit,
            status: SessionStatus::Open,
            paid: false,
            payment_intent: "pi_1".into(),
            client_reference_id: Some("po_1".into()),
            customer_email: None,
            metadata: BTreeMap::new(),
            success_url: "https://shop.test/ok?session={CHECKOUT_SESSION_ID}".into(),
            cancel_url: Some("https://shop.test/cancel".into()),
            expires_at: now + 3600,
            payment_method_types: vec!["card".into()],
            api_version: "2024-06-20".into(),
        };
        let intent = PaymentIntent {
            id: "pi_1".into(),
            created: now,
            amount: unit,
            amount_received: 0,
            currency: currency.into(),
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
        st
    }

    fn event_types(st: &State) -> Vec<String> {
        st.event_order
            .iter()
            .filter_map(|id| st.events.get(id))
            .map(|e| e.event_type.clone())
            .collect()
    }

    #[test]
    fn test_cards() {
        assert_eq!(
            card_outcome("4000 0000 0000 0077"),
            CardOutcome::Success(RefundFlow::Immediate, Funds::Available),
            "available at once"
        );
        assert_eq!(
            card_outcome("4242 4242 4242 4242"),
            CardOutcome::Success(RefundFlow::Immediate, Funds::Pending)
        );
        assert_eq!(
            card_outcome("4242424242424242"),
            CardOutcome::Success(RefundFlow::Immediate, Funds::Pending)
        );
        assert!(matches!(
            card_outcome("4000 0000 0000 0002"),
            CardOutcome::Declined {
                decline_code: "generic_decline",
                ..
            }
        ));
        assert!(matches!(
            card_outcome("4000000000009995"),
            CardOutcome::Declined {
                decline_code: "insufficient_funds",
                ..
            }
        ));
        assert_eq!(
            card_outcome("4000 0000 0000 7726"),
            CardOutcome::Success(RefundFlow::PendingThenSucceeded, Funds::Pending)
        );
        assert_eq!(
            card_outcome("4000000000005126"),
            CardOutcome::Success(RefundFlow::SucceededThenFailed, Funds::Pending)
        );
        assert_eq!(card_outcome("4111111111111111"), CardOutcome::NotATestCard);
        assert_eq!(card_outcome(""), CardOutcome::NotATestCard);
        assert_eq!(card_outcome("4242-4242-4242-4242"), CardOutcome::NotATestCard);
    }

    #[test]
    fn success_completes_session_and_records_fee() {
        let mut st = state_with_session("usd", 9999);
        let resp = pay(
            &mut st,
            "cs_test_1",
            CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
            "http://x",
        );
        assert_eq!(resp.status, 303);
        assert!(resp
            .headers
            .iter()
            .any(|(k, v)| k == "Location" && v == "https://shop.test/ok?session=cs_test_1"));
        let s = &st.sessions["cs_test_1"];
        assert_eq!((s.status, s.paid), (SessionStatus::Complete, true));
        let pi = &st.intents["pi_1"];
        assert_eq!((pi.status, pi.amount_received), ("succeeded", 9999));
        let txn = st.balance_txns.back().expect("txn");
        assert_eq!((txn.amount, txn.fee, txn.net), (9999, 320, 9679));
        assert_eq!(txn.client_reference_id.as_deref(), Some("po_1"));
        assert_eq!(event_types(&st), ["checkout.session.completed"]);
        let ev = st.events.values().next().expect("event");
        assert_eq!(ev.json["data"]["object"]["payment_status"], "paid");
        assert_eq!(st.outbox.len(), 1, "one delivery queued");
        // Paying again charges nothing.
        assert_eq!(
            pay(
                &mut st,
                "cs_test_1",
                CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
                "http://x"
            )
            .status,
            409
        );
        assert_eq!(st.balance_txns.len(), 1);
    }

    #[test]
    fn decline_keeps_session_open_and_emits_payment_failed() {
        let mut st = state_with_session("jpy", 5000);
        let outcome = card_outcome("4000000000009995");
        let resp = pay(&mut st, "cs_test_1", outcome, "http://x");
        assert_eq!(resp.status, 402);
        let html = String::from_utf8(resp.body).expect("utf8");
        assert!(html.contains("insufficient funds"));
        assert!(html.contains("5000 JPY"));
        assert!(html.contains("Mug &lt;b&gt;"));
        assert_eq!(st.sessions["cs_test_1"].status, SessionStatus::Open);
        let pi = &st.intents["pi_1"];
        assert_eq!(pi.status, "requires_payment_method");
        let err = pi.last_payment_error.as_ref().expect("error");
        assert_eq!(err["decline_code"], "insufficient_funds");
        assert_eq!(err["code"], "card_declined");
        assert_eq!(event_types(&st), ["payment_intent.payment_failed"]);
        let body = st.outbox[0].body.clone();
        assert!(!body.contains("4000000000009995") && !body.contains("9995"));
        assert!(st.balance_txns.is_empty());
        // A second try can succeed.
        assert_eq!(
            pay(
                &mut st,
                "cs_test_1",
                CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
                "http://x"
            )
            .status,
            303
        );
    }

    #[test]
    fn unknown_card_and_expired_session_charge_nothing() {
        let mut st = state_with_session("kwd", 1234);
        let resp = pay(&mut st, "cs_test_1", CardOutcome::NotATestCard, "http://x");
        assert_eq!(resp.status, 400);
        assert!(String::from_utf8(resp.body).expect("utf8").contains("1.234 KWD"));
        assert!(st.events.is_empty());
        assert!(st.expire_session("cs_test_1", "http://x", &Cause::default()));
        assert_eq!(st.intents["pi_1"].status, "canceled");
        assert_eq!(
            pay(
                &mut st,
                "cs_test_1",
                CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
                "http://x"
            )
            .status,
            410
        );
        assert!(st.balance_txns.is_empty());
        assert_eq!(event_types(&st), ["checkout.session.expired"]);
        assert_eq!(
            pay(
                &mut st,
                "cs_test_nope",
                CardOutcome::Success(RefundFlow::Immediate, Funds::Pending),
                "http://x"
            )
            .status,
            404
        );
    }
}
