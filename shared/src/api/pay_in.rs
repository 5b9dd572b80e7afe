//! `POST /v1/payments` bodies in, checkouts and payment orders out: the pay-in API's wire
//! shapes.

use std::collections::HashSet;

use super::error::ApiError;
use super::json::{
    duplicate_error, id_error, missing, reject_card_fields, reject_unknown, req_amount, req_str, Fields,
};
use crate::domain::currency::Currency;
use crate::domain::ids::{BuyerId, OrderId, SellerId, SubOrderId};
use crate::domain::money::Money;
use crate::domain::pay_in::{
    Checkout, CheckoutForm, CheckoutRequest, LineItem, PaymentOrder, LINE_ITEMS_MAX,
};
use crate::domain::time::format_time;

const SINGLE_FIELDS: &[&str] = &["buyer_id", "seller_id", "amount", "currency", "order_id"];
const MULTI_FIELDS: &[&str] = &["buyer_id", "order_id", "currency", "total_amount", "line_items"];
const LINE_FIELDS: &[&str] = &["seller_id", "amount", "sub_order_id"];

/// Parses and validates a JSON body. Amounts are read from the raw JSON text, so `0.1`
/// reaches us as exactly one tenth, never through a float.
pub fn parse_checkout_request(body: &[u8]) -> Result<CheckoutRequest, ApiError> {
    let mut top = Fields::parse_body(body)?;
    reject_card_fields(&top, "")?;
    let form = if top.contains_key("line_items") {
        CheckoutForm::Multi
    } else {
        CheckoutForm::Single
    };
    let allowed = match form {
        CheckoutForm::Single => SINGLE_FIELDS,
        CheckoutForm::Multi => MULTI_FIELDS,
    };
    reject_unknown(&top, allowed, "")?;

    let buyer_id = BuyerId::parse(&req_str(&mut top, "buyer_id", "")?).map_err(id_error("buyer_id"))?;
    let order_id = OrderId::parse(&req_str(&mut top, "order_id", "")?).map_err(id_error("order_id"))?;
    let currency_text = req_str(&mut top, "currency", "")?;
    let currency = Currency::parse(&currency_text)
        .map_err(|e| ApiError::invalid_param("currency", "currency_invalid", e.to_string()))?;

    match form {
        CheckoutForm::Single => {
            let seller_id =
                SellerId::parse(&req_str(&mut top, "seller_id", "")?).map_err(id_error("seller_id"))?;
            let amount = req_amount(&mut top, "amount", "", currency)?;
            Ok(CheckoutRequest {
                form,
                buyer_id,
                order_id,
                currency,
                total: amount,
                lines: vec![LineItem {
                    seller_id,
                    amount,
                    sub_order_id: None,
                }],
            })
        }
        CheckoutForm::Multi => {
            let total = req_amount(&mut top, "total_amount", "", currency)?;
            let lines = parse_lines(&mut top, currency)?;
            let sum = Money::sum(currency, lines.iter().map(|l| l.amount)).map_err(|_| {
                ApiError::invalid_param("line_items", "amount_too_large", "line item amounts overflow")
            })?;
            if sum != total {
                return Err(ApiError::invalid_param(
                    "total_amount",
                    "total_mismatch",
                    format!("total_amount {total} {currency} must equal the sum of line_items amounts ({sum} {currency})"),
                ));
            }
            Ok(CheckoutRequest {
                form,
                buyer_id,
                order_id,
                currency,
                total,
                lines,
            })
        }
    }
}

