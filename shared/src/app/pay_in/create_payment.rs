//! `POST /v1/payments`: validate, claim the Idempotency-Key together with the new checkout and
//! its payment orders, submit the checkout to the PSP, and store the final response for replay.
//! The claim, replay, takeover and completion are the shared mechanism in `app::idempotent`.

use chrono::{DateTime, Utc};

use crate::api::pay_in::{checkout_view, parse_checkout_request};
use crate::api::ApiError;
use crate::app::auth::Authority;
use crate::app::idempotent::{self, Claim, Command, Lease};
use crate::app::Reply;
use crate::domain::idempotency::{is_storable, ResourceKind, ResourceRef};
use crate::domain::ids::CheckoutId;
use crate::domain::pay_in::{Checkout, PaymentEvent, PaymentOrder, PaymentStatus, SessionRequest};
use crate::domain::psp::PspError;
use crate::ports::{Begin, Checkouts, Claims, Completion, Psp, StoreError};

pub struct CreatePayment<'a> {
    /// The raw `Idempotency-Key` header's bytes, if any.
    pub idempotency_key: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The invocation's deadline: our lease on the key ends there.
    pub deadline_ms: i64,
    /// Our public site, where the PSP sends the buyer back (the completion page).
    pub public_base_url: &'a str,
}

pub async fn create_payment<S: Checkouts + Claims, P: Psp>(
    store: &S,
    psp: &P,
    authority: Authority,
    input: CreatePayment<'_>,
) -> Result<Reply, ApiError> {
    let parsed = Claim::parse(
        input.idempotency_key,
        input.body,
        parse_checkout_request,
        |r| r.fingerprint(),
        input.now.timestamp_millis(),
        input.deadline_ms,
    );
    let (claim, request) = parsed?;
    let opened = Checkout::open(&request, &authority.caller().account_id, input.now);
    let command = OpenCheckout {
        store,
        psp,
        now: input.now,
        public_base_url: input.public_base_url,
    };
    idempotent::run(store, &command, &authority, claim, opened).await
}

/// A checkout and its payment orders, created with the claim.
struct OpenCheckout<'a, S, P> {
    store: &'a S,
    psp: &'a P,
    now: DateTime<Utc>,
    public_base_url: &'a str,
}

impl<S: Checkouts + Claims, P: Psp> Command for OpenCheckout<'_, S, P> {
    type Resource = (Checkout, Vec<PaymentOrder>);

    fn reference(&self, (checkout, _): &Self::Resource) -> ResourceRef {
        ResourceRef::checkout(&checkout.id)
    }

    async fn begin(
        &self,
        record: &crate::domain::idempotency::IdempotencyRecord,
        (checkout, orders): &Self::Resource,
    ) -> Result<Begin, StoreError> {
        let begun = self.store.begin_checkout(record, checkout, orders).await?;
        if begun == Begin::Created {
            tracing::info!(checkout_id = %checkout.id, orders = orders.len(), "checkout created");
        }
        Ok(begun)
    }

    async fn load(&self, reference: &ResourceRef) -> Result<Option<Self::Resource>, StoreError> {
        match reference.kind {
            ResourceKind::Checkout => match CheckoutId::parse(&reference.id) {
                Ok(id) => self.store.get_checkout(&id).await,
                Err(e) => Err(StoreError::Corrupt(format!(
                    "idempotency record names {reference}: {e}"
                ))),
            },
            // Keys are scoped per API key and a payment's body is never a refund's.
            ResourceKind::Refund | ResourceKind::Payout | ResourceKind::ReconciliationBreak => Err(
                StoreError::Corrupt(format!("a payment's idempotency record names {reference}")),
            ),
        }
    }

    async fn execute(&self, lease: &Lease, (checkout, orders): Self::Resource) -> Result<Reply, ApiError> {
        execute(
            self.store,
            self.psp,
            lease,
            checkout,
            orders,
            self.now,
            self.public_base_url,
        )
        .await
    }
}

