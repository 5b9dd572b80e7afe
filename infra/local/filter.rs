//! Event filtering for event-source mappings (`FilterCriteria.Filters[].Pattern`), with
//! EventBridge's pattern semantics for the subset Lambda filters use:
//!
//! - a pattern is a JSON object; nested objects descend into the record, and each leaf is an
//!   array of allowed values: the record's field matches if it equals any of them (a field that
//!   is an array matches if any of its elements does);
//! - a leaf's entries may also be `{"prefix": s}`, `{"suffix": s}`, `{"equals-ignore-case": s}`,
//!   `{"exists": bool}`, `{"anything-but": value | [values] | {"prefix": s}}` or
//!   `{"numeric": [op, n, (op, n)]}`;
//! - a record passes the criteria if it matches any one filter; no filters pass everything.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn perr<T>(msg: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// A string, number, boolean or null, compared exactly (numbers by value).
    Exact(Value),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    Exists(bool),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
    Numeric(Vec<(Cmp, f64)>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Object(Vec<(String, Pattern)>),
    Leaf(Vec<Matcher>),
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (as_number(a), as_number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Matcher {
    fn parse(v: &Value, at: &str) -> Result<Self, PatternError> {
        let Value::Object(m) = v else {
            return if v.is_array() {
                perr(format!("{at}: nested arrays are not allowed"))
            } else {
                Ok(Matcher::Exact(v.clone()))
            };
        };
        if m.len() != 1 {
            return perr(format!("{at}: an operator object must have exactly one key"));
        }
        let Some((op, arg)) = m.iter().next() else {
            return perr(format!("{at}: empty operator"));
        };
        let string = |what: &str| -> Result<String, PatternError> {
            arg.as_str()
                .map(str::to_string)
                .ok_or_else(|| PatternError(format!("{at}: {what} needs a string")))
        };
        Ok(match op.as_str() {
            "prefix" => Matcher::Prefix(string("prefix")?),
            "suffix" => Matcher::Suffix(string("suffix")?),
            "equals-ignore-case" => Matcher::EqualsIgnoreCase(string("equals-ignore-case")?),
            "exists" => match arg {
                Value::Bool(b) => Matcher::Exists(*b),
                _ => return perr(format!("{at}: exists needs true or false")),
            },
            "anything-but" => match arg {
                Value::Array(items) => {
                    if items.iter().any(|i| i.is_array() || i.is_object()) {
                        return perr(format!("{at}: anything-but takes scalar values"));
                    }
                    Matcher::AnythingBut(items.clone())
                }
                Value::Object(inner) => match inner.get("prefix").and_then(Value::as_str) {
                    Some(p) if inner.len() == 1 => Matcher::AnythingButPrefix(p.to_string()),
                    _ => return perr(format!("{at}: anything-but supports only a prefix object")),
                },
                scalar => Matcher::AnythingBut(vec![scalar.clone()]),
            },
            "numeric" => {
                let items = arg
                    .as_array()
                    .ok_or_else(|| PatternError(format!("{at}: numeric needs [op, number, ...]")))?;
                if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
                    return perr(format!("{at}: numeric needs one or two [op, number] pairs"));
                }
                let mut cmps = Vec::new();
                for pair in items.chunks(2) {
                    let cmp = match pair[0].as_str() {
                        Some("<") => Cmp::Lt,
                        Some("<=") => Cmp::Le,
                        Some("=") => Cmp::Eq,
                        Some(">=") => Cmp::Ge,
                        Some(">") => Cmp::Gt,
                        _ => return perr(format!("{at}: numeric operator must be <, <=, =, >= or >")),
                    };
                    let n = as_number(&pair[1])
                        .ok_or_else(|| PatternError(format!("{at}: numeric needs numbers")))?;
                    cmps.push((cmp, n));
                }
                Matcher::Numeric(cmps)
            }
            other => return perr(format!("{at}: operator {other:?} is not supported by the twin")),
        })
    }

    /// Does a present, non-array value match?
    fn matches(&self, v: &Value) -> bool {
        match self {
            Matcher::Exact(want) => scalar_eq(want, v),
            Matcher::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Matcher::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Matcher::EqualsIgnoreCase(p) => v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(p)),
            Matcher::Exists(e) => *e,
            Matcher::AnythingBut(not) => !not.iter().any(|n| scalar_eq(n, v)),
            Matcher::AnythingButPrefix(p) => v.as_str().is_some_and(|s| !s.starts_with(p.as_str())),
            Matcher::Numeric(cmps) => {
                // DynamoDB numbers arrive as strings ({"N": "12.5"}).
                let n = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                };
                n.is_some_and(|n| {
                    cmps.iter().all(|(c, x)| match c {
                        Cmp::Lt => n < *x,
                        Cmp::Le => n <= *x,
                        Cmp::Eq => n == *x,
                        Cmp::Ge => n >= *x,
                        Cmp::Gt => n > *x,
                    })
                })
            }
        }
    }
}

