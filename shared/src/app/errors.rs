//! The one place where a store's or the PSP's failure becomes what the caller sees.
//!
//! - The store unavailable: `503` with `Retry-After`; retrying (with the same Idempotency-Key
//!   for a POST) is safe and will work once it is back.
//! - A corrupt item (our bug, or tampering): an opaque `500` and an ERROR log with the cause.
//!   Never a `503`: a `Retry-After` would send clients retrying a bug forever.
//! - The PSP unavailable: `503 psp_unavailable`; refused: `402 psp_rejected`.

use crate::api::ApiError;
use crate::domain::payouts::PayoutRefusal;
use crate::domain::psp::PspError;
use crate::domain::refunds::RefundRefusal;
use crate::ports::{Refusal, StoreError};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %cause, "store unavailable");
                ApiError::unavailable(
                    1,
                    "The service is temporarily unavailable; retry shortly (a POST with the same Idempotency-Key)",
                )
            }
            StoreError::Corrupt(cause) => {
                tracing::error!(error = %cause, "corrupt item: a bug or tampering");
                ApiError::internal()
            }
            StoreError::InvalidCursor(why) => {
                tracing::info!(reason = %why, "invalid cursor");
                ApiError::invalid_param("cursor", "parameter_invalid", "cursor is not valid for this list")
            }
        }
    }
}

/// 400: the write found the request impossible (a refund beyond what is left).
impl From<RefundRefusal> for Refusal {
    fn from(r: RefundRefusal) -> Self {
        Refusal {
            code: r.code(),
            param: r.param(),
            message: r.to_string(),
            conflict: false,
        }
    }
}

impl From<PayoutRefusal> for Refusal {
    fn from(r: PayoutRefusal) -> Self {
        Refusal {
            code: r.code(),
            param: r.param(),
            message: r.to_string(),
            conflict: false,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        if r.conflict {
            return ApiError::state_conflict(r.code, r.message);
        }
        let e = ApiError::invalid(r.code, r.message);
        match r.param {
            Some(p) => e.with_param(p),
            None => e,
        }
    }
}

impl From<PspError> for ApiError {
    fn from(e: PspError) -> Self {
        match e {
            PspError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "PSP unavailable");
                ApiError::unavailable(
                    2,
                    "The payment provider is unavailable; retry with the same Idempotency-Key",
                )
                .with_code("psp_unavailable")
            }
            PspError::Rejected {
                status,
                code,
                message,
            } => {
                tracing::warn!(psp_status = status, psp_code = %code, "PSP rejected the request");
                ApiError::psp_rejected(&format!("{code}: {message}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_map_for_every_failure() {
        let unavailable = ApiError::from(StoreError::Unavailable("timeout".into()));
        assert_eq!((unavailable.status, unavailable.retry_after_s), (503, Some(1)));
        let corrupt = ApiError::from(StoreError::Corrupt("attribute x is not a number".into()));
        assert_eq!(
            (corrupt.status, corrupt.retry_after_s, corrupt.code),
            (500, None, "internal_error")
        );
        assert!(
            !corrupt.message.contains("attribute"),
            "opaque: {}",
            corrupt.message
        );
        let cursor = ApiError::from(StoreError::InvalidCursor("edited".into()));
        assert_eq!((cursor.status, cursor.code), (400, "parameter_invalid"));
        let psp = ApiError::from(PspError::Unavailable("down".into()));
        assert_eq!(
            (psp.status, psp.code, psp.retry_after_s),
            (503, "psp_unavailable", Some(2))
        );
        let refused = ApiError::from(PspError::Rejected {
            status: 400,
            code: "parameter_invalid".into(),
            message: "bad currency".into(),
        });
        assert_eq!((refused.status, refused.code), (402, "psp_rejected"));
        let not_open = ApiError::from(Refusal {
            code: "break_not_open",
            param: None,
            message: "resolved".into(),
            conflict: true,
        });
        assert_eq!((not_open.status, not_open.code), (409, "break_not_open"));
        let too_much = ApiError::from(Refusal {
            code: "amount_exceeds_refundable",
            param: Some("amount"),
            message: "nothing left".into(),
            conflict: false,
        });
        assert_eq!(
            (too_much.status, too_much.param.as_deref()),
            (400, Some("amount"))
        );
        assert!(refused.message.contains("bad currency"));
    }
}
