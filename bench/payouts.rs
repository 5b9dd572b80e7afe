//! The payout scenarios of `make bench` (run last: they pause the outbox relay for good, so
//! the payouts they create are never sent to the sandbox PSP, and their seeded wallets have no
//! ledger behind them):
//! - `create_payout_c16`: `POST /v1/payouts` at concurrency 16, p50 and p99, next to the same
//!   creation transaction (claim, payout, conditional hold on the wallet, outbox record)
//!   written directly. Payouts in flight at once name different sellers.
//! - `payout_scheduler`: one scheduled run over `BENCH_SCHEDULER_WALLETS` (default 10,000) due
//!   wallets, each with a payout account, fired through the twin as EventBridge would invoke
//!   it, in wallets paid per second, next to its floor: a scan of the same table and the same
//!   creation transaction per wallet, issued directly at the same concurrency.

use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};
use shared::adapters::dynamo::ledger::LedgerStore;
use shared::adapters::dynamo::DynamoStore;
use shared::api::payouts::payout_view;
use shared::domain::currency::Currency;
use shared::domain::idempotency::{IdempotencyRecord, ResourceRef};
use shared::domain::ids::{AccountId, PayoutId, SellerId};
use shared::domain::ledger::WalletChange;
use shared::domain::money::Money;
use shared::domain::outbox::OutboxEvent;
use shared::domain::payouts::{Payout, PayoutRequest};
use shared::domain::psp::PspAccountId;
use shared::ports::{Begin, PayoutScan, Payouts, WalletWriter};

use crate::{env_n, measure, pause_relay, record, round};

/// Sellers of the create scenario: consecutive requests name different ones.
const CREATE_SELLERS: usize = 256;

