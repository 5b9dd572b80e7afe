//! Refunds end to end on the local twin: our API, the outbox, the refund queue and its executor,
//! the sandbox PSP's refunds API and its signed refund webhooks, the ledger and the wallets.
//! Every payment here is paid on the sandbox's hosted page, so each refund names a real charge.
//! The sandbox's fault switches are global, so the tests take turns; the invariants are checked
//! after each.

use std::collections::BTreeSet;

use common::{new_key, Account, Stack};
use serde_json::{json, Value};
use shared::domain::psp::sign;

const WEBHOOK_SECRET: &str = "whsec_sandbox_localdev_7c1e9a";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This binary's stack: immediate queue retries (`RetryBackoffBaseSeconds` 0; the pipeline
/// tests keep the production schedule), a short PSP budget so "PSP down" fails fast, messages
/// back 3 s after a crash, and the sandbox's delayed refund moves after 1.5 s.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "refunds",
        params: &[
            ("RetryBackoffBaseSeconds", "0"),
            ("PspRetryBudgetMs", "2000"),
            ("PspAttemptTimeoutMs", "1000"),
            ("ConsumerVisibilityTimeout", "3"),
        ],
        on_disk: false,
        env: &[("SANDBOX_REFUND_SETTLE_MS", "1500")],
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

fn list(v: &Value) -> Vec<Value> {
    v.get("data").unwrap_or(v).as_array().cloned().unwrap_or_default()
}