impl Pattern {
    /// Parse a pattern from its JSON text.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let v: Value = serde_json::from_str(text).map_err(|e| PatternError(format!("not JSON: {e}")))?;
        if !v.is_object() {
            return perr("a filter pattern must be a JSON object");
        }
        Self::from_value(&v, "")
    }

    fn from_value(v: &Value, at: &str) -> Result<Self, PatternError> {
        match v {
            Value::Object(m) => {
                let mut fields = Vec::new();
                for (k, sub) in m {
                    let path = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    fields.push((k.clone(), Self::from_value(sub, &path)?));
                }
                Ok(Pattern::Object(fields))
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return perr(format!("{at}: an empty array matches nothing"));
                }
                items
                    .iter()
                    .map(|i| Matcher::parse(i, at))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Pattern::Leaf)
            }
            _ => perr(format!(
                "{at}: pattern values must be objects or arrays of allowed values"
            )),
        }
    }

    /// Does this pattern match the record (the whole event record as JSON)?
    pub fn matches(&self, record: &Value) -> bool {
        self.matches_field(Some(record))
    }

    fn matches_field(&self, field: Option<&Value>) -> bool {
        match self {
            Pattern::Object(fields) => match field {
                Some(Value::Object(obj)) => fields.iter().all(|(k, p)| p.matches_field(obj.get(k))),
                _ => false,
            },
            Pattern::Leaf(matchers) => match field {
                None => matchers.contains(&Matcher::Exists(false)),
                Some(Value::Object(_)) => false,
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|i| !i.is_object() && !i.is_array() && matchers.iter().any(|m| m.matches(i))),
                Some(v) => matchers.iter().any(|m| m.matches(v)),
            },
        }
    }
}

/// `FilterCriteria`: a record passes if any filter matches (or there are none).
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<Pattern>);

impl Filters {
    pub fn parse(texts: &[String]) -> Result<Self, PatternError> {
        texts
            .iter()
            .map(|t| Pattern::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map(Filters)
    }

    pub fn passes(&self, record: &Value) -> bool {
        self.0.is_empty() || self.0.iter().any(|p| p.matches(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OUTBOX: &str =
        r#"{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"entity": {"S": ["outbox"]}}}}"#;

    fn rec(event: &str, entity: Option<&str>) -> Value {
        let mut img = json!({"pk": {"S": "OUTBOX#obx_1"}});
        if let Some(e) = entity {
            img["entity"] = json!({"S": e});
        }
        json!({"eventName": event, "dynamodb": {"NewImage": img, "Keys": {"pk": {"S": "x"}}}})
    }

    #[test]
    fn the_outbox_filter_of_the_template() {
        let p = Pattern::parse(OUTBOX).expect("pattern");
        assert!(p.matches(&rec("INSERT", Some("outbox"))));
        assert!(!p.matches(&rec("MODIFY", Some("outbox"))));
        assert!(!p.matches(&rec("INSERT", Some("checkout"))));
        assert!(!p.matches(&rec("INSERT", None)));
        // A REMOVE has no NewImage at all.
        assert!(!p.matches(&json!({"eventName": "INSERT", "dynamodb": {"OldImage": {}}})));
    }

    #[test]
    fn any_filter_passes_and_none_passes_all() {
        let f = Filters::parse(&[
            r#"{"eventName": ["MODIFY"]}"#.to_string(),
            r#"{"eventName": ["REMOVE"]}"#.to_string(),
        ])
        .expect("filters");
        assert!(f.passes(&rec("MODIFY", None)));
        assert!(f.passes(&rec("REMOVE", None)));
        assert!(!f.passes(&rec("INSERT", None)));
        assert!(Filters::default().passes(&rec("INSERT", None)));
    }

    #[test]
    fn operators() {
        let m = |pat: Value, v: Value| {
            Pattern::parse(&json!({ "a": pat }).to_string())
                .expect("pattern")
                .matches(&json!({ "a": v }))
        };
        assert!(m(json!([1, 2]), json!(2.0)));
        assert!(!m(json!(["1"]), json!(1)));
        assert!(m(json!([null]), json!(null)));
        assert!(m(json!([true]), json!(true)));
        assert!(m(json!([{"prefix": "OUT"}]), json!("OUTBOX#1")));
        assert!(!m(json!([{"prefix": "OUT"}]), json!("CO#1")));
        assert!(m(json!([{"suffix": ".csv"}]), json!("a.csv")));
        assert!(m(json!([{"equals-ignore-case": "abc"}]), json!("AbC")));
        assert!(m(json!([{"anything-but": ["a", "b"]}]), json!("c")));
        assert!(!m(json!([{"anything-but": "a"}]), json!("a")));
        assert!(m(json!([{"anything-but": {"prefix": "x"}}]), json!("y1")));
        assert!(m(json!([{"numeric": [">", 10, "<=", 20]}]), json!("15")));
        assert!(!m(json!([{"numeric": [">", 10]}]), json!(10)));
        // Arrays in the record match if any element does.
        assert!(m(json!(["b"]), json!(["a", "b"])));
        assert!(!m(json!(["c"]), json!(["a", "b"])));
        // A leaf pattern never matches an object.
        assert!(!m(json!(["x"]), json!({"S": "x"})));
    }

    #[test]
    fn exists() {
        let p = Pattern::parse(r#"{"a": {"b": [{"exists": false}]}}"#).expect("pattern");
        assert!(p.matches(&json!({"a": {}})));
        assert!(!p.matches(&json!({"a": {"b": 1}})));
        let p = Pattern::parse(r#"{"a": [{"exists": true}]}"#).expect("pattern");
        assert!(p.matches(&json!({"a": "x"})));
        assert!(!p.matches(&json!({"b": "x"})));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in [
            "[]",
            "not json",
            r#"{"a": "x"}"#,
            r#"{"a": []}"#,
            r#"{"a": [{"wildcard": "*"}]}"#,
            r#"{"a": [{"numeric": [">"]}]}"#,
            r#"{"a": [[1]]}"#,
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad} must be rejected");
        }
    }
}
