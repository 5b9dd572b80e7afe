//! Payouts on the local twin (issue 11, in progress). So far: the PSP client's Connect calls
//! against the sandbox, each idempotent by the key derived from the payout id, so a retry, a
//! redrive or a crash between the calls never moves money twice.

use chrono::Utc;
use common::{new_key, Stack};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::adapters::stripe::{RetryPolicy, StripeClient};
use shared::domain::currency::Currency;
use shared::domain::ids::{AccountId, PayoutId, SellerId};
use shared::domain::money::Money;
use shared::domain::payouts::{
    Available, Payout, PayoutRequest, PspPayoutRequest, PspPayoutStatus, PspReversalRequest,
    PspTransferRequest,
};
use shared::domain::psp::PspAccountId;
use shared::ports::PayoutPsp;

const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";

/// This binary's stack: the sandbox's payouts move only when a test says so.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "payouts",
        params: &[],
        on_disk: false,
        env: &[("SANDBOX_PAYOUT_SETTLE_MS", "3600000")],
    })
}

async fn sandbox(method: reqwest::Method, path: &str, form: &[(&str, &str)], account: Option<&str>) -> Value {
    let mut r = reqwest::Client::new()
        .request(method, format!("{}{path}", stack().psp))
        .bearer_auth(PSP_SECRET_KEY)
        .form(form);
    if let Some(a) = account {
        r = r.header("Stripe-Account", a);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// A checkout paid on the sandbox's hosted page with Stripe's 0077 card: its funds are
/// available to transfer at once.
async fn fund_the_platform() {
    let acct = stack().new_account(None).await;
    let body = json!({"buyer_id": "buyer_1", "seller_id": "seller_1", "amount": "100.00", "currency": "USD",
                      "order_id": format!("order_{}", &new_key()[..8])});
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = r.json["psp_redirect_url"].as_str().unwrap();
    let paid = common::no_redirects()
        .post(url)
        .form(&[("card_number", "4000000000000077")])
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 303);
}

#[tokio::test]
async fn the_psp_client_makes_one_transfer_one_payout_and_one_reversal_per_payout() {
    fund_the_platform().await;
    let connected = sandbox(
        reqwest::Method::POST,
        "/v1/accounts",
        &[
            ("type", "custom"),
            ("external_account[object]", "bank_account"),
            ("external_account[routing_number]", "110000000"),
            ("external_account[account_number]", "000123456789"),
        ],
        None,
    )
    .await;
    let destination = PspAccountId::parse(connected["id"].as_str().unwrap()).unwrap();
    let psp = StripeClient::new(&stack().psp, PSP_SECRET_KEY, RetryPolicy::default()).unwrap();
    let seen = psp
        .account(&destination)
        .await
        .unwrap()
        .expect("the account exists");
    assert!(seen.payouts_enabled);
    let nobody = PspAccountId::parse("acct_nobody").unwrap();
    assert_eq!(
        psp.account(&nobody).await.unwrap(),
        None,
        "an unknown account is None, not an error"
    );

    let usd = Currency::parse("USD").unwrap();
    let mut payout = Payout::open(
        PayoutId::generate(),
        AccountId::parse("acct_bench").unwrap(),
        &PayoutRequest::new(SellerId::parse("seller_1").unwrap(), Decimal::new(1000, 2), usd).unwrap(),
        Some(destination.clone()),
        Some(Available {
            balance: Money::from_minor(1000, usd),
            held: Money::from_minor(0, usd),
        }),
        false,
        Utc::now(),
    )
    .unwrap();

    // The transfer, twice with its key: one transfer.
    let t1 = psp
        .create_transfer(&PspTransferRequest::of(&payout))
        .await
        .unwrap();
    let t2 = psp
        .create_transfer(&PspTransferRequest::of(&payout))
        .await
        .unwrap();
    assert_eq!(t1, t2, "the same transfer");
    let t = sandbox(
        reqwest::Method::GET,
        &format!("/v1/transfers/{}", t1.id),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (t["amount"].as_i64(), t["destination"].as_str()),
        (Some(1000), Some(destination.as_str()))
    );
    assert_eq!(t["transfer_group"], payout.id.as_str());
    payout.psp_transfer = Some(t1.id.clone());

    // The payout, as the connected account, twice with its key: one payout.
    let p1 = psp.create_payout(&PspPayoutRequest::of(&payout)).await.unwrap();
    let p2 = psp.create_payout(&PspPayoutRequest::of(&payout)).await.unwrap();
    assert_eq!(p1.id, p2.id, "the same payout");
    assert_eq!(p1.status, PspPayoutStatus::Pending);
    assert!(p1.arrival_date.is_some());
    let again = sandbox(
        reqwest::Method::GET,
        &format!("/v1/payouts/{}", p1.id),
        &[],
        Some(destination.as_str()),
    )
    .await;
    assert_eq!(again["amount"].as_i64(), Some(1000));

    // The bank sends it back; the transfer's reversal, twice with its key: one reversal.
    for status in ["in_transit", "failed"] {
        stack()
            .sandbox_admin(
                &format!("/__sandbox/payouts/{}/settle", p1.id),
                Some(json!({"status": status})),
            )
            .await;
    }
    let request = PspReversalRequest::of(&payout).expect("a transfer to reverse");
    let r1 = psp.reverse_transfer(&request).await.unwrap();
    let r2 = psp.reverse_transfer(&request).await.unwrap();
    assert_eq!(r1, r2, "the same reversal");
    let t = sandbox(
        reqwest::Method::GET,
        &format!("/v1/transfers/{}", t1.id),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (
            t["amount_reversed"].as_i64(),
            t["reversals"]["total_count"].as_i64()
        ),
        (Some(1000), Some(1))
    );
}

/// The issue's race at the store: a seller's wallet of 100.00, thirty payouts of 10.01 at once
/// through the create use case and DynamoDB Local. The hold is one conditional write, so nine
/// go through, the rest are refused with `balance_insufficient`, and `available` never goes
/// below zero.
#[tokio::test]
async fn thirty_payouts_at_once_never_overdraw_the_wallet() {
    use shared::app::auth::Authority;
    use shared::app::payouts::create::{create_payout, CreatePayout};
    use shared::app::Caller;
    use shared::domain::ids::ApiKeyId;
    use shared::domain::ledger::WalletChange;
    use shared::ports::{Payouts, WalletWriter};

    let store = stack().store().await;
    let ledger = stack().ledger().await;
    let account_id = AccountId::parse(&format!("acct_race_{}", &new_key()[..8])).unwrap();
    let seller = SellerId::parse("seller_race").unwrap();
    let usd = Currency::parse("USD").unwrap();
    // The seller's 100.00, in the ledger and in the wallet, as a payment would leave them.
    let seed = format!("evt_seed_{}", new_key());
    let tx = shared::domain::ledger::LedgerTransaction::new(
        format!("ltx_{seed}"),
        seed.clone(),
        account_id.clone(),
        None,
        "2026-12-01T00:00:00.000Z".into(),
        vec![
            shared::domain::ledger::Entry {
                account: shared::domain::ledger::LedgerAccount::PspReceivable,
                direction: shared::domain::ledger::Direction::Debit,
                amount: Money::from_minor(10_000, usd),
            },
            shared::domain::ledger::Entry {
                account: shared::domain::ledger::LedgerAccount::SellerPayable(seller.clone()),
                direction: shared::domain::ledger::Direction::Credit,
                amount: Money::from_minor(10_000, usd),
            },
        ],
    )
    .unwrap();
    shared::ports::LedgerWriter::append(&ledger, &tx).await.unwrap();
    ledger
        .apply_wallet_changes(
            &seed,
            &account_id,
            &[WalletChange {
                seller_id: seller.clone(),
                currency: usd,
                balance_minor: 10_000,
                held_minor: 0,
            }],
            "2026-12-01T00:00:00.000Z",
        )
        .await
        .unwrap();
    store
        .put_payout_account(
            &account_id,
            &seller,
            &PspAccountId::parse("acct_1Race").unwrap(),
            Utc::now(),
        )
        .await
        .unwrap();
    let caller = Caller {
        account_id: account_id.clone(),
        key_id: ApiKeyId::generate(),
    };
    let body = br#"{"seller_id":"seller_race","amount":"10.01","currency":"USD"}"#;
    let answers = futures::future::join_all((0..30).map(|i| {
        let (store, caller) = (&store, caller.clone());
        async move {
            let now = Utc::now();
            let key = format!("race-{i}");
            create_payout(
                store,
                Authority::Checked(caller),
                CreatePayout {
                    idempotency_key: Some(key.as_bytes()),
                    body,
                    now,
                    deadline_ms: now.timestamp_millis() + 10_000,
                },
            )
            .await
        }
    }))
    .await;
    let made = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|r| r.status == 201))
        .count();
    let refused = answers
        .iter()
        .filter(|a| {
            a.as_ref()
                .is_err_and(|e| e.status == 400 && e.code == "balance_insufficient")
        })
        .count();
    let other: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .filter(|e| e.code != "balance_insufficient")
        .map(|e| format!("{} {}", e.status, e.code))
        .collect();
    // A request that met the others' transactions too often may be told to retry (409); none
    // may take money that is not there.
    assert!(made <= 9, "{made} payouts of 10.01 out of 100.00");
    assert!(
        made + other.len() >= 9,
        "what fits is made (or told to retry): {made} made, {refused} refused, {other:?}"
    );
    assert!(other.iter().all(|o| o.starts_with("409")), "{other:?}");
    assert_eq!(made + refused + other.len(), 30);
    // The executor then sends them to a connected account the PSP does not have: each is
    // refused for good (FAILED, the PSP's code) and its hold released; the balance is untouched.
    let ids: Vec<PayoutId> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            PayoutId::parse(v["payout_id"].as_str().unwrap()).unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    loop {
        let mut done = 0;
        for id in &ids {
            let p = store.get_payout(id).await.unwrap().unwrap();
            if p.status == shared::domain::payouts::PayoutStatus::Failed {
                assert_eq!(p.failure_code.as_deref(), Some("resource_missing"), "{p:?}");
                done += 1;
            }
        }
        if done == ids.len() {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 30,
            "{done} of {} payouts refused",
            ids.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Every hold is a pending payout's, the wallet is the ledger's, available is balance less
    // held. (Waits for the pipeline: the holds' releases.)
    let report = stack().assert_invariants().await;
    assert!(report.payouts >= made as u64);
    let w = store
        .wallet_available(&account_id, &seller, usd)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (w.balance.minor(), w.held.minor()),
        (10_000, 0),
        "released, nothing paid out"
    );
}

