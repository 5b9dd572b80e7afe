//! Stripe's request encoding: `application/x-www-form-urlencoded` with bracket notation
//! (`line_items[0][price_data][unit_amount]=9999`, `metadata[k]=v`, `expand[]=x`), parsed into a
//! small tree. Every value is a string; the endpoints decide what is an integer.
//!
//! Rules (the Rack/Stripe ones): `a[b]=1` makes a hash, `a[]=1` appends to an array,
//! `a[0][x]=1&a[1][x]=2` is a hash with index keys that [`Node::as_list`] reads as an array (in
//! index order), a repeated scalar key keeps the last value, and a key used both as a scalar and
//! as a hash/array is an error naming that parameter.

use std::collections::BTreeMap;

/// Deepest bracket nesting accepted (Stripe's deepest real parameters use 5).
const DEPTH_MAX: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Str(String),
    Map(BTreeMap<String, Node>),
    List(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub param: String,
    pub message: String,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.get(key),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An array: `a[]=…` lists, or hashes whose keys are all non-negative integers (ordered by
    /// index, as Stripe does). `None` when it is neither.
    pub fn as_list(&self) -> Option<Vec<(String, &Node)>> {
        match self {
            Node::List(l) => Some(l.iter().enumerate().map(|(i, n)| (i.to_string(), n)).collect()),
            Node::Map(m) => {
                let mut items = Vec::with_capacity(m.len());
                for (k, v) in m {
                    if k.is_empty() || k.len() > 6 || !k.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let idx: usize = k.parse().ok()?;
                    items.push((idx, k.clone(), v));
                }
                items.sort_by_key(|(i, _, _)| *i);
                Some(items.into_iter().map(|(_, k, v)| (k, v)).collect())
            }
            Node::Str(_) => None,
        }
    }
}

/// Decoded `(name, value)` pairs of a form body or query string (`+` is a space, `%XX` escapes;
/// invalid UTF-8 is replaced, never a panic).
pub fn pairs(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// `"a[b][0][]"` → `("a", ["b", "0", ""])`.
fn split_key(key: &str) -> Result<(String, Vec<String>), FormError> {
    let bad = || FormError {
        param: key.to_string(),
        message: format!("Invalid parameter name: {key}"),
    };
    let (root, mut rest) = match key.find('[') {
        Some(i) => (&key[..i], &key[i..]),
        None => (key, ""),
    };
    if root.is_empty() || root.contains(']') {
        return Err(bad());
    }
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[').ok_or_else(bad)?;
        let close = inner.find(']').ok_or_else(bad)?;
        let seg = &inner[..close];
        if seg.contains('[') {
            return Err(bad());
        }
        segments.push(seg.to_string());
        rest = &inner[close + 1..];
        if segments.len() > DEPTH_MAX {
            return Err(FormError {
                param: key.to_string(),
                message: format!("Parameter {key} is nested too deeply"),
            });
        }
    }
    Ok((root.to_string(), segments))
}

fn conflict(param: &str) -> FormError {
    FormError {
        param: param.to_string(),
        message: format!("Invalid value for {param}: it is given both as a value and as a hash or array"),
    }
}

fn insert(node: &mut Node, segments: &[String], value: String, name: &str) -> Result<(), FormError> {
    let Some((first, rest)) = segments.split_first() else {
        // A leaf: a repeated scalar keeps the last value; a scalar over a hash is a conflict.
        return match node {
            Node::Str(s) => {
                *s = value;
                Ok(())
            }
            _ => Err(conflict(name)),
        };
    };
    if first.is_empty() {
        // `[]`: append. `a[][k]=…` fills the last element unless it already has k (Rack's rule).
        let list = match node {
            Node::List(l) => l,
            _ => return Err(conflict(name)),
        };
        if rest.is_empty() {
            list.push(Node::Str(value));
            return Ok(());
        }
        let reuse = match (list.last(), rest.first()) {
            (Some(Node::Map(m)), Some(k)) if !k.is_empty() && rest.len() == 1 => !m.contains_key(k),
            (Some(Node::Map(_)), Some(k)) if !k.is_empty() => true,
            _ => false,
        };
        if !reuse {
            list.push(empty_for(rest));
        }
        let last = list.last_mut().ok_or_else(|| conflict(name))?;
        return insert(last, rest, value, name);
    }
    let map = match node {
        Node::Map(m) => m,
        _ => return Err(conflict(name)),
    };
    let child = map.entry(first.clone()).or_insert_with(|| empty_for(rest));
    insert(child, rest, value, name)
}

/// The empty container a key needs for the segments still to come.
fn empty_for(rest: &[String]) -> Node {
    match rest.first() {
        None => Node::Str(String::new()),
        Some(s) if s.is_empty() => Node::List(Vec::new()),
        Some(_) => Node::Map(BTreeMap::new()),
    }
}

/// Parse decoded pairs into a tree (the root is always a hash).
pub fn parse_pairs(pairs: &[(String, String)]) -> Result<Node, FormError> {
    let mut root = Node::Map(BTreeMap::new());
    for (key, value) in pairs {
        let (name, segments) = split_key(key)?;
        let mut path = Vec::with_capacity(segments.len() + 1);
        path.push(name);
        path.extend(segments);
        if let Node::Map(m) = &root {
            // A scalar root key followed by a bracketed one (or vice versa) is a conflict.
            if let Some(existing) = m.get(&path[0]) {
                let want_scalar = path.len() == 1;
                if want_scalar != matches!(existing, Node::Str(_)) {
                    return Err(conflict(key));
                }
            }
        }
        insert(&mut root, &path, value.clone(), key)?;
    }
    Ok(root)
}

/// Parse a raw form body or query string.
#[cfg(test)]
pub fn parse(input: &[u8]) -> Result<Node, FormError> {
    parse_pairs(&pairs(input))
}

/// A canonical text of the request parameters, for idempotency comparison: pairs stably sorted
/// by name (so `a=1&b=2` and `b=2&a=1` match, while the order of `x[]` values still counts).
pub fn canonical(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (k, v) in sorted {
        out.push_str(&k.len().to_string());
        out.push(':');
        out.push_str(k);
        out.push_str(&v.len().to_string());
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: Option<&Node>) -> Option<&str> {
        n.and_then(Node::as_str)
    }

    #[test]
    fn nested_line_items_metadata_and_expand() {
        let body = b"mode=payment&line_items[0][quantity]=2&line_items[0][price_data][currency]=usd\
&line_items[0][price_data][unit_amount]=9999&line_items[0][price_data][product_data][name]=T%2Dshirt+XL\
&line_items[1][quantity]=1&metadata[checkout_id]=chk_1&expand[]=payment_intent&expand[]=line_items";
        let root = parse(body).expect("parses");
        assert_eq!(s(root.get("mode")), Some("payment"));
        let items = root.get("line_items").and_then(Node::as_list).expect("list");
        assert_eq!(items.len(), 2);
        let pd = items[0].1.get("price_data").expect("price_data");
        assert_eq!(s(pd.get("unit_amount")), Some("9999"));
        assert_eq!(
            s(pd.get("product_data").and_then(|p| p.get("name"))),
            Some("T-shirt XL")
        );
        assert_eq!(
            s(root.get("metadata").and_then(|m| m.get("checkout_id"))),
            Some("chk_1")
        );
        let expand = root.get("expand").and_then(Node::as_list).expect("expand");
        let values: Vec<_> = expand.iter().filter_map(|(_, n)| n.as_str()).collect();
        assert_eq!(values, ["payment_intent", "line_items"]);
    }

    #[test]
    fn percent_encoded_brackets_are_brackets() {
        let root = parse(b"metadata%5Border%5D=o%201").expect("parses");
        assert_eq!(s(root.get("metadata").and_then(|m| m.get("order"))), Some("o 1"));
    }

    #[test]
    fn indices_sort_numerically() {
        let pairs: Vec<(String, String)> = (0..12)
            .rev()
            .map(|i| (format!("x[{i}]"), i.to_string()))
            .collect();
        let root = parse_pairs(&pairs).expect("parses");
        let list = root.get("x").and_then(Node::as_list).expect("list");
        let values: Vec<_> = list.iter().filter_map(|(_, n)| n.as_str()).collect();
        assert_eq!(values.first(), Some(&"0"));
        assert_eq!(values.get(10), Some(&"10"));
        assert_eq!(values.len(), 12);
    }

    #[test]
    fn list_of_hashes_by_append() {
        let root = parse(b"a[][k]=1&a[][v]=2&a[][k]=3").expect("parses");
        let Some(Node::List(l)) = root.get("a") else {
            panic!("list")
        };
        assert_eq!(l.len(), 2);
        assert_eq!(s(l[0].get("v")), Some("2"));
        assert_eq!(s(l[1].get("k")), Some("3"));
    }

    #[test]
    fn malformed_names_and_conflicts_are_errors_with_param() {
        for bad in ["a[b", "a]b", "[x]=1", "a[b]c=1", "a[b[c]]=1"] {
            let e = parse(bad.as_bytes()).expect_err(bad);
            assert!(!e.param.is_empty(), "{bad}");
        }
        let e = parse(b"metadata=x&metadata[a]=1").expect_err("conflict");
        assert_eq!(e.param, "metadata[a]");
        assert!(parse(b"a[x]=1&a[]=2").is_err());
        assert!(parse(b"a[0]=1&a[0][b]=2").is_err());
        let deep = format!("a{}=1", "[x]".repeat(DEPTH_MAX + 1));
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn repeated_scalar_keeps_last_and_invalid_utf8_does_not_panic() {
        let root = parse(b"a=1&a=2").expect("parses");
        assert_eq!(s(root.get("a")), Some("2"));
        assert!(parse(b"a=%FF%FE&b=%zz").is_ok());
        assert_eq!(parse(b"").expect("empty"), Node::Map(BTreeMap::new()));
    }

    #[test]
    fn list_reading_rejects_non_index_keys() {
        let root = parse(b"a[x]=1").expect("parses");
        assert!(root.get("a").and_then(Node::as_list).is_none());
        let root = parse(b"a[-1]=1").expect("parses");
        assert!(root.get("a").and_then(Node::as_list).is_none());
    }

    #[test]
    fn canonical_ignores_pair_order_but_not_list_order() {
        let a = pairs(b"b=2&a=1&e[]=x&e[]=y");
        let b = pairs(b"a=1&e[]=x&b=2&e[]=y");
        let c = pairs(b"a=1&e[]=y&b=2&e[]=x");
        assert_eq!(canonical(&a), canonical(&b));
        assert_ne!(canonical(&a), canonical(&c));
        // Length prefixes: no ambiguity from separators inside values.
        assert_ne!(canonical(&pairs(b"a=1%0Ab1:c")), canonical(&pairs(b"a=1&b=c")));
    }
}
