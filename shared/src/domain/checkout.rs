//! A checkout: one buyer paying one PSP charge for an order, split into one payment order
//! per seller line. Requests are parsed here, at the edge, into types that cannot be wrong.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::currency::Currency;
use super::error::ApiError;
use super::ids::{AccountId, BuyerId, CheckoutId, IdError, OrderId, PaymentOrderId, SellerId, SubOrderId};
use super::money::{Money, MoneyError};
use super::status::PaymentStatus;

/// At most this many seller lines per checkout: one DynamoDB transaction (100 items) holds the
/// checkout, its orders, the idempotency record and, later, outbox records.
pub const MAX_LINE_ITEMS: usize = 50;

const SINGLE_FIELDS: &[&str] = &["buyer_id", "seller_id", "amount", "currency", "order_id"];
const MULTI_FIELDS: &[&str] = &["buyer_id", "order_id", "currency", "total_amount", "line_items"];
const LINE_FIELDS: &[&str] = &["seller_id", "amount", "sub_order_id"];

/// Field names that carry card data. We never accept them (PCI scope stays SAQ-A).
const CARD_FIELDS: &[&str] = &[
    "card",
    "cardnumber",
    "cardno",
    "number",
    "pan",
    "cvc",
    "cvv",
    "cvc2",
    "cvv2",
    "cid",
    "securitycode",
    "expmonth",
    "expyear",
    "expiry",
    "expiration",
    "expdate",
    "exp",
    "track",
    "trackdata",
    "track1",
    "track2",
    "magstripe",
    "paymentmethod",
    "cardholder",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutForm {
    /// `{buyer_id, seller_id, amount, currency, order_id}`
    Single,
    /// `{buyer_id, order_id, currency, total_amount, line_items: [...]}`
    Multi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub seller_id: SellerId,
    pub amount: Money,
    pub sub_order_id: Option<SubOrderId>,
}

/// A validated `POST /v1/payments` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub form: CheckoutForm,
    pub buyer_id: BuyerId,
    pub order_id: OrderId,
    pub currency: Currency,
    pub total: Money,
    pub lines: Vec<LineItem>,
}

