//! Payouts on the local twin (issue 11): the PSP client's Connect calls against the sandbox,
//! each idempotent by the key derived from the payout id; the API and the 30-way race; the
//! executor, the webhooks and the reversal of a bounced payout; the PSP's faults. The tests
//! take turns (`TURN`): the sandbox's fault switches and the executor's pause are global.

use chrono::Utc;
use common::{new_key, Stack};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use shared::adapters::stripe::{RetryPolicy, StripeClient};
use shared::domain::currency::Currency;
use shared::domain::ids::{AccountId, PayoutId, SellerId};
use shared::domain::money::Money;
use shared::domain::payouts::{
    Payout, PayoutRequest, PspPayoutRequest, PspPayoutStatus, PspReversalRequest, PspTransferRequest,
};
use shared::domain::psp::PspAccountId;
use shared::ports::PayoutPsp;

const PSP_SECRET_KEY: &str = "sk_test_sandbox_51PsysLocalDev";

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This binary's stack: the sandbox's payouts move only when a test says so; immediate queue
/// retries, a short PSP budget so "PSP down" fails fast, and messages back 3 s after a crash.
fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "payouts",
        params: &[
            ("RetryBackoffBaseSeconds", "0"),
            ("PspRetryBudgetMs", "2000"),
            ("PspAttemptTimeoutMs", "1000"),
            ("ConsumerVisibilityTimeout", "3"),
        ],
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

