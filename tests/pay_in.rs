//! Pay-in end to end: our API, the sandbox PSP's hosted page and its signed webhooks, on the
//! real local twin. The sandbox's fault injector is global, so these tests take turns.

use std::time::{Duration, Instant};

use common::{new_key, single, Account, Stack};
use serde_json::{json, Value};
use shared::domain::psp::sign;

const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";
const WEBHOOK_SECRET: &str = "whsec_sandbox_localdev_7c1e9a";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This binary's stack: short PSP retry budget so "PSP down" answers quickly.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "pay-in",
        params: &[("PspRetryBudgetMs", "2500"), ("PspAttemptTimeoutMs", "1000")],
        on_disk: false,
        env: &[],
    })
}

fn http() -> reqwest::Client {
    common::no_redirects()
}

async fn admin(path: &str, body: Option<Value>) -> Value {
    stack().sandbox_admin(path, body).await
}

async fn reset_faults() {
    stack().sandbox_reset().await;
}

/// Submits the hosted page's form as a browser would.
async fn pay(redirect_url: &str, card: &str) -> reqwest::Response {
    let page = http().get(redirect_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("card_number"), "hosted page has the card form");
    http()
        .post(redirect_url)
        .form(&[("card_number", card)])
        .send()
        .await
        .unwrap()
}

async fn checkout(acct: &Account, id: &str) -> Value {
    acct.get(&format!("/v1/checkouts/{id}")).await.json
}

