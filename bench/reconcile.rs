//! The reconciliation scenario of `make bench` (`reconcile`):
//! - `reconcile_10k` and `reconcile_100k`: a settlement file of `n` charge rows, each matching
//!   a `SUCCESS` checkout staged in the payments table, uploaded to S3 as fetch_settlement
//!   uploads (with its SHA-256); timed from the upload to the run's `SUCCEEDED`, in rows per
//!   second, next to its floor in the same run: the same GetObject, the same CSV parse and the
//!   same BatchGetItem of the same keys (a chunk's records and the items of its ten-second
//!   windows of marks), a chunk at a time, done directly.
//! - The rows are a day at the seed's 1,000,000 transactions a day: one every 86.4 ms, so
//!   100,000 rows span 2.4 hours, as a PSP's itemized report lists them (by creation time).
//! - The function process's peak RSS (`VmHWM` of the `reconcile_settlement` bootstrap), after
//!   the 10k file and after the 100k file: flat in the file's size.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use serde_json::{json, Value};
use shared::adapters::dynamo::batch::{batch_get, batch_put};
use shared::adapters::dynamo::codec::Item;
use shared::adapters::dynamo::pay_in::{checkout_item, checkout_key};
use shared::adapters::dynamo::reconciliation::ReconDynamo;
use shared::app::reconciliation::run::CHUNK_ROWS;
use shared::domain::currency::Currency;
use shared::domain::ids::{AccountId, BuyerId, CheckoutId, OrderId, ReconRunId};
use shared::domain::money::Money;
use shared::domain::pay_in::{Checkout, CheckoutForm, PaymentStatus};
use shared::domain::psp::PaymentIntentId;
use shared::domain::reconciliation::Mark;
use shared::ports::reconciliation::ReconStore;

use crate::{env_n, round};

const HEADER: &str = "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,\
reporting_category,source_id,charge_id,payment_intent_id,automatic_payout_id,payment_metadata[checkout_id]";

pub async fn run(stack: &common::Stack, results: &mut serde_json::Map<String, Value>) {
    let small = env_n("BENCH_RECON_SMALL", 10_000);
    let large = env_n("BENCH_RECON_ROWS", 100_000);
    let mut rss = Vec::new();
    for n in [small, large] {
        let (name, figures) = one(stack, n).await;
        let peak = peak_rss_mb("reconcile_settlement");
        rss.push(json!({"rows": n, "peak_rss_mb": peak}));
        let mut figures = figures;
        figures.insert("peak_rss_mb".into(), json!(peak));
        println!("{:<20} function peak RSS {peak:.1} MB after {n} rows", "");
        results.insert(name, Value::Object(figures));
    }
    results.insert("reconcile_rss".into(), json!(rss));
}