/// A checkout of `amount` USD for `seller` under `acct`, paid on the sandbox's hosted page with
/// Stripe's 0077 card (its funds are available to transfer at once): the checkout as created.
async fn paid_on_page(acct: &common::Account, seller: &str, amount: &str) -> Value {
    let body = json!({"buyer_id": "buyer_1", "seller_id": seller, "amount": amount, "currency": "USD",
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
    r.json
}

/// 100.00 the platform can transfer at once.
async fn fund_the_platform() {
    let acct = stack().new_account(None).await;
    paid_on_page(&acct, "seller_1", "100.00").await;
}

#[tokio::test]
async fn the_psp_client_makes_one_transfer_one_payout_and_one_reversal_per_payout() {
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
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
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
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
    // The executor paused for the race: it refuses each payout (an unknown connected account)
    // and releases its hold, and a release during the race would rightly let one more fit.
    stack()
        .twin(
            reqwest::Method::POST,
            "event-sources/PayoutExecutorFunction/disable",
        )
        .await;
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
    stack()
        .twin(
            reqwest::Method::POST,
            "event-sources/PayoutExecutorFunction/enable",
        )
        .await;
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
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
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

    // The seller: its account and its wallet together; unknown elsewhere.
    let shown = acct.get(&format!("/v1/sellers/{seller}")).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(
        (
            shown.json["object"].as_str(),
            &shown.json["payout_account"]["psp_account_id"],
            &shown.json["balances"][0]
        ),
        (
            Some("seller"),
            &connected["id"],
            &json!({"currency": "USD", "balance": "97.50", "available": "97.50", "held": "0.00"})
        ),
        "{}",
        shown.text
    );
    assert_eq!(acct.get("/v1/sellers/seller_nobody").await.status, 404);
    let outsider = s.new_account(None).await;
    assert_eq!(outsider.get(&format!("/v1/sellers/{seller}")).await.status, 404);

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
    // The bank has it: PAID; nothing more moves on the books. To the cent: the seller's
    // payable is the payment's 97.50 credit less the 50.00 transfer.
    let psp_payout = sent["psp_payout_id"].as_str().unwrap();
    settle(
        psp_payout,
        &[json!({"status": "in_transit"}), json!({"status": "paid"})],
    )
    .await;
    wait_payout(&acct, id, "PAID").await;
    s.assert_invariants().await;
    let payable = acct
        .get(&format!("/v1/ledger/accounts/seller_payable:{seller}"))
        .await;
    assert_eq!(
        (
            &payable.json["balances"][0]["debits"],
            &payable.json["balances"][0]["credits"],
            &payable.json["balances"][0]["balance"]
        ),
        (&json!("50.00"), &json!("97.50"), &json!("47.50")),
        "{}",
        payable.text
    );
    assert_eq!(
        wallet_usd(&acct, &seller).await.unwrap(),
        ("47.50".into(), "47.50".into(), "0.00".into())
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

async fn admin(path: &str, body: Option<Value>) -> Value {
    stack().sandbox_admin(path, body).await
}

/// A connected account at the sandbox whose bank account is Stripe's test `bank` number.
async fn connected_account(bank: &str) -> String {
    let a = sandbox(
        reqwest::Method::POST,
        "/v1/accounts",
        &[
            ("type", "custom"),
            ("external_account[object]", "bank_account"),
            ("external_account[routing_number]", "110000000"),
            ("external_account[account_number]", bank),
        ],
        None,
    )
    .await;
    a["id"].as_str().unwrap().to_owned()
}

/// A new seller paid 100.00 (97.50 in its wallet once the fee is taken) whose payout account
/// is a connected account with the test bank account `bank`.
async fn seller_with_account(acct: &common::Account, bank: &str) -> String {
    let seller = format!("seller_{}", &new_key()[..8]);
    stack()
        .paid_checkout(
            acct,
            json!({"buyer_id": "b1", "seller_id": seller, "amount": "100.00", "currency": "USD",
                   "order_id": format!("order_{}", &new_key()[..8])}),
        )
        .await;
    common::eventually("the wallet credited", 30, || async {
        wallet_usd(acct, &seller).await.filter(|w| w.0 == "97.50")
    })
    .await;
    let connected = connected_account(bank).await;
    let r = acct
        .put(
            &format!("/v1/sellers/{seller}/payout_account"),
            &json!({"psp_account_id": connected}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    seller
}

/// `POST /v1/payouts` of `amount` USD: the payout's id.
async fn payout(acct: &common::Account, seller: &str, amount: &str) -> String {
    let body = json!({"seller_id": seller, "amount": amount, "currency": "USD"}).to_string();
    let r = acct.post("/v1/payouts", Some(&new_key()), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json["payout_id"].as_str().unwrap().to_owned()
}

async fn wait_payout(acct: &common::Account, id: &str, status: &str) -> Value {
    common::eventually(&format!("payout {id} {status}"), 45, || async {
        let got = acct.get(&format!("/v1/payouts/{id}")).await;
        (got.json["status"] == status).then_some(got.json)
    })
    .await
}

async fn wait_wallet(acct: &common::Account, seller: &str, want: (&str, &str, &str)) {
    let want = (want.0.to_owned(), want.1.to_owned(), want.2.to_owned());
    common::eventually(&format!("{seller}'s wallet at {want:?}"), 30, || async {
        (wallet_usd(acct, seller).await.as_ref() == Some(&want)).then_some(())
    })
    .await;
}

/// The sandbox's `/v1` calls made under `key`: (all, those that made something: answered 200
/// and not replayed).
async fn calls_under(key: &str) -> (usize, usize) {
    let log = admin("/__sandbox/requests", None).await;
    let calls: Vec<Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["idempotency_key"] == key)
        .cloned()
        .collect();
    let made = calls
        .iter()
        .filter(|r| r["status"] == 200 && r["idempotent_replayed"] != true)
        .count();
    (calls.len(), made)
}

/// Moves the payout at the sandbox (as its clock would): `in_transit`, then `to`.
async fn settle(psp_payout: &str, steps: &[Value]) {
    for step in steps {
        admin(
            &format!("/__sandbox/payouts/{psp_payout}/settle"),
            Some(step.clone()),
        )
        .await;
    }
}

/// A payout that bounced: `FAILED` with the bank's code, its transfer reversed at the PSP, the
/// reversal posted, and the money back in the seller's available balance.
async fn assert_bounced_and_returned(acct: &common::Account, seller: &str, id: &str, code: &str) {
    let failed = wait_payout(acct, id, "FAILED").await;
    assert_eq!(failed["failure_code"], code, "{failed}");
    assert!(
        failed["failure_message"].as_str().is_some_and(|m| !m.is_empty()),
        "{failed}"
    );
    wait_wallet(acct, seller, ("97.50", "97.50", "0.00")).await;
    let transfer = failed["psp_transfer_id"].as_str().unwrap();
    let t = sandbox(
        reqwest::Method::GET,
        &format!("/v1/transfers/{transfer}"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (t["amount_reversed"].as_i64(), t["reversed"].as_bool()),
        (t["amount"].as_i64(), Some(true)),
        "{t}"
    );
    let (_, reversals) = calls_under(&format!("{id}-reversal")).await;
    assert_eq!(reversals, 1, "one reversal");
    let ledger = acct
        .get(&format!("/v1/ledger/accounts/seller_payable:{seller}"))
        .await;
    for tx in [format!("ltx_{id}_transfer"), format!("ltx_{id}_returned")] {
        assert_eq!(ledger.text.matches(&tx).count(), 1, "{tx}: {}", ledger.text);
    }
}

/// Each of Stripe's failing test bank accounts: the payout goes out, the bank sends it back
/// with its code, the transfer is reversed and the seller has the money again. And a payout
/// that showed `paid` and then failed (Stripe warns it can).
#[tokio::test]
async fn each_failing_bank_account_bounces_the_payout_and_the_money_comes_back() {
    let _turn = TURN.lock().await;
    stack().sandbox_reset().await;
    fund_the_platform().await;
    fund_the_platform().await;
    let acct = stack().new_account(None).await;
    let banks = [
        ("000111111116", "no_account"),
        ("000111111113", "account_closed"),
        ("000222222227", "insufficient_funds"),
        ("000333333335", "debit_not_authorized"),
        ("000444444440", "invalid_currency"),
    ];
    let failing = banks.iter().map(|&(bank, code)| {
        let acct = &acct;
        async move {
            let seller = seller_with_account(acct, bank).await;
            let id = payout(acct, &seller, "30.00").await;
            let sent = wait_payout(acct, &id, "IN_TRANSIT").await;
            wait_wallet(acct, &seller, ("67.50", "67.50", "0.00")).await;
            let po = sent["psp_payout_id"].as_str().unwrap();
            // The bank's own code: the sandbox fails it as its bank account says.
            settle(
                po,
                &[json!({"status": "in_transit"}), json!({"status": "failed"})],
            )
            .await;
            assert_bounced_and_returned(acct, &seller, &id, code).await;
        }
    });
    let paid_then_failed = async {
        let seller = seller_with_account(&acct, "000123456789").await;
        let id = payout(&acct, &seller, "30.00").await;
        let sent = wait_payout(&acct, &id, "IN_TRANSIT").await;
        let po = sent["psp_payout_id"].as_str().unwrap().to_owned();
        settle(&po, &[json!({"status": "in_transit"}), json!({"status": "paid"})]).await;
        wait_payout(&acct, &id, "PAID").await;
        wait_wallet(&acct, &seller, ("67.50", "67.50", "0.00")).await;
        settle(
            &po,
            &[json!({"status": "failed", "failure_code": "account_closed"})],
        )
        .await;
        assert_bounced_and_returned(&acct, &seller, &id, "account_closed").await;
    };
    futures::future::join(futures::future::join_all(failing), paid_then_failed).await;
    stack().assert_invariants().await;
}

/// The PSP's faults: a 5xx and then success makes one transfer and one payout; the PSP down
/// past every retry leaves the payout `PENDING` with its hold and the message in the DLQ with
/// its reason, and a redrive finishes it with the same keys; the executor killed between the
/// transfer and the payout makes neither twice; webhooks duplicated and out of order.
#[tokio::test]
async fn psp_faults_never_move_money_twice() {
    let _turn = TURN.lock().await;
    let s = stack();
    s.sandbox_reset().await;
    fund_the_platform().await;
    fund_the_platform().await;
    let acct = s.new_account(None).await;

    // A 5xx, then success.
    let seller = seller_with_account(&acct, "000123456789").await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 1, "status": 500}})),
    )
    .await;
    let id = payout(&acct, &seller, "20.00").await;
    wait_payout(&acct, &id, "IN_TRANSIT").await;
    let (tries, made) = calls_under(&format!("{id}-transfer")).await;
    assert!(tries >= 2, "the 500 was retried under the same key: {tries}");
    assert_eq!(made, 1, "one transfer");
    assert_eq!(calls_under(&format!("{id}-payout")).await.1, 1, "one payout");
    s.sandbox_reset().await;

    // Down past every retry: the DLQ with the reason, the hold in place; a redrive → PAID.
    let seller = seller_with_account(&acct, "000123456789").await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"fail_next": 100000, "status": 503}})),
    )
    .await;
    let id = payout(&acct, &seller, "20.00").await;
    let dead = s.dead_letter("PayoutDLQ", &id, 90).await;
    let attrs = dead.message_attributes().unwrap();
    let reason = attrs["failure_reason"].string_value().unwrap();
    assert!(reason.contains("PSP unavailable"), "{reason}");
    assert_eq!(attrs["failed_consumer"].string_value(), Some("payout_executor"));
    assert_eq!(attrs["receive_count"].string_value(), Some("5"));
    let pending = acct.get(&format!("/v1/payouts/{id}")).await;
    assert_eq!(pending.json["status"], "PENDING", "{}", pending.text);
    wait_wallet(&acct, &seller, ("97.50", "77.50", "20.00")).await;
    let r = acct.post(&format!("/v1/payouts/{id}/cancel"), None, "").await;
    assert_eq!(
        (r.status, r.code()),
        (409, "payout_not_cancelable"),
        "being sent: {}",
        r.text
    );
    s.assert_invariants().await;
    s.sandbox_reset().await;
    s.redrive_one("PayoutDLQ", "PayoutQueue", &id).await;
    let sent = wait_payout(&acct, &id, "IN_TRANSIT").await;
    settle(
        sent["psp_payout_id"].as_str().unwrap(),
        &[json!({"status": "in_transit"}), json!({"status": "paid"})],
    )
    .await;
    wait_payout(&acct, &id, "PAID").await;
    wait_wallet(&acct, &seller, ("77.50", "77.50", "0.00")).await;
    assert_eq!(calls_under(&format!("{id}-transfer")).await.1, 1, "one transfer");
    assert_eq!(calls_under(&format!("{id}-payout")).await.1, 1, "one payout");
    s.assert_invariants().await;

    // Killed between the transfer and the payout: the transfer is made but answered late.
    let seller = seller_with_account(&acct, "000123456789").await;
    admin(
        "/__sandbox/faults",
        Some(json!({"api": {"delay_next": 1, "delay_ms": 4000}})),
    )
    .await;
    let id = payout(&acct, &seller, "20.00").await;
    common::eventually("the transfer asked for", 15, || async {
        (calls_under(&format!("{id}-transfer")).await.0 >= 1).then_some(())
    })
    .await;
    assert!(s.kill_instances("PayoutExecutorFunction").await >= 1);
    wait_payout(&acct, &id, "IN_TRANSIT").await;
    assert_eq!(calls_under(&format!("{id}-transfer")).await.1, 1, "one transfer");
    assert_eq!(calls_under(&format!("{id}-payout")).await.1, 1, "one payout");
    wait_wallet(&acct, &seller, ("77.50", "77.50", "0.00")).await;
    s.sandbox_reset().await;

    // Webhooks out of order: payout.failed before payout.paid before payout.updated. The
    // failure applies, the older paid is stale, the update changes nothing.
    let seller = seller_with_account(&acct, "000123456789").await;
    let id = payout(&acct, &seller, "20.00").await;
    let sent = wait_payout(&acct, &id, "IN_TRANSIT").await;
    let po = sent["psp_payout_id"].as_str().unwrap().to_owned();
    admin(
        "/__sandbox/faults",
        Some(json!({"webhooks": {"reorder_next": 3}})),
    )
    .await;
    settle(
        &po,
        &[
            json!({"status": "in_transit"}),
            json!({"status": "paid"}),
            json!({"status": "failed", "failure_code": "could_not_process"}),
        ],
    )
    .await;
    assert_bounced_and_returned(&acct, &seller, &id, "could_not_process").await;
    s.sandbox_reset().await;

    // Duplicated: each payout event twice; one move, one posting.
    let seller = seller_with_account(&acct, "000222222227").await;
    let id = payout(&acct, &seller, "20.00").await;
    let sent = wait_payout(&acct, &id, "IN_TRANSIT").await;
    admin(
        "/__sandbox/faults",
        Some(json!({"webhooks": {"duplicate_next": 2}})),
    )
    .await;
    settle(
        sent["psp_payout_id"].as_str().unwrap(),
        &[json!({"status": "in_transit"}), json!({"status": "failed"})],
    )
    .await;
    assert_bounced_and_returned(&acct, &seller, &id, "insufficient_funds").await;
    s.sandbox_reset().await;
    s.assert_invariants().await;
}

