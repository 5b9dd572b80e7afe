//! What we ask of a PSP and what it tells us, in our terms. The Stripe wire format lives in
//! `adapters::stripe`; webhook signatures (Stripe's scheme: HMAC-SHA256 over `"<t>.<body>"`)
//! are verified here because they are pure.

use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::checkout::{Checkout, PaymentOrder};
use super::ids::CheckoutId;
use super::money::Money;
use super::status::PaymentEvent;

/// How old a webhook's signed timestamp may be (Stripe's default tolerance).
pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// How long the buyer has on the hosted page (Stripe allows at most 24 h).
pub const SESSION_TTL: Duration = Duration::hours(23);

/// A hosted-page session for one checkout. Built only from the stored checkout, so a retry
/// sends byte-identical parameters under the same idempotency key (the checkout id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    pub checkout_id: CheckoutId,
    pub total: Money,
    pub lines: Vec<SessionLine>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLine {
    pub name: String,
    pub amount: Money,
}

impl SessionRequest {
    /// `public_base_url` is our site (the completion page lives there).
    pub fn for_checkout(checkout: &Checkout, orders: &[PaymentOrder], public_base_url: &str) -> Self {
        let base = public_base_url.trim_end_matches('/');
        let lines = orders
            .iter()
            .map(|o| SessionLine {
                name: match &o.sub_order_id {
                    Some(sub) => format!("Order {} / {} (seller {})", o.order_id, sub, o.seller_id),
                    None => format!("Order {} (seller {})", o.order_id, o.seller_id),
                },
                amount: o.amount,
            })
            .collect();
        SessionRequest {
            checkout_id: checkout.id.clone(),
            total: checkout.total,
            lines,
            success_url: format!("{base}/checkout/complete?checkout_id={}", checkout.id),
            cancel_url: format!(
                "{base}/checkout/complete?checkout_id={}&cancelled=true",
                checkout.id
            ),
            expires_at: checkout.created_at + SESSION_TTL,
        }
    }
}

/// The PSP's session, as far as we need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspSession {
    /// The PSP token (`cs_…`): stored on the checkout, matched against webhooks.
    pub id: String,
    /// The hosted payment page the buyer is redirected to.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PspError {
    /// Connect error, timeout, 5xx or 429 until the retry budget ran out. Nothing is known
    /// about the outcome: retry later with the same idempotency key.
    #[error("PSP unavailable: {0}")]
    Unavailable(String),
    /// The PSP refused the request (a 4xx other than 429); retrying will not help.
    #[error("PSP rejected the request ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
}

/// What a verified webhook event means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PspNotice {
    /// A checkout session changed: the session's id, our checkout id as we sent it, the amount
    /// it was for, and what happened.
    Session {
        session_id: String,
        checkout_ref: Option<String>,
        amount_minor: i64,
        currency: String,
        outcome: SessionOutcome,
    },
    /// Informational (a declined attempt; the buyer may try again on the same page).
    PaymentAttemptFailed { reason: String },
    /// An event type we do not act on.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome {
    Paid,
    /// Completed but the money is still on its way (bank debits): wait for the async event.
    AwaitingPayment,
    Failed,
    Expired,
}

impl SessionOutcome {
    /// The state-machine event, if any.
    pub fn event(self) -> Option<PaymentEvent> {
        match self {
            SessionOutcome::Paid => Some(PaymentEvent::PspSucceeded),
            SessionOutcome::Failed | SessionOutcome::Expired => Some(PaymentEvent::PspFailed),
            SessionOutcome::AwaitingPayment => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Verifies `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over the raw body
/// against any of `secrets` (several, so a secret can be rotated). Constant-time compare.
pub fn verify_signature(
    header: Option<&str>,
    raw_body: &[u8],
    secrets: &[String],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(SignatureError::Stale);
    }
    let signed = |secret: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(raw_body);
        Some(mac)
    };
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for sig in &signatures {
            // `verify_slice` compares in constant time.
            if signed(secret).is_some_and(|mac| mac.verify_slice(sig).is_ok()) {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// Signs like the PSP does (for tests and the sandbox's own checks).
pub fn sign(raw_body: &[u8], secret: &str, timestamp_s: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(raw_body);
    format!("t={timestamp_s},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const PAYLOAD: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: i64 = 1_492_774_577;
    /// Computed independently (Python's hmac module) per Stripe's documented scheme.
    const V1: &str = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn documented_scheme() {
        assert_eq!(sign(PAYLOAD.as_bytes(), SECRET, T), format!("t={T},v1={V1}"));
        let header =
            format!("t={T},v1={V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(
            verify_signature(
                Some(&header),
                PAYLOAD.as_bytes(),
                &secrets(&[SECRET]),
                T + 10,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn rejections() {
        let good = format!("t={T},v1={V1}");
        let s = secrets(&[SECRET]);
        let body = PAYLOAD.as_bytes();
        assert_eq!(
            verify_signature(None, body, &s, T, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(Some("garbage"), body, &s, T, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some(&format!("t={T}")), body, &s, T, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some(&good), body, &s, T + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(&good), b"{\"id\":\"evt_other\"}", &s, T, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(Some(&good), body, &secrets(&["whsec_wrong"]), T, 300),
            Err(SignatureError::Mismatch)
        );
        let forged = format!("t={T},v1={}", "0".repeat(64));
        assert_eq!(
            verify_signature(Some(&forged), body, &s, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_any_listed_secret_and_any_v1() {
        let header = format!("t={T},v1={},v1={V1}", "ab".repeat(32));
        assert_eq!(
            verify_signature(
                Some(&header),
                PAYLOAD.as_bytes(),
                &secrets(&["whsec_new", SECRET]),
                T,
                300
            ),
            Ok(())
        );
    }
}