async fn wait_status(acct: &Account, id: &str, want: &str) -> Value {
    let started = Instant::now();
    loop {
        let c = checkout(acct, id).await;
        if c["status"] == want {
            return c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "checkout {id} stuck at {} (want {want})",
            c["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sandbox's record of calls to `POST /v1/checkout/sessions` for one checkout.
async fn session_calls(checkout_id: &str) -> Vec<Value> {
    let requests = admin("/__sandbox/requests", None).await;
    let list = requests
        .get("data")
        .unwrap_or(&requests)
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .filter(|r| r["path"] == "/v1/checkout/sessions" && r["idempotency_key"] == checkout_id)
        .collect()
}

async fn sessions_for(checkout_id: &str) -> Vec<Value> {
    let sessions = admin("/__sandbox/sessions", None).await;
    let list = sessions
        .get("data")
        .unwrap_or(&sessions)
        .as_array()
        .cloned()
        .unwrap_or_default();
    list.into_iter()
        .filter(|s| s["client_reference_id"] == checkout_id)
        .collect()
}

async fn post_webhook(body: &str, signature: &str) -> common::Resp {
    common::send(
        reqwest::Client::new()
            .post(format!("{}/webhooks/psp", stack().api))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn pay_with_a_good_card_and_land_on_the_completion_page() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let r = acct.create(&single(json!("42.00"), "USD")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["status"], "EXECUTING");
    let id = r.json["checkout_id"].as_str().unwrap();
    let url = r.json["psp_redirect_url"].as_str().unwrap();

    // Webhooks held: the redirect alone must not mark anything paid.
    admin("/__sandbox/faults", Some(json!({"webhooks": {"hold": true}}))).await;
    let paid = pay(url, "4242 4242 4242 4242").await;
    assert_eq!(paid.status(), 303);
    let landing = paid.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        landing.starts_with(&format!("{}/checkout/complete?checkout_id={id}", stack().api)),
        "{landing}"
    );
    let page = http().get(&landing).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Processing"), "{page}");
    assert_eq!(checkout(&acct, id).await["status"], "EXECUTING");

    admin("/__sandbox/faults", Some(json!({"webhooks": {"hold": false}}))).await;
    let done = wait_status(&acct, id, "SUCCESS").await;
    assert!(done["payment_orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "SUCCESS"));
    let page = http().get(&landing).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Payment received"), "{page}");
    assert_eq!(session_calls(id).await.len(), 1, "one PSP call");
    assert_eq!(sessions_for(id).await.len(), 1, "one session");
    stack().assert_invariants().await;
}

#[tokio::test]
async fn a_declined_card_keeps_the_checkout_open_and_expiry_fails_it() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let body = json!({"buyer_id": "b", "order_id": "o", "currency": "KWD", "total_amount": "3.000",
        "line_items": [{"seller_id": "s1", "amount": "1.250", "sub_order_id": "x"}, {"seller_id": "s2", "amount": "1.750", "sub_order_id": "y"}]});
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap();
    let token = r.json["psp_token"].as_str().unwrap();
    let declined = pay(r.json["psp_redirect_url"].as_str().unwrap(), "4000000000000002").await;
    assert_eq!(declined.status(), 402);
    assert!(declined.text().await.unwrap().to_lowercase().contains("declined"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        checkout(&acct, id).await["status"],
        "EXECUTING",
        "the buyer may try again"
    );

    let expired = http()
        .post(format!("{}/v1/checkout/sessions/{token}/expire", stack().psp))
        .bearer_auth(PSP_SECRET_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 200);
    let failed = wait_status(&acct, id, "FAILED").await;
    assert!(failed["payment_orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "FAILED"));
}

#[tokio::test]
async fn forged_stale_or_altered_webhooks_change_nothing() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let r = acct.create(&single(json!("10.00"), "USD")).await;
    let id = r.json["checkout_id"].as_str().unwrap();
    let token = r.json["psp_token"].as_str().unwrap();
    let event = json!({"id": format!("evt_forged_{}", &new_key()[..8]), "object": "event", "type": "checkout.session.completed",
        "created": now_s(), "data": {"object": {"id": token, "object": "checkout.session", "client_reference_id": id,
        "amount_total": 1000, "currency": "usd", "payment_status": "paid", "status": "complete"}}})
    .to_string();
    let cases = [
        ("no signature", String::new()),
        ("garbage", "t=abc,v1=zz".to_owned()),
        ("forged", format!("t={},v1={}", now_s(), "0".repeat(64))),
        ("wrong secret", sign(event.as_bytes(), "whsec_not_ours", now_s())),
        ("stale", sign(event.as_bytes(), WEBHOOK_SECRET, now_s() - 301)),
    ];
    for (what, signature) in &cases {
        let resp = post_webhook(&event, signature).await;
        assert_eq!(resp.status, 400, "{what}: {}", resp.text);
        assert_eq!(resp.code(), "signature_invalid", "{what}");
    }
    let signed = sign(event.as_bytes(), WEBHOOK_SECRET, now_s());
    let altered = event.replace("1000", "1");
    assert_eq!(
        post_webhook(&altered, &signed).await.status,
        400,
        "body changed after signing"
    );
    assert_eq!(checkout(&acct, id).await["status"], "EXECUTING");
    // The same event, correctly signed, is accepted.
    let ok = post_webhook(&event, &signed).await;
    assert_eq!(
        (ok.status, ok.json["outcome"].as_str()),
        (200, Some("applied")),
        "{}",
        ok.text
    );
    assert_eq!(checkout(&acct, id).await["status"], "SUCCESS");
}

#[tokio::test]
async fn psp_errors_are_retried_under_one_key_and_never_make_a_second_session() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;

    // Two 500s, then success: one session, three calls with the same key.
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 2, "status": 500}})),
    )
    .await;
    let r = acct.create(&single(json!("5.00"), "EUR")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap();
    assert_eq!(session_calls(id).await.len(), 3);
    assert_eq!(sessions_for(id).await.len(), 1);

    // Down throughout: 503 with Retry-After, not stored; the retry resumes the same checkout.
    reset_faults().await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 1000, "status": 503}})),
    )
    .await;
    let key = new_key();
    let body = single(json!("6.00"), "EUR").to_string();
    let down = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.code(), "psp_unavailable");
    assert!(down.headers.get("retry-after").is_some());
    reset_faults().await;
    let up = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(up.status, 201, "{}", up.text);
    assert!(
        up.headers.get("idempotent-replayed").is_none(),
        "the 503 was not stored"
    );
    let id = up.json["checkout_id"].as_str().unwrap();
    let calls = session_calls(id).await;
    assert!(calls.len() >= 2, "{calls:?}");
    assert_eq!(sessions_for(id).await.len(), 1, "one session for one checkout");
    let again = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!((again.status, &again.text), (201, &up.text));
}