pub async fn run(
    stack: &common::Stack,
    acct: &common::Account,
    store: &DynamoStore,
    results: &mut serde_json::Map<String, Value>,
) {
    pause_relay(stack).await;
    let ledger = stack.ledger().await;
    create_payout(acct, store, &ledger, results).await;
    scheduler(stack, store, &ledger, results).await;
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

/// `sellers` wallets of `balance_minor` USD under `account`, each with a payout account when
/// `with_accounts` (setup, untimed; the wallet only, as the wallet consumer writes it).
async fn seed(
    store: &DynamoStore,
    ledger: &LedgerStore,
    account: &AccountId,
    prefix: &str,
    sellers: usize,
    balance_minor: i64,
    with_accounts: bool,
) -> Vec<SellerId> {
    let ids: Vec<SellerId> = (0..sellers)
        .map(|i| SellerId::parse(&format!("{prefix}_{i}")).unwrap())
        .collect();
    futures::stream::iter(ids.iter())
        .map(|seller| async move {
            let seed = format!("evt_seed_{}", common::new_key());
            ledger
                .apply_wallet_changes(
                    &seed,
                    account,
                    &[WalletChange {
                        seller_id: seller.clone(),
                        currency: usd(),
                        balance_minor,
                        held_minor: 0,
                    }],
                    "2026-12-01T00:00:00.000Z",
                )
                .await
                .unwrap();
            if with_accounts {
                let psp = PspAccountId::parse(&format!("acct_1{}", &crate::uuid_simple()[..16])).unwrap();
                store
                    .put_payout_account(account, seller, &psp, chrono::Utc::now())
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    ids
}

/// A payout of `minor` from `seller`'s wallet as the API opens it, with its claim.
fn staged(
    account: &AccountId,
    seller: &SellerId,
    minor: i64,
    automatic: bool,
) -> (IdempotencyRecord, Payout) {
    let amount = Money::from_minor(minor, usd());
    let request = PayoutRequest {
        seller_id: seller.clone(),
        amount,
    };
    let now = chrono::Utc::now();
    let payout = Payout::open(
        PayoutId::generate(),
        account.clone(),
        &request,
        Some(PspAccountId::parse("acct_1BenchFloor").unwrap()),
        automatic,
        now,
    )
    .unwrap();
    let record = IdempotencyRecord::new_completed(
        format!("floor#{}", common::new_key()),
        request.fingerprint(),
        ResourceRef::payout(&payout.id),
        now.timestamp_millis(),
        201,
        payout_view(&payout).to_string(),
    );
    (record, payout)
}

/// The creation transaction, written directly (again if it met another writer on the wallet).
async fn begin(store: &DynamoStore, record: &IdempotencyRecord, payout: &Payout) {
    let outbox = OutboxEvent::payout(payout, None, "request", chrono::Utc::now());
    loop {
        match store.begin_payout(record, payout, &outbox).await.unwrap() {
            Begin::Created => return,
            Begin::Contended => continue,
            other => panic!("floor payout: {other:?}"),
        }
    }
}

async fn create_payout(
    acct: &common::Account,
    store: &DynamoStore,
    ledger: &LedgerStore,
    results: &mut serde_json::Map<String, Value>,
) {
    let n = env_n("BENCH_N_PAYOUT_C16", 2000);
    let concurrency = 16;
    let account = acct.account_id.clone();
    // Every seller can pay out every request of both runs (1.00 each).
    let balance = 100 * (2 * n as i64 + 64);
    let sellers = seed(store, ledger, &account, "pseller", CREATE_SELLERS, balance, true).await;
    let floor_account = AccountId::parse("acct_bench_payout_floor").unwrap();
    let floor_sellers = seed(
        store,
        ledger,
        &floor_account,
        "pfloor",
        CREATE_SELLERS,
        balance,
        false,
    )
    .await;
    let post = |i: usize| {
        let body = json!({"seller_id": sellers[i % CREATE_SELLERS], "amount": "1.00", "currency": "USD"})
            .to_string();
        async move {
            let r = acct.post("/v1/payouts", Some(&common::new_key()), &body).await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
    };
    // Warm the function's instances up to the concurrency.
    measure(64, concurrency, post).await;
    let stage: Vec<(IdempotencyRecord, Payout)> = (0..n)
        .map(|i| staged(&floor_account, &floor_sellers[i % CREATE_SELLERS], 100, false))
        .collect();
    let floor = measure(n, concurrency, |i| {
        let (store, stage) = (store, &stage);
        async move { begin(store, &stage[i].0, &stage[i].1).await }
    })
    .await;
    let api = measure(n, concurrency, post).await;
    record(results, "create_payout_c16", n, concurrency, &api, &floor);
}

/// One scheduled run over `BENCH_SCHEDULER_WALLETS` due wallets, next to the scan of the same
/// table and the same creation transaction per wallet, written directly.
async fn scheduler(
    stack: &common::Stack,
    store: &DynamoStore,
    ledger: &LedgerStore,
    results: &mut serde_json::Map<String, Value>,
) {
    let n = env_n("BENCH_SCHEDULER_WALLETS", 10_000);
    let account = AccountId::parse("acct_bench_schedule").unwrap();
    let floor_account = AccountId::parse("acct_bench_schedule_floor").unwrap();
    // 50.00 each: over the default 25.00 USD minimum. Both sets are in the table for both runs.
    let due = seed(store, ledger, &account, "sched", n, 5_000, true).await;
    let floor_sellers = seed(store, ledger, &floor_account, "sfloor", n, 5_000, false).await;
    assert_eq!((due.len(), floor_sellers.len()), (n, n));

    // Floor: the scan (the same filter and page size, one segment), and for each floor wallet
    // the same transaction, 16 at once, as the scheduler issues them.
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut scanned = 0usize;
    let mut written = 0usize;
    loop {
        let page = store.wallet_page(0, 1, cursor.as_deref(), 200).await.unwrap();
        scanned += page.data.len();
        let mine: Vec<(IdempotencyRecord, Payout)> = page
            .data
            .iter()
            .filter(|w| w.account_id == floor_account)
            .map(|w| staged(&floor_account, &w.seller_id, w.available_minor(), true))
            .collect();
        written += mine.len();
        futures::stream::iter(mine.iter())
            .map(|(record, payout)| begin(store, record, payout))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    let floor_s = started.elapsed().as_secs_f64();
    assert_eq!(written, n, "the floor paid each of its wallets");

    // The scheduler, as EventBridge invokes it (one segment: this run measures one invocation).
    let started = Instant::now();
    let fired = stack
        .twin(
            reqwest::Method::POST,
            "schedules/PayoutSchedulerFunction/Daily/fire",
        )
        .await;
    let api_s = started.elapsed().as_secs_f64();
    let summary = &fired["result"];
    // Every due wallet with an account: these, and the create scenario's sellers.
    let created = summary["created"].as_u64().unwrap_or(0) as usize;
    assert!(
        created >= n && summary["handed_off"] == 0,
        "the run paid each due wallet in one invocation: {fired}"
    );
    let (rate, floor_rate) = (created as f64 / api_s, written as f64 / floor_s);
    println!(
        "{:<20} n={created:<5} {:>7.1} payouts/s in {:.1} s (floor {:>7.1}/s in {:.1} s, {:.0}%); {} wallets read with something available ({scanned} by the floor)",
        "payout_scheduler",
        rate,
        api_s,
        floor_rate,
        floor_s,
        100.0 * rate / floor_rate,
        summary["wallets"]
    );
    results.insert(
        "payout_scheduler".into(),
        json!({"wallets": n, "payouts": created, "seconds": round(api_s), "wallets_per_s": round(rate),
               "floor_seconds": round(floor_s), "floor_wallets_per_s": round(floor_rate),
               "rate_ratio": round(rate / floor_rate), "summary": summary}),
    );
}
