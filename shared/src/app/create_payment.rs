//! `POST /v1/payments`: validate, claim the Idempotency-Key, create the checkout and its
//! payment orders atomically, and store the final response for replay.

use chrono::{DateTime, Utc};

use super::{Caller, Reply};
use crate::domain::checkout::{checkout_view, Checkout, CheckoutRequest};
use crate::domain::idempotency::{is_storable, Decision, IdempotencyKey, IdempotencyRecord, RecordState};
use crate::domain::psp::{PspError, SessionRequest};
use crate::domain::status::PaymentEvent;
use crate::domain::{ApiError, PaymentOrder, PaymentStatus};
use crate::ports::{Begin, Checkouts, Completion, Idempotency, Psp, StoreError};

pub struct CreatePayment<'a> {
    pub caller: &'a Caller,
    /// The raw `Idempotency-Key` header, if any.
    pub idempotency_key: Option<&'a str>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The invocation's deadline: our lease on the key ends there.
    pub deadline_ms: i64,
    /// Our public site, where the PSP sends the buyer back (the completion page).
    pub public_base_url: &'a str,
}

pub async fn create_payment<S: Checkouts + Idempotency, P: Psp>(
    store: &S,
    psp: &P,
    input: CreatePayment<'_>,
) -> Result<Reply, ApiError> {
    let key = match input.idempotency_key {
        None => {
            return Err(ApiError::invalid_param(
                "Idempotency-Key",
                "idempotency_key_missing",
                "The Idempotency-Key header is required: send a unique value (e.g. a UUID) per payment and reuse it on retries",
            ))
        }
        Some(raw) => IdempotencyKey::parse(raw)
            .map_err(|m| ApiError::invalid_param("Idempotency-Key", "idempotency_key_invalid", m))?,
    };
    // Validation failures are not stored: the request never started (as Stripe does).
    let request = CheckoutRequest::parse_json(input.body)?;
    let request_hash = request.fingerprint();
    let record_id = key.record_id(&input.caller.key_id);
    let now_ms = input.now.timestamp_millis();

    let (checkout, orders) = Checkout::open(&request, &input.caller.account_id, input.now);
    let record = IdempotencyRecord::new_in_progress(
        record_id.clone(),
        request_hash.clone(),
        checkout.id.clone(),
        now_ms,
        input.deadline_ms,
    );
    let lease_token = record.lease_token().unwrap_or_default().to_owned();

    let existing = match store
        .begin_checkout(&record, &checkout, &orders)
        .await
        .map_err(store_error)?
    {
        Begin::Created => {
            tracing::info!(checkout_id = %checkout.id, orders = orders.len(), "checkout created");
            return execute(store, psp, &record_id, &lease_token, checkout, orders, &input).await;
        }
        // Our own claim, seen again because a retried call found it already written.
        Begin::Exists(existing) if existing.lease_token() == Some(lease_token.as_str()) => {
            return execute(store, psp, &record_id, &lease_token, checkout, orders, &input).await;
        }
        Begin::Exists(existing) => existing,
        Begin::Contended => match store.get_record(&record_id).await.map_err(store_error)? {
            Some(existing) => existing,
            None => return Err(ApiError::conflict_in_flight()),
        },
    };

    match existing.decide(&request_hash, now_ms) {
        Decision::Replay { status, body } => Ok(Reply::stored(status, body, true)),
        Decision::Mismatch => Err(ApiError::idempotency_mismatch()),
        Decision::InFlight => Err(ApiError::conflict_in_flight()),
        Decision::TakeOver {
            checkout_id,
            stale_token,
        } => {
            let taken = store
                .take_over(&record_id, &stale_token, &lease_token, input.deadline_ms, now_ms)
                .await
                .map_err(store_error)?;
            if !taken {
                return Err(ApiError::conflict_in_flight());
            }
            tracing::warn!(checkout_id = %checkout_id, "took over a lapsed idempotency lease");
            let (checkout, orders) = store
                .get_checkout(&checkout_id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    tracing::error!(checkout_id = %checkout_id, "idempotency record names a missing checkout");
                    ApiError::internal()
                })?;
            execute(store, psp, &record_id, &lease_token, checkout, orders, &input).await
        }
    }
}