#[tokio::test]
async fn duplicate_and_late_webhooks_apply_once() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let store = stack().store().await;
    let r = acct.create(&single(json!("7.77"), "USD")).await;
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let token = r.json["psp_token"].as_str().unwrap().to_owned();
    let event_id = format!("evt_dup_{}", &new_key()[..8]);
    let event =
        json!({"id": event_id, "object": "event", "type": "checkout.session.completed", "created": now_s(),
        "data": {"object": {"id": token, "object": "checkout.session", "client_reference_id": id,
        "amount_total": 777, "currency": "usd", "payment_status": "paid", "status": "complete"}}})
        .to_string();
    let signature = sign(event.as_bytes(), WEBHOOK_SECRET, now_s());
    let results = futures::future::join_all((0..5).map(|_| post_webhook(&event, &signature))).await;
    let outcomes: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r.status, r.json["outcome"].as_str().unwrap_or("")))
        .collect();
    let applied = outcomes.iter().filter(|o| o.as_str() == "200 applied").count();
    assert_eq!(applied, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| o == "200 applied" || o == "200 duplicate" || o.starts_with("503")),
        "{outcomes:?}"
    );
    assert_eq!(checkout(&acct, &id).await["status"], "SUCCESS");
    let outbox = store
        .client
        .get_item()
        .table_name("PaymentsTable")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("OUTBOX#obx_{event_id}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("OUTBOX".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(outbox.item.is_some(), "one outbox record for the transition");
    let outboxes = store
        .client
        .scan()
        .table_name("PaymentsTable")
        .filter_expression("entity = :o AND contains(payload, :c)")
        .expression_attribute_values(":o", aws_sdk_dynamodb::types::AttributeValue::S("outbox".into()))
        .expression_attribute_values(":c", aws_sdk_dynamodb::types::AttributeValue::S(id.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(outboxes.count(), 1);

    // A failure after the success (a new event) changes nothing and is an anomaly.
    let late = event
        .replace("checkout.session.completed", "checkout.session.expired")
        .replace(&event_id, &format!("{event_id}_late"));
    let resp = post_webhook(&late, &sign(late.as_bytes(), WEBHOOK_SECRET, now_s())).await;
    assert_eq!(
        (resp.status, resp.json["outcome"].as_str()),
        (200, Some("illegal_transition")),
        "{}",
        resp.text
    );
    assert_eq!(checkout(&acct, &id).await["status"], "SUCCESS");
    // Unknown session and amount mismatch: acknowledged, recorded, nothing moves.
    let stranger = event
        .replace(&token, "cs_test_unknown")
        .replace(&id, "chk_00000000000000000000000000000000")
        .replace(&event_id, &format!("{event_id}_x"));
    let resp = post_webhook(&stranger, &sign(stranger.as_bytes(), WEBHOOK_SECRET, now_s())).await;
    assert_eq!(
        (resp.status, resp.json["outcome"].as_str()),
        (200, Some("unknown_session")),
        "{}",
        resp.text
    );
    stack().assert_invariants().await;
    let garbage = r#"{"hello":"world"}"#;
    let resp = post_webhook(garbage, &sign(garbage.as_bytes(), WEBHOOK_SECRET, now_s())).await;
    assert_eq!(
        (resp.status, resp.json["outcome"].as_str()),
        (200, Some("unparseable_event")),
        "{}",
        resp.text
    );
}

#[tokio::test]
async fn a_webhook_that_beats_the_create_call_is_not_lost() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    // The PSP creates the session but answers too late, every time: our call gives up (503)
    // with the checkout still CREATED, while the session exists at the PSP.
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"delay_next": 1000, "delay_ms": 1500}})),
    )
    .await;
    let key = new_key();
    let body = single(json!("12.34"), "USD").to_string();
    let first = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(first.status, 503, "{}", first.text);
    reset_faults().await;
    // Find the session the PSP made and pay it: the webhook arrives before we stored the token.
    let started = Instant::now();
    let session = loop {
        let sessions = admin("/__sandbox/sessions", None).await;
        let list = sessions
            .get("data")
            .unwrap_or(&sessions)
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mine: Vec<Value> = list
            .into_iter()
            .filter(|s| s["amount_total"] == 1234 && s["status"] == "open")
            .collect();
        if let Some(s) = mine.last() {
            break s.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no session");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = session["client_reference_id"].as_str().unwrap().to_owned();
    assert_eq!(
        pay(session["url"].as_str().unwrap(), "4242424242424242")
            .await
            .status(),
        303
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        checkout(&acct, &id).await["status"],
        "CREATED",
        "the early webhook was refused for now"
    );
    // The client retries; the PSP's next delivery then settles it.
    let retry = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(retry.status, 201, "{}", retry.text);
    assert_eq!(retry.json["checkout_id"], id.as_str());
    wait_status(&acct, &id, "SUCCESS").await;
    assert_eq!(sessions_for(&id).await.len(), 1);
    stack().assert_invariants().await;
}

use common::webdriver;

#[tokio::test]
async fn a_buyer_pays_in_a_real_browser() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let body = json!({"buyer_id": "browser_buyer", "order_id": "o_browser", "currency": "USD", "total_amount": "100.00",
        "line_items": [{"seller_id": "seller_A", "amount": "40.00", "sub_order_id": "a"},
                       {"seller_id": "seller_B", "amount": "35.00", "sub_order_id": "b"},
                       {"seller_id": "seller_C", "amount": "25.00", "sub_order_id": "c"}]});
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap();

    let browser = webdriver::Browser::start().await;
    browser.goto(r.json["psp_redirect_url"].as_str().unwrap()).await;
    let page = browser
        .wait_for_text("card_number", Duration::from_secs(10))
        .await;
    assert!(page.contains("100.00"), "the hosted page shows the total");
    // A declined card first: the page says so and the buyer stays on it.
    browser
        .type_into("input[name=card_number]", "4000000000000002\u{E007}")
        .await;
    // The page always lists the test cards ("… is declined"), so wait for the decline message
    // itself: the form post has then landed and the new page is the one to type into.
    browser
        .wait_for_text("Your card was declined.", Duration::from_secs(10))
        .await;
    browser
        .type_into("input[name=card_number]", "4242424242424242\u{E007}")
        .await;
    let html = browser
        .wait_for_text("Payment received", Duration::from_secs(20))
        .await;
    assert!(html.contains("data-status=\"SUCCESS\""), "{html}");
    let landed = browser.url().await;
    assert!(
        landed.starts_with(&format!("{}/checkout/complete?checkout_id={id}", stack().api)),
        "{landed}"
    );
    browser.quit().await;
    assert_eq!(checkout(&acct, id).await["status"], "SUCCESS");
    let report = stack().assert_invariants().await;
    assert!(
        report.ledger_transactions >= 3,
        "three sellers, three ledger transactions"
    );
}