fn parse_lines(top: &mut Fields, currency: Currency) -> Result<Vec<LineItem>, ApiError> {
    let raw = top.remove("line_items").ok_or_else(|| missing("line_items"))?;
    let items: Vec<Fields> = serde_json::from_str(raw.get()).map_err(|e| {
        duplicate_error(&e, "line_items[].").unwrap_or_else(|| {
            ApiError::invalid_param(
                "line_items",
                "line_items_invalid",
                "line_items must be an array of objects",
            )
        })
    })?;
    if items.is_empty() {
        return Err(ApiError::invalid_param(
            "line_items",
            "line_items_invalid",
            "line_items must not be empty",
        ));
    }
    if items.len() > LINE_ITEMS_MAX {
        return Err(ApiError::invalid_param(
            "line_items",
            "too_many_line_items",
            format!("at most {LINE_ITEMS_MAX} line items per checkout"),
        ));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(items.len());
    for (i, mut item) in items.into_iter().enumerate() {
        let prefix = format!("line_items[{i}].");
        reject_card_fields(&item, &prefix)?;
        reject_unknown(&item, LINE_FIELDS, &prefix)?;
        let p = |f: &str| format!("{prefix}{f}");
        let seller_id =
            SellerId::parse(&req_str(&mut item, "seller_id", &prefix)?).map_err(id_error(&p("seller_id")))?;
        let amount = req_amount(&mut item, "amount", &prefix, currency)?;
        let sub_order_id = SubOrderId::parse(&req_str(&mut item, "sub_order_id", &prefix)?)
            .map_err(id_error(&p("sub_order_id")))?;
        if !seen.insert(sub_order_id.clone()) {
            return Err(ApiError::invalid_param(
                p("sub_order_id"),
                "duplicate_sub_order_id",
                format!("sub_order_id '{sub_order_id}' appears more than once"),
            ));
        }
        lines.push(LineItem {
            seller_id,
            amount,
            sub_order_id: Some(sub_order_id),
        });
    }
    Ok(lines)
}

/// `GET /v1/payments/{id}` and the entries of a checkout's `payment_orders`.
pub fn payment_order_view(o: &PaymentOrder) -> serde_json::Value {
    serde_json::json!({
        "object": "payment_order",
        "payment_order_id": o.id,
        "checkout_id": o.checkout_id,
        "order_id": o.order_id,
        "sub_order_id": o.sub_order_id,
        "buyer_id": o.buyer_id,
        "seller_id": o.seller_id,
        "amount": o.amount.to_string(),
        "currency": o.amount.currency().code(),
        "status": o.status,
        "amount_refunded": o.amount_refunded().to_string(),
        "psp_token": o.psp_session,
        "created_at": format_time(o.created_at),
        "updated_at": format_time(o.updated_at),
    })
}

/// The checkout as `POST /v1/payments` and `GET /v1/checkouts/{id}` show it. The single-seller
/// form also carries its one order's `payment_order_id`, `seller_id` and `amount` at the top.
pub fn checkout_view(c: &Checkout, orders: &[PaymentOrder]) -> serde_json::Value {
    let mut v = serde_json::json!({
        "object": "checkout",
        "checkout_id": c.id,
        "status": c.status,
        "order_id": c.order_id,
        "buyer_id": c.buyer_id,
        "currency": c.total.currency().code(),
        "total_amount": c.total.to_string(),
        "amount_refunded": Money::sum(c.total.currency(), orders.iter().map(PaymentOrder::amount_refunded))
            .unwrap_or(Money::zero(c.total.currency()))
            .to_string(),
        "payment_orders": orders.iter().map(payment_order_view).collect::<Vec<_>>(),
        "psp_token": c.psp_session,
        "psp_redirect_url": c.psp_url,
        "failure_reason": c.failure_reason,
        "created_at": format_time(c.created_at),
        "updated_at": format_time(c.updated_at),
    });
    if let (CheckoutForm::Single, [only], Some(map)) = (c.form, orders, v.as_object_mut()) {
        map.insert("payment_order_id".into(), only.id.as_str().into());
        map.insert("seller_id".into(), only.seller_id.as_str().into());
        map.insert("amount".into(), only.amount.to_string().into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::AccountId;
    use chrono::Utc;

    fn parse(s: &str) -> Result<CheckoutRequest, ApiError> {
        parse_checkout_request(s.as_bytes())
    }

    fn code(s: &str) -> &'static str {
        parse(s).unwrap_err().code
    }

    const SINGLE: &str = r#"{"buyer_id":"user_123","seller_id":"seller_456","amount":99.99,"currency":"USD","order_id":"order_789"}"#;
    const MULTI: &str = r#"{"buyer_id":"user_123","order_id":"order_789","total_amount":100.00,"currency":"USD",
        "line_items":[{"seller_id":"seller_A","amount":40.00,"sub_order_id":"sub_001"},
                      {"seller_id":"seller_B","amount":"35.00","sub_order_id":"sub_002"},
                      {"seller_id":"seller_C","amount":25,"sub_order_id":"sub_003"}]}"#;

    #[test]
    fn single_seller() {
        let r = parse(SINGLE).unwrap();
        assert_eq!(r.form, CheckoutForm::Single);
        assert_eq!(r.total.minor(), 9999);
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].seller_id.as_str(), "seller_456");
    }

    #[test]
    fn multi_seller() {
        let r = parse(MULTI).unwrap();
        assert_eq!(r.form, CheckoutForm::Multi);
        assert_eq!(r.total.minor(), 10000);
        let amounts: Vec<i64> = r.lines.iter().map(|l| l.amount.minor()).collect();
        assert_eq!(amounts, vec![4000, 3500, 2500]);
    }

    #[test]
    fn tenths_are_exact() {
        let r = parse(r#"{"buyer_id":"b","order_id":"o","total_amount":0.3,"currency":"USD",
            "line_items":[{"seller_id":"s1","amount":0.1,"sub_order_id":"a"},{"seller_id":"s2","amount":0.2,"sub_order_id":"b"}]}"#)
        .unwrap();
        assert_eq!(r.total.minor(), 30);
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(code(""), "body_missing");
        assert_eq!(code("   "), "body_missing");
        assert_eq!(code("{"), "json_invalid");
        assert_eq!(code("nope"), "json_invalid");
        assert_eq!(code("[]"), "body_not_object");
        assert_eq!(code("null"), "body_not_object");
        assert_eq!(code("42"), "body_not_object");
        let dup = parse(&SINGLE.replace("{", "{\"amount\":\"1000.00\",")).unwrap_err();
        assert_eq!(
            (dup.code, dup.param.as_deref()),
            ("parameter_duplicate", Some("amount"))
        );
        let dup_line = parse(&MULTI.replace("\"seller_C\"", "\"seller_C\",\"seller_id\":\"x\"")).unwrap_err();
        assert_eq!(dup_line.code, "parameter_duplicate", "{dup_line:?}");
    }

    #[test]
    fn bad_amounts() {
        let with = |amount: &str| SINGLE.replace("99.99", amount);
        assert_eq!(code(&with("0")), "amount_not_positive");
        assert_eq!(code(&with("-5")), "amount_not_positive");
        assert_eq!(code(&with("1e2")), "amount_invalid");
        assert_eq!(code(&with("\"1e2\"")), "amount_invalid");
        assert_eq!(code(&with("99.999")), "amount_too_precise");
        assert_eq!(code(&with("1000000.00")), "amount_too_large");
        assert_eq!(code(&with("\"abc\"")), "amount_invalid");
        assert_eq!(code(&with("true")), "amount_invalid");
        assert_eq!(code(&with("{}")), "amount_invalid");
        assert_eq!(code(&with("null")), "parameter_missing");
        assert_eq!(
            code(&with("123456789012345678901234567890123456789")),
            "amount_too_large"
        );
        // One problem, named once.
        let twenty = parse(&with("12345678901234567890")).unwrap_err();
        assert_eq!(twenty.code, "amount_too_large");
        assert_eq!(twenty.message, "amount exceeds the maximum of 999999.99 in USD");
        let long = parse(&with(&format!("\"10.{}\"", "0".repeat(30)))).unwrap_err();
        assert_eq!(long.code, "amount_invalid");
        assert!(
            long.message.contains("longer than 32 characters"),
            "{}",
            long.message
        );
        assert_eq!(
            parse(&with(&format!("10.{}", "0".repeat(25))))
                .unwrap()
                .total
                .minor(),
            1000
        );
        let jpy = SINGLE.replace("\"USD\"", "\"JPY\"");
        assert_eq!(code(&jpy), "amount_too_precise");
        assert_eq!(parse(&jpy.replace("99.99", "9999")).unwrap().total.minor(), 9999);
        let kwd = SINGLE.replace("\"USD\"", "\"KWD\"").replace("99.99", "1.234");
        assert_eq!(parse(&kwd).unwrap().total.minor(), 1234);
    }

    #[test]
    fn bad_fields() {
        assert_eq!(code(&SINGLE.replace("\"USD\"", "\"XYZ\"")), "currency_invalid");
        assert_eq!(
            code(&SINGLE.replace("\"order_789\"", "17")),
            "parameter_invalid_string"
        );
        assert_eq!(
            code(&SINGLE.replace("\"seller_456\"", "\"\"")),
            "parameter_invalid"
        );
        assert_eq!(
            code(&SINGLE.replace(",\"order_id\":\"order_789\"", "")),
            "parameter_missing"
        );
        assert_eq!(code(&SINGLE.replace("}", ",\"extra\":1}")), "parameter_unknown");
        let e = parse(&SINGLE.replace("}", ",\"card_number\":\"4242424242424242\"}")).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("card_data_rejected", Some("card_number"))
        );
        assert!(e.message.contains("never accepted"));
        assert!(!e.message.contains("4242"));
        assert_eq!(
            code(&SINGLE.replace("}", ",\"cvc\":\"123\"}")),
            "card_data_rejected"
        );
        assert_eq!(
            code(&SINGLE.replace("user_123", "4242424242424242")),
            "card_data_rejected"
        );
    }

    #[test]
    fn bad_multi() {
        assert_eq!(code(&MULTI.replace("100.00", "100.01")), "total_mismatch");
        assert_eq!(
            code(&MULTI.replace("sub_002", "sub_001")),
            "duplicate_sub_order_id"
        );
        assert_eq!(
            code(&MULTI.replace(",\"sub_order_id\":\"sub_003\"", "")),
            "parameter_missing"
        );
        assert_eq!(
            code(&MULTI.replace("\"seller_C\"", "\"seller_C\",\"pan\":\"x\"")),
            "card_data_rejected"
        );
        assert_eq!(
            code(&MULTI.replace("\"seller_C\"", "\"seller_C\",\"x\":1")),
            "parameter_unknown"
        );
        let empty = r#"{"buyer_id":"b","order_id":"o","total_amount":1,"currency":"USD","line_items":[]}"#;
        assert_eq!(code(empty), "line_items_invalid");
        let not_array = empty.replace("[]", "{}");
        assert_eq!(code(&not_array), "line_items_invalid");
        let mixed = MULTI.replace("\"buyer_id\"", "\"amount\":1,\"buyer_id\"");
        assert_eq!(code(&mixed), "parameter_unknown");
    }

    #[test]
    fn line_limit() {
        let lines = |n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"seller_id":"s{i}","amount":"1.00","sub_order_id":"sub{i}"}}"#))
                .collect();
            format!(
                r#"{{"buyer_id":"b","order_id":"o","currency":"USD","total_amount":"{n}.00","line_items":[{}]}}"#,
                items.join(",")
            )
        };
        assert_eq!(parse(&lines(LINE_ITEMS_MAX)).unwrap().lines.len(), LINE_ITEMS_MAX);
        assert_eq!(code(&lines(LINE_ITEMS_MAX + 1)), "too_many_line_items");
    }

    #[test]
    fn fingerprint_is_canonical() {
        let a = parse(SINGLE).unwrap();
        let reordered = r#"{"order_id":"order_789","currency":"usd","amount":"99.990","seller_id":"seller_456","buyer_id":"user_123"}"#;
        assert_eq!(a.fingerprint(), parse(reordered).unwrap().fingerprint());
        assert_ne!(
            a.fingerprint(),
            parse(&SINGLE.replace("99.99", "99.98")).unwrap().fingerprint()
        );
    }

    #[test]
    fn views_show_the_checkout_and_its_orders() {
        let r = parse(MULTI).unwrap();
        let acct = AccountId::parse("acct_1").unwrap();
        let (c, orders) = Checkout::open(&r, &acct, Utc::now());
        assert_eq!(orders.len(), 3);
        assert!(c.check(&orders).is_ok());
        let mut bad = orders.clone();
        bad[0].amount = Money::from_minor(1, r.currency);
        assert!(c.check(&bad).is_err());
        let v = checkout_view(&c, &orders);
        assert_eq!(v["total_amount"], "100.00");
        assert_eq!(v["payment_orders"][1]["amount"], "35.00");
        assert!(v.get("payment_order_id").is_none());
        let single = parse(SINGLE).unwrap();
        let (c, orders) = Checkout::open(&single, &acct, Utc::now());
        let v = checkout_view(&c, &orders);
        assert_eq!(v["payment_order_id"], orders[0].id.as_str());
        assert_eq!(v["amount"], "99.99");
        assert_eq!(v["status"], "CREATED");
        assert!(v["psp_redirect_url"].is_null());
    }
}
