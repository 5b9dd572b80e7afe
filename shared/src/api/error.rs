//! The one place where failures become HTTP statuses and Stripe-shaped error objects:
//! `{"error": {"type", "code", "message", "param"?}}`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    RateLimitError,
    IdempotencyError,
    /// The PSP refused the payment request; final for this checkout.
    PspError,
    ApiError,
}

/// A failure the caller sees. Built only through the constructors below, so each status has
/// one stable `type` and `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// Seconds, sent as `Retry-After` (429 and 503).
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: ErrorType,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    fn new(status: u16, kind: ErrorType, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
            retry_after_s: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// 402: the PSP refused to create the payment (a non-retryable 4xx on its side).
    pub fn psp_rejected(reason: &str) -> Self {
        Self::new(
            402,
            ErrorType::PspError,
            "psp_rejected",
            format!("The payment provider refused this payment: {reason}"),
        )
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400: the request is malformed or breaks a rule.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequestError, code, message)
    }

    /// 400 naming the offending field.
    pub fn invalid_param(param: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self::invalid(code, message).with_param(param)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, ErrorType::AuthenticationError, "api_key_invalid", message)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        let shown: String = id.chars().take(80).collect();
        Self::new(
            404,
            ErrorType::InvalidRequestError,
            "resource_missing",
            format!("No such {what}: '{shown}'"),
        )
    }

    /// `409`: the resource is in a state where this request cannot apply (`code` says which).
    pub fn state_conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, ErrorType::InvalidRequestError, code, message)
    }

    pub fn conflict_in_flight() -> Self {
        Self::new(
            409,
            ErrorType::IdempotencyError,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later",
        )
    }

    pub fn idempotency_mismatch() -> Self {
        Self::new(
            422,
            ErrorType::IdempotencyError,
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request body",
        )
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            ErrorType::InvalidRequestError,
            "body_too_large",
            format!("Request body exceeds {limit_bytes} bytes"),
        )
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        let mut e = Self::new(
            429,
            ErrorType::RateLimitError,
            "rate_limit_exceeded",
            "Too many requests for this API key; retry after the time in Retry-After",
        );
        e.retry_after_s = Some(retry_after_s);
        e
    }

    pub fn unavailable(retry_after_s: u64, message: impl Into<String>) -> Self {
        let mut e = Self::new(503, ErrorType::ApiError, "service_unavailable", message);
        e.retry_after_s = Some(retry_after_s);
        e
    }

    /// 500 with an opaque message; the cause goes to the log, never to the caller.
    pub fn internal() -> Self {
        Self::new(
            500,
            ErrorType::ApiError,
            "internal_error",
            "An internal error occurred",
        )
    }

    pub fn body(&self) -> String {
        let body = Body {
            error: Inner {
                kind: self.kind,
                code: self.code,
                message: &self.message,
                param: self.param.as_deref(),
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| String::from(r#"{"error":{"type":"api_error","code":"internal_error","message":"An internal error occurred"}}"#))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_shaped_body() {
        let e = ApiError::invalid_param("amount", "amount_invalid", "amount must be > 0");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "amount_invalid");
        assert_eq!(v["error"]["param"], "amount");
        let v: serde_json::Value = serde_json::from_str(&ApiError::internal().body()).unwrap();
        assert!(v["error"].get("param").is_none());
        assert_eq!(ApiError::rate_limited(2).retry_after_s, Some(2));
    }
}
