//! The pay-in API against the real local twin: DynamoDB Local, the runner, the bootstraps.

use std::collections::HashSet;

use common::{new_key, send, single, stack, Resp};
use serde_json::json;
use shared::api::pay_in::parse_checkout_request;
use shared::domain::idempotency::{IdempotencyKey, IdempotencyRecord, ResourceRef};
use shared::domain::ids::ApiKeyId;
use shared::domain::rate_limit::RateLimit;
use shared::domain::Checkout;
use shared::ports::Checkouts;

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "body: {}", r.text);
    assert_eq!(r.code(), code, "body: {}", r.text);
    assert!(
        r.json["error"]["type"].is_string() && r.json["error"]["message"].is_string(),
        "{}",
        r.text
    );
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
}

#[tokio::test]
async fn single_seller_create_and_read_back() {
    let acct = stack().new_account(None).await;
    let r = acct.create(&single(json!(99.99), "USD")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = &r.json;
    assert_eq!(v["status"], "EXECUTING");
    assert_eq!(v["amount"], "99.99");
    assert_eq!(v["total_amount"], "99.99");
    assert_eq!(v["currency"], "USD");
    assert_eq!(v["seller_id"], "seller_456");
    let token = v["psp_token"].as_str().expect("psp_token");
    assert!(token.starts_with("cs_test_"), "{token}");
    assert!(v["psp_redirect_url"]
        .as_str()
        .expect("redirect url")
        .contains(token));
    let po = v["payment_order_id"].as_str().unwrap();
    let chk = v["checkout_id"].as_str().unwrap();
    assert!(po.starts_with("po_") && chk.starts_with("chk_"));
    assert_eq!(v["payment_orders"][0]["payment_order_id"], po);

    let got = acct.get(&format!("/v1/payments/{po}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    for field in [
        "payment_order_id",
        "checkout_id",
        "order_id",
        "sub_order_id",
        "buyer_id",
        "seller_id",
        "amount",
        "currency",
        "status",
        "psp_token",
        "created_at",
        "updated_at",
    ] {
        assert!(
            got.json.get(field).is_some(),
            "GET payment lacks {field}: {}",
            got.text
        );
    }
    assert_eq!(got.json["amount"], "99.99");
    assert_eq!(got.json["checkout_id"], chk);
    assert_eq!(got.json["status"], "EXECUTING");
    assert_eq!(got.json["psp_token"], token);

    let c = acct.get(&format!("/v1/checkouts/{chk}")).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.json["payment_orders"].as_array().unwrap().len(), 1);
    assert_eq!(c.json["payment_order_id"], po);
}

#[tokio::test]
async fn multi_seller_amounts_are_exact_in_every_currency_class() {
    let acct = stack().new_account(None).await;
    let body = json!({
        "buyer_id": "user_123", "order_id": "order_789", "total_amount": 0.3, "currency": "USD",
        "line_items": [
            {"seller_id": "seller_A", "amount": 0.1, "sub_order_id": "sub_001"},
            {"seller_id": "seller_B", "amount": "0.20", "sub_order_id": "sub_002"},
        ]
    });
    let r = acct.create(&body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["total_amount"], "0.30");
    let orders = r.json["payment_orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        (orders[0]["amount"].as_str(), orders[1]["amount"].as_str()),
        (Some("0.10"), Some("0.20"))
    );
    assert_eq!(orders[1]["sub_order_id"], "sub_002");
    assert!(
        r.json.get("payment_order_id").is_none(),
        "multi-seller form has no top-level order"
    );
    let chk = r.json["checkout_id"].as_str().unwrap();
    let c = acct.get(&format!("/v1/checkouts/{chk}")).await;
    assert_eq!(c.json["payment_orders"], r.json["payment_orders"]);

    for (currency, amount, want) in [("JPY", json!(1500), "1500"), ("KWD", json!("12.340"), "12.340")] {
        let r = acct.create(&single(amount, currency)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["amount"], want);
        let got = acct
            .get(&format!(
                "/v1/payments/{}",
                r.json["payment_order_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(got.json["amount"], want);
    }
    // Valid ISO amount the PSP cannot charge exactly (Stripe wants three-decimal amounts to end
    // in 0): a final 402 naming the reason, never a rounded charge.
    let r = acct.create(&single(json!("12.345"), "KWD")).await;
    assert_eq!((r.status, r.code()), (402, "psp_rejected"), "{}", r.text);
    assert!(r.text.contains("end in 0"), "{}", r.text);
}

#[tokio::test]
async fn replay_returns_the_same_response_and_other_body_is_422() {
    let acct = stack().new_account(None).await;
    let key = new_key();
    let body = single(json!("25.00"), "EUR").to_string();
    let first = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // Same meaning, other spelling: a replay too.
    let respelled = body.replace("\"25.00\"", "25");
    for b in [&body, &respelled] {
        let again = acct.post("/v1/payments", Some(&key), b).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.text, first.text, "byte-identical replay");
        assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
    }
    let other = acct
        .post("/v1/payments", Some(&key), &body.replace("25.00", "26.00"))
        .await;
    assert_error(&other, 422, "idempotency_key_reused");
    // The same key under another API key is a different request.
    let other_acct = stack().new_account(None).await;
    let theirs = other_acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(theirs.status, 201);
    assert_ne!(theirs.json["checkout_id"], first.json["checkout_id"]);
}

#[tokio::test]
async fn thirty_concurrent_duplicates_create_one_checkout() {
    let acct = stack().new_account(None).await;
    let key = new_key();
    let body = json!({
        "buyer_id": "user_1", "order_id": "order_c", "total_amount": "100.00", "currency": "USD",
        "line_items": [
            {"seller_id": "seller_A", "amount": "40.00", "sub_order_id": "s1"},
            {"seller_id": "seller_B", "amount": "60.00", "sub_order_id": "s2"},
        ]
    })
    .to_string();
    let results =
        futures::future::join_all((0..30).map(|_| acct.post("/v1/payments", Some(&key), &body))).await;
    let mut checkout_ids = HashSet::new();
    let (mut created, mut conflicts) = (0, 0);
    for r in &results {
        match r.status {
            201 => {
                created += 1;
                checkout_ids.insert(r.json["checkout_id"].as_str().unwrap().to_owned());
            }
            409 => {
                conflicts += 1;
                assert_error(r, 409, "idempotency_key_in_use");
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(
        checkout_ids.len(),
        1,
        "one checkout for one key: {checkout_ids:?}"
    );
    assert_eq!(created + conflicts, 30);
    assert!(created >= 1);
    // Exactly one fresh answer; every other 201 is a replay of it.
    let fresh = results
        .iter()
        .filter(|r| r.status == 201 && r.headers.get("idempotent-replayed").is_none());
    assert_eq!(fresh.count(), 1);
    let after = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(
        (after.status, after.json["checkout_id"].as_str()),
        (201, checkout_ids.iter().next().map(String::as_str))
    );
}

#[tokio::test]
async fn a_crashed_request_never_leaves_its_key_stuck() {
    let s = stack();
    let acct = s.new_account(None).await;
    let store = s.store().await;
    let body = single(json!("10.00"), "USD").to_string();
    let request = parse_checkout_request(body.as_bytes()).unwrap();
    let scope = ApiKeyId::parse(&acct.key_id).unwrap();
    let now = chrono::Utc::now();
    let now_ms = now.timestamp_millis();

    // A request that claimed its key and created the checkout, then died (lease lapsed).
    let key = new_key();
    let (checkout, orders) = Checkout::open(&request, &acct.account_id, now);
    let record_id = IdempotencyKey::parse(key.as_bytes()).unwrap().record_id(&scope);
    let stale = IdempotencyRecord::new_in_progress(
        record_id,
        request.fingerprint(),
        ResourceRef::checkout(&checkout.id),
        now_ms,
        now_ms - 1,
    );
    store.begin_checkout(&stale, &checkout, &orders).await.unwrap();
    let r = acct.post("/v1/payments", Some(&key), &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json["checkout_id"],
        checkout.id.as_str(),
        "the retry finishes the same checkout"
    );
    assert_eq!(
        acct.post("/v1/payments", Some(&key), &body)
            .await
            .headers
            .get("idempotent-replayed")
            .unwrap(),
        "true"
    );

    // One whose lease is still live: its twin gets 409, and no second checkout.
    let key = new_key();
    let (checkout, orders) = Checkout::open(&request, &acct.account_id, now);
    let record_id = IdempotencyKey::parse(key.as_bytes()).unwrap().record_id(&scope);
    let live = IdempotencyRecord::new_in_progress(
        record_id,
        request.fingerprint(),
        ResourceRef::checkout(&checkout.id),
        now_ms,
        now_ms + 60_000,
    );
    store.begin_checkout(&live, &checkout, &orders).await.unwrap();
    assert_error(
        &acct.post("/v1/payments", Some(&key), &body).await,
        409,
        "idempotency_key_in_use",
    );
    let other_body = body.replace("10.00", "11.00");
    assert_error(
        &acct.post("/v1/payments", Some(&key), &other_body).await,
        422,
        "idempotency_key_reused",
    );
}

#[tokio::test]
async fn every_bad_input_is_a_clear_400() {
    let acct = stack().new_account(None).await;
    let good = single(json!("10.00"), "USD");
    let with = |field: &str, value: serde_json::Value| {
        let mut b = good.clone();
        b[field] = value;
        b.to_string()
    };
    let without = |field: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(field);
        b.to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "body_missing"),
        ("{\"buyer_id\":".into(), "json_invalid"),
        ("not json".into(), "json_invalid"),
        ("[]".into(), "body_not_object"),
        ("null".into(), "body_not_object"),
        ("\"text\"".into(), "body_not_object"),
        (good.to_string().replacen('{', "{\"amount\":\"5000.00\",", 1), "parameter_duplicate"),
        (with("amount", json!(0)), "amount_not_positive"),
        (with("amount", json!(-1)), "amount_not_positive"),
        (with("amount", json!("abc")), "amount_invalid"),
        (with("amount", json!("1e3")), "amount_invalid"),
        (good.to_string().replace("\"10.00\"", "1e3"), "amount_invalid"),
        (with("amount", json!("10.001")), "amount_too_precise"),
        (with("amount", json!("1000000.00")), "amount_too_large"),
        (with("amount", json!(true)), "amount_invalid"),
        (with("amount", json!(null)), "parameter_missing"),
        (with("currency", json!("XXX")), "currency_invalid"),
        (with("currency", json!(840)), "parameter_invalid_string"),
        (with("seller_id", json!("")), "parameter_invalid"),
        (with("seller_id", json!("x".repeat(65))), "parameter_invalid"),
        (with("buyer_id", json!(["a"])), "parameter_invalid_string"),
        (without("order_id"), "parameter_missing"),
        (with("nickname", json!("x")), "parameter_unknown"),
        (with("card_number", json!("4242424242424242")), "card_data_rejected"),
        (with("cvc", json!("123")), "card_data_rejected"),
        (with("buyer_id", json!("4000000000000002")), "card_data_rejected"),
        (
            json!({"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"3.00",
                   "line_items":[{"seller_id":"a","amount":"1.00","sub_order_id":"x"},{"seller_id":"b","amount":"1.00","sub_order_id":"y"}]})
            .to_string(),
            "total_mismatch",
        ),
        (
            json!({"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"2.00",
                   "line_items":[{"seller_id":"a","amount":"1.00","sub_order_id":"x"},{"seller_id":"b","amount":"1.00","sub_order_id":"x"}]})
            .to_string(),
            "duplicate_sub_order_id",
        ),
        (json!({"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"1.00","line_items":[]}).to_string(), "line_items_invalid"),
        (
            {
                let lines: Vec<_> = (0..51).map(|i| json!({"seller_id":"s","amount":"1.00","sub_order_id":format!("x{i}")})).collect();
                json!({"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"51.00","line_items":lines}).to_string()
            },
            "too_many_line_items",
        ),
    ];
    for (body, code) in &cases {
        let r = acct.post("/v1/payments", Some(&new_key()), body).await;
        assert_error(&r, 400, code);
    }
    // The card number never reaches a log line.
    let logs = stack().function_logs();
    assert!(
        !logs.contains("4242424242424242") && !logs.contains("4000000000000002"),
        "card data logged"
    );
    assert!(!logs.contains(&acct.key), "API key logged");

    // Header rules.
    let body = good.to_string();
    assert_error(
        &acct.post("/v1/payments", None, &body).await,
        400,
        "idempotency_key_missing",
    );
    assert_error(
        &acct.post("/v1/payments", Some(&"k".repeat(256)), &body).await,
        400,
        "idempotency_key_invalid",
    );
    let wrong_type = acct
        .http
        .post(format!("{}/v1/payments", acct.api))
        .bearer_auth(&acct.key)
        .header("idempotency-key", new_key())
        .header("content-type", "text/plain")
        .body(body.clone());
    assert_error(&send(wrong_type).await, 400, "content_type_invalid");
    let no_type = acct
        .http
        .post(format!("{}/v1/payments", acct.api))
        .bearer_auth(&acct.key)
        .header("idempotency-key", new_key())
        .body(body);
    assert_error(&send(no_type).await, 400, "content_type_invalid");
}

#[tokio::test]
async fn authentication_and_account_isolation() {
    let s = stack();
    let alice = s.new_account(None).await;
    let bob = s.new_account(None).await;
    let r = alice.create(&single(json!(5), "USD")).await;
    assert_eq!(r.status, 201);
    let po = r.json["payment_order_id"].as_str().unwrap();
    let chk = r.json["checkout_id"].as_str().unwrap();

    // Bob cannot see Alice's records: 404, exactly as for an unknown id.
    assert_error(
        &bob.get(&format!("/v1/payments/{po}")).await,
        404,
        "resource_missing",
    );
    assert_error(
        &bob.get(&format!("/v1/checkouts/{chk}")).await,
        404,
        "resource_missing",
    );
    assert_error(
        &alice.get("/v1/payments/po_0000000000000000000000000000000").await,
        404,
        "resource_missing",
    );
    assert_error(
        &alice.get("/v1/checkouts/not-an-id").await,
        404,
        "resource_missing",
    );

    let url = format!("{}/v1/payments/{po}", s.api);
    let http = reqwest::Client::new();
    assert_error(&send(http.get(&url)).await, 401, "api_key_invalid");
    assert_error(
        &send(http.get(&url).bearer_auth("psys_test_wrong")).await,
        401,
        "api_key_invalid",
    );
    assert_error(
        &send(http.get(&url).header("authorization", "Basic abc")).await,
        401,
        "api_key_invalid",
    );
    let unauth_post = http
        .post(format!("{}/v1/payments", s.api))
        .header("content-type", "application/json")
        .header("idempotency-key", new_key())
        .body(single(json!(5), "USD").to_string());
    assert_error(&send(unauth_post).await, 401, "api_key_invalid");

    // The dev key seeded by the twin works.
    let dev = send(http.get(&url).bearer_auth(common::DEV_API_KEY)).await;
    assert_error(&dev, 404, "resource_missing");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let acct = stack().new_account(None).await;
    let big = format!("{{\"buyer_id\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    assert_error(
        &acct.post("/v1/payments", Some(&new_key()), &big).await,
        413,
        "body_too_large",
    );
}

#[tokio::test]
async fn rate_limit_is_per_key_with_retry_after() {
    let s = stack();
    let limited = s.new_account(Some(RateLimit::new(1, 3).unwrap())).await;
    let other = s.new_account(None).await;
    let url = "/v1/payments/po_00000000000000000000000000000000";
    let statuses: Vec<u16> = futures::future::join_all((0..6).map(|_| limited.get(url)))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        3,
        "burst of 3 served: {statuses:?}"
    );
    let r = limited.get(url).await;
    assert_error(&r, 429, "rate_limit_exceeded");
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=4).contains(&retry_after), "Retry-After {retry_after}");
    // Another key is not affected.
    assert_eq!(other.get(url).await.status, 404);
    // After the refill interval the key works again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(limited.get(url).await.status, 404);
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let acct = stack().new_account(None).await;
    let r = acct.get("/v1/nothing-here").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn exactly_one_printable_idempotency_key() {
    let acct = stack().new_account(None).await;
    let body = single(json!("5.00"), "USD").to_string();
    let key = new_key();
    // Two headers: API Gateway joins them with a comma; refused, and nothing is made.
    let two = send(
        acct.http
            .post(format!("{}/v1/payments", acct.api))
            .bearer_auth(&acct.key)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("one-{key}"))
            .header("idempotency-key", format!("two-{key}"))
            .body(body.clone()),
    )
    .await;
    assert_error(&two, 400, "idempotency_key_invalid");
    assert!(
        two.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{}",
        two.text
    );
    let one = acct
        .post("/v1/payments", Some(&format!("one-{key}")), &body)
        .await;
    assert_eq!(
        (one.status, one.headers.contains_key("idempotent-replayed")),
        (201, false),
        "{}",
        one.text
    );
    // Not printable ASCII: invalid, saying why (not "missing").
    let non_ascii = send(
        acct.http
            .post(format!("{}/v1/payments", acct.api))
            .bearer_auth(&acct.key)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes("ключ".as_bytes()).unwrap(),
            )
            .body(body.clone()),
    )
    .await;
    assert_error(&non_ascii, 400, "idempotency_key_invalid");
    assert!(non_ascii.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("printable ASCII"));
    // A malformed Authorization says so.
    let bad_auth = send(acct.http.get(format!("{}/v1/payments/po_x", acct.api)).header(
        "authorization",
        reqwest::header::HeaderValue::from_bytes("Bearer clé".as_bytes()).unwrap(),
    ))
    .await;
    assert_error(&bad_auth, 401, "api_key_invalid");
    assert!(
        bad_auth.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Malformed"),
        "{}",
        bad_auth.text
    );
}

#[tokio::test]
async fn card_numbers_with_any_separator_are_refused_and_never_echoed() {
    let acct = stack().new_account(None).await;
    for pan in [
        "4242.4242.4242.4242",
        "4242:4242:4242:4242",
        "4242_4242_4242_4242",
        "pan:4242424242424242",
        "4242424242424242-1",
    ] {
        let mut body = single(json!("5.00"), "USD");
        body["order_id"] = json!(pan);
        let r = acct.create(&body).await;
        assert_error(&r, 400, "card_data_rejected");
        assert!(!r.text.contains("4242"), "never echoed: {}", r.text);
    }
}

/// A non-loopback IPv4 address of this machine, if it has one (found without sending a packet).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn dynamodb_local_and_every_local_service_refuse_other_hosts() {
    let s = stack();
    let Some(ip) = non_loopback_address() else {
        eprintln!("this machine has no non-loopback address: nothing to check");
        return;
    };
    for (what, url) in [
        ("DynamoDB Local", &s.dynamodb),
        ("moto", &s.moto),
        ("the sandbox PSP", &s.psp),
        ("the API", &s.api),
        ("the twin's controls", &s.control),
    ] {
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let reachable =
            std::net::TcpStream::connect_timeout(&(ip, port).into(), std::time::Duration::from_secs(1))
                .is_ok();
        assert!(!reachable, "{what} answers on {ip}:{port}");
        let loopback = std::net::TcpStream::connect_timeout(
            &(std::net::Ipv4Addr::LOCALHOST, port).into(),
            std::time::Duration::from_secs(1),
        );
        assert!(loopback.is_ok(), "{what} is up on 127.0.0.1:{port}");
    }
}

#[tokio::test]
async fn slow_clients_are_dropped() {
    use std::io::{Read, Write};
    let port: u16 = stack().api.rsplit(':').next().unwrap().parse().unwrap();
    // Headers trickling in, a byte a second: the connection is closed (this twin allows 3 s).
    let started = std::time::Instant::now();
    let mut trickle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    trickle
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let closed = loop {
        if trickle.write_all(b"G").is_err() {
            break true;
        }
        let mut buf = [0u8; 256];
        match trickle.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => break true,
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(800));
    };
    assert!(
        closed,
        "a trickling client was held open for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A body shorter than its Content-Length: 408, then closed.
    let mut short = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    short
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    short
        .write_all(b"POST /v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":1}")
        .unwrap();
    let mut answer = String::new();
    let _ = short.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn the_banner_shows_secrets_masked() {
    let s = stack();
    let banner = std::fs::read_to_string(&s.stderr_log).unwrap();
    assert!(banner.contains("PSP_SECRET_KEY"), "{banner}");
    for secret in ["sk_test_sandbox_51PsysLocalDev", "whsec_sandbox_localdev_7c1e9a"] {
        assert!(!banner.contains(secret), "{secret} printed in full");
    }
    assert!(
        banner.contains("sk_test_…lDev") && banner.contains("whsec_…1e9a"),
        "{banner}"
    );
    assert!(banner.contains(&format!("{} (the documented default)", common::DEV_API_KEY)));
}

/// The template's hourly invariant check runs on the twin as EventBridge would run it; it can
/// be fired now, paused and resumed through the twin's controls.
#[tokio::test]
async fn the_hourly_invariant_check_is_scheduled_and_can_be_fired_paused_and_resumed() {
    use reqwest::Method;
    let s = stack();
    let hourly = |list: &serde_json::Value| {
        list.as_array()
            .and_then(|l| {
                l.iter()
                    .find(|x| x["function"] == "CheckInvariantsFunction" && x["event"] == "Hourly")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no CheckInvariantsFunction/Hourly in {list}"))
    };
    let next_fire = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v["next_fire_at"].as_str().expect("next_fire_at"))
            .unwrap_or_else(|e| panic!("next_fire_at is not RFC 3339 ({e}): {v}"))
            .with_timezone(&chrono::Utc)
    };

    let listed = hourly(&s.twin(Method::GET, "schedules").await);
    assert_eq!(listed["expression"], "rate(1 hour)", "{listed}");
    assert_eq!(listed["enabled"], true, "{listed}");
    let now = chrono::Utc::now();
    let next = next_fire(&listed);
    assert!(
        next > now && next <= now + chrono::TimeDelta::hours(1),
        "{listed}"
    );

    let fired = s
        .twin(Method::POST, "schedules/CheckInvariantsFunction/Hourly/fire")
        .await;
    assert_eq!(fired["function"], "CheckInvariantsFunction", "{fired}");
    assert_eq!(fired["event"], "Hourly", "{fired}");
    let report = &fired["result"];
    assert_eq!(report["ok"], true, "{fired}");
    assert!(report["ledger_transactions"].is_u64(), "{fired}");
    assert_eq!(report["violations_total"], 0, "{fired}");

    let paused = s
        .twin(Method::POST, "schedules/CheckInvariantsFunction/Hourly/pause")
        .await;
    assert_eq!(paused["enabled"], false, "{paused}");
    assert!(paused["next_fire_at"].is_null(), "{paused}");
    let listed = hourly(&s.twin(Method::GET, "schedules").await);
    assert_eq!(listed["enabled"], false, "{listed}");
    assert!(listed["fired"].as_u64() >= Some(1), "{listed}");

    let resumed = s
        .twin(Method::POST, "schedules/CheckInvariantsFunction/Hourly/resume")
        .await;
    assert_eq!(resumed["enabled"], true, "{resumed}");
    let listed = hourly(&s.twin(Method::GET, "schedules").await);
    assert_eq!(listed["enabled"], true, "{listed}");
    assert!(next_fire(&listed) > chrono::Utc::now(), "{listed}");
}