/// A seller's available balance in USD as the wallet API shows it: (balance, available, held).
async fn wallet_usd(acct: &common::Account, seller: &str) -> Option<(String, String, String)> {
    let w = acct.get(&format!("/v1/wallets/{seller}")).await.json;
    let b = w["balances"]
        .as_array()
        .and_then(|bs| bs.iter().find(|b| b["currency"] == "USD").cloned())?;
    let s = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
    Some((s("balance"), s("available"), s("held")))
}

/// The API end to end: a seller paid 100.00 (97.50 after the fee) records its connected
/// account, and a payout holds what it takes; every bad request is a clear 4xx that writes
/// nothing.
#[tokio::test]
async fn a_seller_records_its_account_and_a_payout_holds_what_it_takes() {
    let s = stack();
    // Funds the platform can transfer at once (two 0077 charges).
    fund_the_platform().await;
    fund_the_platform().await;
    let acct = s.new_account(None).await;
    let seller = format!("seller_{}", &new_key()[..8]);
    s.paid_checkout(
        &acct,
        json!({"buyer_id": "b1", "seller_id": seller, "amount": "100.00", "currency": "USD",
               "order_id": format!("order_{}", &new_key()[..8])}),
    )
    .await;
    let started = std::time::Instant::now();
    while wallet_usd(&acct, &seller).await.is_none() {
        assert!(started.elapsed().as_secs() < 30, "the wallet is credited");
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let payout = |amount: &str| json!({"seller_id": seller, "amount": amount, "currency": "USD"}).to_string();
    let r = acct.post("/v1/payouts", Some(&new_key()), &payout("10.00")).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "payout_account_missing"),
        "{}",
        r.text
    );

    // The account must exist at the PSP.
    let path = format!("/v1/sellers/{seller}/payout_account");
    let r = acct.put(&path, r#"{"psp_account_id":"acct_nobody"}"#).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "payout_account_invalid"),
        "{}",
        r.text
    );
    let r = acct.put(&path, r#"{"psp_account_id":"4242424242424242"}"#).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!r.text.contains("4242424242424242"), "card data is never echoed");
    let connected = sandbox(
        reqwest::Method::POST,
        "/v1/accounts",
        &[
            ("external_account[object]", "bank_account"),
            ("external_account[routing_number]", "110000000"),
            ("external_account[account_number]", "000123456789"),
        ],
        None,
    )
    .await;
    let body = json!({"psp_account_id": connected["id"]}).to_string();
    let r = acct.put(&path, &body).await;
    assert_eq!(
        (r.status, r.json["psp_account_id"].clone()),
        (200, connected["id"].clone()),
        "{}",
        r.text
    );

    // Bad requests: each its code, nothing written.
    for (body, code) in [
        (payout("0"), "amount_not_positive"),
        (payout("-5"), "amount_not_positive"),
        (payout("1.001"), "amount_too_precise"),
        (payout("97.51"), "balance_insufficient"),
        (
            json!({"seller_id": seller, "amount": "1.00", "currency": "EUR"}).to_string(),
            "balance_insufficient",
        ),
        (
            json!({"seller_id": "nobody_here", "amount": "1.00", "currency": "USD"}).to_string(),
            "payout_account_missing",
        ),
        (
            json!({"seller_id": seller, "amount": "1.00", "currency": "USD", "card": "4242424242424242"})
                .to_string(),
            "card_data_rejected",
        ),
    ] {
        let r = acct.post("/v1/payouts", Some(&new_key()), &body).await;
        assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.text);
    }
    let r = acct.post("/v1/payouts", Some(&new_key()), &payout("97.51")).await;
    assert!(
        r.json["error"]["message"].as_str().unwrap().contains("97.50 USD"),
        "{}",
        r.text
    );
    assert_eq!(
        wallet_usd(&acct, &seller).await.unwrap(),
        ("97.50".into(), "97.50".into(), "0.00".into())
    );

    // A payout: 201 PENDING, replayed byte for byte, 422 for another body under its key.
    let key = new_key();
    let made = acct.post("/v1/payouts", Some(&key), &payout("50.00")).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(
        (
            made.json["status"].as_str(),
            made.json["amount"].as_str(),
            made.json["automatic"].as_bool()
        ),
        (Some("PENDING"), Some("50.00"), Some(false))
    );
    let again = acct.post("/v1/payouts", Some(&key), &payout("50.00")).await;
    assert_eq!((again.status, &again.text), (201, &made.text));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = acct.post("/v1/payouts", Some(&key), &payout("40.00")).await;
    assert_eq!(other.status, 422, "{}", other.text);
    // The executor sends it: IN_TRANSIT with the transfer and the payout at the PSP.
    let id = made.json["payout_id"].as_str().unwrap();
    let started = std::time::Instant::now();
    let sent = loop {
        let got = acct.get(&format!("/v1/payouts/{id}")).await;
        assert_eq!(got.status, 200, "{}", got.text);
        if got.json["status"] == "IN_TRANSIT" {
            break got.json;
        }
        assert!(started.elapsed().as_secs() < 30, "sent: {}", got.text);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    };
    let transfer = sent["psp_transfer_id"].as_str().expect("the transfer").to_owned();
    assert!(transfer.starts_with("tr_") && sent["psp_payout_id"].as_str().unwrap().starts_with("po_"));
    assert!(sent["arrival_date"].is_string());
    let t = sandbox(
        reqwest::Method::GET,
        &format!("/v1/transfers/{transfer}"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (t["amount"].as_i64(), t["transfer_group"].as_str()),
        (Some(5000), Some(id))
    );
    // The transfer posts; the hold becomes a debit of the balance.
    s.assert_invariants().await;
    assert_eq!(
        wallet_usd(&acct, &seller).await.unwrap(),
        ("47.50".into(), "47.50".into(), "0.00".into()),
        "sent: the balance debited, nothing held"
    );
    let ledger = acct
        .get(&format!("/v1/ledger/accounts/seller_payable:{seller}"))
        .await;
    assert!(
        ledger.text.contains(&format!("ltx_{id}_transfer")),
        "{}",
        ledger.text
    );
    let stranger = s.new_account(None).await;
    assert_eq!(stranger.get(&format!("/v1/payouts/{id}")).await.status, 404);

    // Cancel: a sent payout cannot be; a pending one can, idempotently, and its hold returns.
    let r = acct.post(&format!("/v1/payouts/{id}/cancel"), None, "").await;
    assert_eq!((r.status, r.code()), (409, "payout_not_cancelable"), "{}", r.text);
    assert_eq!(
        stranger
            .post(&format!("/v1/payouts/{id}/cancel"), None, "")
            .await
            .status,
        404
    );
    // (The executor paused, so the next payout stays PENDING and unsent.)
    s.twin(
        reqwest::Method::POST,
        "event-sources/PayoutExecutorFunction/disable",
    )
    .await;
    let pending = acct.post("/v1/payouts", Some(&new_key()), &payout("10.00")).await;
    assert_eq!(pending.status, 201, "{}", pending.text);
    let pid = pending.json["payout_id"].as_str().unwrap();
    let c1 = acct.post(&format!("/v1/payouts/{pid}/cancel"), None, "").await;
    assert_eq!(
        (c1.status, c1.json["status"].as_str()),
        (200, Some("CANCELED")),
        "{}",
        c1.text
    );
    let c2 = acct.post(&format!("/v1/payouts/{pid}/cancel"), None, "").await;
    assert_eq!(
        (c2.status, &c2.json),
        (200, &c1.json),
        "canceling twice answers the same"
    );
    s.twin(
        reqwest::Method::POST,
        "event-sources/PayoutExecutorFunction/enable",
    )
    .await;
    s.assert_invariants().await;
    assert_eq!(
        wallet_usd(&acct, &seller).await.unwrap(),
        ("47.50".into(), "47.50".into(), "0.00".into()),
        "the canceled payout's hold released"
    );
    let p = acct.get(&format!("/v1/payouts/{pid}")).await;
    assert_eq!(
        p.json["status"], "CANCELED",
        "the executor leaves a canceled payout alone"
    );

    // The seller's payouts, oldest first, by status, a page at a time.
    let ids = |r: &common::Resp| -> Vec<String> {
        r.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["payout_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = acct.get(&format!("/v1/payouts?seller_id={seller}")).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(ids(&all), [id.to_owned(), pid.to_owned()]);
    let canceled = acct
        .get(&format!("/v1/payouts?seller_id={seller}&status=CANCELED"))
        .await;
    assert_eq!(ids(&canceled), [pid.to_owned()]);
    let first = acct.get(&format!("/v1/payouts?seller_id={seller}&limit=1")).await;
    assert_eq!(ids(&first), [id.to_owned()]);
    let cursor = first.json["next_cursor"].as_str().expect("more to come");
    let second = acct
        .get(&format!("/v1/payouts?seller_id={seller}&limit=1&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), [pid.to_owned()]);
    assert!(stranger
        .get(&format!("/v1/payouts?seller_id={seller}"))
        .await
        .json["data"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(acct.get("/v1/payouts").await.status, 400, "seller_id is required");
    let bad = acct
        .get(&format!("/v1/payouts?seller_id={seller}&status=SENT"))
        .await;
    assert_eq!((bad.status, bad.code()), (400, "parameter_invalid"));
}
