//! Reconciliation on the local twin (issue 12): every break type injected through the sandbox;
//! re-runs, bad files and faults; repair_stuck. The tests take turns (`TURN`): each reconciles
//! its own interval of the one sandbox, for its own account. The clean day, whose books must
//! equal the PSP's whole balance, has a sandbox of its own (`tests/reconciliation_day.rs`).

use std::time::Duration;

use common::{new_key, Stack};
use serde_json::{json, Value};

#[path = "reconciliation_helpers.rs"]
mod helpers;
use helpers::*;

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
            // repair_stuck runs when a test fires it, and then treats anything open as stuck.
            ("RepairSchedule", "rate(1 day)"),
            ("RepairStuckAfterSeconds", "0"),
        ],
        // DynamoDB Local on disk, so a test can stop it and start it again.
        on_disk: true,
        env: &[
            ("SANDBOX_PAYOUT_SETTLE_MS", "600"),
            ("SANDBOX_REPORT_RUN_MS", "300"),
        ],
    })
}

/// The sandbox's balance transaction of one of our checkouts' charges (its `sandbox` member
/// names the session's `client_reference_id`, our checkout id).
async fn charge_txn(checkout_id: &str) -> Value {
    let list = psp(
        reqwest::Method::GET,
        "/v1/balance_transactions?limit=100&type=charge",
        &[],
    )
    .await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sandbox"]["client_reference_id"] == checkout_id)
        .cloned()
        .unwrap_or_else(|| panic!("no charge for {checkout_id} in {list}"))
}

