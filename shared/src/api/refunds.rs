//! `POST /v1/refunds` bodies in, refunds out: the refunds API's wire shapes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::ApiError;
use super::json::{
    duplicate_error, opt_amount_decimal, opt_str, reject_card_fields, reject_unknown, req_str, Fields,
};
use crate::domain::currency::Currency;
use crate::domain::ids::PaymentOrderId;
use crate::domain::metadata::{Metadata, MetadataError};
use crate::domain::refunds::{Refund, RefundReason, RefundRequest};
use crate::domain::time::format_time;

const FIELDS: &[&str] = &["payment_order_id", "amount", "currency", "reason", "metadata"];

/// Parses and validates a `POST /v1/refunds` body. The amount is read from the raw JSON text
/// (never a float) and checked against the order's currency once the order is read.
pub fn parse_refund_request(body: &[u8]) -> Result<RefundRequest, ApiError> {
    let mut top = Fields::parse_body(body)?;
    reject_card_fields(&top, "")?;
    reject_unknown(&top, FIELDS, "")?;
    let raw_order = req_str(&mut top, "payment_order_id", "")?;
    let payment_order_id = PaymentOrderId::parse(&raw_order)
        .map_err(|_| ApiError::not_found("payment order", &raw_order).with_param("payment_order_id"))?;
    let amount = opt_amount_decimal(&mut top, "amount")?;
    let currency = opt_str(&mut top, "currency")?
        .map(|c| {
            Currency::parse(&c)
                .map_err(|e| ApiError::invalid_param("currency", "currency_invalid", e.to_string()))
        })
        .transpose()?;
    let reason = opt_str(&mut top, "reason")?
        .map(|r| {
            RefundReason::parse(&r).ok_or_else(|| {
                let allowed: Vec<&str> = RefundReason::ALL.iter().map(|r| r.as_str()).collect();
                ApiError::invalid_param(
                    "reason",
                    "reason_invalid",
                    format!("reason must be one of {}", allowed.join(", ")),
                )
            })
        })
        .transpose()?;
    let metadata = parse_metadata(&mut top)?;
    Ok(RefundRequest {
        payment_order_id,
        amount,
        currency,
        reason,
        metadata,
    })
}

fn parse_metadata(top: &mut Fields) -> Result<Metadata, ApiError> {
    let Some(raw) = top.remove("metadata") else {
        return Ok(Metadata::default());
    };
    if raw.get() == "null" {
        return Ok(Metadata::default());
    }
    let invalid = |message: String| ApiError::invalid_param("metadata", "metadata_invalid", message);
    let fields: Fields = serde_json::from_str(raw.get()).map_err(|e| {
        duplicate_error(&e, "metadata.")
            .unwrap_or_else(|| invalid("metadata must be an object of string values".into()))
    })?;
    let mut pairs = BTreeMap::new();
    for (k, v) in fields.iter() {
        let value: String = serde_json::from_str(v.get()).map_err(|_| {
            let shown: String = k.chars().take(40).collect();
            invalid(format!("metadata.{shown} must be a string"))
        })?;
        pairs.insert(k.clone(), value);
    }
    Metadata::new(pairs).map_err(|e| match &e {
        MetadataError::CardNumber { .. } => ApiError::invalid_param(
            "metadata",
            "card_data_rejected",
            "Card data is never accepted: metadata must not hold a card number",
        ),
        _ => match e.key() {
            Some(k) => invalid(format!("metadata key {k:?}: {e}")),
            None => invalid(format!("metadata: {e}")),
        },
    })
}

/// A refund as every endpoint shows it. Amounts are decimal strings.
pub fn refund_view(r: &Refund) -> Value {
    json!({
        "object": "refund",
        "refund_id": r.id,
        "payment_order_id": r.payment_order_id,
        "checkout_id": r.checkout_id,
        "seller_id": r.seller_id,
        "amount": r.amount.to_string(),
        "currency": r.amount.currency().code(),
        "reason": r.reason,
        "status": r.status,
        "psp_refund_id": r.psp_refund,
        "failure_code": r.failure_code,
        "failure_message": r.failure_message,
        "fee_refunded": r.split.map(|s| s.fee.to_string()),
        "seller_debited": r.split.map(|s| s.seller.to_string()),
        "metadata": r.metadata,
        "created_at": format_time(r.created_at),
        "updated_at": format_time(r.updated_at),
    })
}

/// `GET /v1/refunds?payment_order_id=…`: a page of refunds.
pub fn refund_list_view(refunds: &[Refund], next_cursor: Option<&str>) -> Value {
    super::ledger::list_view(refunds.iter().map(refund_view).collect(), next_cursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse_refund_request(body.as_bytes()).unwrap_err().code
    }

    fn po() -> String {
        PaymentOrderId::generate().to_string()
    }

    #[test]
    fn a_full_body_parses_exactly() {
        let id = po();
        let r = parse_refund_request(
            format!(r#"{{"payment_order_id":"{id}","amount":10.10,"currency":"USD","reason":"duplicate","metadata":{{"ticket":"T-1"}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(r.amount.unwrap().to_string(), "10.10");
        assert_eq!(r.reason, Some(RefundReason::Duplicate));
        assert_eq!(r.metadata.pairs()["ticket"], "T-1");
        let bare = parse_refund_request(format!(r#"{{"payment_order_id":"{id}"}}"#).as_bytes()).unwrap();
        assert!(bare.amount.is_none() && bare.metadata.is_empty());
        // "10.1" and 10.10 are the same request.
        let same = parse_refund_request(
            format!(r#"{{"amount":"10.1","payment_order_id":"{id}","currency":"USD","reason":"duplicate","metadata":{{"ticket":"T-1"}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(same.fingerprint(), r.fingerprint());
        assert_ne!(bare.fingerprint(), r.fingerprint());
    }

    #[test]
    fn bad_bodies_are_refused_with_their_code() {
        let id = po();
        assert_eq!(code("{}"), "parameter_missing");
        assert_eq!(code(r#"{"payment_order_id":"po_nope"}"#), "resource_missing");
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","amount":-1}}"#)),
            "amount_not_positive"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","amount":"1e3"}}"#)),
            "amount_invalid"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","amount":true}}"#)),
            "amount_invalid"
        );
        assert_eq!(
            code(&format!(
                r#"{{"payment_order_id":"{id}","reason":"changed_mind"}}"#
            )),
            "reason_invalid"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","currency":"XXX"}}"#)),
            "currency_invalid"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","card_number":"x"}}"#)),
            "card_data_rejected"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","refund_all":true}}"#)),
            "parameter_unknown"
        );
        assert_eq!(
            code(&format!(
                r#"{{"payment_order_id":"{id}","metadata":{{"note":"4242 4242 4242 4242"}}}}"#
            )),
            "card_data_rejected"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","metadata":{{"n":1}}}}"#)),
            "metadata_invalid"
        );
        assert_eq!(
            code(&format!(r#"{{"payment_order_id":"{id}","metadata":[]}}"#)),
            "metadata_invalid"
        );
        let many: Vec<String> = (0..21).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert_eq!(
            code(&format!(
                r#"{{"payment_order_id":"{id}","metadata":{{{}}}}}"#,
                many.join(",")
            )),
            "metadata_invalid"
        );
    }
}
