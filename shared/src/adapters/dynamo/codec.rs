//! Small helpers between DynamoDB attribute maps and domain values.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::time::{format_time, parse_time};
use crate::ports::StoreError;

pub type Item = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn time(t: DateTime<Utc>) -> AttributeValue {
    AttributeValue::S(format_time(t))
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    opt_s(item, name)?.ok_or_else(|| StoreError::Corrupt(format!("missing attribute {name}")))
}

pub fn opt_s<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a string"))),
    }
}

pub fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    opt_n(item, name)?.ok_or_else(|| StoreError::Corrupt(format!("missing attribute {name}")))
}

pub fn opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not a valid number"))),
        Some(_) => Err(StoreError::Corrupt(format!("attribute {name} is not a number"))),
    }
}

pub fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_time(get_s(item, name)?)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is not a timestamp")))
}

/// Parses a stored value with a domain parser, turning its error into `Corrupt`.
pub fn parse<T, E: std::fmt::Display>(
    item: &Item,
    name: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StoreError> {
    f(get_s(item, name)?).map_err(|e| StoreError::Corrupt(format!("attribute {name}: {e}")))
}

/// An optional attribute parsed by `f` when present.
pub fn opt_parse<T, E: std::fmt::Display>(
    item: &Item,
    name: &str,
    f: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, StoreError> {
    opt_s(item, name)?
        .map(|v| f(v).map_err(|e| StoreError::Corrupt(format!("attribute {name}: {e}"))))
        .transpose()
}

pub fn unavailable<E: std::error::Error>(op: &str, e: E) -> StoreError {
    // The SDK's Display is terse; the source chain says what actually failed.
    let mut msg = format!("{op}: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Unavailable(msg)
}

/// An item read into a type with serde_dynamo (for items read whole, such as scans' rows).
pub fn from_item<T: serde::de::DeserializeOwned>(item: Item, what: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A request builder's own error: the request we made is malformed, which is our bug.
pub fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Corrupt(format!("building a request: {e}")))
}