/// A checkout paid on the hosted page with `card`, once its webhook has made it SUCCESS.
async fn paid(acct: &Account, body: Value, card: &str) -> Value {
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    let url = r.json["psp_redirect_url"].as_str().unwrap();
    let page = http()
        .post(url)
        .form(&[("card_number", card)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303, "card {card} pays");
    common::eventually(&format!("checkout {id} SUCCESS"), 20, || async {
        let c = acct.get(&format!("/v1/checkouts/{id}")).await.json;
        (c["status"] == "SUCCESS").then_some(c)
    })
    .await
}

fn one_seller(amount: &str, currency: &str, seller: &str) -> Value {
    json!({"buyer_id": "buyer_1", "seller_id": seller, "amount": amount, "currency": currency,
           "order_id": format!("order_{}", &new_key()[..8])})
}

fn order_id(checkout: &Value) -> String {
    checkout["payment_orders"][0]["payment_order_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn refund(acct: &Account, body: Value) -> common::Resp {
    acct.post("/v1/refunds", Some(&new_key()), &body.to_string())
        .await
}

async fn wait_refund(acct: &Account, id: &str, want: &str) -> Value {
    common::eventually(&format!("refund {id} {want}"), 30, || async {
        let r = acct.get(&format!("/v1/refunds/{id}")).await.json;
        (r["status"] == want).then_some(r)
    })
    .await
}

/// A seller's wallet figures in one currency: (balance, available, held) as decimal strings;
/// `None` before the wallet has them.
async fn try_wallet(acct: &Account, seller: &str, currency: &str) -> Option<(String, String, String)> {
    let w = acct.get(&format!("/v1/wallets/{seller}")).await.json;
    let b = w["balances"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["currency"] == currency).cloned())?;
    let s = |k: &str| b[k].as_str().unwrap().to_owned();
    Some((s("balance"), s("available"), s("held")))
}

async fn wallet(acct: &Account, seller: &str, currency: &str) -> (String, String, String) {
    try_wallet(acct, seller, currency)
        .await
        .unwrap_or_else(|| panic!("no {currency} wallet for {seller}"))
}

/// Waits until the wallet shows `want` and the invariants hold (the pipeline has caught up).
async fn settled_wallet(acct: &Account, seller: &str, currency: &str, want: (&str, &str, &str)) {
    common::eventually(&format!("wallet {seller} {currency} = {want:?}"), 30, || async {
        let w = try_wallet(acct, seller, currency).await?;
        let ok = (w.0.as_str(), w.1.as_str(), w.2.as_str()) == want && stack().invariants().await.ok;
        ok.then_some(())
    })
    .await;
}

/// The sandbox's refunds of one PaymentIntent.
async fn psp_refunds(payment_intent: &str) -> Vec<Value> {
    list(&admin("/__sandbox/refunds", None).await)
        .into_iter()
        .filter(|r| r["payment_intent"] == payment_intent)
        .collect()
}

/// The PaymentIntent behind a checkout, from the sandbox.
async fn intent_of(checkout_id: &str) -> String {
    list(&admin("/__sandbox/sessions", None).await)
        .into_iter()
        .find(|s| s["client_reference_id"] == checkout_id)
        .and_then(|s| {
            s["payment_intent"]["id"]
                .as_str()
                .or(s["payment_intent"].as_str())
                .map(str::to_owned)
        })
        .expect("session's payment intent")
}

/// Calls to the PSP's `POST /v1/refunds` under one idempotency key.
async fn refund_calls(key: &str) -> Vec<Value> {
    list(&admin("/__sandbox/requests", None).await)
        .into_iter()
        .filter(|r| r["path"] == "/v1/refunds" && r["method"] == "POST" && r["idempotency_key"] == key)
        .collect()
}

#[tokio::test]
async fn a_full_refund_returns_the_fee_and_takes_the_rest_from_the_seller() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("100.00", "USD", "seller_full"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    settled_wallet(&acct, "seller_full", "USD", ("97.50", "97.50", "0.00")).await;

    let r = refund(
        &acct,
        json!({"payment_order_id": po, "reason": "requested_by_customer",
        "metadata": {"ticket": "T-1"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = &r.json;
    assert_eq!(
        (
            &v["object"],
            &v["status"],
            &v["amount"],
            &v["currency"],
            &v["seller_id"]
        ),
        (
            &json!("refund"),
            &json!("PENDING"),
            &json!("100.00"),
            &json!("USD"),
            &json!("seller_full")
        )
    );
    assert!(v["refund_id"].as_str().unwrap().starts_with("rf_"));
    assert_eq!(v["checkout_id"], c["checkout_id"]);
    assert_eq!(v["metadata"]["ticket"], "T-1");
    let id = v["refund_id"].as_str().unwrap();

    let done = wait_refund(&acct, id, "SUCCEEDED").await;
    assert_eq!(
        (&done["fee_refunded"], &done["seller_debited"]),
        (&json!("2.50"), &json!("97.50"))
    );
    assert!(done["psp_refund_id"].as_str().unwrap().starts_with("re_"));
    settled_wallet(&acct, "seller_full", "USD", ("0.00", "0.00", "0.00")).await;

    let p = acct.get(&format!("/v1/payments/{po}")).await.json;
    assert_eq!(p["amount_refunded"], "100.00");
    let chk = acct
        .get(&format!("/v1/checkouts/{}", c["checkout_id"].as_str().unwrap()))
        .await
        .json;
    assert_eq!(chk["amount_refunded"], "100.00");
    let listed = acct.get(&format!("/v1/refunds?payment_order_id={po}")).await.json;
    assert_eq!(list(&listed).len(), 1);
    assert_eq!(list(&listed)[0]["refund_id"], id);

    // The reversal: seller_payable and fee revenue debited, psp_receivable credited.
    let txs = list(
        &acct
            .get(&format!("/v1/ledger/transactions?payment_order_id={po}"))
            .await
            .json,
    );
    let reversal = txs
        .iter()
        .find(|t| t["refund_id"] == id)
        .unwrap_or_else(|| panic!("no reversal in {txs:?}"));
    assert_eq!(reversal["transaction_id"], format!("ltx_{id}"));
    let entries: BTreeSet<(String, String, String)> = reversal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("account"), s("direction"), s("amount"))
        })
        .collect();
    assert_eq!(
        entries,
        BTreeSet::from([
            (
                "seller_payable:seller_full".into(),
                "DEBIT".into(),
                "97.50".into()
            ),
            ("platform_fee_revenue".into(), "DEBIT".into(), "2.50".into()),
            ("psp_receivable".into(), "CREDIT".into(), "100.00".into()),
        ])
    );
    // Nothing is left: a further refund is refused, saying so.
    let more = refund(&acct, json!({"payment_order_id": po})).await;
    assert_eq!(
        (more.status, more.code()),
        (400, "amount_exceeds_refundable"),
        "{}",
        more.text
    );
    assert_eq!(
        psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await)
            .await
            .len(),
        1
    );
    stack().assert_invariants().await;
}

#[tokio::test]
async fn partial_refunds_sum_to_the_order_return_the_fee_to_the_cent_and_a_fourth_is_refused() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("100.00", "USD", "seller_parts"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    let mut fees = Vec::new();
    for amount in ["33.33", "33.33", "33.34"] {
        let r = refund(&acct, json!({"payment_order_id": po, "amount": amount})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let done = wait_refund(&acct, r.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
        fees.push(done["fee_refunded"].as_str().unwrap().to_owned());
    }
    // 2.50 × 1/3 = 0.8333 → 0.83; × 2/3 = 1.6666 → 1.67 (0.84 more); the rest 0.83: 2.50 in all.
    assert_eq!(fees, ["0.83", "0.84", "0.83"]);
    let fourth = refund(&acct, json!({"payment_order_id": po, "amount": "0.01"})).await;
    assert_eq!(
        (fourth.status, fourth.code()),
        (400, "amount_exceeds_refundable"),
        "{}",
        fourth.text
    );
    assert!(
        fourth.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("0.00 USD"),
        "{}",
        fourth.text
    );
    settled_wallet(&acct, "seller_parts", "USD", ("0.00", "0.00", "0.00")).await;
    assert_eq!(
        acct.get(&format!("/v1/payments/{po}")).await.json["amount_refunded"],
        "100.00"
    );
    stack().assert_invariants().await;
}

#[tokio::test]
async fn refunds_in_jpy_and_kwd_are_exact() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    // JPY 1,000 (fee 25): refund 333 → fee round(25 × 333 / 1000) = 8, seller 325.
    let jpy = paid(&acct, one_seller("1000", "JPY", "seller_jpy"), "4242424242424242").await;
    let r = refund(
        &acct,
        json!({"payment_order_id": order_id(&jpy), "amount": 333, "currency": "JPY"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let done = wait_refund(&acct, r.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    assert_eq!(
        (&done["amount"], &done["fee_refunded"], &done["seller_debited"]),
        (&json!("333"), &json!("8"), &json!("325"))
    );
    settled_wallet(&acct, "seller_jpy", "JPY", ("650", "650", "0")).await;
    let frac = refund(
        &acct,
        json!({"payment_order_id": order_id(&jpy), "amount": "1.5"}),
    )
    .await;
    assert_eq!(
        (frac.status, frac.code()),
        (400, "amount_too_precise"),
        "{}",
        frac.text
    );

    // KWD 10.000 (fee 0.250): refund 3.330 → fee round(0.250 × 3.330 / 10) = 0.083 (0.08325),
    // seller 3.247. The PSP carries three-decimal amounts only in whole hundredths: 3.333 is
    // refused now, not failed later.
    let kwd = paid(
        &acct,
        one_seller("10.000", "KWD", "seller_kwd"),
        "4242424242424242",
    )
    .await;
    let odd = refund(
        &acct,
        json!({"payment_order_id": order_id(&kwd), "amount": "3.333"}),
    )
    .await;
    assert_eq!(
        (odd.status, odd.code()),
        (400, "amount_not_supported"),
        "{}",
        odd.text
    );
    let r = refund(
        &acct,
        json!({"payment_order_id": order_id(&kwd), "amount": "3.330"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let done = wait_refund(&acct, r.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    assert_eq!(
        (&done["fee_refunded"], &done["seller_debited"]),
        (&json!("0.083"), &json!("3.247"))
    );
    settled_wallet(&acct, "seller_kwd", "KWD", ("6.503", "6.503", "0.000")).await;
    stack().assert_invariants().await;
}

#[tokio::test]
async fn one_sellers_refund_leaves_the_other_sellers_of_the_checkout_untouched() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        json!({"buyer_id": "b", "order_id": format!("o_{}", &new_key()[..8]), "currency": "USD", "total_amount": "70.00",
               "line_items": [{"seller_id": "multi_a", "amount": "40.00", "sub_order_id": "a"},
                              {"seller_id": "multi_b", "amount": "30.00", "sub_order_id": "b"}]}),
        "4242424242424242",
    )
    .await;
    let orders = c["payment_orders"].as_array().unwrap();
    let (po_a, po_b) = (
        orders[0]["payment_order_id"].as_str().unwrap(),
        orders[1]["payment_order_id"].as_str().unwrap(),
    );
    settled_wallet(&acct, "multi_b", "USD", ("29.25", "29.25", "0.00")).await;
    // All of A's line, then more than B's line is refused, then all of B's.
    let a = refund(&acct, json!({"payment_order_id": po_a})).await;
    assert_eq!(
        (a.status, &a.json["amount"]),
        (201, &json!("40.00")),
        "{}",
        a.text
    );
    wait_refund(&acct, a.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    settled_wallet(&acct, "multi_a", "USD", ("0.00", "0.00", "0.00")).await;
    assert_eq!(wallet(&acct, "multi_b", "USD").await.0, "29.25", "B untouched");
    assert_eq!(
        acct.get(&format!("/v1/payments/{po_b}")).await.json["amount_refunded"],
        "0.00"
    );

    let too_much = refund(&acct, json!({"payment_order_id": po_b, "amount": "30.01"})).await;
    assert_eq!(
        (too_much.status, too_much.code()),
        (400, "amount_exceeds_refundable")
    );
    let b = refund(&acct, json!({"payment_order_id": po_b, "amount": "30.00"})).await;
    assert_eq!(b.status, 201, "{}", b.text);
    wait_refund(&acct, b.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    settled_wallet(&acct, "multi_b", "USD", ("0.00", "0.00", "0.00")).await;
    // One charge, two partial refunds at the PSP that add up to it.
    let refunds = psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await).await;
    let total: i64 = refunds.iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!((refunds.len(), total), (2, 7000));
    stack().assert_invariants().await;
}

#[tokio::test]
async fn thirty_concurrent_partial_refunds_never_add_up_to_more_than_the_order() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("100.00", "USD", "seller_race"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    // 10 % + 0.01: nine fit (90.09), the tenth would not (100.10).
    let body = json!({"payment_order_id": po, "amount": "10.01"});
    let answers = futures::future::join_all((0..30).map(|_| refund(&acct, body.clone()))).await;
    let created: Vec<&common::Resp> = answers.iter().filter(|r| r.status == 201).collect();
    let refused = answers
        .iter()
        .filter(|r| r.status == 400 && r.code() == "amount_exceeds_refundable")
        .count();
    assert_eq!(
        (created.len(), refused),
        (9, 21),
        "{:?}",
        answers
            .iter()
            .map(|r| (r.status, r.code().to_owned()))
            .collect::<Vec<_>>()
    );
    for r in &created {
        wait_refund(&acct, r.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    }
    assert_eq!(
        acct.get(&format!("/v1/payments/{po}")).await.json["amount_refunded"],
        "90.09"
    );
    let refunds = psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await).await;
    assert_eq!(refunds.len(), 9);
    // 97.50 less the seller's parts of 90.09 (fee returned: round(2.50 × 0.9009) = 2.25).
    settled_wallet(&acct, "seller_race", "USD", ("9.66", "9.66", "0.00")).await;
    stack().assert_invariants().await;
}

#[tokio::test]
async fn a_refund_key_replays_and_refuses_another_body() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("20.00", "EUR", "seller_idem"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    let key = new_key();
    let body = json!({"payment_order_id": po, "amount": "5.00"}).to_string();
    // Ten at once with one key: one refund, one original answer, the rest its replay.
    let answers =
        futures::future::join_all((0..10).map(|_| acct.post("/v1/refunds", Some(&key), &body))).await;
    assert!(
        answers.iter().all(|r| r.status == 201),
        "{:?}",
        answers.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let ids: BTreeSet<&str> = answers
        .iter()
        .map(|r| r.json["refund_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one refund for one key");
    let originals = answers
        .iter()
        .filter(|r| r.headers.get("idempotent-replayed").is_none())
        .count();
    assert_eq!(originals, 1);
    let replay = acct.post("/v1/refunds", Some(&key), &body).await;
    assert_eq!(
        (replay.status, &replay.text),
        (201, &answers[0].text),
        "byte-identical"
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    // The same request written differently is the same request; another body is not.
    let same = acct
        .post(
            "/v1/refunds",
            Some(&key),
            &json!({"amount": 5, "payment_order_id": po}).to_string(),
        )
        .await;
    assert_eq!(same.status, 201);
    let other = acct
        .post(
            "/v1/refunds",
            Some(&key),
            &json!({"payment_order_id": po, "amount": "6.00"}).to_string(),
        )
        .await;
    assert_eq!(
        (other.status, other.code()),
        (422, "idempotency_key_reused"),
        "{}",
        other.text
    );
    let missing = acct.post("/v1/refunds", None, &body).await;
    assert_eq!((missing.status, missing.code()), (400, "idempotency_key_missing"));
    let id = ids.into_iter().next().unwrap().to_owned();
    wait_refund(&acct, &id, "SUCCEEDED").await;
    // After it settled the key still answers the refund as created (its 201, PENDING).
    let late = acct.post("/v1/refunds", Some(&key), &body).await;
    assert_eq!((late.status, &late.json["status"]), (201, &json!("PENDING")));
    assert_eq!(
        list(&acct.get(&format!("/v1/refunds?payment_order_id={po}")).await.json).len(),
        1
    );
    stack().assert_invariants().await;
}

#[tokio::test]
async fn a_psp_5xx_then_success_makes_one_psp_refund() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("12.00", "USD", "seller_5xx"),
        "4242424242424242",
    )
    .await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 1, "status": 500}})),
    )
    .await;
    let r = refund(&acct, json!({"payment_order_id": order_id(&c)})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["refund_id"].as_str().unwrap();
    wait_refund(&acct, id, "SUCCEEDED").await;
    let calls = refund_calls(id).await;
    assert!(calls.len() >= 2, "a 500, then the same key again: {calls:?}");
    assert!(calls.iter().any(|c| c["status"] == 500));
    assert_eq!(
        psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await)
            .await
            .len(),
        1,
        "one PSP refund"
    );
    reset_faults().await;
    stack().assert_invariants().await;
}

#[tokio::test]
async fn psp_down_past_every_retry_leaves_the_refund_pending_in_the_dlq_and_a_redrive_finishes_it() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("50.00", "USD", "seller_dlq"),
        "4242424242424242",
    )
    .await;
    settled_wallet(&acct, "seller_dlq", "USD", ("48.75", "48.75", "0.00")).await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 100000, "status": 503}})),
    )
    .await;
    let r = refund(
        &acct,
        json!({"payment_order_id": order_id(&c), "amount": "20.00"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["refund_id"].as_str().unwrap().to_owned();

    // Five receives, then the DLQ with its reason; the refund PENDING and its hold in place.
    let dead = stack().dead_letter("RefundDLQ", &id, 60).await;
    let attrs = dead.message_attributes().unwrap();
    let reason = attrs["failure_reason"].string_value().unwrap();
    assert!(reason.contains("PSP unavailable"), "{reason}");
    assert_eq!(attrs["failed_consumer"].string_value(), Some("refund_executor"));
    assert_eq!(attrs["receive_count"].string_value(), Some("5"));
    assert_eq!(
        acct.get(&format!("/v1/refunds/{id}")).await.json["status"],
        "PENDING"
    );
    // 20.00 less its fee part 0.50: held, still owed to the seller.
    assert_eq!(
        wallet(&acct, "seller_dlq", "USD").await,
        ("48.75".into(), "29.25".into(), "19.50".into())
    );
    stack().assert_invariants().await;

    // The PSP is back; the operator redrives (what `make redrive QUEUE=RefundDLQ` does).
    reset_faults().await;
    stack().redrive_one("RefundDLQ", "RefundQueue", &id).await;
    let done = wait_refund(&acct, &id, "SUCCEEDED").await;
    assert_eq!(done["seller_debited"], "19.50");
    settled_wallet(&acct, "seller_dlq", "USD", ("29.25", "29.25", "0.00")).await;
    let calls = refund_calls(&id).await;
    assert!(
        calls.len() >= 6,
        "every attempt under the one key: {}",
        calls.len()
    );
    assert_eq!(
        psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await)
            .await
            .len(),
        1
    );
    stack().assert_invariants().await;
}

#[tokio::test]
async fn the_executor_killed_mid_batch_loses_nothing_and_refunds_once() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("60.00", "USD", "seller_kill"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    // The PSP does each refund but answers late: the executor is mid-batch when it dies.
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"delay_next": 5, "delay_ms": 4000}})),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = refund(&acct, json!({"payment_order_id": po, "amount": "10.00"})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        ids.push(r.json["refund_id"].as_str().unwrap().to_owned());
    }
    common::eventually("the executor waiting on the PSP", 15, || async {
        let calls = list(&admin("/__sandbox/requests", None).await);
        let started = calls
            .iter()
            .filter(|r| r["path"] == "/v1/refunds" && ids.iter().any(|id| r["idempotency_key"] == *id))
            .count();
        (started >= 1).then_some(())
    })
    .await;
    let killed = stack().kill_instances("RefundExecutorFunction").await;
    assert!(killed >= 1, "an executor was running");
    for id in &ids {
        wait_refund(&acct, id, "SUCCEEDED").await;
    }
    let refunds = psp_refunds(&intent_of(c["checkout_id"].as_str().unwrap()).await).await;
    let per_refund: BTreeSet<String> = refunds
        .iter()
        .map(|r| r["metadata"]["refund_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        (refunds.len(), per_refund.len()),
        (5, 5),
        "one PSP refund per refund"
    );
    settled_wallet(&acct, "seller_kill", "USD", ("9.75", "9.75", "0.00")).await;
    reset_faults().await;
    stack().assert_invariants().await;
}

