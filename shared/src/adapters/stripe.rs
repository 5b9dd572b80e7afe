//! The PSP client, in Stripe's wire format: form-encoded requests with bracket notation,
//! integer amounts in the currency's smallest unit (by Stripe's table), `Idempotency-Key`,
//! Stripe-shaped errors. Pointed at the sandbox locally and at `https://api.stripe.com` in
//! production, with no other change.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::domain::psp::{PspError, PspNotice, PspSession, SessionOutcome, SessionRequest};
use crate::domain::{Currency, Money};
use crate::ports::Psp;

pub const STRIPE_VERSION: &str = "2024-06-20";

/// Currencies Stripe treats as zero-decimal (its table differs from ISO 4217 for MGA).
const STRIPE_ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
/// Currencies Stripe sends as two decimals although ISO gives them none.
const STRIPE_TWO_DECIMAL_SPECIAL: &[&str] = &["ISK"];

/// Stripe's exponent for a currency.
fn stripe_exponent(c: Currency) -> u32 {
    if STRIPE_ZERO_DECIMAL.contains(&c.code()) {
        0
    } else if STRIPE_TWO_DECIMAL_SPECIAL.contains(&c.code()) {
        2
    } else {
        c.minor_units()
    }
}

/// Our exact amount as Stripe's integer, refusing anything Stripe cannot carry exactly
/// (an MGA amount with ariary cents; a three-decimal amount whose last digit is not 0, which
/// Stripe rejects for BHD, JOD, KWD, OMR, TND).
pub fn to_stripe_amount(m: Money) -> Result<i64, String> {
    let (ours, theirs) = (m.currency().minor_units(), stripe_exponent(m.currency()));
    let amount = if theirs >= ours {
        m.minor()
            .checked_mul(10i64.pow(theirs - ours))
            .ok_or_else(|| "amount overflows".to_owned())?
    } else {
        let div = 10i64.pow(ours - theirs);
        if m.minor() % div != 0 {
            return Err(format!(
                "{m:?} has more precision than the PSP accepts for {}",
                m.currency()
            ));
        }
        m.minor() / div
    };
    if m.currency().minor_units() == 3 && amount % 10 != 0 {
        return Err(format!("{m:?}: the PSP needs three-decimal amounts to end in 0"));
    }
    Ok(amount)
}

/// Stripe's integer back to our exact amount.
pub fn from_stripe_amount(amount: i64, currency: Currency) -> Result<Money, String> {
    let (ours, theirs) = (currency.minor_units(), stripe_exponent(currency));
    let minor = if ours >= theirs {
        amount
            .checked_mul(10i64.pow(ours - theirs))
            .ok_or("amount overflows")?
    } else {
        let div = 10i64.pow(theirs - ours);
        if amount % div != 0 {
            return Err(format!(
                "{amount} {currency} is not a whole number of {currency} units"
            ));
        }
        amount / div
    };
    Ok(Money::from_minor(minor, currency))
}

/// Retry policy for calls to the PSP: only transient failures (connect error, timeout, 5xx,
/// 429), exponential backoff with full jitter, and a total budget well inside API Gateway's
/// 29 s.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempt_timeout: Duration,
    pub budget: Duration,
    pub attempts_max: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempt_timeout: Duration::from_secs(4),
            budget: Duration::from_secs(12),
            attempts_max: 5,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: uniform in [0, min(cap, base * 2^attempt)].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.backoff_cap);
        let draw = (uuid::Uuid::new_v4().as_u128() % 10_001) as u64;
        Duration::from_nanos(
            u64::try_from(ceiling.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_mul(draw)
                / 10_000,
        )
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct StripeClient {
    http: Client<Https, Full<Bytes>>,
    base_url: String,
    secret_key: String,
    policy: RetryPolicy,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base_url", &self.base_url)
            .field("secret_key", &"***")
            .finish()
    }
}