/// A JSON object's members as raw text, in a map that refuses duplicate names: `{"amount": 1,
/// "amount": 1000}` is ambiguous, and an ambiguous payment is refused rather than guessed.
struct Fields(BTreeMap<String, Box<RawValue>>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if fields.contains_key(&name) {
                        let shown: String = name.chars().take(64).collect();
                        return Err(serde::de::Error::custom(format!("{DUPLICATE}{shown}")));
                    }
                    fields.insert(name, value);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

const DUPLICATE: &str = "duplicate member: ";

impl std::ops::Deref for Fields {
    type Target = BTreeMap<String, Box<RawValue>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Fields {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// A duplicated member name, found while parsing `at` (`""` or `line_items[...]`).
fn duplicate_error(e: &serde_json::Error, at: &str) -> Option<ApiError> {
    let text = e.to_string();
    let name = text.split_once(DUPLICATE)?.1.rsplit_once(" at line")?.0;
    Some(ApiError::invalid_param(
        format!("{at}{name}"),
        "parameter_duplicate",
        format!("Parameter {at}{name} appears more than once"),
    ))
}

impl CheckoutRequest {
    /// Parses and validates a JSON body. Amounts are read from the raw JSON text, so `0.1`
    /// reaches us as exactly one tenth, never through a float.
    pub fn parse_json(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "body_missing",
                "Request body is empty; send a JSON object",
            ));
        }
        let mut top: Fields = serde_json::from_slice(body).map_err(json_error)?;
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

    /// SHA-256 of the request's canonical form: two bodies that mean the same request
    /// (`99.99` or `"99.990"`, fields in any order) have the same fingerprint.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Canon<'a> {
            form: CheckoutForm,
            buyer_id: &'a str,
            order_id: &'a str,
            currency: &'a str,
            total_minor: i64,
            lines: Vec<(&'a str, i64, Option<&'a str>)>,
        }
        let canon = Canon {
            form: self.form,
            buyer_id: self.buyer_id.as_str(),
            order_id: self.order_id.as_str(),
            currency: self.currency.code(),
            total_minor: self.total.minor(),
            lines: self
                .lines
                .iter()
                .map(|l| {
                    (
                        l.seller_id.as_str(),
                        l.amount.minor(),
                        l.sub_order_id.as_ref().map(|s| s.as_str()),
                    )
                })
                .collect(),
        };
        let text = serde_json::to_string(&canon).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
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
    if items.len() > MAX_LINE_ITEMS {
        return Err(ApiError::invalid_param(
            "line_items",
            "too_many_line_items",
            format!("at most {MAX_LINE_ITEMS} line items per checkout"),
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

fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    if let Some(dup) = duplicate_error(&e, "") {
        return dup;
    }
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::invalid(
            "json_invalid",
            format!(
                "Request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        ),
        Category::Data => ApiError::invalid("body_not_object", "Request body must be a JSON object"),
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::invalid_param(
        field,
        "parameter_missing",
        format!("Missing required parameter: {field}"),
    )
}

fn normalize_key(k: &str) -> String {
    k.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn reject_card_fields(fields: &Fields, prefix: &str) -> Result<(), ApiError> {
    for key in fields.keys() {
        let k = normalize_key(key);
        if CARD_FIELDS.contains(&k.as_str()) || k.starts_with("card") {
            return Err(ApiError::invalid_param(
                format!("{prefix}{key}"),
                "card_data_rejected",
                "Card data is never accepted: the buyer enters card details only on the PSP's hosted payment page",
            ));
        }
    }
    Ok(())
}

fn reject_unknown(fields: &Fields, allowed: &[&str], prefix: &str) -> Result<(), ApiError> {
    match fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            let shown: String = key.chars().take(64).collect();
            Err(ApiError::invalid_param(
                format!("{prefix}{shown}"),
                "parameter_unknown",
                format!("Received unknown parameter: {prefix}{shown}"),
            ))
        }
    }
}

fn req_str(fields: &mut Fields, name: &str, prefix: &str) -> Result<String, ApiError> {
    let param = format!("{prefix}{name}");
    let raw = fields.remove(name).ok_or_else(|| missing(&param))?;
    if raw.get() == "null" {
        return Err(missing(&param));
    }
    serde_json::from_str::<String>(raw.get()).map_err(|_| {
        ApiError::invalid_param(
            param.clone(),
            "parameter_invalid_string",
            format!("{param} must be a string"),
        )
    })
}

fn req_amount(fields: &mut Fields, name: &str, prefix: &str, currency: Currency) -> Result<Money, ApiError> {
    let param = format!("{prefix}{name}");
    let raw = fields.remove(name).ok_or_else(|| missing(&param))?;
    let text = raw.get();
    if text == "null" {
        return Err(missing(&param));
    }
    // A JSON number's literal text, or the content of a JSON string.
    let literal = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|_| amount_error(&param, currency, MoneyError::NotADecimal))?
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        text.to_owned()
    } else {
        return Err(amount_error(&param, currency, MoneyError::NotADecimal));
    };
    Money::parse_charge(&literal, currency).map_err(|e| amount_error(&param, currency, e))
}

fn amount_error(param: &str, _currency: Currency, e: MoneyError) -> ApiError {
    let code = match e {
        MoneyError::TooLarge { .. } | MoneyError::Overflow => "amount_too_large",
        MoneyError::TooPrecise { .. } => "amount_too_precise",
        MoneyError::NotPositive => "amount_not_positive",
        _ => "amount_invalid",
    };
    ApiError::invalid_param(param, code, format!("{param} {e}"))
}

fn id_error(param: &str) -> impl Fn(IdError) -> ApiError + '_ {
    move |e| {
        let code = if e == IdError::CardNumber {
            "card_data_rejected"
        } else {
            "parameter_invalid"
        };
        ApiError::invalid_param(param, code, format!("{param} {e}"))
    }
}

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One buyer checkout (one PSP charge for `total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub id: CheckoutId,
    pub account_id: AccountId,
    pub form: CheckoutForm,
    pub order_id: OrderId,
    pub buyer_id: BuyerId,
    pub total: Money,
    pub status: PaymentStatus,
    pub psp_token: Option<String>,
    /// The PSP's hosted page for this checkout (the response's `psp_redirect_url`).
    pub psp_url: Option<String>,
    /// Why the checkout failed, in the PSP's words, when it did.
    pub failure_reason: Option<String>,
    pub payment_order_ids: Vec<PaymentOrderId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One seller's share of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOrder {
    pub id: PaymentOrderId,
    pub checkout_id: CheckoutId,
    pub account_id: AccountId,
    pub order_id: OrderId,
    pub sub_order_id: Option<SubOrderId>,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub amount: Money,
    pub status: PaymentStatus,
    pub psp_token: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Checkout {
    /// A new checkout in `CREATED` with one payment order per line.
    pub fn open(
        req: &CheckoutRequest,
        account_id: &AccountId,
        now: DateTime<Utc>,
    ) -> (Checkout, Vec<PaymentOrder>) {
        let id = CheckoutId::generate();
        let orders: Vec<PaymentOrder> = req
            .lines
            .iter()
            .map(|line| PaymentOrder {
                id: PaymentOrderId::generate(),
                checkout_id: id.clone(),
                account_id: account_id.clone(),
                order_id: req.order_id.clone(),
                sub_order_id: line.sub_order_id.clone(),
                buyer_id: req.buyer_id.clone(),
                seller_id: line.seller_id.clone(),
                amount: line.amount,
                status: PaymentStatus::Created,
                psp_token: None,
                created_at: now,
                updated_at: now,
            })
            .collect();
        let checkout = Checkout {
            id,
            account_id: account_id.clone(),
            form: req.form,
            order_id: req.order_id.clone(),
            buyer_id: req.buyer_id.clone(),
            total: req.total,
            status: PaymentStatus::Created,
            psp_token: None,
            psp_url: None,
            failure_reason: None,
            payment_order_ids: orders.iter().map(|o| o.id.clone()).collect(),
            created_at: now,
            updated_at: now,
        };
        debug_assert!(checkout.check(&orders).is_ok());
        (checkout, orders)
    }

    /// The invariants between a checkout and its orders: same currency, amounts sum to the
    /// total, every order belongs to it, one status for all.
    pub fn check(&self, orders: &[PaymentOrder]) -> Result<(), String> {
        let ids: Vec<&PaymentOrderId> = orders.iter().map(|o| &o.id).collect();
        if ids != self.payment_order_ids.iter().collect::<Vec<_>>() {
            return Err(format!(
                "checkout {} lists other payment orders than it has",
                self.id
            ));
        }
        let sum =
            Money::sum(self.total.currency(), orders.iter().map(|o| o.amount)).map_err(|e| e.to_string())?;
        if sum != self.total {
            return Err(format!(
                "checkout {}: orders sum to {sum:?}, total is {:?}",
                self.id, self.total
            ));
        }
        if let Some(o) = orders
            .iter()
            .find(|o| o.checkout_id != self.id || o.status != self.status || o.account_id != self.account_id)
        {
            return Err(format!(
                "payment order {} disagrees with checkout {}",
                o.id, self.id
            ));
        }
        Ok(())
    }
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
        "psp_token": o.psp_token,
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
        "payment_orders": orders.iter().map(payment_order_view).collect::<Vec<_>>(),
        "psp_token": c.psp_token,
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

impl Checkout {
    /// Applies `event` to the checkout and all its orders (one charge pays for all, so they
    /// move together). Returns the status they left.
    pub fn apply(
        &mut self,
        orders: &mut [PaymentOrder],
        event: super::status::PaymentEvent,
        now: DateTime<Utc>,
    ) -> Result<PaymentStatus, super::status::IllegalTransition> {
        let from = self.status;
        let next = from.apply(event)?;
        self.status = next;
        self.updated_at = now;
        for o in orders.iter_mut() {
            o.status = next;
            o.psp_token.clone_from(&self.psp_token);
            o.updated_at = now;
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CheckoutRequest, ApiError> {
        CheckoutRequest::parse_json(s.as_bytes())
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
        assert_eq!(parse(&lines(MAX_LINE_ITEMS)).unwrap().lines.len(), MAX_LINE_ITEMS);
        assert_eq!(code(&lines(MAX_LINE_ITEMS + 1)), "too_many_line_items");
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
    fn open_builds_consistent_orders() {
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
