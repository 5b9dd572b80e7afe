//! `POST /webhooks/psp`: the signed webhook is the only proof of payment (design §6 ⑧b).
//!
//! The adapter verifies the signature over the raw body and parses the PSP's event; here we
//! find the checkout, check the amount, and apply the transition through the state machine in
//! one transaction with the event's marker (dedup) and the outbox record. Anything verified but
//! unusable is acknowledged (2xx, so the PSP stops retrying) and recorded as an anomaly for
//! reconciliation; our own failures answer 5xx so the PSP retries.

use chrono::{DateTime, Utc};

use crate::api::ApiError;
use crate::app::Reply;
use crate::domain::ids::CheckoutId;
use crate::domain::ledger::platform_fee;
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::pay_in::{Checkout, PaymentOrder, PaymentStatus, PspNotice, SessionOutcome};
use crate::domain::psp::{PspEventId, PspSessionId};
use crate::ports::{Applied, Checkouts, Payouts, Refunds, Webhooks};
use rust_decimal::Decimal;

/// A verified event from the PSP.
pub struct VerifiedEvent {
    pub id: PspEventId,
    pub notice: PspNotice,
}

/// An anomaly's detail is cut to this many characters.
pub const ANOMALY_DETAIL_CHARS_MAX: usize = 1000;

pub fn ack(outcome: &str) -> Reply {
    Reply::json(200, &serde_json::json!({"received": true, "outcome": outcome}))
}

pub async fn apply_webhook<S: Webhooks + Checkouts + Refunds + Payouts>(
    store: &S,
    event: VerifiedEvent,
    fee_rate: Decimal,
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    let VerifiedEvent { id, notice } = event;
    let (session_id, payment_intent, checkout_ref, amount_minor, currency, outcome) = match notice {
        PspNotice::Session {
            session_id,
            payment_intent,
            checkout_ref,
            amount_minor,
            currency,
            outcome,
        } => (
            session_id,
            payment_intent,
            checkout_ref,
            amount_minor,
            currency,
            outcome,
        ),
        PspNotice::PaymentAttemptFailed { reason } => {
            // The buyer may try another card on the same page: no transition.
            tracing::info!(psp_event_id = %id, reason = %reason, "payment attempt declined");
            store.mark_event(id.as_str(), "payment attempt failed").await?;
            return Ok(ack("attempt_failed"));
        }
        PspNotice::Refunds(notices) => {
            return crate::app::refunds::webhook::apply_refund_notices(store, &id, &notices, now).await
        }
        PspNotice::Payout(notice) => {
            return crate::app::payouts::webhook::apply_payout_notice(store, &id, &notice, now).await
        }
        // Nothing to apply, nothing to remember: a redelivery is ignored again, for free.
        PspNotice::Ignored => return Ok(ack("ignored")),
    };

    let Some((mut checkout, mut orders)) = find_checkout(store, &session_id, checkout_ref.as_deref()).await?
    else {
        return anomaly(
            store,
            id.as_str(),
            "unknown_session",
            format!("no checkout for session {session_id}"),
            None,
            now,
        )
        .await;
    };
    if checkout.psp_session.as_ref().is_some_and(|t| *t != session_id) {
        let detail = format!(
            "session {session_id} names checkout {} which has another session",
            checkout.id
        );
        return anomaly(
            store,
            id.as_str(),
            "session_mismatch",
            detail,
            Some(&checkout.id),
            now,
        )
        .await;
    }
    if amount_minor != checkout.total.minor() || currency != checkout.total.currency() {
        let detail = format!(
            "session {session_id} is for {amount_minor} {currency} (minor units); checkout {} is for {:?}",
            checkout.id, checkout.total
        );
        return anomaly(
            store,
            id.as_str(),
            "amount_mismatch",
            detail,
            Some(&checkout.id),
            now,
        )
        .await;
    }
    if let SessionOutcome::NotPaid(status) = &outcome {
        let detail = format!(
            "session {session_id} completed with payment_status {status:?}: only \"paid\" proves payment"
        );
        return anomaly(
            store,
            id.as_str(),
            "payment_status_unexpected",
            detail,
            Some(&checkout.id),
            now,
        )
        .await;
    }
    let Some(event) = outcome.event() else {
        store.mark_event(id.as_str(), "awaiting async payment").await?;
        return Ok(ack("awaiting_payment"));
    };
    if checkout.status == PaymentStatus::Created {
        // The webhook beat the create call's own write of the session. Not lost: the PSP
        // retries this delivery, and by then the checkout is EXECUTING.
        tracing::warn!(psp_event_id = %id, checkout_id = %checkout.id, "webhook before the session was stored; asking the PSP to retry");
        return Err(ApiError::unavailable(1, "checkout not yet submitted; retry").with_code("not_ready"));
    }
    if checkout.psp_session.is_none() {
        checkout.psp_session = Some(session_id.clone());
    }
    if payment_intent.is_some() {
        checkout.payment_intent = payment_intent;
    }
    let from = match checkout.apply(&mut orders, event, now) {
        Ok(from) => {
            // The platform's fee is fixed as the money arrives: refunds return part of this.
            if checkout.status == PaymentStatus::Success {
                for o in orders.iter_mut() {
                    o.fee = Some(platform_fee(o.amount, fee_rate).map_err(|e| {
                        tracing::error!(error = %e, "platform fee");
                        ApiError::internal()
                    })?);
                }
            }
            from
        }
        Err(illegal) => {
            let detail = format!("{illegal} (checkout {})", checkout.id);
            return anomaly(
                store,
                id.as_str(),
                "illegal_transition",
                detail,
                Some(&checkout.id),
                now,
            )
            .await;
        }
    };
    let outbox = OutboxEvent::settled(&checkout, &orders, id.as_str(), now).ok_or_else(ApiError::internal)?;
    match store
        .apply_event(id.as_str(), &checkout, &orders, from, &outbox)
        .await?
    {
        Applied::Applied => {
            tracing::info!(psp_event_id = %id, checkout_id = %checkout.id, status = %checkout.status, "payment settled");
            Ok(ack("applied"))
        }
        Applied::Duplicate => Ok(ack("duplicate")),
        Applied::Conflict => Err(ApiError::unavailable(1, "concurrent update; retry").with_code("conflict")),
    }
}

