//! Stripe's webhook events, parsed (after the signature is verified) into what they mean for
//! us. Amounts are integers in the wire format: serde reads them as `i64`, never through a
//! float; every id is checked as it is read.

use serde::Deserialize;

use super::amounts::from_stripe_amount;
use crate::domain::pay_in::{PspNotice, SessionOutcome};
use crate::domain::payouts::{PspPayout, PspPayoutNotice, PspPayoutStatus};
use crate::domain::psp::{PaymentIntentId, PspAccountId, PspEventId, PspPayoutId, PspRefundId, PspSessionId};
use crate::domain::refunds::{PspRefund, PspRefundNotice, PspRefundStatus};
use crate::domain::Currency;

/// Strings taken from an event for logs and records are cut to this.
const REASON_CHARS_MAX: usize = 64;
/// A failure message kept for the payout's object.
const MESSAGE_CHARS_MAX: usize = 500;

#[derive(Deserialize)]
struct EventBody {
    /// Checked as it is read: an empty, over-long or strange id never reaches a key.
    id: PspEventId,
    #[serde(rename = "type")]
    kind: String,
    /// The connected account a Connect event happened on.
    account: Option<String>,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct SessionObject {
    id: PspSessionId,
    payment_intent: Option<PaymentIntentId>,
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    amount_total: Option<i64>,
    currency: Option<String>,
    payment_status: Option<String>,
}

/// Stripe's refund object, as much of it as we read.
#[derive(Deserialize)]
pub struct RefundObject {
    pub id: PspRefundId,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
    pub failure_reason: Option<String>,
}

impl RefundObject {
    pub fn refund(&self) -> Result<PspRefund, String> {
        let status = PspRefundStatus::parse(&self.status)
            .ok_or_else(|| format!("refund {} has unknown status {:?}", self.id, cut(&self.status)))?;
        Ok(PspRefund {
            id: self.id.clone(),
            status,
            failure_reason: self.failure_reason.as_deref().map(cut),
        })
    }

    pub fn notice(self) -> Result<PspRefundNotice, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| e.to_string())?;
        let amount = from_stripe_amount(self.amount, currency)?;
        Ok(PspRefundNotice {
            refund: self.refund()?,
            refund_ref: self.metadata.get("refund_id").map(|r| cut(r)),
            amount_minor: amount.minor(),
            currency,
        })
    }
}

/// Stripe's payout object, as much of it as we read (the client's answer and the webhooks').
#[derive(Deserialize)]
pub struct PayoutObject {
    pub id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub arrival_date: Option<i64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

impl PayoutObject {
    pub fn payout(&self) -> Result<PspPayout, String> {
        Ok(PspPayout {
            id: PspPayoutId::parse(&self.id).map_err(|e| e.to_string())?,
            status: PspPayoutStatus::parse(&self.status).ok_or_else(|| {
                format!(
                    "payout {} has unknown status {:?}",
                    cut(&self.id),
                    cut(&self.status)
                )
            })?,
            arrival_date: self
                .arrival_date
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                .map(|d| d.date_naive()),
            failure_code: self.failure_code.as_deref().map(cut),
            failure_message: self
                .failure_message
                .as_deref()
                .map(|m| m.chars().take(MESSAGE_CHARS_MAX).collect()),
        })
    }

