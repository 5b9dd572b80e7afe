//! The pipeline recovers from faults of the infrastructure itself, on a twin of its own (its
//! DynamoDB Local keeps its data on disk so that it can be stopped and started again):
//! - DynamoDB down while messages wait in the queues: nothing is acked that was not applied,
//!   and once it is back every event applies exactly once;
//! - the relay reading its whole stream a second time (a mapping re-created at TRIM_HORIZON):
//!   every outbox event is published again, and the consumers change nothing.
//!
//! The scenarios switch the consumers' event sources off and on, so they take turns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{wallet, Account, Stack};
use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{Currency, Money};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CONSUMERS: [&str; 2] = ["LedgerConsumerFunction", "WalletConsumerFunction"];
const QUEUES: [&str; 2] = ["LedgerQueue", "WalletQueue"];
const DLQS: [&str; 2] = ["LedgerDLQ", "WalletDLQ"];

fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "recovery",
        params: &[("ConsumerVisibilityTimeout", "3")],
        on_disk: true,
        env: &[],
    })
}

async fn consumers(action: &str) {
    for f in CONSUMERS {
        let out = stack()
            .twin(Method::POST, &format!("event-sources/{f}/{action}"))
            .await;
        let want = action == "enable";
        assert!(
            out.as_array().unwrap().iter().all(|m| m["enabled"] == want),
            "{out}"
        );
    }
}