#[tokio::test]
async fn the_test_cards_that_fail_later() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;

    // 4000000000005126: the refund succeeds, then fails: booked, then corrected.
    let c = paid(
        &acct,
        one_seller("40.00", "USD", "seller_late_fail"),
        "4000000000005126",
    )
    .await;
    let r = refund(
        &acct,
        json!({"payment_order_id": order_id(&c), "amount": "10.00"}),
    )
    .await;
    let id = r.json["refund_id"].as_str().unwrap().to_owned();
    wait_refund(&acct, &id, "SUCCEEDED").await;
    let failed = wait_refund(&acct, &id, "FAILED").await;
    assert_eq!(failed["failure_code"], "expired_or_canceled_card");
    settled_wallet(&acct, "seller_late_fail", "USD", ("39.00", "39.00", "0.00")).await;
    let txs = list(
        &acct
            .get(&format!(
                "/v1/ledger/transactions?payment_order_id={}",
                order_id(&c)
            ))
            .await
            .json,
    );
    let mut mine: Vec<&str> = txs
        .iter()
        .filter(|t| t["refund_id"] == id.as_str())
        .map(|t| t["transaction_id"].as_str().unwrap())
        .collect();
    mine.sort();
    assert_eq!(mine, [format!("ltx_{id}"), format!("ltx_{id}_reversed")]);
    assert_eq!(
        acct.get(&format!("/v1/payments/{}", order_id(&c))).await.json["amount_refunded"],
        "0.00"
    );

    // 4000000000007726: the refund is pending, then succeeds by the webhook.
    let c = paid(
        &acct,
        one_seller("40.00", "USD", "seller_pending"),
        "4000000000007726",
    )
    .await;
    let r = refund(
        &acct,
        json!({"payment_order_id": order_id(&c), "amount": "10.00"}),
    )
    .await;
    let id = r.json["refund_id"].as_str().unwrap().to_owned();
    let pending = common::eventually("the PSP's pending refund noted", 15, || async {
        let v = acct.get(&format!("/v1/refunds/{id}")).await.json;
        v["psp_refund_id"].is_string().then_some(v)
    })
    .await;
    assert_eq!(pending["status"], "PENDING");
    assert_eq!(
        wallet(&acct, "seller_pending", "USD").await.2,
        "9.75",
        "held while pending"
    );
    wait_refund(&acct, &id, "SUCCEEDED").await;
    settled_wallet(&acct, "seller_pending", "USD", ("29.25", "29.25", "0.00")).await;

    // Pending, then failed (the sandbox's admin settles it; Stripe documents no card for it):
    // nothing booked, the hold released.
    let r = refund(&acct, json!({"payment_order_id": order_id(&c), "amount": "5.00"})).await;
    let id = r.json["refund_id"].as_str().unwrap().to_owned();
    let psp_id = common::eventually("the PSP's pending refund noted", 15, || async {
        acct.get(&format!("/v1/refunds/{id}")).await.json["psp_refund_id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    admin(
        &format!("/__sandbox/refunds/{psp_id}/settle"),
        Some(json!({"outcome": "failed"})),
    )
    .await;
    wait_refund(&acct, &id, "FAILED").await;
    settled_wallet(&acct, "seller_pending", "USD", ("29.25", "29.25", "0.00")).await;
    let txs = list(
        &acct
            .get(&format!(
                "/v1/ledger/transactions?payment_order_id={}",
                order_id(&c)
            ))
            .await
            .json,
    );
    assert!(
        !txs.iter().any(|t| t["refund_id"] == id.as_str()),
        "a failed refund books nothing"
    );
    stack().assert_invariants().await;
}

fn refund_event(kind: &str, psp_refund: &str, refund_id: &str, amount: i64, status: &str) -> String {
    json!({"id": format!("evt_{}", uuid::Uuid::new_v4().simple()), "object": "event", "type": kind,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": psp_refund, "object": "refund", "amount": amount, "currency": "usd",
            "status": status, "metadata": {"refund_id": refund_id},
            "failure_reason": if status == "failed" { json!("lost_or_stolen_card") } else { Value::Null }}}})
    .to_string()
}

