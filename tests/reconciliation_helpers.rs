//! What the reconciliation tests share (`tests/reconciliation.rs`, `tests/reconciliation_day.rs`):
//! the sandbox's API, paying on its page, firing fetch_settlement and reading runs and breaks.
//! Each binary that includes this module defines its own `stack()`.
#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use common::{new_key, Account};
use serde_json::{json, Value};

use super::stack;

pub const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";

pub async fn psp(method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
    let resp = reqwest::Client::new()
        .request(method, format!("{}{path}", stack().psp))
        .bearer_auth(PSP_SECRET_KEY)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// The platform's balance at the sandbox, available + pending, in USD cents.
pub async fn psp_balance_usd() -> i64 {
    let b = psp(reqwest::Method::GET, "/v1/balance", &[]).await;
    ["available", "pending"]
        .iter()
        .flat_map(|k| b[k].as_array().cloned().unwrap_or_default())
        .filter(|a| a["currency"] == "usd")
        .map(|a| a["amount"].as_i64().unwrap())
        .sum()
}

/// A checkout paid on the sandbox's hosted page with Stripe's 0077 card (funds available at
/// once), once its webhook has made it SUCCESS.
pub async fn paid(acct: &Account, body: Value) -> Value {
    paid_with(acct, body, "4000000000000077").await
}

pub async fn paid_with(acct: &Account, body: Value, card: &str) -> Value {
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    pay_with(&r.json, card).await;
    common::eventually(&format!("checkout {id} SUCCESS"), 20, || async {
        let c = acct.get(&format!("/v1/checkouts/{id}")).await.json;
        (c["status"] == "SUCCESS").then_some(c)
    })
    .await
}

pub async fn pay(checkout: &Value) {
    pay_with(checkout, "4000000000000077").await
}

pub async fn pay_with(checkout: &Value, card: &str) {
    let url = checkout["psp_redirect_url"].as_str().unwrap();
    let page = common::no_redirects()
        .post(url)
        .form(&[("card_number", card)])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
}

pub fn single(seller: &str, amount: &str) -> Value {
    json!({"buyer_id": "buyer_1", "seller_id": seller, "amount": amount, "currency": "USD",
           "order_id": format!("order_{}", &new_key()[..8])})
}

pub fn multi(lines: &[(&str, &str)]) -> Value {
    let total: rust_decimal::Decimal = lines
        .iter()
        .map(|(_, a)| a.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    json!({"buyer_id": "buyer_1", "currency": "USD", "total_amount": total.to_string(),
           "order_id": format!("order_{}", &new_key()[..8]),
           "line_items": lines.iter().enumerate().map(|(i, (s, a))| json!({"seller_id": s, "amount": a,
               "sub_order_id": format!("sub_{i}")})).collect::<Vec<_>>()})
}

/// Now, in whole seconds (the PSP's balance transactions are stamped in seconds).
pub fn second() -> i64 {
    Utc::now().timestamp()
}

/// Waits until the next whole second, so an interval starting or ending now is clean.
pub async fn next_second() -> i64 {
    let now = Utc::now();
    let wait = 1000 - i64::from(now.timestamp_subsec_millis());
    tokio::time::sleep(Duration::from_millis(wait as u64 + 20)).await;
    second()
}

/// Fires `fetch_settlement` for `[start, end)` and `acct`, as an operator would invoke it.
pub async fn fetch(acct: &Account, start: i64, end: i64) -> Value {
    let r = common::send(
        reqwest::Client::new()
            .post(format!("{}/__twin/schedules/FetchSettlementFunction/Daily/fire", stack().control))
            .header("x-twin-control", "1")
            .json(&json!({"interval_start": start, "interval_end": end, "account_id": acct.account_id.as_str()})),
    )
    .await;
    assert_eq!(r.status, 200, "fetch_settlement: {}", r.text);
    r.json["result"].clone()
}

/// An item as plain JSON (numbers as numbers).
pub fn plain(v: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => json!(s),
        A::N(n) => n.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(n)),
        A::Bool(b) => json!(b),
        A::M(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        A::L(l) => Value::Array(l.iter().map(plain).collect()),
        _ => Value::Null,
    }
}

pub async fn recon_items(pk_prefix: &str) -> Vec<Value> {
    let items = stack().scan_all("ReconciliationTable").await;
    items
        .into_iter()
        .map(|i| plain(&aws_sdk_dynamodb::types::AttributeValue::M(i)))
        .filter(|v| v["pk"].as_str().is_some_and(|p| p.starts_with(pk_prefix)))
        .collect()
}

/// The runs of `acct`, finished.
pub async fn finished_runs(acct: &Account, n: usize) -> Vec<Value> {
    common::eventually(&format!("{n} finished run(s)"), 60, || async {
        let runs: Vec<Value> = recon_items("RUN#")
            .await
            .into_iter()
            .filter(|v| {
                v["sk"] == "RUN"
                    && v["account_id"] == acct.account_id.as_str()
                    && v["run_status"] != "RUNNING"
            })
            .collect();
        (runs.len() >= n).then_some(runs)
    })
    .await
}

pub async fn breaks_of(run_id: &str) -> Vec<Value> {
    let mut b: Vec<Value> = recon_items(&format!("RUN#{run_id}"))
        .await
        .into_iter()
        .filter(|v| v["entity"] == "reconciliation_break")
        .collect();
    b.sort_by_key(|v| v["line"].as_u64().unwrap_or(0));
    b
}

pub fn count(run: &Value, field: &str) -> u64 {
    run[field]
        .as_u64()
        .unwrap_or_else(|| run[field].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
}

/// Gives `seller` a payout account: a connected account at the sandbox whose bank pays out
/// (Stripe's test account number 000123456789).
pub async fn with_payout_account(acct: &Account, seller: &str) {
    let connected = psp(
        reqwest::Method::POST,
        "/v1/accounts",
        &[
            ("type", "custom"),
            ("external_account[object]", "bank_account"),
            ("external_account[routing_number]", "110000000"),
            ("external_account[account_number]", "000123456789"),
        ],
    )
    .await;
    let put = acct
        .put(
            &format!("/v1/sellers/{seller}/payout_account"),
            &json!({"psp_account_id": connected["id"]}).to_string(),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
}