#[tokio::test]
async fn signed_events_that_cannot_be_applied_are_acknowledged_as_anomalies_and_move_nothing() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let r = acct.create(&single(json!("12.00"), "USD")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (id, token) = (
        r.json["checkout_id"].as_str().unwrap(),
        r.json["psp_token"].as_str().unwrap(),
    );
    let event = |event_id: &str, session: &str, payment_status: &str| {
        json!({"id": event_id, "object": "event", "type": "checkout.session.completed", "created": now_s(),
            "data": {"object": {"id": session, "object": "checkout.session", "client_reference_id": id,
            "amount_total": 1200, "currency": "usd", "payment_status": payment_status}}})
        .to_string()
    };
    let long_id = format!("evt_{}", "x".repeat(300));
    for (event_id, session, status, outcome) in [
        ("evt_empty_session", "", "paid", "unparseable_event"),
        ("", token, "paid", "unparseable_event"),
        (long_id.as_str(), token, "paid", "unparseable_event"),
        (
            "evt_free_lunch",
            token,
            "no_payment_required",
            "payment_status_unexpected",
        ),
    ] {
        let body = event(event_id, session, status);
        let r = post_webhook(&body, &sign(body.as_bytes(), WEBHOOK_SECRET, now_s())).await;
        assert_eq!(
            (r.status, r.json["outcome"].as_str()),
            (200, Some(outcome)),
            "{event_id:.20} {session:?} {status}: {}",
            r.text
        );
    }
    assert_eq!(checkout(&acct, id).await["status"], "EXECUTING", "nothing moved");
}

#[tokio::test]
async fn the_sandbox_admin_routes_refuse_web_pages() {
    let _turn = TURN.lock().await;
    let url = format!("{}/__sandbox/reset", stack().psp);
    let bare = http().post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(bare.status(), 403);
    let from_page = http()
        .post(&url)
        .header("x-sandbox-control", "1")
        .header("origin", "http://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(from_page.status(), 403);
}