async fn deliver(event: &str) -> common::Resp {
    common::send(
        reqwest::Client::new()
            .post(format!("{}/webhooks/psp", stack().api))
            .header(
                "stripe-signature",
                sign(event.as_bytes(), WEBHOOK_SECRET, chrono::Utc::now().timestamp()),
            )
            .header("content-type", "application/json")
            .body(event.to_owned()),
    )
    .await
}

#[tokio::test]
async fn duplicate_and_reordered_refund_webhooks_are_harmless() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    // Pending refunds (the 7726 card), whose later moves we deliver ourselves; the sandbox's
    // own events for them are held until the end.
    let c = paid(
        &acct,
        one_seller("30.00", "USD", "seller_hooks"),
        "4000000000007726",
    )
    .await;
    admin("/__sandbox/faults", Some(json!({"webhooks": {"hold": true}}))).await;
    let po = order_id(&c);
    let mut pending = Vec::new();
    for amount in ["10.00", "5.00"] {
        let r = refund(&acct, json!({"payment_order_id": po, "amount": amount})).await;
        let id = r.json["refund_id"].as_str().unwrap().to_owned();
        let psp = common::eventually("the PSP's pending refund noted", 15, || async {
            acct.get(&format!("/v1/refunds/{id}")).await.json["psp_refund_id"]
                .as_str()
                .map(str::to_owned)
        })
        .await;
        pending.push((id, psp));
    }
    let (first, first_psp) = &pending[0];
    // The success twice, then a late `refund.created` (pending): one move.
    let success = refund_event("refund.updated", first_psp, first, 1000, "succeeded");
    assert_eq!(deliver(&success).await.json["outcome"], "applied");
    // Redelivered, it finds the refund where it says: a read, nothing written.
    assert_eq!(deliver(&success).await.json["outcome"], "unchanged");
    let late = refund_event("refund.created", first_psp, first, 1000, "pending");
    assert_eq!(deliver(&late).await.json["outcome"], "unchanged");
    assert_eq!(
        acct.get(&format!("/v1/refunds/{first}")).await.json["status"],
        "SUCCEEDED"
    );

    // `refund.failed` before `refund.created`: it fails, and the late creation changes nothing.
    let (second, second_psp) = &pending[1];
    let failed = refund_event("refund.failed", second_psp, second, 500, "failed");
    assert_eq!(deliver(&failed).await.json["outcome"], "applied");
    let created = refund_event("refund.created", second_psp, second, 500, "pending");
    assert_eq!(deliver(&created).await.json["outcome"], "unchanged");
    let gone = acct.get(&format!("/v1/refunds/{second}")).await.json;
    assert_eq!(
        (&gone["status"], &gone["failure_code"]),
        (&json!("FAILED"), &json!("lost_or_stolen_card"))
    );
    // A success after the failure is illegal: acknowledged, recorded, nothing moves.
    let contradiction = refund_event("refund.updated", second_psp, second, 500, "succeeded");
    assert_eq!(
        deliver(&contradiction).await.json["outcome"],
        "illegal_transition"
    );
    // An amount that is not the refund's, and a refund we never made: anomalies.
    let wrong = refund_event("refund.updated", first_psp, first, 999, "succeeded");
    assert_eq!(deliver(&wrong).await.json["outcome"], "amount_mismatch");
    let stranger = refund_event("refund.updated", "re_unknown1", "rf_nope", 100, "succeeded");
    assert_eq!(deliver(&stranger).await.json["outcome"], "unknown_refund");

    // The sandbox's own (held) events arrive late: harmless too.
    admin("/__sandbox/faults", Some(json!({"webhooks": {"hold": false}}))).await;
    settled_wallet(&acct, "seller_hooks", "USD", ("19.50", "19.50", "0.00")).await;
    assert_eq!(
        acct.get(&format!("/v1/payments/{po}")).await.json["amount_refunded"],
        "10.00"
    );
    stack().assert_invariants().await;
}