/// The payment executor (design §3 ④–⑤): submits a `CREATED` checkout to the PSP with the
/// checkout id as the PSP's idempotency key, then moves it to `EXECUTING` and stores the reply
/// in one transaction. A checkout already past `CREATED` (a resumed request) is only answered.
async fn execute<S: Checkouts + Idempotency, P: Psp>(
    store: &S,
    psp: &P,
    record_id: &str,
    lease_token: &str,
    mut checkout: Checkout,
    mut orders: Vec<PaymentOrder>,
    input: &CreatePayment<'_>,
) -> Result<Reply, ApiError> {
    if let Err(broken) = checkout.check(&orders) {
        tracing::error!(error = %broken, "checkout invariant broken");
        return Err(ApiError::internal());
    }
    if checkout.status != PaymentStatus::Created {
        let reply = final_reply(&checkout, &orders);
        complete(store, record_id, lease_token, &reply).await?;
        return Ok(reply);
    }
    let request = SessionRequest::for_checkout(&checkout, &orders, input.public_base_url);
    let event = match psp.create_session(&request).await {
        Ok(session) => {
            checkout.psp_token = Some(session.id);
            checkout.psp_url = Some(session.url);
            PaymentEvent::Submitted
        }
        Err(PspError::Rejected {
            status,
            code,
            message,
        }) => {
            tracing::warn!(checkout_id = %checkout.id, psp_status = status, psp_code = %code, "PSP rejected the session");
            checkout.failure_reason = Some(format!("{code}: {message}"));
            PaymentEvent::PspRejected
        }
        Err(PspError::Unavailable(why)) => {
            tracing::warn!(checkout_id = %checkout.id, reason = %why, "PSP unavailable; lease released for a retry");
            if let Err(e) = store.release(record_id, lease_token).await {
                tracing::error!(error = %e, "could not release the idempotency lease");
            }
            return Err(ApiError::unavailable(
                2,
                "The payment provider is unavailable; retry with the same Idempotency-Key",
            )
            .with_code("psp_unavailable"));
        }
    };
    let from = checkout.apply(&mut orders, event, input.now).map_err(|e| {
        tracing::error!(error = %e, "executor transition");
        ApiError::internal()
    })?;
    let reply = final_reply(&checkout, &orders);
    debug_assert!(is_storable(reply.status));
    let completion = Completion {
        record_id,
        lease_token,
        status: reply.status,
        body: &reply.body,
    };
    if !store
        .save_transition(&checkout, &orders, from, completion)
        .await
        .map_err(store_error)?
    {
        // The lease lapsed and another request took over the same checkout; its answer is the
        // stored one.
        return match store.get_record(record_id).await.map_err(store_error)? {
            Some(IdempotencyRecord {
                state: RecordState::Completed { status, body },
                ..
            }) => Ok(Reply::stored(status, body, true)),
            _ => Err(ApiError::conflict_in_flight()),
        };
    }
    tracing::info!(checkout_id = %checkout.id, status = %checkout.status, "checkout submitted to the PSP");
    Ok(reply)
}

/// The answer for a checkout that left `CREATED`: 201 with the checkout, or 402 when the PSP
/// refused it.
fn final_reply(checkout: &Checkout, orders: &[PaymentOrder]) -> Reply {
    match (checkout.status, &checkout.failure_reason) {
        (PaymentStatus::Failed, Some(reason)) => {
            let e = ApiError::psp_rejected(reason);
            Reply::stored(e.status, e.body(), false)
        }
        _ => Reply::json(201, &checkout_view(checkout, orders)),
    }
}