#[derive(Deserialize)]
struct SessionBody {
    id: String,
    url: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// `a=b&c=d` with RFC 3986 percent-encoding (what Stripe's own libraries send).
fn encode_form(params: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The Checkout Session parameters for a request, in a fixed order (same request, same bytes).
pub fn session_params(r: &SessionRequest) -> Result<Vec<(String, String)>, String> {
    let mut p: Vec<(String, String)> = vec![
        ("mode".into(), "payment".into()),
        ("client_reference_id".into(), r.checkout_id.to_string()),
        ("metadata[checkout_id]".into(), r.checkout_id.to_string()),
        ("success_url".into(), r.success_url.clone()),
        ("cancel_url".into(), r.cancel_url.clone()),
        ("expires_at".into(), r.expires_at.timestamp().to_string()),
    ];
    for (i, line) in r.lines.iter().enumerate() {
        let prefix = format!("line_items[{i}]");
        p.push((format!("{prefix}[quantity]"), "1".into()));
        p.push((
            format!("{prefix}[price_data][currency]"),
            line.amount.currency().code().to_ascii_lowercase(),
        ));
        p.push((
            format!("{prefix}[price_data][unit_amount]"),
            to_stripe_amount(line.amount)?.to_string(),
        ));
        p.push((
            format!("{prefix}[price_data][product_data][name]"),
            line.name.clone(),
        ));
    }
    Ok(p)
}

impl StripeClient {
    pub fn new(base_url: &str, secret_key: &str, policy: RetryPolicy) -> Result<Self, String> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(policy.attempt_timeout.min(Duration::from_secs(2))));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("HTTP client: TLS roots: {e}"))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = Client::builder(TokioExecutor::new()).build(https);
        Ok(StripeClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            policy,
        })
    }

    /// POSTs a form with retries on transient failures only. The idempotency key makes every
    /// retry safe: the PSP answers a repeat with the first result.
    async fn post_form(&self, path: &str, form: String, idempotency_key: &str) -> Result<String, PspError> {
        let started = Instant::now();
        let mut last = String::new();
        for attempt in 0..self.policy.attempts_max {
            if attempt > 0 {
                let pause = self.policy.backoff(attempt - 1);
                if started.elapsed() + pause + self.policy.attempt_timeout > self.policy.budget {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let request = hyper::Request::post(format!("{}{path}", self.base_url))
                .header(AUTHORIZATION, format!("Bearer {}", self.secret_key))
                .header("Idempotency-Key", idempotency_key)
                .header("Stripe-Version", STRIPE_VERSION)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(USER_AGENT, concat!("payment-system/", env!("CARGO_PKG_VERSION")))
                .body(Full::new(Bytes::from(form.clone())))
                .map_err(|e| PspError::Unavailable(format!("building the request: {e}")))?;
            // One deadline for the answer and its body.
            let exchange = async {
                let response = self
                    .http
                    .request(request)
                    .await
                    .map_err(|e| format!("transport: {e}"))?;
                let status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("reading body: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
            };
            let (status, body) = match tokio::time::timeout(self.policy.attempt_timeout, exchange).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    last = e;
                    tracing::warn!(attempt, error = %last, "PSP call failed; retrying");
                    continue;
                }
                Err(_) => {
                    last = "timeout".into();
                    tracing::warn!(attempt, error = %last, "PSP call failed; retrying");
                    continue;
                }
            };
            match status {
                200..=299 => return Ok(body),
                429 | 500..=599 => {
                    last = format!("HTTP {status}");
                    tracing::warn!(attempt, status, "PSP answered a retryable error; retrying");
                }
                _ => {
                    let parsed = serde_json::from_str::<ErrorBody>(&body).ok();
                    let (code, message) = match parsed {
                        Some(ErrorBody { error }) => (
                            error.code.or(error.kind).unwrap_or_else(|| "unknown".into()),
                            error.message.unwrap_or_default(),
                        ),
                        None => ("unknown".into(), format!("HTTP {status}")),
                    };
                    return Err(PspError::Rejected {
                        status,
                        code,
                        message,
                    });
                }
            }
        }
        Err(PspError::Unavailable(format!(
            "gave up after {:?}: {last}",
            started.elapsed()
        )))
    }
}

impl Psp for StripeClient {
    async fn create_session(&self, request: &SessionRequest) -> Result<PspSession, PspError> {
        let params = session_params(request).map_err(|message| PspError::Rejected {
            status: 400,
            code: "amount_not_supported".into(),
            message,
        })?;
        let body = self
            .post_form(
                "/v1/checkout/sessions",
                encode_form(&params),
                request.checkout_id.as_str(),
            )
            .await?;
        let session: SessionBody = serde_json::from_str(&body)
            .map_err(|e| PspError::Unavailable(format!("unexpected session response: {e}")))?;
        let url = session
            .url
            .ok_or_else(|| PspError::Unavailable("session without a url".into()))?;
        Ok(PspSession { id: session.id, url })
    }
}