#[tokio::test]
async fn bad_refund_requests_are_refused_and_write_nothing() {
    let _turn = TURN.lock().await;
    reset_faults().await;
    let acct = stack().new_account(None).await;
    let other = stack().new_account(None).await;
    let c = paid(
        &acct,
        one_seller("10.00", "USD", "seller_bad"),
        "4242424242424242",
    )
    .await;
    let po = order_id(&c);
    // An unpaid (EXECUTING) order and a failed one.
    let open = acct.create(&one_seller("5.00", "USD", "seller_bad")).await;
    let open_po = order_id(&open.json);
    let lapsed = acct.create(&one_seller("6.00", "USD", "seller_bad")).await;
    let session = lapsed.json["psp_token"].as_str().unwrap();
    admin(&format!("/__sandbox/sessions/{session}/lapse"), Some(json!({}))).await;
    let lapsed_id = lapsed.json["checkout_id"].as_str().unwrap();
    common::eventually("the lapsed checkout FAILED", 20, || async {
        (acct.get(&format!("/v1/checkouts/{lapsed_id}")).await.json["status"] == "FAILED").then_some(())
    })
    .await;
    let failed_po = order_id(&lapsed.json);

    let many: serde_json::Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"payment_order_id": "po_00000000000000000000000000000000"}),
            404,
            "resource_missing",
        ),
        (json!({"payment_order_id": "not-an-id"}), 404, "resource_missing"),
        (
            json!({"payment_order_id": open_po}),
            400,
            "payment_not_refundable",
        ),
        (
            json!({"payment_order_id": failed_po}),
            400,
            "payment_not_refundable",
        ),
        (
            json!({"payment_order_id": po, "amount": 0}),
            400,
            "amount_not_positive",
        ),
        (
            json!({"payment_order_id": po, "amount": "-1.00"}),
            400,
            "amount_not_positive",
        ),
        (
            json!({"payment_order_id": po, "amount": "1.001"}),
            400,
            "amount_too_precise",
        ),
        (
            json!({"payment_order_id": po, "amount": "10.01"}),
            400,
            "amount_exceeds_refundable",
        ),
        (
            json!({"payment_order_id": po, "amount": "1e2"}),
            400,
            "amount_invalid",
        ),
        (
            json!({"payment_order_id": po, "currency": "EUR"}),
            400,
            "currency_mismatch",
        ),
        (
            json!({"payment_order_id": po, "reason": "buyer_changed_mind"}),
            400,
            "reason_invalid",
        ),
        (
            json!({"payment_order_id": po, "metadata": many}),
            400,
            "metadata_invalid",
        ),
        (
            json!({"payment_order_id": po, "metadata": {"k": "x".repeat(501)}}),
            400,
            "metadata_invalid",
        ),
        (
            json!({"payment_order_id": po, "metadata": {"note": "4242 4242 4242 4242"}}),
            400,
            "card_data_rejected",
        ),
        (
            json!({"payment_order_id": po, "card_number": "4242424242424242"}),
            400,
            "card_data_rejected",
        ),
        (
            json!({"payment_order_id": po, "refund_everything": true}),
            400,
            "parameter_unknown",
        ),
        (json!({"amount": "1.00"}), 400, "parameter_missing"),
    ];
    for (body, status, code) in &cases {
        let r = refund(&acct, body.clone()).await;
        assert_eq!((r.status, r.code()), (*status, *code), "{body}: {}", r.text);
        assert!(
            r.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            r.text
        );
    }
    // Another account's order is unknown to this one.
    let foreign = refund(&other, json!({"payment_order_id": po})).await;
    assert_eq!((foreign.status, foreign.code()), (404, "resource_missing"));
    let foreign_list = other.get(&format!("/v1/refunds?payment_order_id={po}")).await;
    assert_eq!(foreign_list.status, 404);
    let bad_json = acct
        .post("/v1/refunds", Some(&new_key()), "{\"payment_order_id\":")
        .await;
    assert_eq!((bad_json.status, bad_json.code()), (400, "json_invalid"));

    // Nothing was written: no refund, nothing reserved, nothing held, no outbox record.
    assert!(list(&acct.get(&format!("/v1/refunds?payment_order_id={po}")).await.json).is_empty());
    assert_eq!(
        acct.get(&format!("/v1/payments/{po}")).await.json["amount_refunded"],
        "0.00"
    );
    settled_wallet(&acct, "seller_bad", "USD", ("9.75", "9.75", "0.00")).await;
    let refunds_of_account = stack()
        .scan_all("PaymentsTable")
        .await
        .iter()
        .filter(|i| i.get("entity").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("refund"))
        .filter(|i| i.get("account_id").and_then(|v| v.as_s().ok()) == Some(&acct.account_id.to_string()))
        .count();
    assert_eq!(refunds_of_account, 0);
    // And the order is refundable as it was.
    let ok = refund(&acct, json!({"payment_order_id": po, "amount": "10.00"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    wait_refund(&acct, ok.json["refund_id"].as_str().unwrap(), "SUCCEEDED").await;
    stack().assert_invariants().await;
}