/// Stages `n` matching checkouts and their file, then times the floor and the run.
async fn one(stack: &common::Stack, n: usize) -> (String, serde_json::Map<String, Value>) {
    let store = stack.store().await;
    let account = AccountId::parse(&format!("acct_bench_recon_{n}_{}", &common::new_key()[..6])).unwrap();
    let usd = Currency::parse("USD").unwrap();
    let now = chrono::Utc::now();
    let ids: Vec<CheckoutId> = (0..n).map(|_| CheckoutId::generate()).collect();
    // Setup, untimed: the checkouts, 25 a write, 8 writes at once.
    let items: Vec<Item> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            checkout_item(&Checkout {
                id: id.clone(),
                account_id: account.clone(),
                form: CheckoutForm::Single,
                order_id: OrderId::parse("bench_order").unwrap(),
                buyer_id: BuyerId::parse("bench_buyer").unwrap(),
                total: Money::from_minor(1_000, usd),
                status: PaymentStatus::Success,
                psp_session: None,
                payment_intent: Some(PaymentIntentId::parse(&format!("pi_b{i}")).unwrap()),
                psp_url: None,
                failure_reason: None,
                payment_order_ids: Vec::new(),
                created_at: now,
                updated_at: now,
            })
        })
        .collect();
    let staged = Instant::now();
    futures::stream::iter(items.chunks(500))
        .map(|chunk| {
            let client = &store.client;
            async move { batch_put(client, "PaymentsTable", chunk.to_vec()).await.unwrap() }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut file = String::with_capacity(n * 160);
    file.push_str(HEADER);
    file.push('\n');
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let created = |i: usize| day + chrono::Duration::microseconds(86_400 * i as i64);
    for (i, id) in ids.iter().enumerate() {
        file.push_str(&format!(
            "txn_b{i},{},2026-12-02 00:00:00,usd,10.00,0.59,9.41,charge,ch_b{i},ch_b{i},pi_b{i},,{id}\n",
            created(i).format("%Y-%m-%d %H:%M:%S")
        ));
    }
    let bytes = file.into_bytes();
    let file_mb = bytes.len() as f64 / 1e6;
    println!(
        "{:<20} staged {n} checkouts and a {:.1} MB file in {:.1} s",
        "reconcile",
        bytes.len() as f64 / 1e6,
        staged.elapsed().as_secs_f64()
    );
    let s3 = stack.s3().await;
    let bucket = stack.bucket("SettlementBucket").await;
    let floor_key = format!("bench/{account}.csv");
    s3.put_object()
        .bucket(&bucket)
        .key(&floor_key)
        .body(bytes.clone().into())
        .send()
        .await
        .unwrap();

    // Floor: GetObject streamed into the same CSV reader, and per chunk the same BatchGetItem
    // of the records and the marks of the chunk's ten-second windows.
    let started = Instant::now();
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key(&floor_key)
        .send()
        .await
        .unwrap()
        .body
        .into_async_read();
    let mut reader = csv_async::AsyncReaderBuilder::new()
        .has_headers(true)
        .create_reader(body);
    let mut record = csv_async::StringRecord::new();
    let mut keys: Vec<(String, Item)> = Vec::with_capacity(CHUNK_ROWS);
    let mut windows = std::collections::BTreeSet::new();
    let mut rows = 0usize;
    loop {
        let more = reader.read_record(&mut record).await.unwrap();
        if more {
            rows += 1;
            let id = CheckoutId::parse(&record[12]).unwrap();
            keys.push(("PaymentsTable".into(), checkout_key(&id)));
            windows.insert(format!("{}0", record[1][..18].replace(' ', "T")));
        }
        if keys.len() == CHUNK_ROWS || (!more && !keys.is_empty()) {
            keys.extend(
                windows
                    .iter()
                    .map(|w| ("ReconciliationTable".to_owned(), marks_key(&account, w))),
            );
            let got = batch_get(&store.client, &keys, true).await.unwrap();
            assert!(!got.is_empty());
            keys.clear();
            windows.clear();
        }
        if !more {
            break;
        }
    }
    let floor_s = started.elapsed().as_secs_f64();
    assert_eq!(rows, n);
    // Not the floor: the same reads, plus the marks the run writes (per chunk, an entry in
    // each of its windows' items, under another account so the run finds none), to show where
    // the run's time goes.
    let started = Instant::now();
    let other = AccountId::parse(&format!("{account}_marks")).unwrap();
    let recon = ReconDynamo {
        store: store.clone(),
        ledger: stack.ledger().await,
        table: "ReconciliationTable".into(),
    };
    let bench_run = ReconRunId::derived("bench");
    let window = |i: usize| shared::domain::reconciliation::mark_window(created(i).and_utc());
    for (c, chunk) in ids.chunks(CHUNK_ROWS).enumerate() {
        let rows: Vec<usize> = (c * CHUNK_ROWS..c * CHUNK_ROWS + chunk.len()).collect();
        let windows: std::collections::BTreeSet<String> = rows.iter().map(|i| window(*i)).collect();
        let mut keys: Vec<(String, Item)> = chunk
            .iter()
            .map(|id| ("PaymentsTable".to_owned(), checkout_key(id)))
            .collect();
        keys.extend(
            windows
                .iter()
                .map(|w| ("ReconciliationTable".to_owned(), marks_key(&account, w))),
        );
        batch_get(&store.client, &keys, true).await.unwrap();
        let marks: Vec<(String, Mark)> = rows
            .iter()
            .zip(chunk)
            .map(|(i, id)| {
                let mark = Mark {
                    run_id: bench_run.clone(),
                    balance_transaction_id: format!("txn_b{i}"),
                    line: *i as u64 + 2,
                    record: Some(format!("{id}#charge")),
                };
                (window(*i), mark)
            })
            .collect();
        recon.put_marks(&other, &marks).await.unwrap();
    }
    let reads_writes_s = started.elapsed().as_secs_f64();

    // The run, as fetch_settlement's upload starts it (with the file's SHA-256).
    let key = format!("psp/{account}/bench-{n}.csv");
    let started = Instant::now();
    s3.put_object()
        .bucket(&bucket)
        .key(&key)
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    let run = loop {
        let items = store
            .client
            .query()
            .table_name("ReconciliationTable")
            .index_name("by_account")
            .key_condition_expression("list_pk = :p")
            .expression_attribute_values(":p", AttributeValue::S(format!("{account}#RUN")))
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default();
        let done = items.into_iter().find(|i| {
            i.get("run_status")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|s| s != "RUNNING")
        });
        if let Some(done) = done {
            break done;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let api_s = started.elapsed().as_secs_f64();
    let num = |k: &str| {
        run.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(run["run_status"].as_s().unwrap(), "SUCCEEDED");
    assert_eq!(
        (num("rows"), num("matched")),
        (n as u64, n as u64),
        "every row matched"
    );
    let (rate, floor_rate) = (n as f64 / api_s, n as f64 / floor_s);
    let name = if n >= 1000 && n.is_multiple_of(1000) {
        format!("reconcile_{}k", n / 1000)
    } else {
        format!("reconcile_{n}")
    };
    let rw_rate = n as f64 / reads_writes_s;
    println!(
        "{name:<20} n={n:<6} {rate:>8.0} rows/s in {api_s:.1} s (floor {floor_rate:>8.0} rows/s in {floor_s:.1} s, {:.0}%; \
         the floor's reads + the run's mark writes: {rw_rate:.0} rows/s, {:.0}%)",
        100.0 * rate / floor_rate,
        100.0 * rate / rw_rate
    );
    let mut figures = serde_json::Map::new();
    figures.insert("rows".into(), json!(n));
    figures.insert("seconds".into(), json!(round(api_s)));
    figures.insert("rows_per_s".into(), json!(round(rate)));
    figures.insert("floor_seconds".into(), json!(round(floor_s)));
    figures.insert("floor_rows_per_s".into(), json!(round(floor_rate)));
    figures.insert("rate_ratio".into(), json!(round(rate / floor_rate)));
    figures.insert("reads_and_marks_rows_per_s".into(), json!(round(rw_rate)));
    figures.insert(
        "rate_ratio_to_reads_and_marks".into(),
        json!(round(rate / rw_rate)),
    );
    figures.insert("file_mb".into(), json!(round(file_mb)));
    (name, figures)
}

/// The key of `account`'s marks item for ten-second window `window`.
fn marks_key(account: &AccountId, window: &str) -> Item {
    std::collections::HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(format!("MARK#{account}#{window}")),
        ),
        ("sk".to_owned(), AttributeValue::S("MARK".into())),
    ])
}

/// The highest `VmHWM` of any running process whose executable is `binary`, in MB.
fn peak_rss_mb(binary: &str) -> f64 {
    let mut peak_kb = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(cmd) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let argv0 = cmd.split(|b| *b == 0).next().unwrap_or_default();
        if !String::from_utf8_lossy(argv0).ends_with(&format!("/{binary}")) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(kb) = line.strip_prefix("VmHWM:") {
                let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                peak_kb = peak_kb.max(kb);
            }
        }
    }
    peak_kb as f64 / 1024.0
}