async fn find_checkout<S: Webhooks + Checkouts>(
    store: &S,
    session_id: &PspSessionId,
    checkout_ref: Option<&str>,
) -> Result<Option<(Checkout, Vec<PaymentOrder>)>, ApiError> {
    let by_token = store.checkout_by_session(session_id).await?;
    // The index may lag (or the create call may not have stored the token yet): fall back to
    // the checkout id we sent as client_reference_id / metadata, which the PSP signed back.
    let id = match by_token {
        Some(id) => Some(id),
        None => checkout_ref.and_then(|r| CheckoutId::parse(r).ok()),
    };
    match id {
        Some(id) => Ok(store.get_checkout(&id).await?),
        None => Ok(None),
    }
}

/// Acknowledges a verified event we cannot use, recording why.
pub async fn anomaly<S: Webhooks>(
    store: &S,
    psp_event_id: &str,
    kind: &'static str,
    detail: String,
    checkout_id: Option<&CheckoutId>,
    now: DateTime<Utc>,
) -> Result<Reply, ApiError> {
    // The detail may quote what the PSP sent: bounded before it is logged or stored.
    let detail: String = detail.chars().take(ANOMALY_DETAIL_CHARS_MAX).collect();
    tracing::warn!(psp_event_id, kind, detail = %detail, "webhook anomaly");
    let record = Anomaly {
        psp_event_id: psp_event_id.to_owned(),
        kind,
        detail,
        checkout_id: checkout_id.cloned(),
        at: now,
    };
    if !store.record_anomaly(&record).await? {
        return Ok(ack("duplicate"));
    }
    Ok(ack(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::app::pay_in::create_payment::{create_checked, CreatePayment};
    use crate::app::Caller;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, ApiKeyId};
    use crate::domain::pay_in::SessionOutcome;

    async fn executing(store: &Memory) -> (CheckoutId, PspSessionId) {
        let caller = Caller {
            account_id: AccountId::parse("acct_a").unwrap(),
            key_id: ApiKeyId::generate(),
        };
        let now = Utc::now();
        let body = br#"{"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"0.30",
            "line_items":[{"seller_id":"s1","amount":"0.10","sub_order_id":"a"},{"seller_id":"s2","amount":"0.20","sub_order_id":"b"}]}"#;
        let input = CreatePayment {
            idempotency_key: Some(b"k".as_slice()),
            body,
            now,
            deadline_ms: now.timestamp_millis() + 10_000,
            public_base_url: "https://shop.example",
        };
        let r = create_checked(store, &FakePsp::default(), &caller, input)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        (
            CheckoutId::parse(v["checkout_id"].as_str().unwrap()).unwrap(),
            PspSessionId::parse(v["psp_token"].as_str().unwrap()).unwrap(),
        )
    }

    fn session(id: &str, token: &PspSessionId, amount_minor: i64, outcome: SessionOutcome) -> VerifiedEvent {
        VerifiedEvent {
            id: PspEventId::parse(id).unwrap(),
            notice: PspNotice::Session {
                session_id: token.clone(),
                payment_intent: None,
                checkout_ref: None,
                amount_minor,
                currency: Currency::parse("usd").unwrap(),
                outcome,
            },
        }
    }

    fn outcome(r: &Reply) -> String {
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn paid_moves_every_order_to_success_once_with_one_outbox_record() {
        let store = Memory::default();
        let (id, token) = executing(&store).await;
        let r = apply_webhook(
            &store,
            session("evt_1", &token, 30, SessionOutcome::Paid),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&r), "applied");
        let again = apply_webhook(
            &store,
            session("evt_1", &token, 30, SessionOutcome::Paid),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&again), "duplicate");
        let (c, orders) = store.checkout(&id).unwrap();
        assert_eq!(c.status, PaymentStatus::Success);
        assert!(orders.iter().all(|o| o.status == PaymentStatus::Success));
        let outbox = store.outbox.lock().unwrap().clone();
        assert_eq!(outbox.len(), 1);
        let crate::domain::outbox::OutboxBody::PaymentSucceeded(paid) = &outbox[0].body else {
            panic!("{:?}", outbox[0].body)
        };
        assert_eq!(
            paid.payment_orders.iter().map(|o| o.amount_minor).sum::<i64>(),
            30
        );

        // A late failure after success changes nothing and is an anomaly.
        let late = apply_webhook(
            &store,
            session("evt_2", &token, 30, SessionOutcome::Expired),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&late), "illegal_transition");
        assert_eq!(store.checkout(&id).unwrap().0.status, PaymentStatus::Success);
        assert_eq!(store.anomalies.lock().unwrap().len(), 1);
        assert_eq!(store.outbox.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn mismatches_and_strangers_are_anomalies() {
        let store = Memory::default();
        let (id, token) = executing(&store).await;
        let r = apply_webhook(
            &store,
            session("evt_a", &token, 31, SessionOutcome::Paid),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&r), "amount_mismatch");
        let r = apply_webhook(
            &store,
            session(
                "evt_b",
                &PspSessionId::parse("cs_unknown").unwrap(),
                30,
                SessionOutcome::Paid,
            ),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&r), "unknown_session");
        assert_eq!(store.checkout(&id).unwrap().0.status, PaymentStatus::Executing);
        assert_eq!(store.anomalies.lock().unwrap().len(), 2);
        // Found through the checkout id we sent, when the token index has nothing yet.
        let by_ref = VerifiedEvent {
            id: PspEventId::parse("evt_c").unwrap(),
            notice: PspNotice::Session {
                session_id: token.clone(),
                payment_intent: None,
                checkout_ref: Some(id.to_string()),
                amount_minor: 30,
                currency: Currency::parse("USD").unwrap(),
                outcome: SessionOutcome::Failed,
            },
        };
        assert_eq!(
            outcome(
                &apply_webhook(&store, by_ref, Decimal::new(25, 3), Utc::now())
                    .await
                    .unwrap()
            ),
            "applied"
        );
        assert_eq!(store.checkout(&id).unwrap().0.status, PaymentStatus::Failed);
    }

    #[tokio::test]
    async fn a_completed_session_without_payment_moves_nothing_and_is_an_anomaly() {
        let store = Memory::default();
        let (id, token) = executing(&store).await;
        let r = apply_webhook(
            &store,
            session(
                "evt_free",
                &token,
                30,
                SessionOutcome::NotPaid("no_payment_required".into()),
            ),
            Decimal::new(25, 3),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&r), "payment_status_unexpected");
        assert_eq!(store.checkout(&id).unwrap().0.status, PaymentStatus::Executing);
        assert!(store.outbox.lock().unwrap().is_empty());
        assert_eq!(store.anomalies.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_anomaly_detail_is_bounded() {
        let store = Memory::default();
        let r = anomaly(
            &store,
            "evt_x",
            "unparseable_event",
            "x".repeat(100_000),
            None,
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(outcome(&r), "unparseable_event");
        assert_eq!(
            store.anomalies.lock().unwrap()[0].detail.len(),
            ANOMALY_DETAIL_CHARS_MAX
        );
    }
}
