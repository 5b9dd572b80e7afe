//! A clean day on the local twin (issue 12), with a sandbox PSP of its own so that its whole
//! balance is this day's: single and multi-seller checkouts, a refund, a seller's payout, the
//! platform's payout to its bank and a fee, then the daily loop from `fetch_settlement` (the
//! sandbox's Reporting API) through S3 and ReconcileQueue to `reconcile_settlement`: no breaks,
//! the PSP's fees booked to the cent, and our `psp_receivable` equal to the PSP's balance.

use common::{new_key, Stack};
use serde_json::json;

#[path = "reconciliation_helpers.rs"]
mod helpers;
use helpers::*;

/// This binary's stack: payouts settled by the sandbox's clock, reports ready at once.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "reconciliation_day",
        params: &[
            ("RetryBackoffBaseSeconds", "0"),
            ("ConsumerVisibilityTimeout", "3"),
            ("SettlingWindowSeconds", "0"),
            ("RepairSchedule", "rate(1 day)"),
        ],
        on_disk: false,
        env: &[
            ("SANDBOX_PAYOUT_SETTLE_MS", "600"),
            ("SANDBOX_REPORT_RUN_MS", "300"),
        ],
    })
}

#[tokio::test]
async fn a_clean_day_reconciles_with_no_breaks_books_the_fees_and_matches_the_psp_balance() {
    let acct = stack().new_account(None).await;
    assert_eq!(psp_balance_usd().await, 0, "this binary's sandbox starts empty");
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
    with_payout_account(&acct, "seller_a").await;
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
    // The platform pays 20.00 of its PSP balance out to its own bank, and the PSP charges a
    // fee of 1.50 apart from any charge.
    let bank_payout = psp(
        reqwest::Method::POST,
        "/v1/payouts",
        &[("amount", "2000"), ("currency", "usd")],
    )
    .await;
    stack()
        .sandbox_admin(
            "/__sandbox/balance_transactions",
            Some(
                json!({"type": "stripe_fee", "amount": -150, "currency": "usd", "description": "Radar fee"}),
            ),
        )
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
    // Three charges, one refund, one transfer: each matched once; the bank payout and the fee
    // row are the platform's own, booked.
    assert_eq!(count(run, "rows"), 7, "{run}");
    assert_eq!(count(run, "matched"), 5, "{run}");
    assert_eq!(count(run, "fees_booked"), 4, "{run}");
    // Our books now say what the PSP's balance says, to the cent.
    let ours = run["psp_receivable"]["USD"].as_i64().unwrap();
    let theirs = run["psp_balance"]["USD"].as_i64().unwrap();
    assert_eq!(ours, theirs, "{run}");
    assert_eq!(
        theirs,
        psp_balance_usd().await,
        "the run reported the PSP's balance"
    );
    assert!(theirs > 0);
    // 2.9% + 0.30 on each charge: 100.00 → 3.20, 100.00 → 3.20, 12.34 → 0.66.
    let ids = stack().ledger_transaction_ids().await;
    assert!(
        ids.iter().any(|id| id.starts_with("ltx_pspfee_")),
        "the fees are booked: {ids:?}"
    );
    // Every fee the PSP took in the interval, to the cent: each charge's, and the fee row.
    let txns = psp(
        reqwest::Method::GET,
        &format!("/v1/balance_transactions?limit=100&created[gte]={start}&created[lt]={end}"),
        &[],
    )
    .await;
    let taken: i64 = txns["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["fee"].as_i64().unwrap()
                + if t["type"] == "stripe_fee" {
                    -t["net"].as_i64().unwrap()
                } else {
                    0
                }
        })
        .sum();
    assert_eq!(
        taken,
        320 + 320 + 66 + 150,
        "2.9% + 0.30 a charge, and the 1.50 fee: {txns}"
    );
    let expense = acct.get("/v1/ledger/accounts/psp_fee_expense").await.json;
    assert_eq!(expense["balances"][0]["balance"], "8.56", "{expense}");
    assert!(
        ids.contains(&format!(
            "ltx_bankpayout_{}",
            bank_payout["balance_transaction"].as_str().unwrap()
        )),
        "the bank payout is booked to bank_in_transit: {bank_payout} {ids:?}"
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