/// Waits until every queue named holds at least `n` messages.
async fn queues_hold(names: &[&str], n: u64, what: &str) {
    let started = Instant::now();
    loop {
        let mut depths = Vec::new();
        for q in names {
            depths.push(stack().queue_depth(q).await);
        }
        if depths.iter().all(|d| *d >= n) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: {names:?} hold {depths:?}, want {n} each"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until both consumer queues are empty (nothing visible or in flight).
async fn consumer_queues_empty() {
    let started = Instant::now();
    while stack().queue_depth("LedgerQueue").await + stack().queue_depth("WalletQueue").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "queues never drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn assert_drained() {
    for q in QUEUES.iter().chain(&DLQS) {
        assert_eq!(stack().queue_depth(q).await, 0, "{q} is not empty");
    }
}

/// Pays a mix of checkouts (one to three sellers, 2-, 0- and 3-decimal currencies) and
/// returns each seller's expected wallet, net of the 2.5 % fee rounded half-even per order.
async fn pay_mix(acct: &Account, tag: &str, n: usize) -> BTreeMap<(String, String), i64> {
    let rate: rust_decimal::Decimal = "0.025".parse().unwrap();
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut bodies = Vec::new();
    for i in 0..n {
        let (currency, amounts): (&str, Vec<String>) = match i % 3 {
            0 => (
                "USD",
                vec![
                    format!("{}.10", i + 1),
                    "0.20".into(),
                    format!("{}.05", 3 * i + 7),
                ],
            ),
            1 => ("JPY", vec![format!("{}", 1000 + i)]),
            _ => ("KWD", vec![format!("{}.120", i + 2), "0.010".into()]),
        };
        let c = Currency::parse(currency).unwrap();
        let mut lines = Vec::new();
        let mut total = Money::zero(c);
        for (j, a) in amounts.iter().enumerate() {
            let seller = format!("seller_{tag}_{j}");
            let m = Money::parse(a, c).unwrap();
            total = total.checked_add(m).unwrap();
            let net = m.checked_sub(m.percentage_half_even(rate).unwrap()).unwrap();
            *expected.entry((seller.clone(), currency.to_owned())).or_default() += net.minor();
            lines.push(json!({"seller_id": seller, "amount": a, "sub_order_id": format!("s{j}")}));
        }
        bodies.push(
            json!({"buyer_id": "b", "order_id": format!("{tag}{i}"), "currency": currency,
            "total_amount": total.to_string(), "line_items": lines}),
        );
    }
    futures::future::join_all(bodies.into_iter().map(|b| stack().paid_checkout(acct, b))).await;
    expected
}

/// Waits until every expected wallet of `acct` holds its amount (and the invariants hold).
async fn wallets_reach(
    what: &str,
    acct: &Account,
    expected: &BTreeMap<(String, String), i64>,
) -> BTreeMap<(String, String), i64> {
    stack()
        .settled(what, |_, w| {
            expected
                .iter()
                .all(|((seller, c), m)| wallet(w, acct, seller, c) == *m)
        })
        .await
}

fn assert_wallets(
    w: &BTreeMap<(String, String), i64>,
    acct: &Account,
    expected: &BTreeMap<(String, String), i64>,
) {
    for ((seller, currency), minor) in expected {
        assert_eq!(
            wallet(w, acct, seller, currency),
            *minor,
            "{seller} {currency}: every cent once"
        );
    }
}

#[tokio::test]
async fn dynamodb_down_while_messages_wait_then_every_event_applies_once() {
    let _turn = TURN.lock().await;
    let s = stack();
    let acct = s.new_account(None).await;
    // The consumers are switched off, so the relayed events wait in their queues.
    consumers("disable").await;
    let n = 9;
    let expected = pay_mix(&acct, "down", n).await;
    queues_hold(&QUEUES, n as u64, "relayed while the consumers are off").await;

    s.twin(Method::POST, "dynamodb/stop").await;
    let refused = reqwest::Client::new()
        .post(format!("{}/", s.dynamodb))
        .send()
        .await;
    assert!(refused.is_err(), "DynamoDB Local still answers");
    // The consumers run against a database that is not there: every attempt fails, nothing
    // is acked, the messages come back later (1 s, 2 s, 4 s ... as the consumers back off).
    consumers("enable").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    for q in QUEUES {
        assert!(
            s.queue_depth(q).await >= n as u64,
            "{q} lost messages while DynamoDB was down"
        );
    }
    for q in DLQS {
        assert_eq!(s.queue_depth(q).await, 0, "{q}: a short outage is not poison");
    }
    let logs = s.function_logs();
    for consumer in ["ledger", "wallet"] {
        assert!(
            logs.contains(&format!(r#""consumer":"{consumer}","reason":"store unavailable"#)),
            "the {consumer} consumer tried and backed off while DynamoDB was down"
        );
    }

    // A buyer landing on the completion page meanwhile gets a page that says the status is
    // not known yet and asks again, with a buyer's page's headers; never a JSON 503.
    let page = reqwest::Client::new()
        .get(format!(
            "{}/checkout/complete?checkout_id=chk_0190000000007000800000000000000a",
            s.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        header("content-type").starts_with("text/html"),
        "{:?}",
        page.headers()
    );
    assert!(header("content-security-policy").contains("default-src 'none'"));
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("retry-after"), "2");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("http-equiv=\"refresh\"") && !html.contains("<script"),
        "{html}"
    );

    let back = s.twin(Method::POST, "dynamodb/start").await;
    assert_eq!(back["dynamodb"], "running");
    let w = wallets_reach("after the outage", &acct, &expected).await;
    assert_wallets(&w, &acct, &expected);
    consumer_queues_empty().await;
    assert_drained().await;
    let report = s.assert_invariants().await;
    assert!(report.ledger_transactions >= 2 * n as u64, "{report:?}");
}

#[tokio::test]
async fn the_relay_reading_its_stream_again_publishes_again_and_changes_nothing() {
    let _turn = TURN.lock().await;
    let s = stack();
    let acct = s.new_account(None).await;
    let expected = pay_mix(&acct, "replay", 6).await;
    let before_wallets = wallets_reach("first pass", &acct, &expected).await;
    consumer_queues_empty().await;
    // What the relay publishes to both queues (a failed payment's event goes to neither).
    let outbox = s.outbox_records("PAYMENT_SUCCEEDED").await;
    let transactions = s.ledger_transaction_ids().await;

    // Consumers off; the relay re-reads the stream from TRIM_HORIZON: every outbox record of
    // this stack's life is published to both queues a second time.
    consumers("disable").await;
    let invoked_before = s.mapping_metric("OutboxRelayFunction", "InvokedEventCount").await;
    let rewound: Value = s
        .twin(Method::POST, "event-sources/OutboxRelayFunction/rewind")
        .await;
    assert_eq!(rewound[0]["rewinds"], 1, "{rewound}");
    queues_hold(&QUEUES, outbox, "republished by the second relay pass").await;
    // The twin counts what the relay was handed again: every outbox record, at least once.
    let invoked_again = s.mapping_metric("OutboxRelayFunction", "InvokedEventCount").await - invoked_before;
    assert!(
        invoked_again >= outbox,
        "relay invoked with {invoked_again} records on the second pass, {outbox} outbox records"
    );

    consumers("enable").await;
    // The relay's second pass may still be publishing (the queues can be empty between its
    // batches on a loaded machine): settled when it was handed nothing new while every queue
    // stayed empty for a second.
    let started = Instant::now();
    loop {
        let invoked = s.mapping_metric("OutboxRelayFunction", "InvokedEventCount").await;
        consumer_queues_empty().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let depth = s.queue_depth("LedgerQueue").await + s.queue_depth("WalletQueue").await;
        if depth == 0 && s.mapping_metric("OutboxRelayFunction", "InvokedEventCount").await == invoked {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the relay's second pass never settled"
        );
    }
    assert_drained().await;
    assert_eq!(
        s.ledger_transaction_ids().await,
        transactions,
        "no ledger transaction added or changed"
    );
    let after_wallets = s.settled("second pass", |_, _| true).await;
    assert_eq!(after_wallets, before_wallets, "no wallet moved");
    s.assert_invariants().await;
}

#[tokio::test]
async fn a_malformed_outbox_record_fails_to_the_on_failure_destination_and_is_never_skipped() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let _turn = TURN.lock().await;
    let s = stack();
    let delivered = || s.mapping_metric("OutboxRelayFunction", "OnFailureDestinationDeliveredEventCount");
    let before = delivered().await;
    // An outbox record whose payload is not an event (a bug, or tampering): the relay must not
    // drop it quietly.
    let event_id = format!("obx_malformed_{}", &common::new_key()[..8]);
    let client = s.store().await.client;
    let put = client
        .put_item()
        .table_name("PaymentsTable")
        .item("pk", S(format!("OUTBOX#{event_id}")))
        .item("sk", S("OUTBOX".into()))
        .item("entity", S("outbox".into()))
        .item("event_id", S(event_id.clone()))
        .item("event_type", S("PAYMENT_SUCCEEDED".into()))
        .item("payload", S(r#"{"not":"an event"}"#.into()));
    put.send().await.unwrap();
    let started = Instant::now();
    while delivered().await <= before {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the malformed record never reached the relay's on-failure destination"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let logs = s.function_logs();
    assert!(
        logs.contains("outbox record cannot be relayed; failing it") && logs.contains("not an outbox event"),
        "the relay logs the record's reason"
    );
    assert!(s.queue_depth("RelayFailureQueue").await >= 1);
    // Take it out of the table (the invariant check reads it too), then the relay goes on.
    client
        .delete_item()
        .table_name("PaymentsTable")
        .key("pk", S(format!("OUTBOX#{event_id}")))
        .key("sk", S("OUTBOX".into()))
        .send()
        .await
        .unwrap();
    let acct = s.new_account(None).await;
    let expected = pay_mix(&acct, "after_malformed", 2).await;
    wallets_reach("after a malformed record", &acct, &expected).await;
}
