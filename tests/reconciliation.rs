//! Reconciliation on the local twin (issue 12): the daily loop from `fetch_settlement` (the
//! sandbox's Reporting API) through S3 and ReconcileQueue to `reconcile_settlement`; every
//! break type injected through the sandbox; re-runs, bad files and faults. The tests take turns
//! (`TURN`): each reconciles its own interval of the one sandbox, for its own account.

use std::time::Duration;

use chrono::Utc;
use common::{new_key, Account, Stack};
use serde_json::{json, Value};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This binary's stack: no settling window (every record of the interval is due in its file),
/// immediate queue retries, payouts settled by the sandbox's clock.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "reconciliation",
        params: &[
            ("RetryBackoffBaseSeconds", "0"),
            ("PspRetryBudgetMs", "2000"),
            ("PspAttemptTimeoutMs", "1000"),
            ("ConsumerVisibilityTimeout", "3"),
            ("SettlingWindowSeconds", "0"),
        ],
        on_disk: false,
        env: &[
            ("SANDBOX_PAYOUT_SETTLE_MS", "600"),
            ("SANDBOX_REPORT_RUN_MS", "300"),
        ],
    })
}

const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";

async fn psp(method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
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
async fn psp_balance_usd() -> i64 {
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
async fn paid(acct: &Account, body: Value) -> Value {
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["checkout_id"].as_str().unwrap().to_owned();
    pay(&r.json).await;
    common::eventually(&format!("checkout {id} SUCCESS"), 20, || async {
        let c = acct.get(&format!("/v1/checkouts/{id}")).await.json;
        (c["status"] == "SUCCESS").then_some(c)
    })
    .await
}

async fn pay(checkout: &Value) {
    let url = checkout["psp_redirect_url"].as_str().unwrap();
    let page = common::no_redirects()
        .post(url)
        .form(&[("card_number", "4000000000000077")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
}

fn single(seller: &str, amount: &str) -> Value {
    json!({"buyer_id": "buyer_1", "seller_id": seller, "amount": amount, "currency": "USD",
           "order_id": format!("order_{}", &new_key()[..8])})
}

fn multi(lines: &[(&str, &str)]) -> Value {
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
fn second() -> i64 {
    Utc::now().timestamp()
}

/// Waits until the next whole second, so an interval starting or ending now is clean.
async fn next_second() -> i64 {
    let now = Utc::now();
    let wait = 1000 - i64::from(now.timestamp_subsec_millis());
    tokio::time::sleep(Duration::from_millis(wait as u64 + 20)).await;
    second()
}

/// Fires `fetch_settlement` for `[start, end)` and `acct`, as an operator would invoke it.
async fn fetch(acct: &Account, start: i64, end: i64) -> Value {
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
fn plain(v: &aws_sdk_dynamodb::types::AttributeValue) -> Value {
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

async fn recon_items(pk_prefix: &str) -> Vec<Value> {
    let items = stack().scan_all("ReconciliationTable").await;
    items
        .into_iter()
        .map(|i| plain(&aws_sdk_dynamodb::types::AttributeValue::M(i)))
        .filter(|v| v["pk"].as_str().is_some_and(|p| p.starts_with(pk_prefix)))
        .collect()
}

/// The runs of `acct`, finished.
async fn finished_runs(acct: &Account, n: usize) -> Vec<Value> {
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

async fn breaks_of(run_id: &str) -> Vec<Value> {
    let mut b: Vec<Value> = recon_items(&format!("RUN#{run_id}"))
        .await
        .into_iter()
        .filter(|v| v["entity"] == "reconciliation_break")
        .collect();
    b.sort_by_key(|v| v["line"].as_u64().unwrap_or(0));
    b
}

fn count(run: &Value, field: &str) -> u64 {
    run[field]
        .as_u64()
        .unwrap_or_else(|| run[field].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
}

#[tokio::test]
async fn a_clean_day_reconciles_with_no_breaks_books_the_fees_and_matches_the_psp_balance() {
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
    let acct = stack().new_account(None).await;
    let balance_before = psp_balance_usd().await;
    let start = next_second().await;

    let a = paid(&acct, single("seller_a", "100.00")).await;
    let b = paid(&acct, multi(&[("seller_a", "40.00"), ("seller_b", "60.00")])).await;
    paid(&acct, single("seller_b", "12.34")).await;
    // A partial refund of the multi-seller checkout's second order.
    let po = b["payment_orders"][1]["payment_order_id"].as_str().unwrap();
    let r = acct
        .post(
            "/v1/refunds",
            Some(&new_key()),
            &json!({"payment_order_id": po, "amount": "10.00"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let refund_id = r.json["refund_id"].as_str().unwrap().to_owned();
    common::eventually("the refund SUCCEEDED", 30, || async {
        (acct.get(&format!("/v1/refunds/{refund_id}")).await.json["status"] == "SUCCEEDED").then_some(())
    })
    .await;
    // A payout of seller_a's wallet to a connected account.
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
            "/v1/sellers/seller_a/payout_account",
            &json!({"psp_account_id": connected["id"]}).to_string(),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    common::eventually("seller_a's wallet credited", 30, || async {
        let w = acct.get("/v1/wallets/seller_a").await.json;
        (w["balances"][0]["available"] == "136.50").then_some(())
    })
    .await;
    let p = acct
        .post(
            "/v1/payouts",
            Some(&new_key()),
            &json!({"seller_id": "seller_a", "amount": "50.00", "currency": "USD"}).to_string(),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let payout_id = p.json["payout_id"].as_str().unwrap().to_owned();
    common::eventually("the payout PAID", 45, || async {
        (acct.get(&format!("/v1/payouts/{payout_id}")).await.json["status"] == "PAID").then_some(())
    })
    .await;
    stack().assert_invariants().await;
    let end = next_second().await;

    let fetched = fetch(&acct, start, end).await;
    assert_eq!(
        fetched["key"],
        format!("psp/{}/{start}-{end}.csv", acct.account_id),
        "{fetched}"
    );
    let runs = finished_runs(&acct, 1).await;
    let run = &runs[0];
    assert_eq!(run["run_status"], "SUCCEEDED", "{run}");
    let breaks = breaks_of(run["run_id"].as_str().unwrap()).await;
    assert!(breaks.is_empty(), "a clean day has no breaks: {breaks:#?}");
    // Three charges, one refund, one transfer: each matched once.
    assert_eq!(count(run, "rows"), 5, "{run}");
    assert_eq!(count(run, "matched"), 5, "{run}");
    assert_eq!(count(run, "fees_booked"), 3, "{run}");
    // Our books now say what the PSP's balance says (what this test moved of it).
    let ours = run["psp_receivable"]["USD"].as_i64().unwrap();
    let theirs = run["psp_balance"]["USD"].as_i64().unwrap();
    assert_eq!(ours, theirs - balance_before, "{run}");
    // 2.9% + 0.30 on each charge: 100.00 → 3.20, 100.00 → 3.20, 12.34 → 0.66.
    let ledger_fee_lines = stack().ledger_transaction_ids().await;
    assert!(
        ledger_fee_lines.iter().any(|id| id.starts_with("ltx_pspfee_")),
        "the fees are booked: {ledger_fee_lines:?}"
    );
    assert_eq!(
        stack()
            .get_object_text(
                "SettlementBucket",
                &format!("reports/{}.csv", run["run_id"].as_str().unwrap())
            )
            .await
            .map(|t| t.lines().count()),
        Some(1),
        "the report has its header and no break"
    );
    stack().assert_invariants().await;
    let _ = a;
}
