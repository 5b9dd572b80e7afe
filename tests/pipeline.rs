//! The transactional outbox end to end on the local twin: a verified webhook's outbox record
//! is relayed from the DynamoDB stream to the ledger and wallet queues (moto), and the
//! consumers write the ledger and the wallets exactly once; the invariants hold after each
//! scenario.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{new_key, wallet, Account, Stack};
use serde_json::{json, Value};
use shared::domain::invariants::Report;

fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "pipeline",
        params: &[("ConsumerVisibilityTimeout", "3")],
        on_disk: false,
        env: &[],
    })
}

/// Creates a checkout and settles it with a signed `checkout.session.completed`.
async fn paid_checkout(acct: &Account, body: Value) -> Value {
    stack().paid_checkout(acct, body).await
}

/// Waits until the invariants hold and `ready` says the pipeline has caught up.
async fn settled(
    what: &str,
    ready: impl Fn(&Report, &BTreeMap<(String, String), i64>) -> bool,
) -> BTreeMap<(String, String), i64> {
    stack().settled(what, ready).await
}

#[tokio::test]
async fn payments_reach_wallets_and_ledger_exactly_once_to_the_cent() {
    let acct = stack().new_account(None).await;
    paid_checkout(
        &acct,
        json!({"buyer_id": "b", "order_id": "o1", "currency": "USD", "total_amount": "0.30",
            "line_items": [{"seller_id": "seller_A", "amount": "0.10", "sub_order_id": "x"},
                           {"seller_id": "seller_B", "amount": "0.20", "sub_order_id": "y"}]}),
    )
    .await;
    paid_checkout(
        &acct,
        json!({"buyer_id": "b", "order_id": "o2", "currency": "USD", "total_amount": "100.00",
            "line_items": [{"seller_id": "seller_A", "amount": "40.00", "sub_order_id": "x"},
                           {"seller_id": "seller_B", "amount": "35.00", "sub_order_id": "y"},
                           {"seller_id": "seller_C", "amount": "25.00", "sub_order_id": "z"}]}),
    )
    .await;
    paid_checkout(&acct, json!({"buyer_id": "b", "seller_id": "seller_A", "amount": 1000, "currency": "JPY", "order_id": "o3"})).await;
    paid_checkout(&acct, json!({"buyer_id": "b", "seller_id": "seller_A", "amount": "10.120", "currency": "KWD", "order_id": "o4"})).await;

    let w = settled("happy path", |_, w| {
        wallet(w, &acct, "seller_A", "KWD") > 0 && wallet(w, &acct, "seller_C", "USD") > 0
    })
    .await;
    // Fee 2.5 %, half-even per order: 0.10 -> fee 0.00 (0.0025), 0.20 -> 0.00 (0.005 -> 0.00, even),
    // 40.00 -> 1.00, 35.00 -> 0.88 (0.875 -> 0.88), 25.00 -> 0.62 (0.625 -> 0.62).
    assert_eq!(wallet(&w, &acct, "seller_A", "USD"), 10 + 3900);
    assert_eq!(wallet(&w, &acct, "seller_B", "USD"), 20 + 3412);
    assert_eq!(wallet(&w, &acct, "seller_C", "USD"), 2438);
    assert_eq!(wallet(&w, &acct, "seller_A", "JPY"), 1000 - 25);
    assert_eq!(wallet(&w, &acct, "seller_A", "KWD"), 10120 - 253);

    // The read APIs say the same, as decimal strings.
    let wa = acct.get("/v1/wallets/seller_A").await;
    assert_eq!(wa.status, 200, "{}", wa.text);
    let balances: BTreeMap<String, String> = wa.json["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["currency"].as_str().unwrap().to_owned(),
                b["balance"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(balances["USD"], "39.10");
    assert_eq!(balances["JPY"], "975");
    assert_eq!(balances["KWD"], "9.867");
    assert_eq!(acct.get("/v1/wallets/nobody").await.status, 404);
    let other = stack().new_account(None).await;
    assert_eq!(
        other.get("/v1/wallets/seller_A").await.status,
        404,
        "another account's sellers are invisible"
    );

    let account = acct
        .get("/v1/ledger/accounts/seller_payable:seller_B?limit=1")
        .await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert_eq!(account.json["balances"][0]["balance"], "34.32");
    assert_eq!(account.json["entries"]["data"].as_array().unwrap().len(), 1);
    assert_eq!(account.json["entries"]["has_more"], true);
    let cursor = account.json["entries"]["next_cursor"].as_str().unwrap();
    let next = acct
        .get(&format!(
            "/v1/ledger/accounts/seller_payable:seller_B?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.json["entries"]["data"].as_array().unwrap().len(), 1);
    assert_ne!(
        next.json["entries"]["data"][0],
        account.json["entries"]["data"][0]
    );
    // Cursors are opaque and open only for the list and account that made them: another
    // account, another query, an edited cursor or a made-up one is a 400, never a 503.
    assert!(
        !cursor.contains(acct.account_id.as_str()) && !cursor.contains("ACCT"),
        "opaque: {cursor}"
    );
    let mut edited = cursor.to_owned().into_bytes();
    let last = edited.len() - 2;
    edited[last] = if edited[last] == b'A' { b'B' } else { b'A' };
    let edited = String::from_utf8(edited).unwrap();
    for (who, list, c) in [
        (&other, "seller_payable:seller_B", cursor),
        (&acct, "seller_payable:seller_A", cursor),
        (&acct, "seller_payable:seller_B", edited.as_str()),
        (&acct, "seller_payable:seller_B", "%7B%7D"),
        (&acct, "seller_payable:seller_B", "7b7d"),
    ] {
        let r = who
            .get(&format!("/v1/ledger/accounts/{list}?limit=1&cursor={c}"))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "parameter_invalid"),
            "{list} {c}: {}",
            r.text
        );
    }
    let receivable = acct.get("/v1/ledger/accounts/psp_receivable").await;
    assert!(receivable.json["balances"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["currency"] == "USD" && b["balance"] == "100.30"));
    assert_eq!(acct.get("/v1/ledger/accounts/cash").await.status, 404);
}

#[tokio::test]
async fn redelivered_events_change_nothing_and_poison_goes_to_the_dlq_with_its_reason() {
    let acct = stack().new_account(None).await;
    let c = paid_checkout(&acct, json!({"buyer_id": "b", "seller_id": "seller_D", "amount": "50.00", "currency": "EUR", "order_id": "o"})).await;
    let w = settled("first delivery", |_, w| wallet(w, &acct, "seller_D", "EUR") > 0).await;
    assert_eq!(wallet(&w, &acct, "seller_D", "EUR"), 5000 - 125);
    let po = c["payment_order_id"].as_str().unwrap();
    let txs = acct
        .get(&format!("/v1/ledger/transactions?payment_order_id={po}"))
        .await;
    assert_eq!(txs.status, 200, "{}", txs.text);
    let data = txs.json["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "one ledger transaction per payment order");
    let entries = data[0]["entries"].as_array().unwrap();
    assert_eq!(
        entries[0],
        json!({"account": "psp_receivable", "direction": "DEBIT", "amount": "50.00", "currency": "EUR"})
    );
    assert_eq!(entries[1]["account"], "seller_payable:seller_D");
    assert_eq!(
        entries[2],
        json!({"account": "platform_fee_revenue", "direction": "CREDIT", "amount": "1.25", "currency": "EUR"})
    );
    assert_eq!(acct.get("/v1/ledger/transactions").await.status, 400);

    // The relayed event, sent again five times to each consumer queue.
    let store = stack().store().await;
    let outbox = store
        .client
        .scan()
        .table_name("PaymentsTable")
        .filter_expression("entity = :o AND contains(payload, :c)")
        .expression_attribute_values(":o", aws_sdk_dynamodb::types::AttributeValue::S("outbox".into()))
        .expression_attribute_values(
            ":c",
            aws_sdk_dynamodb::types::AttributeValue::S(c["checkout_id"].as_str().unwrap().into()),
        )
        .send()
        .await
        .unwrap();
    let item = &outbox.items.unwrap()[0];
    let payload = item["payload"].as_s().unwrap().clone();
    let sqs = stack().sqs().await;
    let url = |name: &str| {
        let sqs = sqs.clone();
        let name = name.to_owned();
        async move {
            sqs.get_queue_url()
                .queue_name(name)
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap()
        }
    };
    let (ledger_q, wallet_q, ledger_dlq) = (
        url("LedgerQueue").await,
        url("WalletQueue").await,
        url("LedgerDLQ").await,
    );
    let acked = || async {
        (
            stack()
                .mapping_metric("LedgerConsumerFunction", "DeletedEventCount")
                .await,
            stack()
                .mapping_metric("WalletConsumerFunction", "DeletedEventCount")
                .await,
        )
    };
    let before = acked().await;
    for q in [&ledger_q, &wallet_q] {
        for _ in 0..5 {
            sqs.send_message()
                .queue_url(q)
                .message_body(&payload)
                .send()
                .await
                .unwrap();
        }
    }
    // A poison message and an impossible posting (a negative amount) in the same stream of work.
    sqs.send_message()
        .queue_url(&ledger_q)
        .message_body("this is not json")
        .send()
        .await
        .unwrap();
    let negative = payload.replacen("\"amount_minor\":5000", "\"amount_minor\":-5000", 1);
    assert_ne!(negative, payload);
    sqs.send_message()
        .queue_url(&ledger_q)
        .message_body(&negative)
        .send()
        .await
        .unwrap();

    // Both poison messages reach the DLQ, each with its reason.
    let started = Instant::now();
    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "poison not in the DLQ: {reasons:?}"
        );
        let got = sqs
            .receive_message()
            .queue_url(&ledger_dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get("failure_reason"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_owned();
            reasons.push(reason);
            sqs.delete_message()
                .queue_url(&ledger_dlq)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert!(
        reasons.iter().any(|r| r.contains("not an outbox event")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("must be greater than zero") || r.contains("invalid posting")),
        "{reasons:?}"
    );

    // Every duplicate is acknowledged (the twin counts the messages its mappings delete, as
    // Lambda's DeletedEventCount does; other tests add to it too), and nothing moved.
    let started = Instant::now();
    loop {
        let now = acked().await;
        if now.0 >= before.0 + 5 + 2 && now.1 >= before.1 + 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "duplicates not acknowledged: {before:?} -> {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let w = settled("after duplicates", |_, _| true).await;
    assert_eq!(wallet(&w, &acct, "seller_D", "EUR"), 5000 - 125);
}

#[tokio::test]
async fn consumers_killed_mid_batch_lose_and_double_nothing() {
    let acct = stack().new_account(None).await;
    let n = 20usize;
    let payments = futures::future::join_all((0..n).map(|i| {
        let acct = &acct;
        async move {
            paid_checkout(
                acct,
                json!({"buyer_id": "b", "seller_id": "seller_K", "amount": format!("{}.07", 10 + i), "currency": "USD", "order_id": format!("k{i}")}),
            )
            .await
        }
    }));
    // Kill the consumers again and again while the batches are in flight.
    let killer = async {
        let mut killed = 0;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            killed += stack().kill_instances("WalletConsumerFunction").await
                + stack().kill_instances("LedgerConsumerFunction").await;
        }
        killed
    };
    let (_, killed) = tokio::join!(payments, killer);
    assert!(killed > 0, "no consumer was running to kill");
    // Each payment: amount A = (10+i).07, fee = A * 2.5 % half-even; the wallet is the sum of nets.
    let usd = shared::domain::Currency::parse("USD").unwrap();
    let rate: rust_decimal::Decimal = "0.025".parse().unwrap();
    let expected: i64 = (0..n)
        .map(|i| {
            let a = shared::domain::Money::from_minor((10 + i as i64) * 100 + 7, usd);
            a.checked_sub(a.percentage_half_even(rate).unwrap())
                .unwrap()
                .minor()
        })
        .sum();
    let w = settled("after kills", |r, w| {
        r.ok && wallet(w, &acct, "seller_K", "USD") == expected
    })
    .await;
    assert_eq!(wallet(&w, &acct, "seller_K", "USD"), expected);
}

#[tokio::test]
async fn operators_see_dlq_reasons_and_can_redrive() {
    let s = stack();
    let sqs = s.sqs().await;
    let wallet_q = sqs
        .get_queue_url()
        .queue_name("WalletQueue")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let marker = format!("poison-{}", &new_key()[..8]);
    sqs.send_message()
        .queue_url(&wallet_q)
        .message_body(&marker)
        .send()
        .await
        .unwrap();
    let ops = |args: &[&str]| {
        let out = std::process::Command::new(common::bin_dir().join("ops"))
            .args(args)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_ENDPOINT_URL_DYNAMODB", &s.dynamodb)
            .env("AWS_ENDPOINT_URL_SQS", &s.moto)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let wait_in_dlq = |what: &'static str| {
        let ops = &ops;
        async move {
            let started = Instant::now();
            loop {
                let (_, out) = ops(&["dlq"]);
                if out.contains("not an outbox event") {
                    return out;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{what}: not in the DLQ:\n{out}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let listing = wait_in_dlq("first failure").await;
    assert!(listing.contains("WalletDLQ: 1 message"), "{listing}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, moved) = ops(&["redrive", "WalletDLQ"]);
    assert_eq!(code, Some(0));
    assert!(
        moved.contains("moved 1 message(s) from WalletDLQ back to WalletQueue"),
        "{moved}"
    );
    // Still poison after the "fix": it comes back to the DLQ with its reason.
    wait_in_dlq("after redrive").await;
    // `ops check` agrees once every pipeline in flight (other tests') has drained.
    let started = Instant::now();
    loop {
        let (code, report) = ops(&["check"]);
        assert!(report.contains("\"violations\""), "{report}");
        if code == Some(0) {
            assert!(report.contains("\"ok\": true"), "{report}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{report}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_twin_refuses_an_outage_drill_that_would_lose_an_in_memory_database() {
    let control = |path: &str| {
        reqwest::Client::new()
            .post(format!("{}/__twin/{path}", stack().control))
            .header("x-twin-control", "1")
    };
    let r = common::send(control("dynamodb/stop")).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(
        r.json["message"].as_str().unwrap().contains("--data-dir"),
        "{}",
        r.text
    );
    let r = common::send(control("event-sources/CreatePaymentFunction/disable")).await;
    assert_eq!(r.status, 404, "an HTTP function has no event source: {}", r.text);
    let r = common::send(control("event-sources/WalletConsumerFunction/rewind")).await;
    assert_eq!(r.status, 409, "a queue cannot be rewound: {}", r.text);
    // The control port is not the API: a control route there is an unknown route, as on AWS.
    let r = common::send(reqwest::Client::new().get(format!("{}/__twin/queues", stack().api))).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = common::send(control("functions/NoSuchFunction/kill")).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A web page cannot drive the controls: no control header, or any Origin, is refused.
    let bare = reqwest::Client::new().post(format!("{}/__twin/dynamodb/stop", stack().control));
    assert_eq!(common::send(bare).await.status, 403);
    let from_page =
        control("event-sources/WalletConsumerFunction/disable").header("origin", "http://evil.example");
    let r = common::send(from_page).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let sources = stack().twin(reqwest::Method::GET, "event-sources").await;
    assert!(
        sources.as_array().unwrap().iter().all(|m| m["enabled"] == true),
        "nothing was switched off: {sources}"
    );
    // Still up: the API answers.
    assert_eq!(
        stack().new_account(None).await.get("/v1/wallets/x").await.status,
        404
    );
}