/// The payment executor (design §3 ④–⑤): submits a `CREATED` checkout to the PSP with the
/// checkout id as the PSP's idempotency key, then moves it to `EXECUTING` and stores the reply
/// in one transaction. A checkout already past `CREATED` (a resumed request) is only answered.
async fn execute<S: Checkouts + Claims, P: Psp>(
    store: &S,
    psp: &P,
    lease: &Lease,
    mut checkout: Checkout,
    mut orders: Vec<PaymentOrder>,
    now: DateTime<Utc>,
    public_base_url: &str,
) -> Result<Reply, ApiError> {
    if let Err(broken) = checkout.check(&orders) {
        tracing::error!(error = %broken, "checkout invariant broken");
        return Err(ApiError::internal());
    }
    if checkout.status != PaymentStatus::Created {
        let reply = final_reply(&checkout, &orders);
        idempotent::complete(store, lease, &reply).await?;
        return Ok(reply);
    }
    let request = SessionRequest::for_checkout(&checkout, &orders, public_base_url);
    let event = match psp.create_session(&request).await {
        Ok(session) => {
            checkout.psp_session = Some(session.id);
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
        Err(unavailable @ PspError::Unavailable(_)) => {
            tracing::warn!(checkout_id = %checkout.id, "PSP unavailable; lease released for a retry");
            idempotent::release(store, lease).await;
            return Err(unavailable.into());
        }
    };
    let from = checkout.apply(&mut orders, event, now).map_err(|e| {
        tracing::error!(error = %e, "executor transition");
        ApiError::internal()
    })?;
    let reply = final_reply(&checkout, &orders);
    debug_assert!(is_storable(reply.status));
    let completion = Completion {
        record_id: &lease.record_id,
        lease_token: &lease.token,
        status: reply.status,
        body: &reply.body,
    };
    if !store
        .save_transition(&checkout, &orders, from, completion)
        .await?
    {
        // The lease lapsed and another request took over the same checkout; its answer is the
        // stored one.
        return idempotent::answer_after_lost_lease(store, lease).await;
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

/// For unit tests: a caller authenticated the ordinary way.
#[cfg(test)]
pub(crate) async fn create_checked<S: Checkouts + Claims, P: Psp>(
    store: &S,
    psp: &P,
    caller: &crate::app::Caller,
    input: CreatePayment<'_>,
) -> Result<Reply, ApiError> {
    create_payment(store, psp, Authority::Checked(caller.clone()), input).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::app::Caller;
    use crate::domain::idempotency::{IdempotencyKey, IdempotencyRecord};
    use crate::domain::ids::{AccountId, ApiKeyId};

    const BODY: &[u8] =
        br#"{"buyer_id":"b1","seller_id":"s1","amount":"10.00","currency":"USD","order_id":"o1"}"#;

    fn caller() -> Caller {
        Caller {
            account_id: AccountId::parse("acct_a").unwrap(),
            key_id: ApiKeyId::generate(),
        }
    }

    fn input<'a>(key: Option<&'a str>, body: &'a [u8]) -> CreatePayment<'a> {
        let now = Utc::now();
        CreatePayment {
            idempotency_key: key.map(str::as_bytes),
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
        let first = create_checked(&store, &psp, &c, input(Some("k1"), BODY))
            .await
            .unwrap();
        assert_eq!((first.status, first.replayed), (201, false));
        let again = create_checked(&store, &psp, &c, input(Some("k1"), BODY))
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
        let e = create_checked(&store, &psp, &c, input(Some("k1"), &other))
            .await
            .unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(store.checkout_count(), 1);
        // The same key from another API key is another request.
        let c2 = caller();
        let third = create_checked(&store, &psp, &c2, input(Some("k1"), BODY))
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
            create_checked(&store, &psp, &c, input(None, BODY))
                .await
                .unwrap_err()
                .status,
            400
        );
        let long = "x".repeat(256);
        assert_eq!(
            create_checked(&store, &psp, &c, input(Some(&long), BODY))
                .await
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            create_checked(&store, &psp, &c, input(Some("k"), b"{}"))
                .await
                .unwrap_err()
                .status,
            400
        );
        // The 400 was not stored: the key still works with a good body.
        assert_eq!(
            create_checked(&store, &psp, &c, input(Some("k"), BODY))
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
        let crashed = input(Some("k"), BODY);
        let req = parse_checkout_request(BODY).unwrap();
        let (checkout, orders) = Checkout::open(&req, &c.account_id, crashed.now);
        let record_id = IdempotencyKey::parse(b"k").unwrap().record_id(&c.key_id);
        let now_ms = crashed.now.timestamp_millis();
        let live = IdempotencyRecord::new_in_progress(
            record_id,
            req.fingerprint(),
            ResourceRef::checkout(&checkout.id),
            now_ms,
            now_ms + 60_000,
        );
        store.begin_checkout(&live, &checkout, &orders).await.unwrap();

        let e = create_checked(&store, &psp, &c, input(Some("k"), BODY))
            .await
            .unwrap_err();
        assert_eq!(e.status, 409, "lease still live");

        store.expire_leases();
        let r = create_checked(&store, &psp, &c, input(Some("k"), BODY))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["checkout_id"], checkout.id.as_str());
        assert_eq!(store.checkout_count(), 1);
        let replay = create_checked(&store, &psp, &c, input(Some("k"), BODY))
            .await
            .unwrap();
        assert!(replay.replayed);
    }
}

#[cfg(test)]
mod known_key_tests {
    use super::*;
    use crate::app::auth::{authenticated_post, CallerCache};
    use crate::app::memory::{FakePsp, Memory};
    use crate::domain::rate_limit::RateLimit;

    const BODY: &[u8] =
        br#"{"buyer_id":"b1","seller_id":"s1","amount":"10.00","currency":"USD","order_id":"o1"}"#;

    fn input<'a>(key: &'a str, body: &'a [u8]) -> CreatePayment<'a> {
        let now = Utc::now();
        CreatePayment {
            idempotency_key: Some(key.as_bytes()),
            body,
            now,
            deadline_ms: now.timestamp_millis() + 10_000,
            public_base_url: "https://shop.example",
        }
    }

    /// A key this instance knows is checked while the command reads; a key that fails the
    /// check gets its 401 or 429 and nothing is written, nor sent to the PSP.
    #[tokio::test]
    async fn a_known_key_that_fails_its_check_writes_nothing() {
        let (store, psp) = (Memory::default(), FakePsp::default());
        store.add_key("raw-key-1", Some(RateLimit::new(1, 1).unwrap()));
        let callers = CallerCache::default();
        let post = |now_us: i64, key: &'static str| {
            let (store, psp, callers) = (&store, &psp, &callers);
            authenticated_post(
                store,
                callers,
                Some(b"Bearer raw-key-1".as_slice()),
                RateLimit::new(50, 100).unwrap(),
                move || now_us,
                move |authority| create_payment(store, psp, authority, input(key, BODY)),
            )
        };
        assert_eq!(post(1_000_000, "k1").await.unwrap().status, 201);
        // Known now; within the same second the limit (one a second) refuses it.
        let e = post(1_000_001, "k2").await.unwrap_err();
        assert_eq!(e.status, 429);
        // Known, and checked alongside: counted and created.
        assert_eq!(post(2_000_001, "k3").await.unwrap().status, 201);
        assert_eq!(store.key("raw-key-1").unwrap().tat_us, Some(3_000_001));
        store.revoke_key("raw-key-1");
        assert_eq!(post(9_000_000, "k4").await.unwrap_err().status, 401);
        assert_eq!(store.checkout_count(), 2);
        assert_eq!(psp.calls.lock().unwrap().len(), 2);
    }
}

#[cfg(test)]
mod executor_tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::app::Caller;
    use crate::domain::ids::{AccountId, ApiKeyId};

    const BODY: &[u8] =
        br#"{"buyer_id":"b1","seller_id":"s1","amount":"10.00","currency":"USD","order_id":"o1"}"#;

    fn run<'a>(key: &'a str) -> CreatePayment<'a> {
        let now = Utc::now();
        CreatePayment {
            idempotency_key: Some(key.as_bytes()),
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
        let r = create_checked(&store, &psp, &c, run("k")).await.unwrap();
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
        assert!(create_checked(&store, &psp, &c, run("k")).await.unwrap().replayed);
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
        let r = create_checked(&store, &psp, &c, run("k")).await.unwrap();
        assert_eq!(r.status, 402);
        assert!(r.body.contains("psp_rejected") && r.body.contains("bad currency"));
        let again = create_checked(&store, &psp, &c, run("k")).await.unwrap();
        assert_eq!((again.status, again.replayed, &again.body), (402, true, &r.body));
        assert_eq!(psp.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unavailable_psp_is_503_not_stored_and_a_retry_resumes_with_the_same_key() {
        let (store, psp, c) = (Memory::default(), FakePsp::default(), caller());
        *psp.fail_with.lock().unwrap() = Some(PspError::Unavailable("down".into()));
        let e = create_checked(&store, &psp, &c, run("k")).await.unwrap_err();
        assert_eq!(
            (e.status, e.code, e.retry_after_s),
            (503, "psp_unavailable", Some(2))
        );
        *psp.fail_with.lock().unwrap() = None;
        let r = create_checked(&store, &psp, &c, run("k")).await.unwrap();
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
