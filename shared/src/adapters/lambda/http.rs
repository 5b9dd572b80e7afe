//! API Gateway (HTTP API, payload 2.0) glue shared by every route: reading the request
//! (headers, path and query parameters, the body within its limit), and turning a use case's
//! answer or `ApiError` into the response. The only place that knows about `lambda_http`; the
//! routes themselves are in `routes/`.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::{Body, Request, RequestExt, Response};

use crate::adapters::config::Env;
use crate::api::ApiError;
use crate::app::{auth, Caller, Reply};

/// Bodies above this are refused with 413 before anything else is read.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A header's bytes as sent, text or not (the caller says what is wrong with them).
pub fn header_bytes<'a>(req: &'a Request, name: &str) -> Option<&'a [u8]> {
    req.headers().get(name).map(|v| v.as_bytes())
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The invocation's deadline (epoch ms), or a conservative default outside Lambda.
pub fn deadline_ms(req: &Request) -> i64 {
    req.lambda_context_ref()
        .and_then(|c| i64::try_from(c.deadline).ok())
        .filter(|d| *d > 0)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() + 10_000)
}

pub fn path_param(req: &Request, name: &str) -> String {
    req.path_parameters_ref()
        .and_then(|p| p.first(name))
        .unwrap_or_default()
        .to_owned()
}

pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

pub fn check_size(req: &Request) -> Result<(), ApiError> {
    let declared = header(req, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if declared > BODY_BYTES_MAX || body_bytes(req).len() > BODY_BYTES_MAX {
        return Err(ApiError::too_large(BODY_BYTES_MAX));
    }
    Ok(())
}

pub fn check_json_content_type(req: &Request) -> Result<(), ApiError> {
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

pub async fn authenticate(env: &Env, req: &Request) -> Result<Caller, ApiError> {
    auth::authenticate(
        &env.store,
        header_bytes(req, "authorization"),
        env.rate_limit,
        now_us,
    )
    .await
}

/// One log line per request (route, status, replay): never headers, keys or bodies.
pub fn respond(route: &str, result: Result<Reply, ApiError>) -> Response<Body> {
    let (status, body, replayed, retry_after, content_type, extra) = match result {
        Ok(reply) => (
            reply.status,
            reply.body,
            reply.replayed,
            None,
            reply.content_type,
            reply.headers,
        ),
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(route, status = e.status, code = e.code, "request failed");
            } else {
                tracing::info!(route, status = e.status, code = e.code, "request refused");
            }
            (
                e.status,
                e.body(),
                false,
                e.retry_after_s,
                "application/json",
                Vec::new(),
            )
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
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}