    pub fn notice(self, account: Option<&str>) -> Result<PspPayoutNotice, String> {
        let currency = Currency::parse(&self.currency).map_err(|e| e.to_string())?;
        let amount = from_stripe_amount(self.amount, currency)?;
        let account = account
            .map(PspAccountId::parse)
            .transpose()
            .map_err(|e| format!("event account: {e}"))?;
        Ok(PspPayoutNotice {
            payout: self.payout()?,
            payout_ref: self.metadata.get("payout_id").map(|r| cut(r)),
            account,
            amount_minor: amount.minor(),
            currency,
        })
    }
}

#[derive(Deserialize)]
struct RefundList {
    data: Vec<RefundObject>,
}

#[derive(Deserialize)]
struct ChargeObject {
    refunds: Option<RefundList>,
}

fn cut(s: &str) -> String {
    s.chars().take(REASON_CHARS_MAX).collect()
}

/// Parses a (verified) Stripe event into what it means for us. Amounts are integers in the
/// wire format: serde reads them as `i64`, never through a float.
pub fn parse_event(raw_body: &[u8]) -> Result<(PspEventId, PspNotice), String> {
    let event: EventBody =
        serde_json::from_slice(raw_body).map_err(|e| format!("not a Stripe event: {e}"))?;
    let session_outcome = match event.kind.as_str() {
        "checkout.session.completed" => None,
        "checkout.session.async_payment_succeeded" => Some(SessionOutcome::Paid),
        "checkout.session.async_payment_failed" => Some(SessionOutcome::Failed),
        "checkout.session.expired" => Some(SessionOutcome::Expired),
        "payment_intent.payment_failed" => {
            let reason: String = event.data.object["last_payment_error"]["code"]
                .as_str()
                .unwrap_or("declined")
                .chars()
                .take(REASON_CHARS_MAX)
                .collect();
            return Ok((event.id, PspNotice::PaymentAttemptFailed { reason }));
        }
        "refund.created" | "refund.updated" | "refund.failed" => {
            let refund: RefundObject = serde_json::from_value(event.data.object)
                .map_err(|e| format!("{}: not a refund: {e}", event.kind))?;
            return Ok((event.id, PspNotice::Refunds(vec![refund.notice()?])));
        }
        "payout.created" | "payout.updated" | "payout.paid" | "payout.failed" | "payout.canceled" => {
            let payout: PayoutObject = serde_json::from_value(event.data.object)
                .map_err(|e| format!("{}: not a payout: {e}", event.kind))?;
            let notice = payout.notice(event.account.as_deref())?;
            return Ok((event.id, PspNotice::Payout(notice)));
        }
        "charge.refunded" => {
            // The charge lists its refunds when the API version embeds them; each is applied
            // as its own refund event would be. Without them, the refund.* events carry each.
            let charge: ChargeObject = serde_json::from_value(event.data.object)
                .map_err(|e| format!("charge.refunded: not a charge: {e}"))?;
            let notices = charge
                .refunds
                .map(|l| l.data)
                .unwrap_or_default()
                .into_iter()
                .map(RefundObject::notice)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((event.id, PspNotice::Refunds(notices)));
        }
        _ => return Ok((event.id, PspNotice::Ignored)),
    };
    let session: SessionObject = serde_json::from_value(event.data.object)
        .map_err(|e| format!("{}: not a checkout session: {e}", event.kind))?;
    // Only `paid` proves payment. `unpaid` on a completed session is Stripe's documented wait
    // for a delayed method (a bank debit), settled by a later async_payment event; anything else
    // (`no_payment_required`, a value we do not know, none) moves nothing and is an anomaly.
    let outcome = session_outcome.unwrap_or(match session.payment_status.as_deref() {
        Some("paid") => SessionOutcome::Paid,
        Some("unpaid") => SessionOutcome::AwaitingPayment,
        other => SessionOutcome::NotPaid(other.unwrap_or("(none)").chars().take(REASON_CHARS_MAX).collect()),
    });
    let currency_code = session.currency.ok_or("session without currency")?;
    let currency = Currency::parse(&currency_code).map_err(|e| e.to_string())?;
    let amount = from_stripe_amount(
        session.amount_total.ok_or("session without amount_total")?,
        currency,
    )?;
    let checkout_ref = session
        .client_reference_id
        .or_else(|| session.metadata.get("checkout_id").cloned());
    Ok((
        event.id,
        PspNotice::Session {
            session_id: session.id,
            payment_intent: session.payment_intent,
            checkout_ref,
            amount_minor: amount.minor(),
            currency,
            outcome,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let completed = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed","data":{"object":
            {"id":"cs_test_1","object":"checkout.session","client_reference_id":"chk_x","amount_total":9999,"currency":"usd","payment_status":"paid"}}}"#;
        let (id, notice) = parse_event(completed).unwrap();
        assert_eq!(id.as_str(), "evt_1");
        assert_eq!(
            notice,
            PspNotice::Session {
                session_id: PspSessionId::parse("cs_test_1").unwrap(),
                payment_intent: None,
                checkout_ref: Some("chk_x".into()),
                amount_minor: 9999,
                currency: Currency::parse("USD").unwrap(),
                outcome: SessionOutcome::Paid
            }
        );
        let expired = br#"{"id":"evt_2","type":"checkout.session.expired","data":{"object":{"id":"cs_2","metadata":{"checkout_id":"chk_y"},"amount_total":5,"currency":"jpy","payment_status":"unpaid"}}}"#;
        assert!(
            matches!(parse_event(expired).unwrap().1, PspNotice::Session { outcome: SessionOutcome::Expired, ref checkout_ref, .. } if checkout_ref.as_deref() == Some("chk_y"))
        );
        let other = br#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#;
        assert_eq!(parse_event(other).unwrap().1, PspNotice::Ignored);
        assert!(parse_event(b"{}").is_err());
        assert!(parse_event(
            br#"{"id":"e","type":"checkout.session.completed","data":{"object":{"id":"cs"}}}"#
        )
        .is_err());
    }

    fn completed(id: &str, session: &str, payment_status: &str) -> Vec<u8> {
        serde_json::json!({"id": id, "type": "checkout.session.completed", "data": {"object": {
            "id": session, "client_reference_id": "chk_x", "amount_total": 100, "currency": "usd",
            "payment_status": payment_status}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn ids_that_cannot_be_keys_are_refused_before_anything_is_written() {
        assert!(parse_event(&completed("evt_1", "cs_1", "paid")).is_ok());
        let long = format!("evt_{}", "x".repeat(300));
        for (id, session) in [
            ("", "cs_1"),
            (long.as_str(), "cs_1"),
            ("evt_1", ""),
            ("evt 1", "cs_1"),
        ] {
            let e = parse_event(&completed(id, session, "paid")).unwrap_err();
            assert!(e.len() < 400, "the reason stays short: {e}");
        }
    }

    #[test]
    fn only_paid_proves_payment() {
        let outcome = |status: &str| match parse_event(&completed("evt_1", "cs_1", status)).unwrap().1 {
            PspNotice::Session { outcome, .. } => outcome,
            other => panic!("{other:?}"),
        };
        assert_eq!(outcome("paid"), SessionOutcome::Paid);
        assert_eq!(outcome("unpaid"), SessionOutcome::AwaitingPayment);
        assert_eq!(
            outcome("no_payment_required"),
            SessionOutcome::NotPaid("no_payment_required".into())
        );
        assert_eq!(outcome("bogus"), SessionOutcome::NotPaid("bogus".into()));
    }
}
