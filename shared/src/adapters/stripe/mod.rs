//! The PSP client, in Stripe's wire format: form-encoded requests with bracket notation,
//! integer amounts in the currency's smallest unit (by Stripe's table), `Idempotency-Key`,
//! Stripe-shaped errors. Pointed at the sandbox locally and at `https://api.stripe.com` in
//! production, with no other change.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

pub mod amounts;
pub mod events;
pub mod reports;

use crate::domain::pay_in::{PspSession, SessionRequest};
use crate::domain::payouts::{
    PspAccount, PspPayout, PspPayoutRequest, PspReversal, PspReversalRequest, PspTransfer, PspTransferRequest,
};
use crate::domain::psp::{PspAccountId, PspError, PspSessionId, PspTransferId, PspTransferReversalId};
use crate::domain::refunds::{PspRefund, PspRefundRequest};
use crate::ports::{PayoutPsp, Psp, RefundPsp};

pub use amounts::{from_stripe_amount, to_stripe_amount};

/// The most of a PSP response we read: Stripe's objects are a few KiB; anything far larger is
/// not an answer we can use.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

pub const STRIPE_VERSION: &str = "2024-06-20";

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
        let call = Call::Post {
            form,
            idempotency_key,
        };
        self.call(call, path, None).await
    }

    /// One call with its retries: a `POST` (form body, idempotency key) or a `GET`, as the
    /// platform or (Connect, `Stripe-Account`) as a connected account.
    async fn call(&self, call: Call<'_>, path: &str, account: Option<&str>) -> Result<String, PspError> {
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
            let url = format!("{}{path}", self.base_url);
            let mut builder = match &call {
                Call::Post { idempotency_key, .. } => hyper::Request::post(url)
                    .header("Idempotency-Key", *idempotency_key)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded"),
                Call::Get => hyper::Request::get(url),
            }
            .header(AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header("Stripe-Version", STRIPE_VERSION)
            .header(USER_AGENT, concat!("payment-system/", env!("CARGO_PKG_VERSION")));
            if let Some(account) = account {
                builder = builder.header("Stripe-Account", account);
            }
            let body = match &call {
                Call::Post { form, .. } => Bytes::from(form.clone()),
                Call::Get => Bytes::new(),
            };
            let request = builder
                .body(Full::new(body))
                .map_err(|e| PspError::Unavailable(format!("building the request: {e}")))?;
            // One deadline for the answer and its body.
            let exchange = async {
                let response = self
                    .http
                    .request(request)
                    .await
                    .map_err(|e| format!("transport: {e}"))?;
                let status = response.status().as_u16();
                let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                    .collect()
                    .await
                    .map_err(|e| format!("reading body (at most {RESPONSE_BYTES_MAX} bytes): {e}"))?
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

/// What a call sends.
enum Call<'a> {
    Post { form: String, idempotency_key: &'a str },
    Get,
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
        let id =
            PspSessionId::parse(&session.id).map_err(|e| PspError::Unavailable(format!("session id {e}")))?;
        Ok(PspSession { id, url })
    }
}

/// The refund parameters, in a fixed order (same refund, same bytes: the PSP's idempotency
/// check compares them).
pub fn refund_params(r: &PspRefundRequest) -> Result<Vec<(String, String)>, String> {
    let mut p: Vec<(String, String)> = vec![
        ("payment_intent".into(), r.payment_intent.to_string()),
        ("amount".into(), to_stripe_amount(r.amount)?.to_string()),
        ("metadata[refund_id]".into(), r.refund_id.to_string()),
        (
            "metadata[payment_order_id]".into(),
            r.payment_order_id.to_string(),
        ),
    ];
    if let Some(reason) = r.reason {
        p.push(("reason".into(), reason.as_str().into()));
    }
    Ok(p)
}

impl RefundPsp for StripeClient {
    /// `POST /v1/refunds` with our refund id as the `Idempotency-Key` (the design's key B).
    async fn create_refund(&self, request: &PspRefundRequest) -> Result<PspRefund, PspError> {
        let params = refund_params(request).map_err(|message| PspError::Rejected {
            status: 400,
            code: "amount_not_supported".into(),
            message,
        })?;
        let body = self
            .post_form("/v1/refunds", encode_form(&params), request.refund_id.as_str())
            .await?;
        let refund: events::RefundObject = serde_json::from_str(&body)
            .map_err(|e| PspError::Unavailable(format!("unexpected refund response: {e}")))?;
        refund.refund().map_err(PspError::Unavailable)
    }
}

/// The transfer's parameters, in a fixed order (same payout, same bytes).
pub fn transfer_params(r: &PspTransferRequest) -> Result<Vec<(String, String)>, String> {
    Ok(vec![
        ("amount".into(), to_stripe_amount(r.amount)?.to_string()),
        ("currency".into(), r.amount.currency().code().to_ascii_lowercase()),
        ("destination".into(), r.destination.to_string()),
        ("transfer_group".into(), r.payout_id.to_string()),
        ("metadata[payout_id]".into(), r.payout_id.to_string()),
    ])
}

/// The connected account's payout parameters.
pub fn payout_params(r: &PspPayoutRequest) -> Result<Vec<(String, String)>, String> {
    Ok(vec![
        ("amount".into(), to_stripe_amount(r.amount)?.to_string()),
        ("currency".into(), r.amount.currency().code().to_ascii_lowercase()),
        ("metadata[payout_id]".into(), r.payout_id.to_string()),
    ])
}

fn unexpected(what: &str, e: impl std::fmt::Display) -> PspError {
    PspError::Unavailable(format!("unexpected {what} response: {e}"))
}

fn not_supported(message: String) -> PspError {
    PspError::Rejected {
        status: 400,
        code: "amount_not_supported".into(),
        message,
    }
}

#[derive(Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Deserialize)]
struct AccountBody {
    id: String,
    #[serde(default)]
    payouts_enabled: bool,
}

impl PayoutPsp for StripeClient {
    async fn account(&self, id: &PspAccountId) -> Result<Option<PspAccount>, PspError> {
        let body = match self.call(Call::Get, &format!("/v1/accounts/{id}"), None).await {
            Ok(body) => body,
            Err(PspError::Rejected { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let a: AccountBody = serde_json::from_str(&body).map_err(|e| unexpected("account", e))?;
        Ok(Some(PspAccount {
            id: PspAccountId::parse(&a.id).map_err(|e| unexpected("account", e))?,
            payouts_enabled: a.payouts_enabled,
        }))
    }

    /// `POST /v1/transfers` with the payout's own transfer key.
    async fn create_transfer(&self, request: &PspTransferRequest) -> Result<PspTransfer, PspError> {
        let params = transfer_params(request).map_err(not_supported)?;
        let body = self
            .post_form("/v1/transfers", encode_form(&params), &request.idempotency_key)
            .await?;
        let t: IdBody = serde_json::from_str(&body).map_err(|e| unexpected("transfer", e))?;
        Ok(PspTransfer {
            id: PspTransferId::parse(&t.id).map_err(|e| unexpected("transfer", e))?,
        })
    }

    /// `POST /v1/payouts` as the seller's connected account (`Stripe-Account`).
    async fn create_payout(&self, request: &PspPayoutRequest) -> Result<PspPayout, PspError> {
        let params = payout_params(request).map_err(not_supported)?;
        let call = Call::Post {
            form: encode_form(&params),
            idempotency_key: &request.idempotency_key,
        };
        let body = self
            .call(call, "/v1/payouts", Some(request.account.as_str()))
            .await?;
        let p: events::PayoutObject = serde_json::from_str(&body).map_err(|e| unexpected("payout", e))?;
        p.payout().map_err(|e| unexpected("payout", e))
    }

    /// `POST /v1/transfers/{id}/reversals` (the whole transfer) with the payout's reversal key.
    async fn reverse_transfer(&self, request: &PspReversalRequest) -> Result<PspReversal, PspError> {
        let params = vec![("metadata[payout_id]".to_string(), request.payout_id.to_string())];
        let body = self
            .post_form(
                &format!("/v1/transfers/{}/reversals", request.transfer),
                encode_form(&params),
                &request.idempotency_key,
            )
            .await?;
        let r: IdBody = serde_json::from_str(&body).map_err(|e| unexpected("transfer reversal", e))?;
        Ok(PspReversal {
            id: PspTransferReversalId::parse(&r.id).map_err(|e| unexpected("transfer reversal", e))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 0..40 {
            assert!(p.backoff(attempt) <= p.backoff_cap);
        }
    }
}
