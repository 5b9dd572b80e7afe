//! API Gateway (HTTP API, payload 2.0) glue: request → use case → response. The only place
//! that knows about `lambda_http`.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::adapters::config::{Env, PaymentsEnv, PublicEnv, WebhookEnv};
use crate::adapters::stripe::parse_event;
use crate::app::create_payment::{create_payment, CreatePayment};
use crate::app::webhook::{anomaly, apply_webhook, VerifiedEvent};
use crate::app::{auth, queries, Caller, Reply};
use crate::domain::psp::{verify_signature, SIGNATURE_TOLERANCE_S};
use crate::domain::ApiError;

/// Bodies above this are refused with 413 before anything else is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The invocation's deadline (epoch ms), or a conservative default outside Lambda.
fn deadline_ms(req: &Request) -> i64 {
    req.lambda_context_ref()
        .and_then(|c| i64::try_from(c.deadline).ok())
        .filter(|d| *d > 0)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() + 10_000)
}

fn path_param(req: &Request, name: &str) -> String {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .unwrap_or_default()
        .to_owned()
}

fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

fn check_size(req: &Request) -> Result<(), ApiError> {
    let declared = header(req, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if declared > MAX_BODY_BYTES || body_bytes(req).len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(())
}

fn check_json_content_type(req: &Request) -> Result<(), ApiError> {
    let ct = header(req, "content-type").unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "Content-Type",
            "content_type_invalid",
            "Content-Type must be application/json",
        ))
    }
}

async fn authenticate(env: &Env, req: &Request) -> Result<Caller, ApiError> {
    auth::authenticate(&env.store, header(req, "authorization"), env.rate_limit, now_us()).await
}

pub async fn handle_create_payment(env: &PaymentsEnv, req: Request) -> Response<Body> {
    let result = async {
        check_size(&req)?;
        let caller = authenticate(&env.api, &req).await?;
        check_json_content_type(&req)?;
        create_payment(
            &env.api.store,
            &env.psp,
            CreatePayment {
                caller: &caller,
                idempotency_key: header(&req, "idempotency-key"),
                body: body_bytes(&req),
                now: chrono::Utc::now(),
                deadline_ms: deadline_ms(&req),
                public_base_url: &env.public_base_url,
            },
        )
        .await
    }
    .await;
    respond("create_payment", result)
}

pub async fn handle_get_payment(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_payment_order(&env.store, &caller, &path_param(&req, "payment_order_id")).await
    }
    .await;
    respond("get_payment", result)
}

pub async fn handle_get_checkout(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_checkout(&env.store, &caller, &path_param(&req, "checkout_id")).await
    }
    .await;
    respond("get_checkout", result)
}

/// `POST /webhooks/psp`: no API key; the signature over the raw body is the authentication.
/// A bad signature changes nothing (400). A verified event we cannot use is acknowledged (2xx)
/// and recorded as an anomaly; our own failures are 5xx so the PSP retries.
pub async fn handle_psp_webhook(env: &WebhookEnv, req: Request) -> Response<Body> {
    let result = async {
        check_size(&req)?;
        let body = body_bytes(&req);
        let now = chrono::Utc::now();
        verify_signature(
            header(&req, "stripe-signature"),
            body,
            &env.secrets,
            now.timestamp(),
            SIGNATURE_TOLERANCE_S,
        )
        .map_err(|e| ApiError::invalid("signature_invalid", format!("Webhook signature rejected: {e}")))?;
        match parse_event(body) {
            Ok((id, notice)) => apply_webhook(&env.store, VerifiedEvent { id, notice }, now).await,
            Err(why) => {
                // Signed by the PSP but not something we understand: acknowledge and keep it.
                let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
                anomaly(
                    &env.store,
                    &format!("unparsed_{}", &digest[..32]),
                    "unparseable_event",
                    why,
                    None,
                    now,
                )
                .await
            }
        }
    }
    .await;
    respond("psp_webhook", result)
}

/// `GET /checkout/complete?checkout_id=…`: the buyer's landing page after the PSP.
pub async fn handle_checkout_complete(env: &PublicEnv, req: Request) -> Response<Body> {
    let query = req.query_string_parameters_ref().cloned().unwrap_or_default();
    let id = query.first("checkout_id").unwrap_or_default().to_owned();
    let cancelled = query.first("cancelled").is_some_and(|v| v == "true");
    let result = queries::completion_page(&env.store, &id, cancelled).await;
    respond("checkout_complete", result)
}

/// One log line per request (route, status, replay): never headers, keys or bodies.
pub fn respond(route: &str, result: Result<Reply, ApiError>) -> Response<Body> {
    let (status, body, replayed, retry_after, content_type) = match result {
        Ok(reply) => (reply.status, reply.body, reply.replayed, None, reply.content_type),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(route, status = e.status, code = e.code, "request failed");
            } else {
                tracing::info!(route, status = e.status, code = e.code, "request refused");
            }
            (e.status, e.body(), false, e.retry_after_s, "application/json")
        }
    };
    if status < 400 || replayed {
        tracing::info!(route, status, replayed, "request served");
    }
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = lambda_http::http::StatusCode::from_u16(status)
        .unwrap_or(lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(secs) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

pub async fn handle_get_wallet(env: &crate::adapters::config::LedgerApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        crate::app::ledger_queries::get_wallet(&env.ledger, &caller, &path_param(&req, "seller_id")).await
    }
    .await;
    respond("get_wallet", result)
}

pub async fn handle_list_ledger_transactions(
    env: &crate::adapters::config::LedgerApiEnv,
    req: Request,
) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        crate::app::ledger_queries::list_transactions(
            &env.ledger,
            &caller,
            query_param(&req, "payment_order_id").as_deref(),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("list_ledger_transactions", result)
}

pub async fn handle_get_ledger_account(
    env: &crate::adapters::config::LedgerApiEnv,
    req: Request,
) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        crate::app::ledger_queries::get_account(
            &env.ledger,
            &caller,
            &path_param(&req, "account"),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("get_ledger_account", result)
}
