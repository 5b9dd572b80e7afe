//! `POST /v1/payouts` bodies in, payouts out: the payouts API's wire shapes.

use serde_json::{json, Value};

use super::error::ApiError;
use super::json::{id_error, reject_card_fields, reject_unknown, req_amount, req_str, Fields};
use crate::domain::currency::Currency;
use crate::domain::ids::SellerId;
use crate::domain::payouts::{Payout, PayoutRequest};
use crate::domain::time::format_time;

const FIELDS: &[&str] = &["seller_id", "amount", "currency"];

/// Parses and validates a `POST /v1/payouts` body `{seller_id, amount, currency}`. The amount
/// is read from the raw JSON text (a number or a decimal string, never a float) and must be
/// exact in the currency.
pub fn parse_payout_request(body: &[u8]) -> Result<PayoutRequest, ApiError> {
    let mut top = Fields::parse_body(body)?;
    reject_card_fields(&top, "")?;
    reject_unknown(&top, FIELDS, "")?;
    let seller_id = SellerId::parse(&req_str(&mut top, "seller_id", "")?).map_err(id_error("seller_id"))?;
    let raw_currency = req_str(&mut top, "currency", "")?;
    let currency = Currency::parse(&raw_currency)
        .map_err(|e| ApiError::invalid_param("currency", "currency_invalid", e.to_string()))?;
    let amount = req_amount(&mut top, "amount", "", currency)?;
    Ok(PayoutRequest { seller_id, amount })
}

/// The payout object.
pub fn payout_view(p: &Payout) -> Value {
    json!({
        "object": "payout",
        "payout_id": p.id,
        "seller_id": p.seller_id,
        "amount": p.amount.to_string(),
        "currency": p.amount.currency().code(),
        "status": p.status,
        "automatic": p.automatic,
        "psp_transfer_id": p.psp_transfer,
        "psp_payout_id": p.psp_payout,
        "arrival_date": p.arrival_date.map(|d| d.format("%Y-%m-%d").to_string()),
        "failure_code": p.failure_code,
        "failure_message": p.failure_message,
        "created_at": format_time(p.created_at),
        "updated_at": format_time(p.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> String {
        let e = parse_payout_request(body.as_bytes()).unwrap_err();
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_payout_request_is_exact_and_strict() {
        let r = parse_payout_request(br#"{"seller_id":"s1","amount":"12.50","currency":"USD"}"#).unwrap();
        assert_eq!((r.seller_id.as_str(), r.amount.minor()), ("s1", 1250));
        let n = parse_payout_request(br#"{"seller_id":"s1","amount":12.5,"currency":"usd"}"#).unwrap();
        assert_eq!(
            n.fingerprint(),
            r.fingerprint(),
            "a number and a string are one amount"
        );
        for (body, want) in [
            (
                r#"{"seller_id":"s1","amount":"0","currency":"USD"}"#,
                "amount_not_positive",
            ),
            (
                r#"{"seller_id":"s1","amount":"-1","currency":"USD"}"#,
                "amount_not_positive",
            ),
            (
                r#"{"seller_id":"s1","amount":"1.001","currency":"USD"}"#,
                "amount_too_precise",
            ),
            (
                r#"{"seller_id":"s1","amount":"1","currency":"XXX"}"#,
                "currency_invalid",
            ),
            (
                r#"{"seller_id":"a b","amount":"1","currency":"USD"}"#,
                "parameter_invalid",
            ),
            (
                r#"{"seller_id":"s1","amount":"1","currency":"USD","extra":1}"#,
                "parameter_unknown",
            ),
            (
                r#"{"seller_id":"4242424242424242","amount":"1","currency":"USD"}"#,
                "card_data_rejected",
            ),
        ] {
            assert_eq!(code(body), want, "{body}");
        }
    }
}