fn kinds(breaks: &[Value]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = breaks
        .iter()
        .map(|b| {
            (
                b["break_type"].as_str().unwrap().to_owned(),
                b["break_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    k.sort();
    k
}

#[tokio::test]
async fn each_injected_break_is_found_once_with_the_rows_and_our_values() {
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
    let acct = stack().new_account(None).await;
    let start = next_second().await;

    // Altered in the report: 100.00 at the PSP becomes 99.00.
    let altered = paid(&acct, single("seller_a", "100.00")).await;
    // Left out of the report.
    let omitted = paid(&acct, single("seller_a", "20.00")).await;
    // In the report twice.
    let doubled = paid(&acct, single("seller_b", "30.00")).await;
    // Its webhooks never arrive: the checkout stays EXECUTING until the run repairs it.
    let r = acct.create(&single("seller_c", "45.00")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let dropped = r.json;
    stack()
        .sandbox_admin(
            "/__sandbox/faults",
            Some(json!({"webhooks": {"drop_sessions": [dropped["psp_token"]]}})),
        )
        .await;
    pay(&dropped).await;
    // A charge we never created: a session made at the PSP directly, paid.
    let foreign = psp(
        reqwest::Method::POST,
        "/v1/checkout/sessions",
        &[
            ("mode", "payment"),
            ("line_items[0][quantity]", "1"),
            ("line_items[0][price_data][currency]", "usd"),
            ("line_items[0][price_data][unit_amount]", "777"),
            ("line_items[0][price_data][product_data][name]", "not ours"),
            ("success_url", "https://shop.example.com/done"),
        ],
    )
    .await;
    pay(&json!({"psp_redirect_url": foreign["url"]})).await;
    // Money nobody explains.
    stack()
        .sandbox_admin(
            "/__sandbox/balance_transactions",
            Some(json!({"type": "adjustment", "amount": -123, "currency": "usd", "description": "chargeback fee"})),
        )
        .await;
    let altered_txn = charge_txn(altered["checkout_id"].as_str().unwrap()).await;
    let omitted_txn = charge_txn(omitted["checkout_id"].as_str().unwrap()).await;
    let doubled_txn = charge_txn(doubled["checkout_id"].as_str().unwrap()).await;
    stack()
        .sandbox_admin(
            "/__sandbox/report_faults",
            Some(json!({
                "alter": [{"id": altered_txn["id"], "gross": "99.00"}],
                "omit": [omitted_txn["id"]],
                "duplicate": [doubled_txn["id"]],
                "append_lines": ["txn_bad,2026-11-30 10:00:00,2026-12-02 00:00:00,usd,ten,0.30,9.70"]
            })),
        )
        .await;
    let dropped_id = dropped["checkout_id"].as_str().unwrap().to_owned();
    assert_eq!(
        acct.get(&format!("/v1/checkouts/{dropped_id}")).await.json["status"],
        "EXECUTING",
        "its webhooks were dropped"
    );
    stack().settled("the paid checkouts booked", |r, _| r.ok).await;
    let end = next_second().await;

    fetch(&acct, start, end).await;
    let run = finished_runs(&acct, 1).await.remove(0);
    stack().sandbox_reset().await;
    assert_eq!(run["run_status"], "SUCCEEDED", "{run}");
    let breaks = breaks_of(run["run_id"].as_str().unwrap()).await;
    let s = |k: &str, st: &str| (k.to_owned(), st.to_owned());
    assert_eq!(
        kinds(&breaks),
        vec![
            s("amount_mismatch", "open"),
            s("duplicate", "open"),
            s("malformed_row", "open"),
            s("missing_at_psp", "open"),
            s("missing_in_ours", "open"),
            s("status_mismatch", "auto_resolved"),
            s("unexplained_adjustment", "open"),
        ],
        "{breaks:#?}"
    );
    let find = |k: &str| breaks.iter().find(|b| b["break_type"] == k).unwrap().clone();
    let amount = find("amount_mismatch");
    assert_eq!(amount["row"]["gross"], "99.00");
    assert_eq!(amount["ours"]["amount"], "100.00");
    assert_eq!(amount["ours"]["id"], altered["checkout_id"]);
    let missing = find("missing_at_psp");
    assert_eq!(missing["ours"]["id"], omitted["checkout_id"]);
    assert!(missing["line"].is_null());
    let dup = find("duplicate");
    assert_eq!(dup["row"]["balance_transaction_id"], doubled_txn["id"]);
    let foreign_break = find("missing_in_ours");
    assert_eq!(foreign_break["row"]["gross"], "7.77");
    let bad = find("malformed_row");
    assert!(bad["reason"].as_str().unwrap().contains("columns"), "{bad}");
    assert!(bad["line"].as_u64().unwrap() > 1);
    let adjustment = find("unexplained_adjustment");
    assert_eq!(adjustment["row"]["gross"], "-1.23");
    let repaired = find("status_mismatch");
    assert_eq!(repaired["ours"]["id"], dropped_id.as_str());
    assert!(
        repaired["resolution_note"].as_str().unwrap().contains("evt_"),
        "{repaired}"
    );
    // The repair settled the checkout through the webhook's own path: the ledger follows.
    assert_eq!(
        acct.get(&format!("/v1/checkouts/{dropped_id}")).await.json["status"],
        "SUCCESS"
    );
    stack().settled("the repaired checkout booked", |r, _| r.ok).await;
    // The adjustment sits in suspense until a person explains it.
    let ids = stack().ledger_transaction_ids().await;
    assert!(ids.contains(&format!(
        "ltx_suspense_{}",
        adjustment["row"]["balance_transaction_id"].as_str().unwrap()
    )));
    assert_eq!(count(&run, "auto_resolved"), 1, "{run}");
    // Matched: the first of the doubled rows, and the repaired one.
    assert_eq!(count(&run, "matched"), 2, "{run}");
}

/// A small settlement file of one row for a checkout of ours (its charge at 100.00 with the
/// PSP's fee, through the payment intent our checkout keeps), as the PSP would write it.
async fn file_for(checkout_id: &str, txn: &str) -> String {
    let pi = payment_intent_of(checkout_id).await;
    format!(
        "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
source_id,charge_id,payment_intent_id,automatic_payout_id,payment_metadata[checkout_id]\n\
{txn},2026-11-30 10:00:00,2026-12-02 00:00:00,usd,100.00,3.20,96.80,charge,ch_{txn},ch_{txn},{pi},,{checkout_id}\n"
    )
}

/// The payment intent a paid checkout of ours keeps (the API does not show it).
async fn payment_intent_of(checkout_id: &str) -> String {
    use shared::ports::Checkouts;
    let id = shared::domain::ids::CheckoutId::parse(checkout_id).unwrap();
    let (checkout, _) = stack().store().await.get_checkout(&id).await.unwrap().unwrap();
    checkout
        .payment_intent
        .unwrap_or_else(|| panic!("checkout {checkout_id} has no payment intent"))
        .as_str()
        .to_owned()
}

fn fee_txns(ids: &[String], run_id: &str) -> usize {
    ids.iter()
        .filter(|id| id.starts_with(&format!("ltx_pspfee_{run_id}_")))
        .count()
}

#[tokio::test]
async fn the_same_file_twice_is_one_run_and_a_file_that_is_not_a_report_fails_with_its_reason() {
    let _turn = TURN.lock().await;
    let acct = stack().new_account(None).await;
    let c = paid(&acct, single("seller_a", "100.00")).await;
    let txn = format!("txn_{}", &new_key()[..12]);
    let file = file_for(c["checkout_id"].as_str().unwrap(), &txn).await;
    let a = acct.account_id.as_str();
    stack()
        .put_object("SettlementBucket", &format!("psp/{a}/first.csv"), file.clone())
        .await;
    let run = finished_runs(&acct, 1).await.remove(0);
    assert_eq!(run["run_status"], "SUCCEEDED", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            count(&run, "rows"),
            count(&run, "matched"),
            count(&run, "fees_booked")
        ),
        (1, 1, 1),
        "{run}"
    );
    assert!(
        run["interval_start"].is_null(),
        "a hand-made upload names no interval: {run}"
    );
    // The same bytes under another key: the same run, nothing booked again.
    stack()
        .put_object("SettlementBucket", &format!("psp/{a}/again.csv"), file.clone())
        .await;
    common::eventually("the second upload seen", 30, || async {
        stack()
            .function_logs()
            .contains("same content as an earlier run")
            .then_some(())
    })
    .await;
    let runs = finished_runs(&acct, 1).await;
    assert_eq!(runs.len(), 1, "one run for one content: {runs:#?}");
    assert_eq!(fee_txns(&stack().ledger_transaction_ids().await, &run_id), 1);
    assert!(breaks_of(&run_id).await.is_empty());

    // Other content (a re-issued report) with the same balance transaction, and a second
    // charge for the same checkout through another payment intent: another run, whose two
    // rows are duplicates (the first found by the mark in its window, the second by the
    // payment intent our checkout keeps), booking nothing.
    let again = file_for(c["checkout_id"].as_str().unwrap(), &txn).await;
    let pi = payment_intent_of(c["checkout_id"].as_str().unwrap()).await;
    let second_charge = again
        .lines()
        .nth(1)
        .unwrap()
        .replace(&txn, &format!("{txn}_2"))
        .replace(&pi, "pi_another");
    let reissued = format!("{again}{second_charge}\n");
    stack()
        .put_object("SettlementBucket", &format!("psp/{a}/reissued.csv"), reissued)
        .await;
    let runs = finished_runs(&acct, 2).await;
    let later = runs.iter().find(|r| r["run_id"] != run_id.as_str()).unwrap();
    let later_id = later["run_id"].as_str().unwrap();
    assert_eq!((count(later, "rows"), count(later, "matched")), (2, 0), "{later}");
    let dups = breaks_of(later_id).await;
    assert_eq!(dups.len(), 2, "{dups:#?}");
    assert!(dups.iter().all(|b| b["break_type"] == "duplicate"), "{dups:#?}");
    assert_eq!(fee_txns(&stack().ledger_transaction_ids().await, later_id), 0);

    // Not CSV at all, and CSV without the report's columns: FAILED, with the reason.
    stack()
        .put_object(
            "SettlementBucket",
            &format!("psp/{a}/binary.csv"),
            vec![0xff_u8, 0xfe, 0x00, 0x01, 0x80, b'\n', 0xc3],
        )
        .await;
    stack()
        .put_object(
            "SettlementBucket",
            &format!("psp/{a}/other.csv"),
            "name,amount\nx,1\n",
        )
        .await;
    // An empty file is a day with nothing in it (under a key S3 must encode in its event).
    stack()
        .put_object("SettlementBucket", &format!("psp/{a}/empty day+1:é.csv"), "")
        .await;
    let runs = finished_runs(&acct, 5).await;
    let by_key = |k: &str| {
        runs.iter()
            .find(|r| r["object_key"].as_str().unwrap().ends_with(k))
            .unwrap()
            .clone()
    };
    let binary = by_key("binary.csv");
    assert_eq!(binary["run_status"], "FAILED", "{binary}");
    assert!(
        binary["failure_reason"].as_str().unwrap().starts_with("not a"),
        "{binary}"
    );
    let other = by_key("other.csv");
    assert_eq!(other["run_status"], "FAILED");
    assert!(
        other["failure_reason"]
            .as_str()
            .unwrap()
            .contains("missing required column(s): balance_transaction_id"),
        "{other}"
    );
    let empty = by_key(&format!("psp/{a}/empty day+1:é.csv"));
    assert_eq!(
        (empty["run_status"].as_str(), count(&empty, "rows")),
        (Some("SUCCEEDED"), 0)
    );
    for r in [&binary, &other] {
        assert_eq!(
            fee_txns(
                &stack().ledger_transaction_ids().await,
                r["run_id"].as_str().unwrap()
            ),
            0
        );
    }
    stack().assert_invariants().await;
}

#[tokio::test]
async fn a_run_cut_short_is_retried_and_books_nothing_twice() {
    let _turn = TURN.lock().await;
    let s = stack();
    let acct = s.new_account(None).await;
    let c = paid(&acct, single("seller_a", "100.00")).await;
    let a = acct.account_id.as_str();
    let name = format!("down_{}", &new_key()[..8]);
    let file = file_for(
        c["checkout_id"].as_str().unwrap(),
        &format!("txn_{}", &new_key()[..12]),
    )
    .await;
    s.settled("the checkout booked", |r, _| r.ok).await;

    // DynamoDB down when the file arrives: every receive fails on our side, backs off, and
    // the notification ends in ReconcileDLQ with the reason.
    s.twin(reqwest::Method::POST, "dynamodb/stop").await;
    s.put_object("SettlementBucket", &format!("psp/{a}/{name}.csv"), file.clone())
        .await;
    let dead = s.dead_letter("ReconcileDLQ", &name, 60).await;
    let reason = dead
        .message_attributes()
        .and_then(|m| m.get("failure_reason"))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("unavailable"), "{reason:?} / {dead:?}");
    let back = s.twin(reqwest::Method::POST, "dynamodb/start").await;
    assert_eq!(back["dynamodb"], "running");
    // `make redrive` finishes it.
    s.redrive_one("ReconcileDLQ", "ReconcileQueue", &name).await;
    let run = finished_runs(&acct, 1).await.remove(0);
    assert_eq!(run["run_status"], "SUCCEEDED", "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let ledger_before = s.ledger_transaction_ids().await;
    assert_eq!(fee_txns(&ledger_before, &run_id), 1);

    // A crash mid-run leaves the run RUNNING with part of its writes done: the notification
    // comes back and the run goes again over the same writes.
    let store = s.store().await;
    store
        .client
        .update_item()
        .table_name("ReconciliationTable")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("RUN#{run_id}")),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("RUN".into()))
        .update_expression("SET run_status = :r REMOVE finished_at")
        .expression_attribute_values(":r", aws_sdk_dynamodb::types::AttributeValue::S("RUNNING".into()))
        .send()
        .await
        .unwrap();
    s.put_object("SettlementBucket", &format!("psp/{a}/{name}-again.csv"), file)
        .await;
    let again = common::eventually("the run finished again", 60, || async {
        let runs = finished_runs(&acct, 1).await;
        runs.into_iter()
            .find(|r| r["run_id"] == run_id.as_str() && r["run_status"] == "SUCCEEDED")
    })
    .await;
    assert_eq!(
        (count(&again, "matched"), count(&again, "fees_booked")),
        (1, 1),
        "{again}"
    );
    assert!(
        breaks_of(&run_id).await.is_empty(),
        "the row it reconciled itself is not a duplicate"
    );
    assert_eq!(
        s.ledger_transaction_ids().await,
        ledger_before,
        "nothing booked twice"
    );
    s.assert_invariants().await;
}

/// Fires `repair_stuck` now: its summary.
async fn repair() -> Value {
    let out = stack()
        .twin(reqwest::Method::POST, "schedules/RepairStuckFunction/Every/fire")
        .await;
    out["result"].clone()
}

#[tokio::test]
async fn repair_stuck_settles_what_waits_on_the_psp_after_its_webhooks_were_dropped() {
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
    let acct = stack().new_account(None).await;
    // A checkout all of whose webhooks are dropped: EXECUTING, though the buyer paid.
    let r = acct.create(&single("seller_r", "80.00")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let c = r.json;
    let id = c["checkout_id"].as_str().unwrap().to_owned();
    stack()
        .sandbox_admin(
            "/__sandbox/faults",
            Some(json!({"webhooks": {"drop_sessions": [c["psp_token"]]}})),
        )
        .await;
    pay(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        acct.get(&format!("/v1/checkouts/{id}")).await.json["status"],
        "EXECUTING"
    );
    let summary = repair().await;
    assert!(
        summary["undelivered_applied"].as_u64().unwrap() + summary["stuck_applied"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(
        acct.get(&format!("/v1/checkouts/{id}")).await.json["status"],
        "SUCCESS",
        "{summary}"
    );
    common::eventually("the seller credited", 30, || async {
        let w = acct.get("/v1/wallets/seller_r").await.json;
        (w["balances"][0]["balance"] == "78.00").then_some(())
    })
    .await;
    // Again: nothing new (each event's marker makes it a duplicate).
    let again = repair().await;
    assert_eq!(again["stuck_applied"], 0, "{again}");
    assert_eq!(again["undelivered_applied"], 0, "{again}");

    // A refund that goes pending at the PSP (Stripe's 7726 card) and succeeds a second later,
    // every webhook of it dropped: PENDING here until repair_stuck reads its events.
    let paid_c = paid_with(&acct, single("seller_r", "30.00"), "4000000000007726").await;
    let po = paid_c["payment_orders"][0]["payment_order_id"].as_str().unwrap();
    stack()
        .sandbox_admin("/__sandbox/faults", Some(json!({"webhooks": {"drop_next": 50}})))
        .await;
    let rf = acct
        .post(
            "/v1/refunds",
            Some(&new_key()),
            &json!({"payment_order_id": po, "amount": "5.00"}).to_string(),
        )
        .await;
    assert_eq!(rf.status, 201, "{}", rf.text);
    let refund_id = rf.json["refund_id"].as_str().unwrap().to_owned();
    common::eventually("the refund pending at the PSP", 30, || async {
        let r = acct.get(&format!("/v1/refunds/{refund_id}")).await.json;
        (!r["psp_refund_id"].is_null()).then_some(r)
    })
    .await;
    // The PSP settles it a second later; we never hear of it.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        acct.get(&format!("/v1/refunds/{refund_id}")).await.json["status"],
        "PENDING"
    );
    let summary = repair().await;
    stack().sandbox_reset().await;
    assert!(
        summary["undelivered_applied"].as_u64().unwrap() + summary["stuck_applied"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_eq!(
        acct.get(&format!("/v1/refunds/{refund_id}")).await.json["status"],
        "SUCCEEDED",
        "{summary}"
    );
    stack().settled("all booked", |r, _| r.ok).await;

    // A payout the bank pays a moment after it is sent, its payout.paid dropped: IN_TRANSIT
    // here until repair_stuck reads the connected account's events.
    with_payout_account(&acct, "seller_r").await;
    stack().settled("the refund booked", |r, _| r.ok).await;
    stack()
        .sandbox_admin("/__sandbox/faults", Some(json!({"webhooks": {"drop_next": 50}})))
        .await;
    let p = acct
        .post(
            "/v1/payouts",
            Some(&new_key()),
            &json!({"seller_id": "seller_r", "amount": "10.00", "currency": "USD"}).to_string(),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.text);
    let payout_id = p.json["payout_id"].as_str().unwrap().to_owned();
    common::eventually("the payout sent", 30, || async {
        (acct.get(&format!("/v1/payouts/{payout_id}")).await.json["status"] == "IN_TRANSIT").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        acct.get(&format!("/v1/payouts/{payout_id}")).await.json["status"],
        "IN_TRANSIT",
        "its webhooks were dropped"
    );
    let summary = repair().await;
    stack().sandbox_reset().await;
    assert!(summary["stuck_applied"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(
        acct.get(&format!("/v1/payouts/{payout_id}")).await.json["status"],
        "PAID",
        "{summary}"
    );
    stack().settled("all booked", |r, _| r.ok).await;
}