async fn complete<S: Idempotency>(
    store: &S,
    record_id: &str,
    lease_token: &str,
    reply: &Reply,
) -> Result<(), ApiError> {
    if !store
        .complete(record_id, lease_token, reply.status, &reply.body)
        .await
        .map_err(store_error)?
    {
        tracing::warn!("lease lost before storing the response");
    }
    Ok(())
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "payments store failed");
    ApiError::unavailable(
        1,
        "The payments store is temporarily unavailable; retry with the same Idempotency-Key",
    )
}

/// True when a stored record is a finished answer (used by tests and tools).
pub fn is_completed(record: &IdempotencyRecord) -> bool {
    matches!(record.state, RecordState::Completed { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::domain::ids::{AccountId, ApiKeyId};

    const BODY: &[u8] =
        br#"{"buyer_id":"b1","seller_id":"s1","amount":"10.00","currency":"USD","order_id":"o1"}"#;

    fn caller() -> Caller {
        Caller {
            account_id: AccountId::parse("acct_a").unwrap(),
            key_id: ApiKeyId::generate(),
        }
    }

    fn input<'a>(caller: &'a Caller, key: Option<&'a str>, body: &'a [u8]) -> CreatePayment<'a> {
        let now = Utc::now();
        CreatePayment {
            caller,
            idempotency_key: key,
            body,
            now,
            deadline_ms: now.timestamp_millis() + 10_000,
            public_base_url: "https://shop.example",
        }
    }

    #[tokio::test]
    async fn create_then_replay_then_mismatch() {
        let store = Memory::default();
        let psp = FakePsp::default();
        let c = caller();
        let first = create_payment(&store, &psp, input(&c, Some("k1"), BODY))
            .await
            .unwrap();
        assert_eq!((first.status, first.replayed), (201, false));
        let again = create_payment(&store, &psp, input(&c, Some("k1"), BODY))
            .await
            .unwrap();
        assert_eq!(
            (again.status, again.replayed, &again.body),
            (201, true, &first.body)
        );
        let other = BODY
            .to_vec()
            .iter()
            .map(|b| if *b == b'1' { b'2' } else { *b })
            .collect::<Vec<u8>>();
        let e = create_payment(&store, &psp, input(&c, Some("k1"), &other))
            .await
            .unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(store.checkout_count(), 1);
        // The same key from another API key is another request.
        let c2 = caller();
        let third = create_payment(&store, &psp, input(&c2, Some("k1"), BODY))
            .await
            .unwrap();
        assert!(!third.replayed);
        assert_eq!(store.checkout_count(), 2);
    }

    #[tokio::test]
    async fn missing_or_bad_key_is_400_and_not_stored() {
        let store = Memory::default();
        let psp = FakePsp::default();
        let c = caller();
        assert_eq!(
            create_payment(&store, &psp, input(&c, None, BODY))
                .await
                .unwrap_err()
                .status,
            400
        );
        let long = "x".repeat(256);
        assert_eq!(
            create_payment(&store, &psp, input(&c, Some(&long), BODY))
                .await
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            create_payment(&store, &psp, input(&c, Some("k"), b"{}"))
                .await
                .unwrap_err()
                .status,
            400
        );
        // The 400 was not stored: the key still works with a good body.
        assert_eq!(
            create_payment(&store, &psp, input(&c, Some("k"), BODY))
                .await
                .unwrap()
                .status,
            201
        );
    }

    #[tokio::test]
    async fn lapsed_lease_is_taken_over_and_finishes_the_same_checkout() {
        let store = Memory::default();
        let psp = FakePsp::default();
        let c = caller();
        // A request that claimed the key and died before answering.
        let crashed = input(&c, Some("k"), BODY);
        let req = CheckoutRequest::parse_json(BODY).unwrap();
        let (checkout, orders) = Checkout::open(&req, &c.account_id, crashed.now);
        let record_id = IdempotencyKey::parse("k").unwrap().record_id(&c.key_id);
        let now_ms = crashed.now.timestamp_millis();
        let live = IdempotencyRecord::new_in_progress(
            record_id,
            req.fingerprint(),
            checkout.id.clone(),
            now_ms,
            now_ms + 60_000,
        );
        store.begin_checkout(&live, &checkout, &orders).await.unwrap();

        let e = create_payment(&store, &psp, input(&c, Some("k"), BODY))
            .await
            .unwrap_err();
        assert_eq!(e.status, 409, "lease still live");

        store.expire_leases();
        let r = create_payment(&store, &psp, input(&c, Some("k"), BODY))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["checkout_id"], checkout.id.as_str());
        assert_eq!(store.checkout_count(), 1);
        let replay = create_payment(&store, &psp, input(&c, Some("k"), BODY))
            .await
            .unwrap();
        assert!(replay.replayed);
    }
}