/// The schedule, fired twice in one day as the twin fires it: one automatic payout of the whole
/// available balance per due seller and currency; a seller below the minimum (25.00 USD) or
/// without a payout account is skipped; money that comes in after the first run waits for the
/// next day.
#[tokio::test]
async fn scheduled_payouts_pay_each_due_seller_once_a_day() {
    let _turn = TURN.lock().await;
    let s = stack();
    s.sandbox_reset().await;
    // The run pays every due wallet in the table, the other tests' sellers too (at most about
    // 1,160.00 USD between them): the platform can transfer all of it at once.
    for _ in 0..14 {
        fund_the_platform().await;
    }
    let acct = s.new_account(None).await;
    let due = seller_with_account(&acct, "000123456789").await;
    let without = format!("seller_{}", &new_key()[..8]);
    let small = format!("seller_{}", &new_key()[..8]);
    for (seller, amount) in [(&without, "100.00"), (&small, "20.00")] {
        s.paid_checkout(
            &acct,
            json!({"buyer_id": "b1", "seller_id": seller, "amount": amount, "currency": "USD",
                   "order_id": format!("order_{}", &new_key()[..8])}),
        )
        .await;
    }
    wait_wallet(&acct, &without, ("97.50", "97.50", "0.00")).await;
    wait_wallet(&acct, &small, ("19.50", "19.50", "0.00")).await;
    let connected = connected_account("000123456789").await;
    let r = acct
        .put(
            &format!("/v1/sellers/{small}/payout_account"),
            &json!({"psp_account_id": connected}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Segment 0 in the scheduled invocation, segments 1–3 through PayoutScanQueue: a run is
    // done when that queue is empty.
    let fire = || async {
        let fired = s
            .twin(
                reqwest::Method::POST,
                "schedules/PayoutSchedulerFunction/Daily/fire",
            )
            .await;
        assert_eq!(fired["result"]["handed_off"], 3, "{fired}");
        common::eventually("the scan's segments done", 30, || async {
            (s.queue_depth("PayoutScanQueue").await == 0).then_some(())
        })
        .await;
        fired
    };
    fire().await;
    let payouts_of = |seller: String| {
        let acct = &acct;
        async move {
            acct.get(&format!("/v1/payouts?seller_id={seller}")).await.json["data"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let paid = payouts_of(due.clone()).await;
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(
        (paid[0]["automatic"].as_bool(), paid[0]["amount"].as_str()),
        (Some(true), Some("97.50")),
        "the whole available balance"
    );
    assert!(payouts_of(without.clone()).await.is_empty(), "no payout account");
    assert!(payouts_of(small.clone()).await.is_empty(), "below the minimum");

    // More money comes in; the schedule fires again the same day: nothing new.
    s.paid_checkout(
        &acct,
        json!({"buyer_id": "b1", "seller_id": due, "amount": "100.00", "currency": "USD",
               "order_id": format!("order_{}", &new_key()[..8])}),
    )
    .await;
    common::eventually("the second payment in the wallet", 30, || async {
        let w = wallet_usd(&acct, &due).await?;
        (w.1 == "97.50").then_some(())
    })
    .await;
    fire().await;
    assert_eq!(payouts_of(due.clone()).await.len(), 1, "one payout per day");
    let w = wallet_usd(&acct, &due).await.unwrap();
    assert_eq!(w.1, "97.50", "the new money waits for tomorrow: {w:?}");

    // The first run's payout goes out like any other.
    let id = paid[0]["payout_id"].as_str().unwrap();
    wait_payout(&acct, id, "IN_TRANSIT").await;
    s.assert_invariants().await;
}

/// Money held by a pending refund is never available to pay out: a seller paid 100.00 (97.50
/// after the fee) with a refund of 40.00 pending (its part, 39.00, held) can take out 58.50 and
/// not a cent more; the refund then goes through and the wallet ends at zero, to the cent.
#[tokio::test]
async fn money_held_by_a_pending_refund_is_not_available_to_pay_out() {
    let _turn = TURN.lock().await;
    let s = stack();
    s.sandbox_reset().await;
    let acct = s.new_account(None).await;
    let seller = format!("seller_{}", &new_key()[..8]);
    let checkout = paid_on_page(&acct, &seller, "100.00").await;
    wait_wallet(&acct, &seller, ("97.50", "97.50", "0.00")).await;
    let connected = connected_account("000123456789").await;
    let r = acct
        .put(
            &format!("/v1/sellers/{seller}/payout_account"),
            &json!({"psp_account_id": connected}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The refund stays pending (its executor paused), holding the seller's part.
    s.twin(
        reqwest::Method::POST,
        "event-sources/RefundExecutorFunction/disable",
    )
    .await;
    let po = checkout["payment_orders"][0]["payment_order_id"]
        .as_str()
        .unwrap();
    let refund = acct
        .post(
            "/v1/refunds",
            Some(&new_key()),
            &json!({"payment_order_id": po, "amount": "40.00"}).to_string(),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text);
    wait_wallet(&acct, &seller, ("97.50", "58.50", "39.00")).await;
    let body = |amount: &str| json!({"seller_id": seller, "amount": amount, "currency": "USD"}).to_string();
    let over = acct.post("/v1/payouts", Some(&new_key()), &body("58.51")).await;
    assert_eq!(
        (over.status, over.code()),
        (400, "balance_insufficient"),
        "{}",
        over.text
    );
    assert!(
        over.text.contains("58.50 USD"),
        "it says what is available: {}",
        over.text
    );
    let id = payout(&acct, &seller, "58.50").await;
    wait_payout(&acct, &id, "IN_TRANSIT").await;
    wait_wallet(&acct, &seller, ("39.00", "0.00", "39.00")).await;

    s.twin(
        reqwest::Method::POST,
        "event-sources/RefundExecutorFunction/enable",
    )
    .await;
    let refund_id = refund.json["refund_id"].as_str().unwrap();
    common::eventually("the refund succeeded", 30, || async {
        let r = acct.get(&format!("/v1/refunds/{refund_id}")).await.json;
        (r["status"] == "SUCCEEDED").then_some(())
    })
    .await;
    wait_wallet(&acct, &seller, ("0.00", "0.00", "0.00")).await;
    s.assert_invariants().await;
}
