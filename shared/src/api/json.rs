//! Strict JSON request bodies, shared by every POST: members read as raw text (amounts never
//! pass through a float), duplicate names refused, unknown and card-like fields refused, and
//! every failure a 400 naming the parameter.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::error::ApiError;
use crate::domain::currency::Currency;
use crate::domain::ids::IdError;
use crate::domain::money::{Money, MoneyError};

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

/// A JSON object's members as raw text, in a map that refuses duplicate names: `{"amount": 1,
/// "amount": 1000}` is ambiguous, and an ambiguous payment is refused rather than guessed.
pub struct Fields(BTreeMap<String, Box<RawValue>>);

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
pub fn duplicate_error(e: &serde_json::Error, at: &str) -> Option<ApiError> {
    let text = e.to_string();
    let name = text.split_once(DUPLICATE)?.1.rsplit_once(" at line")?.0;
    Some(ApiError::invalid_param(
        format!("{at}{name}"),
        "parameter_duplicate",
        format!("Parameter {at}{name} appears more than once"),
    ))
}

pub fn json_error(e: serde_json::Error) -> ApiError {
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

pub fn missing(field: &str) -> ApiError {
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

pub fn reject_card_fields(fields: &Fields, prefix: &str) -> Result<(), ApiError> {
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

pub fn reject_unknown(fields: &Fields, allowed: &[&str], prefix: &str) -> Result<(), ApiError> {
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

/// An optional string member (`null` is absent).
pub fn opt_str(fields: &mut Fields, name: &str) -> Result<Option<String>, ApiError> {
    match fields.remove(name) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str::<String>(raw.get()).map(Some).map_err(|_| {
            ApiError::invalid_param(
                name,
                "parameter_invalid_string",
                format!("{name} must be a string"),
            )
        }),
    }
}

pub fn req_str(fields: &mut Fields, name: &str, prefix: &str) -> Result<String, ApiError> {
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

pub fn req_amount(
    fields: &mut Fields,
    name: &str,
    prefix: &str,
    currency: Currency,
) -> Result<Money, ApiError> {
    let param = format!("{prefix}{name}");
    let raw = fields.remove(name).ok_or_else(|| missing(&param))?;
    let literal = amount_literal(raw.get(), &param)?.ok_or_else(|| missing(&param))?;
    Money::parse_charge(&literal, currency).map_err(|e| amount_error(&param, e))
}

/// An optional amount whose currency is not known yet: its exact decimal value.
pub fn opt_amount_decimal(
    fields: &mut Fields,
    name: &str,
) -> Result<Option<rust_decimal::Decimal>, ApiError> {
    let Some(raw) = fields.remove(name) else {
        return Ok(None);
    };
    match amount_literal(raw.get(), name)? {
        None => Ok(None),
        Some(literal) => Money::parse_decimal(&literal)
            .map(Some)
            .map_err(|e| amount_error(name, e)),
    }
}

/// A JSON number's literal text, or the content of a JSON string; `None` for `null`.
fn amount_literal(text: &str, param: &str) -> Result<Option<String>, ApiError> {
    if text == "null" {
        Ok(None)
    } else if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map(Some)
            .map_err(|_| amount_error(param, MoneyError::NotADecimal))
    } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Ok(Some(text.to_owned()))
    } else {
        Err(amount_error(param, MoneyError::NotADecimal))
    }
}

pub fn amount_error(param: &str, e: MoneyError) -> ApiError {
    let code = match e {
        MoneyError::TooLarge { .. } | MoneyError::Overflow => "amount_too_large",
        MoneyError::TooLong { .. } => "amount_invalid",
        MoneyError::TooPrecise { .. } => "amount_too_precise",
        MoneyError::NotPositive => "amount_not_positive",
        _ => "amount_invalid",
    };
    ApiError::invalid_param(param, code, format!("{param} {e}"))
}

pub fn id_error(param: &str) -> impl Fn(IdError) -> ApiError + '_ {
    move |e| {
        let code = if e == IdError::CardNumber {
            "card_data_rejected"
        } else {
            "parameter_invalid"
        };
        ApiError::invalid_param(param, code, format!("{param} {e}"))
    }
}

impl Fields {
    /// Parses a request body that must be a JSON object; an empty body, invalid JSON or another
    /// JSON value is a 400 saying which.
    pub fn parse_body(body: &[u8]) -> Result<Fields, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                "body_missing",
                "Request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(body).map_err(json_error)
    }
}