#[cfg(test)]
mod executor_tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::domain::ids::{AccountId, ApiKeyId};

    const BODY: &[u8] =
        br#"{"buyer_id":"b1","seller_id":"s1","amount":"10.00","currency":"USD","order_id":"o1"}"#;

    fn run<'a>(caller: &'a Caller, key: &'a str) -> CreatePayment<'a> {
        let now = Utc::now();
        CreatePayment {
            caller,
            idempotency_key: Some(key),
            body: BODY,
            now,
            deadline_ms: now.timestamp_millis() + 10_000,
            public_base_url: "https://shop.example/",
        }
    }

    fn caller() -> Caller {
        Caller {
            account_id: AccountId::parse("acct_a").unwrap(),
            key_id: ApiKeyId::generate(),
        }
    }

    #[tokio::test]
    async fn submits_one_session_and_moves_to_executing() {
        let (store, psp, c) = (Memory::default(), FakePsp::default(), caller());
        let r = create_payment(&store, &psp, run(&c, "k")).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!((r.status, v["status"].as_str()), (201, Some("EXECUTING")));
        assert!(v["psp_redirect_url"]
            .as_str()
            .unwrap()
            .starts_with("https://psp.example/pay/"));
        assert_eq!(v["payment_orders"][0]["psp_token"], v["psp_token"]);
        let calls = psp.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].checkout_id.as_str(), v["checkout_id"].as_str().unwrap());
        assert_eq!(
            calls[0].success_url,
            format!(
                "https://shop.example/checkout/complete?checkout_id={}",
                calls[0].checkout_id
            )
        );
        // A replay does not call the PSP again.
        assert!(create_payment(&store, &psp, run(&c, "k")).await.unwrap().replayed);
        assert_eq!(psp.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn rejected_by_psp_is_a_final_402_and_the_checkout_failed() {
        let (store, psp, c) = (Memory::default(), FakePsp::default(), caller());
        *psp.fail_with.lock().unwrap() = Some(PspError::Rejected {
            status: 400,
            code: "parameter_invalid".into(),
            message: "bad currency".into(),
        });
        let r = create_payment(&store, &psp, run(&c, "k")).await.unwrap();
        assert_eq!(r.status, 402);
        assert!(r.body.contains("psp_rejected") && r.body.contains("bad currency"));
        let again = create_payment(&store, &psp, run(&c, "k")).await.unwrap();
        assert_eq!((again.status, again.replayed, &again.body), (402, true, &r.body));
        assert_eq!(psp.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unavailable_psp_is_503_not_stored_and_a_retry_resumes_with_the_same_key() {
        let (store, psp, c) = (Memory::default(), FakePsp::default(), caller());
        *psp.fail_with.lock().unwrap() = Some(PspError::Unavailable("down".into()));
        let e = create_payment(&store, &psp, run(&c, "k")).await.unwrap_err();
        assert_eq!(
            (e.status, e.code, e.retry_after_s),
            (503, "psp_unavailable", Some(2))
        );
        *psp.fail_with.lock().unwrap() = None;
        let r = create_payment(&store, &psp, run(&c, "k")).await.unwrap();
        assert_eq!((r.status, r.replayed), (201, false));
        let calls = psp.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0], calls[1],
            "the retry sends the same request under the same PSP key"
        );
        assert_eq!(store.checkout_count(), 1);
    }
}