// --- Webhook events -----------------------------------------------------------------------

#[derive(Deserialize)]
struct EventBody {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct SessionObject {
    id: String,
    client_reference_id: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    amount_total: Option<i64>,
    currency: Option<String>,
    payment_status: Option<String>,
}

/// Parses a (verified) Stripe event into what it means for us. Amounts are integers in the
/// wire format: serde reads them as `i64`, never through a float.
pub fn parse_event(raw_body: &[u8]) -> Result<(String, PspNotice), String> {
    let event: EventBody =
        serde_json::from_slice(raw_body).map_err(|e| format!("not a Stripe event: {e}"))?;
    let session_outcome = match event.kind.as_str() {
        "checkout.session.completed" => None,
        "checkout.session.async_payment_succeeded" => Some(SessionOutcome::Paid),
        "checkout.session.async_payment_failed" => Some(SessionOutcome::Failed),
        "checkout.session.expired" => Some(SessionOutcome::Expired),
        "payment_intent.payment_failed" => {
            let reason = event.data.object["last_payment_error"]["code"]
                .as_str()
                .unwrap_or("declined")
                .to_owned();
            return Ok((event.id, PspNotice::PaymentAttemptFailed { reason }));
        }
        _ => return Ok((event.id, PspNotice::Ignored)),
    };
    let session: SessionObject = serde_json::from_value(event.data.object)
        .map_err(|e| format!("{}: not a checkout session: {e}", event.kind))?;
    let outcome = session_outcome.unwrap_or(match session.payment_status.as_deref() {
        Some("paid") | Some("no_payment_required") => SessionOutcome::Paid,
        _ => SessionOutcome::AwaitingPayment,
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
            checkout_ref,
            amount_minor: amount.minor(),
            currency: currency.code().to_owned(),
            outcome,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str, code: &str) -> Money {
        Money::parse(text, Currency::parse(code).unwrap()).unwrap()
    }

    #[test]
    fn minor_units_in_every_class() {
        let cases = [
            ("99.99", "USD", 9999),
            ("0.10", "EUR", 10),
            ("1500", "JPY", 1500),
            ("1500", "KRW", 1500),
            ("12.340", "KWD", 12340),
            ("0.010", "BHD", 10),
            ("1500", "ISK", 150_000),
            ("1500", "MGA", 1500),
        ];
        for (text, code, want) in cases {
            let m = money(text, code);
            assert_eq!(to_stripe_amount(m), Ok(want), "{text} {code}");
            assert_eq!(
                from_stripe_amount(want, m.currency()),
                Ok(m),
                "{text} {code} back"
            );
        }
        assert!(
            to_stripe_amount(money("12.345", "KWD")).is_err(),
            "Stripe needs a trailing 0"
        );
        assert!(
            to_stripe_amount(money("10.50", "MGA")).is_err(),
            "Stripe's MGA has no cents"
        );
        assert!(from_stripe_amount(150_050, Currency::parse("ISK").unwrap()).is_err());
    }

    #[test]
    fn form_encoding_and_params() {
        assert_eq!(
            encode_form(&[
                ("metadata[checkout_id]".into(), "chk_1".into()),
                ("success_url".into(), "http://a/b?c=d&e".into())
            ]),
            "metadata%5Bcheckout_id%5D=chk_1&success_url=http%3A%2F%2Fa%2Fb%3Fc%3Dd%26e"
        );
    }

    #[test]
    fn events() {
        let completed = br#"{"id":"evt_1","object":"event","type":"checkout.session.completed","data":{"object":
            {"id":"cs_test_1","object":"checkout.session","client_reference_id":"chk_x","amount_total":9999,"currency":"usd","payment_status":"paid"}}}"#;
        let (id, notice) = parse_event(completed).unwrap();
        assert_eq!(id, "evt_1");
        assert_eq!(
            notice,
            PspNotice::Session {
                session_id: "cs_test_1".into(),
                checkout_ref: Some("chk_x".into()),
                amount_minor: 9999,
                currency: "USD".into(),
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

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(p.backoff(attempt) <= p.backoff_cap);
        }
    }
}
