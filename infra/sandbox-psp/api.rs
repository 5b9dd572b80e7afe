//! The `/v1` API, in Stripe's shapes: Checkout Sessions, PaymentIntents, charges, refunds,
//! events, webhook endpoints, balance transactions. Auth, API fault injection, idempotency and
//! the request log wrap every call.

use crate::connect;
use crate::form::{self, Node};
use crate::refunds::Refund;
use crate::reports;
use crate::store::{self, Cause, Endpoint, LineItem, PaymentIntent, Session, SessionStatus, State};
use crate::{stripe_error, unrecognized, App, Req, Resp};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest charge, in minor units (Stripe's: 8 digits).
const AMOUNT_MINOR_MAX: i64 = 99_999_999;
const LINE_ITEMS_MAX: usize = 100;
const QUANTITY_MAX: i64 = 999_999;
const ENDPOINTS_MAX: usize = 1000;
const URL_LEN_MAX: usize = 5000;
/// Slack on the 30-minute lower bound of `expires_at` (clock skew and transit).
const EXPIRES_AT_SLACK_S: i64 = 10;
const PAYMENT_METHOD_TYPES: &[&str] = &["card", "us_bank_account"];

/// What an API call needs besides the state.
pub struct Ctx<'a> {
    pub public_url: &'a str,
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub api_version: &'a str,
}

impl Ctx<'_> {
    fn cause(&self) -> Cause {
        Cause {
            request_id: Some(self.request_id.to_string()),
            idempotency_key: self.idempotency_key.map(str::to_string),
        }
    }
}

// --- errors ------------------------------------------------------------------------------------

pub(crate) fn invalid(message: &str, param: Option<&str>) -> Resp {
    stripe_error(400, "invalid_request_error", None, message, param)
}

pub(crate) fn invalid_code(code: &str, message: &str, param: &str) -> Resp {
    stripe_error(400, "invalid_request_error", Some(code), message, Some(param))
}

fn unknown_param(param: &str) -> Resp {
    invalid_code(
        "parameter_unknown",
        &format!("Received unknown parameter: {param}"),
        param,
    )
}

pub(crate) fn missing(param: &str) -> Resp {
    invalid_code(
        "parameter_missing",
        &format!("Missing required param: {param}."),
        param,
    )
}

pub(crate) fn no_such(kind: &str, id: &str, param: &str) -> Resp {
    stripe_error(
        404,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        Some(param),
    )
}

fn child(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}[{key}]")
    }
}

/// Every key of the hash `node` (named `prefix`) must be in `allowed`.
pub(crate) fn only(node: &Node, allowed: &[&str], prefix: &str) -> Result<(), Resp> {
    match node {
        Node::Map(m) => {
            for k in m.keys() {
                if !allowed.contains(&k.as_str()) {
                    return Err(unknown_param(&child(prefix, k)));
                }
            }
            Ok(())
        }
        _ => Err(invalid(&format!("Invalid hash: {prefix}"), Some(prefix))),
    }
}

pub(crate) fn string<'n>(node: Option<&'n Node>, param: &str) -> Result<Option<&'n str>, Resp> {
    match node {
        None => Ok(None),
        Some(Node::Str(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(
            &format!("Invalid string: {param} must be a string"),
            Some(param),
        )),
    }
}

pub(crate) fn required<'n>(node: Option<&'n Node>, param: &str) -> Result<&'n str, Resp> {
    match string(node, param)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(missing(param)),
    }
}

pub(crate) fn integer(s: &str, param: &str) -> Result<i64, Resp> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid_code(
            "parameter_invalid_integer",
            &format!("Invalid integer: {s}"),
            param,
        ));
    }
    s.parse().map_err(|_| {
        invalid_code(
            "parameter_invalid_integer",
            &format!("Invalid integer: {s}"),
            param,
        )
    })
}

fn int_in(s: &str, param: &str, min: i64, max: i64) -> Result<i64, Resp> {
    let v = integer(s, param)?;
    if v < min {
        return Err(invalid(
            &format!("This value must be greater than or equal to {min}."),
            Some(param),
        ));
    }
    if v > max {
        return Err(invalid(
            &format!("This value must be less than or equal to {max}."),
            Some(param),
        ));
    }
    Ok(v)
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn url_param(s: &str, param: &str) -> Result<String, Resp> {
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && s.len() <= URL_LEN_MAX
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii());
    if ok {
        Ok(s.to_string())
    } else {
        Err(invalid_code("url_invalid", "Not a valid URL", param))
    }
}

/// Stripe's metadata rules: up to 50 keys, key ≤ 40 characters (no brackets), value ≤ 500.
/// An empty value on create means "no such key".
pub fn metadata(node: Option<&Node>, param: &str) -> Result<BTreeMap<String, String>, Resp> {
    let mut out = BTreeMap::new();
    match node {
        None => {}
        Some(Node::Str(s)) if s.is_empty() => {}
        Some(Node::Map(m)) => {
            for (k, v) in m {
                let name = child(param, k);
                let Node::Str(v) = v else {
                    return Err(invalid(
                        &format!("Invalid value for {name}: must be a string"),
                        Some(&name),
                    ));
                };
                if k.chars().count() > 40 {
                    return Err(invalid(
                        &format!("Metadata keys can have up to 40 characters; {name} is too long."),
                        Some(&name),
                    ));
                }
                if v.chars().count() > 500 {
                    return Err(invalid(
                        &format!("Metadata values can have up to 500 characters, but you passed in a value that is {} characters. Invalid value: {name}", v.chars().count()),
                        Some(&name),
                    ));
                }
                if !v.is_empty() {
                    out.insert(k.clone(), v.clone());
                }
            }
            if out.len() > 50 {
                return Err(invalid("You can have up to 50 metadata keys.", Some(param)));
            }
        }
        Some(_) => return Err(invalid(&format!("Invalid hash: {param}"), Some(param))),
    }
    Ok(out)
}

/// `expand[]` values, each of which must be in `allowed`.
pub(crate) fn expand(root: &Node, allowed: &[&str]) -> Result<Vec<String>, Resp> {
    let Some(node) = root.get("expand") else {
        return Ok(Vec::new());
    };
    let list = node
        .as_list()
        .ok_or_else(|| invalid("Invalid array: expand must be an array", Some("expand")))?;
    let mut out = Vec::new();
    for (i, n) in list {
        let param = format!("expand[{i}]");
        let v = string(Some(n), &param)?.unwrap_or("");
        if !allowed.contains(&v) {
            return Err(invalid(
                &format!("This property cannot be expanded ({v})."),
                Some(&param),
            ));
        }
        out.push(v.to_string());
    }
    Ok(out)
}

// --- the wrapper: faults, auth, idempotency, log -----------------------------------------------

fn mask_key(key: &str) -> String {
    if key.is_empty() || key.chars().any(|c| !c.is_ascii_graphic()) {
        return "****".to_string();
    }
    let prefix_len = [
        "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_",
    ]
    .iter()
    .find(|p| key.starts_with(*p))
    .map_or(0, |p| p.len());
    let rest = &key[prefix_len..];
    let shown = if rest.len() > 4 {
        &rest[rest.len() - 4..]
    } else {
        ""
    };
    let stars = (rest.len() - shown.len()).min(64);
    format!("{}{}{}", &key[..prefix_len], "*".repeat(stars), shown)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(message: &str) -> Resp {
    stripe_error(401, "invalid_request_error", None, message, None)
        .with_header("WWW-Authenticate", "Basic realm=\"Stripe\"")
}

/// `Authorization: Bearer <key>`, or HTTP Basic with the key as user name (as Stripe accepts).
pub fn authenticate(secret: &str, req: &Req) -> Result<(), Resp> {
    let Some(h) = req.header("authorization").map(str::trim) else {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization \
             header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See \
             https://stripe.com/docs/api#authentication for details, or we can help at \
             https://support.stripe.com/.",
        ));
    };
    let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        value.trim().to_string()
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.split_once(':').map_or(s.clone(), |(u, _)| u.to_string()))
            .unwrap_or_default()
    } else {
        String::new()
    };
    if key.is_empty() {
        return Err(unauthorized(
            "Invalid API Key provided: use 'Authorization: Bearer YOUR_SECRET_KEY' or HTTP Basic \
             with the key as the user name.",
        ));
    }
    if constant_time_eq(key.as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized(&format!(
            "Invalid API Key provided: {}",
            mask_key(&key)
        )))
    }
}

pub async fn handle(app: &Arc<App>, req: Req, request_id: &str) -> Resp {
    let idem = req.header("idempotency-key").map(str::to_string);
    let fault = app.lock().faults.take_api_failure();
    if let Some(status) = fault {
        let resp = stripe_error(
            status,
            "api_error",
            None,
            "An unknown error occurred (sandbox fault injection: nothing was changed).",
            None,
        );
        log(app, &req, request_id, idem.as_deref(), &resp, Some("fail_next"));
        return resp;
    }
    if let Err(resp) = authenticate(&app.cfg.secret_key, &req) {
        log(app, &req, request_id, idem.as_deref(), &resp, None);
        return resp;
    }
    let delay = app.lock().faults.take_api_delay();
    let api_version = req
        .header("stripe-version")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 64 && printable(v))
        .unwrap_or(store::DEFAULT_API_VERSION)
        .to_string();
    let ctx = Ctx {
        public_url: &app.cfg.public_url,
        request_id,
        idempotency_key: idem.as_deref(),
        api_version: &api_version,
    };
    let secret = app.cfg.secret_key.clone();
    let resp = app.with_state(|st| execute(st, &ctx, &secret, &req));
    log(
        app,
        &req,
        request_id,
        idem.as_deref(),
        &resp,
        delay.map(|_| "delay_next"),
    );
    if let Some(ms) = delay {
        // The operation is done; only the answer is late (a client timeout here is the case
        // that idempotent retries exist for).
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    resp
}

fn log(app: &App, req: &Req, request_id: &str, idem: Option<&str>, resp: &Resp, fault: Option<&str>) {
    let replayed = resp
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("idempotent-replayed") && v == "true");
    let entry = json!({
        "request_id": request_id, "method": req.method.as_str(), "path": req.path,
        "query": if req.query.is_empty() { Value::Null } else { json!(req.query) },
        "idempotency_key": idem, "stripe_version": req.header("stripe-version"),
        "status": resp.status, "idempotent_replayed": replayed, "fault": fault,
        "time": store::now(), "at_ms": store::now_ms(),
    });
    store::push_bounded(&mut app.lock().requests, entry);
}

/// Idempotency around the endpoint, atomically (the whole call holds the state lock).
pub fn execute(st: &mut State, ctx: &Ctx, secret: &str, req: &Req) -> Resp {
    let pairs = match params(req) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let key = match ctx.idempotency_key {
        Some(k) if req.method == hyper::Method::POST => k,
        _ => return dispatch(st, ctx, req, &pairs),
    };
    if key.is_empty() || key.len() > 255 {
        return invalid("Idempotency-Key must be 1 to 255 characters long.", None);
    }
    let canonical = form::canonical(&pairs);
    let slot = (secret.to_string(), key.to_string());
    if let Some(rec) = st.idempotency.get(&slot) {
        if store::now() - rec.created < store::IDEMPOTENCY_TTL_S {
            if rec.method == req.method.as_str() && rec.path == req.path && rec.canonical == canonical {
                return Resp {
                    status: rec.status,
                    headers: vec![
                        ("Content-Type".into(), "application/json".into()),
                        ("Idempotent-Replayed".into(), "true".into()),
                        ("Original-Request".into(), rec.request_id.clone()),
                    ],
                    body: rec.body.clone(),
                };
            }
            return stripe_error(
                400,
                "idempotency_error",
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were \
                     first used with. Try using a key other than '{key}' if you meant to execute a \
                     different request."
                ),
                None,
            );
        }
    }
    let resp = dispatch(st, ctx, req, &pairs);
    // Stored once the endpoint ran: successes, declines, server errors. Validation errors are
    // not stored (a corrected request may reuse the key), as at Stripe.
    if (200..300).contains(&resp.status) || resp.status == 402 || resp.status >= 500 {
        if st.idempotency.len() >= store::RECORDS_MAX {
            // Bounded: forget the oldest record (a scan, only ever at the cap).
            let oldest = st
                .idempotency
                .iter()
                .min_by_key(|(_, r)| r.created)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                st.idempotency.remove(&k);
            }
        }
        st.idempotency.insert(
            slot,
            store::IdemRecord {
                created: store::now(),
                method: req.method.as_str().to_string(),
                path: req.path.clone(),
                canonical,
                status: resp.status,
                body: resp.body.clone(),
                request_id: ctx.request_id.to_string(),
            },
        );
    }
    resp.with_header("Idempotency-Key", key)
}

/// Query parameters, plus the form body of a POST.
fn params(req: &Req) -> Result<Vec<(String, String)>, Resp> {
    let mut pairs = form::pairs(req.query.as_bytes());
    if !req.body.is_empty() {
        let ct = req
            .header("content-type")
            .unwrap_or("application/x-www-form-urlencoded");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(invalid(
                &format!(
                    "Invalid request: unsupported Content-Type {ct}. If error persists and you need \
                     assistance, please contact support@stripe.com."
                ),
                None,
            ));
        }
        pairs.extend(form::pairs(&req.body));
    }
    Ok(pairs)
}

fn dispatch(st: &mut State, ctx: &Ctx, req: &Req, pairs: &[(String, String)]) -> Resp {
    let root = match form::parse_pairs(pairs) {
        Ok(r) => r,
        Err(e) => return invalid(&e.message, Some(&e.param)),
    };
    let segs: Vec<&str> = req.path.trim_end_matches('/').split('/').skip(2).collect();
    let post = req.method == hyper::Method::POST;
    let get = req.method == hyper::Method::GET;
    let result = match (segs.as_slice(), post, get) {
        (["checkout", "sessions"], true, _) => create_session(st, ctx, &root),
        (["checkout", "sessions"], _, true) => list_sessions(st, ctx, &root),
        (["checkout", "sessions", id], _, true) => retrieve_session(st, ctx, &root, id),
        (["checkout", "sessions", id, "line_items"], _, true) => session_line_items(st, &root, id),
        (["checkout", "sessions", id, "expire"], true, _) => expire_session(st, ctx, &root, id),
        (["payment_intents", id], _, true) => retrieve_intent(st, &root, id),
        (["charges", id], _, true) => retrieve_charge(st, &root, id),
        (["charges", id, "refunds"], _, true) => list_charge_refunds(st, &root, id),
        (["refunds"], true, _) => create_refund(st, ctx, &root),
        (["refunds"], _, true) => list_refunds(st, &root),
        (["refunds", id], _, true) => retrieve_refund(st, &root, id),
        (["accounts"], true, _) => create_account(st, &root),
        (["accounts", id], _, true) => retrieve_account(st, &root, id),
        (["transfers"], true, _) => create_transfer(st, ctx, &root),
        (["transfers", id], _, true) => retrieve_transfer(st, &root, id),
        (["transfers", id, "reversals"], true, _) => create_reversal(st, ctx, &root, id),
        (["payouts"], true, _) => create_payout(st, ctx, req, &root),
        (["payouts", id], _, true) => retrieve_payout(st, req, &root, id),
        (["events"], _, true) => list_events(st, &root),
        (["events", id], _, true) => retrieve_event(st, &root, id),
        (["webhook_endpoints"], true, _) => create_endpoint(st, &root),
        (["webhook_endpoints"], _, true) => list_endpoints(st, &root),
        (["webhook_endpoints", id], _, true) => retrieve_endpoint(st, &root, id),
        (["webhook_endpoints", id], _, _) if req.method == hyper::Method::DELETE => {
            delete_endpoint(st, &root, id)
        }
        (["balance"], _, true) => retrieve_balance(st, req, &root),
        (["balance_transactions"], _, true) => list_balance_txns(st, req, &root),
        (["balance_transactions", id], _, true) => retrieve_balance_txn(st, req, &root, id),
        (["reporting", "report_runs"], true, _) => reports::create_run(st, ctx, &root),
        (["reporting", "report_runs"], _, true) => reports::list_runs(st, &root),
        (["reporting", "report_runs", id], _, true) => reports::retrieve_run(st, &root, id),
        (["reporting", "report_types"], _, true) => reports::list_types(st, &root),
        (["reporting", "report_types", id], _, true) => reports::retrieve_type(st, &root, id),
        (["files", id], _, true) => reports::retrieve_file(st, &root, id),
        (["files", id, "contents"], _, true) => reports::file_contents(st, &root, id),
        _ => Err(unrecognized(req)),
    };
    result.unwrap_or_else(|e| e)
}

pub(crate) type Out = Result<Resp, Resp>;

// --- Checkout Sessions ---------------------------------------------------------------------------

const SESSION_PARAMS: &[&str] = &[
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "customer_email",
    "metadata",
    "expires_at",
    "expand",
    "payment_method_types",
    "payment_intent_data",
    "locale",
];

fn create_session(st: &mut State, ctx: &Ctx, root: &Node) -> Out {
    only(root, SESSION_PARAMS, "")?;
    let mode = required(root.get("mode"), "mode")?;
    match mode {
        "payment" => {}
        "setup" | "subscription" => {
            return Err(invalid(
                "The sandbox PSP supports only mode=payment.",
                Some("mode"),
            ));
        }
        _ => {
            return Err(invalid(
                "Invalid mode: must be one of payment, setup, or subscription",
                Some("mode"),
            ))
        }
    }
    let expand = expand(root, &["payment_intent", "line_items"])?;
    let items_node = root.get("line_items").ok_or_else(|| missing("line_items"))?;
    let items = items_node
        .as_list()
        .ok_or_else(|| invalid("Invalid array: line_items must be an array", Some("line_items")))?;
    if items.is_empty() {
        return Err(missing("line_items"));
    }
    if items.len() > LINE_ITEMS_MAX {
        return Err(invalid(
            &format!("You may only specify up to {LINE_ITEMS_MAX} line items."),
            Some("line_items"),
        ));
    }
    let created = store::now();
    let mut line_items = Vec::with_capacity(items.len());
    let mut currency: Option<String> = None;
    let mut subtotal: i64 = 0;
    for (i, item) in &items {
        let p = format!("line_items[{i}]");
        only(item, &["quantity", "price_data", "price"], &p)?;
        if let Some(price) = string(item.get("price"), &format!("{p}[price]"))? {
            return Err(no_such("price", price, &format!("{p}[price]")));
        }
        let qp = format!("{p}[quantity]");
        let quantity = int_in(required(item.get("quantity"), &qp)?, &qp, 1, QUANTITY_MAX)?;
        let pdp = format!("{p}[price_data]");
        let pd = item.get("price_data").ok_or_else(|| missing(&pdp))?;
        only(pd, &["currency", "unit_amount", "product_data"], &pdp)?;
        let cp = format!("{pdp}[currency]");
        let cur = required(pd.get("currency"), &cp)?.to_ascii_lowercase();
        if !store::is_currency(&cur) {
            return Err(invalid(&format!("Invalid currency: {cur}."), Some(&cp)));
        }
        let first = currency.get_or_insert_with(|| cur.clone());
        if *first != cur {
            return Err(invalid(
                &format!("All line items must use the same currency: {first} and {cur} were given."),
                Some(&cp),
            ));
        }
        let ap = format!("{pdp}[unit_amount]");
        let unit_amount = int_in(required(pd.get("unit_amount"), &ap)?, &ap, 0, AMOUNT_MINOR_MAX)?;
        let prp = format!("{pdp}[product_data]");
        let prod = pd.get("product_data").ok_or_else(|| missing(&prp))?;
        only(prod, &["name", "description", "metadata"], &prp)?;
        let np = format!("{prp}[name]");
        let name = required(prod.get("name"), &np)?;
        if name.chars().count() > 250 || !printable(name) {
            return Err(invalid(
                "Invalid string: the product name must be at most 250 characters",
                Some(&np),
            ));
        }
        let description = string(prod.get("description"), &format!("{prp}[description]"))?
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        metadata(prod.get("metadata"), &format!("{prp}[metadata]"))?;
        let line_total = unit_amount
            .checked_mul(quantity)
            .filter(|t| *t <= AMOUNT_MINOR_MAX)
            .ok_or_else(|| too_large(&cur))?;
        subtotal = subtotal
            .checked_add(line_total)
            .filter(|t| *t <= AMOUNT_MINOR_MAX)
            .ok_or_else(|| too_large(&cur))?;
        line_items.push(LineItem {
            id: store::new_id("li_", 24),
            name: name.to_string(),
            description,
            quantity,
            unit_amount,
            currency: cur,
            product_id: store::new_id("prod_", 14),
            price_id: store::new_id("price_", 24),
        });
    }
    let currency = currency.unwrap_or_default();
    if subtotal <= 0 {
        return Err(invalid(
            "The Checkout Session's total amount due must be greater than 0.",
            Some("line_items"),
        ));
    }
    let success_url = url_param(required(root.get("success_url"), "success_url")?, "success_url")?;
    let cancel_url = match string(root.get("cancel_url"), "cancel_url")? {
        Some(u) if !u.is_empty() => Some(url_param(u, "cancel_url")?),
        _ => None,
    };
    let client_reference_id = match string(root.get("client_reference_id"), "client_reference_id")? {
        Some(c) if c.chars().count() > 200 || !printable(c) => {
            return Err(invalid(
                "Invalid string: client_reference_id must be at most 200 characters",
                Some("client_reference_id"),
            ))
        }
        Some(c) if !c.is_empty() => Some(c.to_string()),
        _ => None,
    };
    let customer_email = match string(root.get("customer_email"), "customer_email")? {
        Some(e) if !e.is_empty() => {
            if !e.contains('@') || e.len() > 512 || !printable(e) || e.contains(char::is_whitespace) {
                return Err(invalid(
                    &format!("Invalid email address: {e}"),
                    Some("customer_email"),
                ));
            }
            Some(e.to_string())
        }
        _ => None,
    };
    let md = metadata(root.get("metadata"), "metadata")?;
    let expires_at = match string(root.get("expires_at"), "expires_at")? {
        None | Some("") => created + 24 * 3600,
        Some(v) => {
            let t = integer(v, "expires_at")?;
            if t < created + 30 * 60 - EXPIRES_AT_SLACK_S {
                return Err(invalid(
                    "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                    Some("expires_at"),
                ));
            }
            if t > created + 24 * 3600 {
                return Err(invalid(
                    "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                    Some("expires_at"),
                ));
            }
            t
        }
    };
    let mut pm_types = Vec::new();
    if let Some(node) = root.get("payment_method_types") {
        let list = node.as_list().ok_or_else(|| {
            invalid(
                "Invalid array: payment_method_types must be an array",
                Some("payment_method_types"),
            )
        })?;
        for (i, n) in list {
            let p = format!("payment_method_types[{i}]");
            let v = string(Some(n), &p)?.unwrap_or("");
            if !PAYMENT_METHOD_TYPES.contains(&v) {
                return Err(invalid(
                    &format!("Invalid {p}: must be one of card, us_bank_account (in the sandbox)"),
                    Some(&p),
                ));
            }
            if !pm_types.iter().any(|t| t == v) {
                pm_types.push(v.to_string());
            }
        }
    }
    if pm_types.is_empty() {
        pm_types.push("card".to_string());
    }
    let (pi_description, pi_metadata) = match root.get("payment_intent_data") {
        None => (None, BTreeMap::new()),
        Some(pid) => {
            only(pid, &["description", "metadata"], "payment_intent_data")?;
            let d = string(pid.get("description"), "payment_intent_data[description]")?
                .filter(|d| !d.is_empty())
                .map(str::to_string);
            (d, metadata(pid.get("metadata"), "payment_intent_data[metadata]")?)
        }
    };
    if let Some(l) = root.get("locale") {
        string(Some(l), "locale")?;
    }

    let pi_id = store::new_id("pi_", 24);
    let intent = PaymentIntent {
        client_secret: format!("{pi_id}_secret_{}", &store::new_id("", 25)),
        id: pi_id.clone(),
        created,
        amount: subtotal,
        amount_received: 0,
        currency: currency.clone(),
        status: "requires_payment_method",
        description: pi_description,
        metadata: pi_metadata,
        last_payment_error: None,
        latest_charge: None,
        payment_method: None,
        payment_method_types: pm_types.clone(),
        canceled_at: None,
        cancellation_reason: None,
    };
    let session = Session {
        id: store::new_id("cs_test_", 58),
        created,
        currency,
        line_items,
        amount_subtotal: subtotal,
        amount_total: subtotal,
        status: SessionStatus::Open,
        paid: false,
        payment_intent: pi_id,
        client_reference_id,
        customer_email,
        metadata: md,
        success_url,
        cancel_url,
        expires_at,
        payment_method_types: pm_types,
        api_version: ctx.api_version.to_string(),
    };
    let body = st.session_json(&session, ctx.public_url, &expand);
    st.insert_session(session, intent);
    Ok(Resp::json(200, &body))
}

fn too_large(currency: &str) -> Resp {
    invalid(
        &format!(
            "The Checkout Session's total amount due must be no more than {} {currency}.",
            store::format_minor(AMOUNT_MINOR_MAX, currency)
        ),
        Some("line_items"),
    )
}

/// Expire a lapsed open session now (the sweep would within a second).
pub fn expire_if_due(st: &mut State, id: &str, public_url: &str) {
    let due = st
        .sessions
        .get(id)
        .is_some_and(|s| s.status == SessionStatus::Open && s.expires_at <= store::now());
    if due {
        st.expire_session(id, public_url, &Cause::default());
    }
}

fn retrieve_session(st: &mut State, ctx: &Ctx, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let expand = expand(root, &["payment_intent", "line_items"])?;
    expire_if_due(st, id, ctx.public_url);
    let s = st
        .sessions
        .get(id)
        .ok_or_else(|| no_such("checkout.session", id, "session"))?;
    Ok(Resp::json(200, &st.session_json(s, ctx.public_url, &expand)))
}

fn session_line_items(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand", "limit", "starting_after", "ending_before"], "")?;
    let s = st
        .sessions
        .get(id)
        .ok_or_else(|| no_such("checkout.session", id, "session"))?;
    Ok(Resp::json(200, &st.line_items_json(s)))
}

fn expire_session(st: &mut State, ctx: &Ctx, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let expand = expand(root, &["payment_intent", "line_items"])?;
    expire_if_due(st, id, ctx.public_url);
    let status = st
        .sessions
        .get(id)
        .map(|s| s.status)
        .ok_or_else(|| no_such("checkout.session", id, "session"))?;
    if status != SessionStatus::Open {
        return Err(invalid(
            &format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout \
                 Session has a status of \"{}\".",
                status.as_str()
            ),
            None,
        ));
    }
    st.expire_session(id, ctx.public_url, &ctx.cause());
    let s = st
        .sessions
        .get(id)
        .ok_or_else(|| no_such("checkout.session", id, "session"))?;
    Ok(Resp::json(200, &st.session_json(s, ctx.public_url, &expand)))
}

fn list_sessions(st: &mut State, ctx: &Ctx, root: &Node) -> Out {
    only(
        root,
        &[
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "payment_intent",
            "status",
            "expand",
        ],
        "",
    )?;
    let q = ListQuery::parse(root)?;
    let status = string(root.get("status"), "status")?;
    let pi = string(root.get("payment_intent"), "payment_intent")?;
    let all: Vec<&Session> = st
        .session_order
        .iter()
        .rev()
        .filter_map(|id| st.sessions.get(id))
        .collect();
    let (page, has_more) = q.page(
        &all,
        |s| s.id.as_str(),
        |s| {
            q.created_ok(s.created)
                && status.is_none_or(|v| v == s.status.as_str())
                && pi.is_none_or(|v| v == s.payment_intent)
        },
    )?;
    let data: Vec<Value> = page
        .iter()
        .map(|s| st.session_json(s, ctx.public_url, &[]))
        .collect();
    Ok(list(data, has_more, "/v1/checkout/sessions"))
}

// --- PaymentIntents ------------------------------------------------------------------------------

/// `expand[]=latest_charge` shows the charge, with `amount_refunded` and its refunds.
fn retrieve_intent(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand", "client_secret"], "")?;
    let expand = expand(root, &["latest_charge"])?;
    settle_due(st);
    let pi = st
        .intents
        .get(id)
        .ok_or_else(|| no_such("payment_intent", id, "intent"))?;
    let mut v = st.intent_json(pi);
    if expand.iter().any(|e| e == "latest_charge") {
        v["latest_charge"] = st.latest_charge_json(pi);
    }
    Ok(Resp::json(200, &v))
}

// --- charges and refunds -------------------------------------------------------------------------

const REFUND_PARAMS: &[&str] = &[
    "payment_intent",
    "charge",
    "amount",
    "reason",
    "metadata",
    "expand",
];
const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

/// Apply the refund moves already due before a read, so that what a client reads never lags
/// the settle time (the background tick would within 50 ms).
pub(crate) fn settle_due(st: &mut State) {
    st.settle_due_refunds(store::now_ms());
    st.settle_due_payouts(store::now_ms());
}

/// `1.50 USD`: how refusal messages show an amount.
pub(crate) fn money(amount: i64, currency: &str) -> String {
    format!(
        "{} {}",
        store::format_minor(amount, currency),
        currency.to_ascii_uppercase()
    )
}

/// `POST /v1/refunds`: a refund of a succeeded PaymentIntent's charge, by default of all that is
/// left. Pending and succeeded refunds together never exceed the amount received.
fn create_refund(st: &mut State, ctx: &Ctx, root: &Node) -> Out {
    only(root, REFUND_PARAMS, "")?;
    if string(root.get("charge"), "charge")?.is_some_and(|c| !c.is_empty()) {
        return Err(invalid(
            "The sandbox PSP refunds by payment_intent only: pass payment_intent instead of charge.",
            Some("charge"),
        ));
    }
    expand(root, &[])?;
    let pi_id = required(root.get("payment_intent"), "payment_intent")?;
    let amount = match string(root.get("amount"), "amount")? {
        None | Some("") => None,
        Some(s) => match integer(s, "amount")? {
            v if v >= 1 => Some(v),
            _ => return Err(invalid("Invalid positive integer", Some("amount"))),
        },
    };
    let reason = match string(root.get("reason"), "reason")? {
        None | Some("") => None,
        Some(r) if REFUND_REASONS.contains(&r) => Some(r),
        Some(_) => {
            return Err(invalid(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                Some("reason"),
            ))
        }
    };
    let md = metadata(root.get("metadata"), "metadata")?;
    settle_due(st);
    let pi = st
        .intents
        .get(pi_id)
        .ok_or_else(|| no_such("payment_intent", pi_id, "payment_intent"))?;
    let charge = pi
        .latest_charge
        .as_ref()
        .filter(|_| pi.status == "succeeded")
        .and_then(|c| st.charges.get(c))
        .ok_or_else(|| {
            invalid(
                "This PaymentIntent does not have a successful charge to refund.",
                Some("payment_intent"),
            )
        })?;
    let left = charge.amount - charge.amount_refunded;
    if left <= 0 {
        return Err(stripe_error(
            400,
            "invalid_request_error",
            Some("charge_already_refunded"),
            &format!("Charge {} has already been refunded.", charge.id),
            None,
        ));
    }
    let amount = amount.unwrap_or(left);
    if amount > left {
        return Err(invalid(
            &format!(
                "Refund amount ({}) is greater than unrefunded amount on charge ({})",
                money(amount, &charge.currency),
                money(left, &charge.currency)
            ),
            Some("amount"),
        ));
    }
    let charge_id = charge.id.clone();
    let body = st
        .create_refund(&charge_id, amount, reason, md, &ctx.cause())
        .ok_or_else(|| no_such("charge", &charge_id, "payment_intent"))?;
    Ok(Resp::json(200, &body))
}

fn retrieve_refund(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    expand(root, &[])?;
    settle_due(st);
    let r = st
        .refunds
        .get(id)
        .ok_or_else(|| no_such("refund", id, "refund"))?;
    Ok(Resp::json(200, &State::refund_json(r)))
}

/// Newest first; `payment_intent` and `charge` narrow it to one charge's refunds.
fn list_refunds(st: &mut State, root: &Node) -> Out {
    only(
        root,
        &[
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "payment_intent",
            "charge",
            "expand",
        ],
        "",
    )?;
    expand(root, &[])?;
    let q = ListQuery::parse(root)?;
    let pi = string(root.get("payment_intent"), "payment_intent")?.filter(|s| !s.is_empty());
    let charge = string(root.get("charge"), "charge")?.filter(|s| !s.is_empty());
    settle_due(st);
    let all: Vec<&Refund> = st
        .refund_order
        .iter()
        .rev()
        .filter_map(|id| st.refunds.get(id))
        .collect();
    let (page, has_more) = q.page(
        &all,
        |r| r.id.as_str(),
        |r| {
            q.created_ok(r.created)
                && pi.is_none_or(|p| p == r.payment_intent_id)
                && charge.is_none_or(|c| c == r.charge_id)
        },
    )?;
    let data: Vec<Value> = page.iter().map(|r| State::refund_json(r)).collect();
    Ok(list(data, has_more, "/v1/refunds"))
}

/// Successful charges only (a declined attempt's charge is not stored).
fn retrieve_charge(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    expand(root, &[])?;
    settle_due(st);
    let c = st
        .charges
        .get(id)
        .ok_or_else(|| no_such("charge", id, "charge"))?;
    Ok(Resp::json(200, &st.charge_json(c)))
}

fn list_charge_refunds(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["limit", "starting_after", "ending_before", "expand"], "")?;
    expand(root, &[])?;
    let q = ListQuery::parse(root)?;
    settle_due(st);
    let c = st
        .charges
        .get(id)
        .ok_or_else(|| no_such("charge", id, "charge"))?;
    let all: Vec<&Refund> = c.refunds.iter().rev().filter_map(|r| st.refunds.get(r)).collect();
    let (page, has_more) = q.page(&all, |r| r.id.as_str(), |_| true)?;
    let data: Vec<Value> = page.iter().map(|r| State::refund_json(r)).collect();
    Ok(list(data, has_more, &format!("/v1/charges/{id}/refunds")))
}

// --- lists ---------------------------------------------------------------------------------------

pub(crate) fn list(data: Vec<Value>, has_more: bool, url: &str) -> Resp {
    Resp::json(
        200,
        &json!({"object": "list", "data": data, "has_more": has_more, "url": url}),
    )
}

#[derive(Default)]
pub struct ListQuery {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl ListQuery {
    pub(crate) fn parse(root: &Node) -> Result<ListQuery, Resp> {
        let mut q = ListQuery {
            limit: 10,
            ..ListQuery::default()
        };
        if let Some(l) = string(root.get("limit"), "limit")? {
            q.limit = int_in(l, "limit", 1, 100)? as usize;
        }
        q.starting_after = string(root.get("starting_after"), "starting_after")?
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        q.ending_before = string(root.get("ending_before"), "ending_before")?
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if q.starting_after.is_some() && q.ending_before.is_some() {
            return Err(invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                Some("starting_after"),
            ));
        }
        match root.get("created") {
            None => {}
            Some(Node::Str(s)) => {
                let t = integer(s, "created")?;
                q.gte = Some(t);
                q.lte = Some(t);
            }
            Some(node) => {
                only(node, &["gt", "gte", "lt", "lte"], "created")?;
                let get = |k: &str| -> Result<Option<i64>, Resp> {
                    let p = format!("created[{k}]");
                    string(node.get(k), &p)?.map(|v| integer(v, &p)).transpose()
                };
                q.gt = get("gt")?;
                q.gte = get("gte")?;
                q.lt = get("lt")?;
                q.lte = get("lte")?;
            }
        }
        Ok(q)
    }

    pub(crate) fn created_ok(&self, t: i64) -> bool {
        self.gt.is_none_or(|v| t > v)
            && self.gte.is_none_or(|v| t >= v)
            && self.lt.is_none_or(|v| t < v)
            && self.lte.is_none_or(|v| t <= v)
    }

    /// One page of `all` (newest first) kept by `keep`, after/before the cursors.
    pub(crate) fn page<'a, T>(
        &self,
        all: &[&'a T],
        id_of: impl Fn(&T) -> &str,
        keep: impl Fn(&T) -> bool,
    ) -> Result<(Vec<&'a T>, bool), Resp> {
        let position = |cursor: &str, param: &str| {
            all.iter().position(|x| id_of(x) == cursor).ok_or_else(|| {
                invalid_code("resource_missing", &format!("No such object: '{cursor}'"), param)
            })
        };
        if let Some(c) = &self.ending_before {
            let pos = position(c, "ending_before")?;
            // Newer than the cursor, the ones closest to it; still newest first.
            let newer: Vec<&'a T> = all[..pos].iter().rev().filter(|x| keep(x)).copied().collect();
            let has_more = newer.len() > self.limit;
            let mut page: Vec<&'a T> = newer.into_iter().take(self.limit).collect();
            page.reverse();
            return Ok((page, has_more));
        }
        let start = match &self.starting_after {
            Some(c) => position(c, "starting_after")? + 1,
            None => 0,
        };
        let mut page: Vec<&'a T> = all[start..]
            .iter()
            .filter(|x| keep(x))
            .take(self.limit + 1)
            .copied()
            .collect();
        let has_more = page.len() > self.limit;
        page.truncate(self.limit);
        Ok((page, has_more))
    }
}

// --- events --------------------------------------------------------------------------------------

fn type_matches(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => pattern == t,
    }
}

fn list_events(st: &mut State, root: &Node) -> Out {
    only(
        root,
        &[
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "type",
            "types",
            "delivery_success",
        ],
        "",
    )?;
    let q = ListQuery::parse(root)?;
    let one = string(root.get("type"), "type")?.filter(|s| !s.is_empty());
    let mut types: Vec<String> = Vec::new();
    if let Some(node) = root.get("types") {
        if one.is_some() {
            return Err(invalid(
                "You may only specify one of these parameters: type, types.",
                Some("types"),
            ));
        }
        let l = node
            .as_list()
            .ok_or_else(|| invalid("Invalid array: types", Some("types")))?;
        for (i, n) in l {
            types.push(string(Some(n), &format!("types[{i}]"))?.unwrap_or("").to_string());
        }
    }
    if let Some(t) = one {
        types.push(t.to_string());
    }
    let delivery = match string(root.get("delivery_success"), "delivery_success")? {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(invalid(
                "Invalid boolean: delivery_success",
                Some("delivery_success"),
            ))
        }
    };
    let all: Vec<&store::StoredEvent> = st
        .event_order
        .iter()
        .rev()
        .filter_map(|id| st.events.get(id))
        .collect();
    let (page, has_more) = q.page(
        &all,
        |e| e.id.as_str(),
        |e| {
            q.created_ok(e.created)
                && (types.is_empty() || types.iter().any(|p| type_matches(p, &e.event_type)))
                && delivery.is_none_or(|d| (e.json["pending_webhooks"].as_u64() == Some(0)) == d)
        },
    )?;
    let data: Vec<Value> = page.iter().map(|e| e.json.clone()).collect();
    Ok(list(data, has_more, "/v1/events"))
}

fn retrieve_event(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let e = st.events.get(id).ok_or_else(|| no_such("event", id, "id"))?;
    Ok(Resp::json(200, &e.json))
}

// --- webhook endpoints ---------------------------------------------------------------------------

fn valid_event_type(t: &str) -> bool {
    t == "*"
        || (t.len() <= 100
            && t.contains('.')
            && !t.starts_with('.')
            && !t.ends_with('.')
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'))
}

const ACCOUNT_PARAMS: &[&str] = &[
    "type",
    "country",
    "email",
    "default_currency",
    "business_type",
    "metadata",
    "external_account",
    "expand",
];
const BANK_PARAMS: &[&str] = &[
    "object",
    "country",
    "currency",
    "routing_number",
    "account_number",
    "account_holder_name",
    "account_holder_type",
];

/// `POST /v1/accounts`: a custom connected account with its bank account, which must be one of
/// Stripe's documented test numbers (they decide what its payouts do).
fn create_account(st: &mut State, root: &Node) -> Out {
    only(root, ACCOUNT_PARAMS, "")?;
    expand(root, &[])?;
    match string(root.get("type"), "type")? {
        None | Some("custom") | Some("express") => {}
        Some(t) => {
            return Err(invalid(
                &format!("Invalid type: {t}. The sandbox PSP makes custom and express accounts."),
                Some("type"),
            ))
        }
    }
    let country = string(root.get("country"), "country")?.unwrap_or("US");
    if country != "US" {
        return Err(invalid(
            "The sandbox PSP makes US accounts only (Stripe's US test bank numbers).",
            Some("country"),
        ));
    }
    let currency = string(root.get("default_currency"), "default_currency")?
        .filter(|c| !c.is_empty())
        .unwrap_or("usd")
        .to_ascii_lowercase();
    let email = string(root.get("email"), "email")?
        .filter(|e| !e.is_empty())
        .map(str::to_string);
    let bank = root
        .get("external_account")
        .ok_or_else(|| missing("external_account"))?;
    only(bank, BANK_PARAMS, "external_account")?;
    if string(bank.get("object"), "external_account[object]")? != Some("bank_account") {
        return Err(invalid(
            "Invalid external_account[object]: must be bank_account",
            Some("external_account[object]"),
        ));
    }
    let routing = required(bank.get("routing_number"), "external_account[routing_number]")?;
    if routing != connect::TEST_ROUTING_NUMBER {
        return Err(invalid(
            &format!(
                "Invalid routing number: use Stripe's test routing number {} in the sandbox.",
                connect::TEST_ROUTING_NUMBER
            ),
            Some("external_account[routing_number]"),
        ));
    }
    let number = required(bank.get("account_number"), "external_account[account_number]")?;
    let outcome = connect::outcome_of(number).ok_or_else(|| {
        invalid(
            "Invalid account number: use one of Stripe's test bank account numbers for Connect \
             (000123456789 pays out; 000111111116, 000111111113, 000222222227, 000333333335 and \
             000444444440 fail).",
            Some("external_account[account_number]"),
        )
    })?;
    let bank_currency = string(bank.get("currency"), "external_account[currency]")?
        .filter(|c| !c.is_empty())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| currency.clone());
    let id = store::new_id("acct_", 16);
    let account = connect::Account {
        id: id.clone(),
        created: store::now(),
        country: country.to_string(),
        default_currency: currency,
        email,
        bank: connect::BankAccount {
            id: store::new_id("ba_", 24),
            country: country.to_string(),
            currency: bank_currency,
            routing_number: routing.to_string(),
            last4: number[number.len() - 4..].to_string(),
            outcome,
        },
        metadata: metadata(root.get("metadata"), "metadata")?,
        balance: BTreeMap::new(),
    };
    let body = account.json();
    if st.account_order.len() >= store::RECORDS_MAX {
        if let Some(old) = st.account_order.pop_front() {
            st.accounts.remove(&old);
        }
    }
    st.account_order.push_back(id.clone());
    st.accounts.insert(id, account);
    Ok(Resp::json(200, &body))
}

fn retrieve_account(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let a = st
        .accounts
        .get(id)
        .ok_or_else(|| no_such("account", id, "account"))?;
    Ok(Resp::json(200, &a.json()))
}

fn positive_amount(root: &Node) -> Result<i64, Resp> {
    match integer(required(root.get("amount"), "amount")?, "amount")? {
        v if v >= 1 => Ok(v),
        _ => Err(invalid("Invalid positive integer", Some("amount"))),
    }
}

fn balance_insufficient(message: &str) -> Resp {
    stripe_error(
        400,
        "invalid_request_error",
        Some("balance_insufficient"),
        message,
        None,
    )
}

/// `POST /v1/transfers`: from the platform's available balance to a connected account.
fn create_transfer(st: &mut State, ctx: &Ctx, root: &Node) -> Out {
    only(
        root,
        &[
            "amount",
            "currency",
            "destination",
            "transfer_group",
            "description",
            "metadata",
            "expand",
        ],
        "",
    )?;
    expand(root, &[])?;
    let amount = positive_amount(root)?;
    let currency = required(root.get("currency"), "currency")?.to_ascii_lowercase();
    let destination = required(root.get("destination"), "destination")?;
    if !st.accounts.contains_key(destination) {
        return Err(no_such("destination", destination, "destination"));
    }
    let available = st.platform_available(&currency);
    if amount > available {
        return Err(balance_insufficient(&format!(
            "You have insufficient available funds in your Stripe account ({} available). Try adding \
             funds directly to your available balance by creating Charges using the 4000000000000077 \
             test card.",
            money(available, &currency)
        )));
    }
    let transfer_group = string(root.get("transfer_group"), "transfer_group")?
        .filter(|g| !g.is_empty())
        .map(str::to_string);
    let description = string(root.get("description"), "description")?
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let md = metadata(root.get("metadata"), "metadata")?;
    let id = store::new_id("tr_", 24);
    let txn = st.transfer_txn(store::TXN_TRANSFER, &id, -amount, &currency, &md);
    // The connected account's side: the payment it receives for the transfer.
    let destination_payment = store::new_id("py_", 24);
    st.account_txn(store::AccountTxn {
        account: destination,
        kind: store::TXN_PAYMENT,
        source: &destination_payment,
        amount,
        currency: &currency,
        metadata: &md,
        transfer: Some(&id),
        transfer_reversal: None,
    });
    let transfer = connect::Transfer {
        id: id.clone(),
        created: store::now(),
        amount,
        currency: currency.clone(),
        destination: destination.to_string(),
        transfer_group,
        description,
        metadata: md,
        balance_transaction: txn,
        destination_payment,
        reversals: Vec::new(),
    };
    if let Some(a) = st.accounts.get_mut(destination) {
        *a.balance.entry(currency).or_default() += amount;
    }
    let body = transfer.json();
    if st.transfer_order.len() >= store::RECORDS_MAX {
        if let Some(old) = st.transfer_order.pop_front() {
            st.transfers.remove(&old);
        }
    }
    st.transfer_order.push_back(id.clone());
    st.transfers.insert(id, transfer);
    st.emit("transfer.created", body.clone(), ctx.api_version, &ctx.cause());
    Ok(Resp::json(200, &body))
}

fn retrieve_transfer(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let t = st
        .transfers
        .get(id)
        .ok_or_else(|| no_such("transfer", id, "id"))?;
    Ok(Resp::json(200, &t.json()))
}

/// `POST /v1/transfers/{id}/reversals`: takes back (part of) a transfer from the connected
/// account's balance to the platform's.
fn create_reversal(st: &mut State, ctx: &Ctx, root: &Node, id: &str) -> Out {
    only(
        root,
        &[
            "amount",
            "description",
            "metadata",
            "refund_application_fee",
            "expand",
        ],
        "",
    )?;
    expand(root, &[])?;
    let t = st
        .transfers
        .get(id)
        .ok_or_else(|| no_such("transfer", id, "id"))?;
    let left = t.amount - t.amount_reversed();
    let amount = match string(root.get("amount"), "amount")? {
        None | Some("") => left,
        Some(_) => positive_amount(root)?,
    };
    if left <= 0 || amount > left {
        return Err(invalid(
            &format!(
                "You have already reversed {} of this transfer; at most {} can be reversed.",
                money(t.amount_reversed(), &t.currency),
                money(left.max(0), &t.currency)
            ),
            Some("amount"),
        ));
    }
    let (currency, destination) = (t.currency.clone(), t.destination.clone());
    let held = st
        .accounts
        .get(&destination)
        .and_then(|a| a.balance.get(&currency).copied())
        .unwrap_or(0);
    if amount > held {
        return Err(balance_insufficient(&format!(
            "The connected account {destination} has {} available: the reversal cannot take {}.",
            money(held, &currency),
            money(amount, &currency)
        )));
    }
    let md = metadata(root.get("metadata"), "metadata")?;
    let reversal_id = store::new_id("trr_", 24);
    let txn = st.transfer_txn(store::TXN_TRANSFER_REVERSAL, &reversal_id, amount, &currency, &md);
    // The connected account's side: a refund of the transfer's destination payment.
    let destination_payment_refund = store::new_id("pyr_", 24);
    st.account_txn(store::AccountTxn {
        account: &destination,
        kind: store::TXN_PAYMENT_REFUND,
        source: &destination_payment_refund,
        amount: -amount,
        currency: &currency,
        metadata: &md,
        transfer: Some(id),
        transfer_reversal: Some(&reversal_id),
    });
    if let Some(a) = st.accounts.get_mut(&destination) {
        *a.balance.entry(currency).or_default() -= amount;
    }
    let t = st
        .transfers
        .get_mut(id)
        .ok_or_else(|| no_such("transfer", id, "id"))?;
    let reversal = connect::Reversal {
        id: reversal_id,
        amount,
        created: store::now(),
        balance_transaction: txn,
        destination_payment_refund,
        metadata: md,
    };
    let body = t.reversal_json(&reversal);
    t.reversals.push(reversal);
    let transfer = t.json();
    st.emit("transfer.reversed", transfer, ctx.api_version, &ctx.cause());
    Ok(Resp::json(200, &body))
}

/// The connected account a Connect call acts as (`Stripe-Account`), which must exist.
fn acting_account<'r>(st: &State, req: &'r Req) -> Result<&'r str, Resp> {
    let account = req
        .header("stripe-account")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            invalid(
                "The sandbox PSP pays out connected accounts only: send the Stripe-Account header \
             naming one.",
                None,
            )
        })?;
    if !st.accounts.contains_key(account) {
        return Err(account_invalid(account));
    }
    Ok(account)
}

fn account_invalid(account: &str) -> Resp {
    stripe_error(
        403,
        "invalid_request_error",
        Some("account_invalid"),
        &format!(
            "The provided key does not have access to account '{account}' (or that account does not exist)."
        ),
        None,
    )
}

/// Whose ledger a balance-transaction read is: without `Stripe-Account` the platform's
/// (`None`); with it that connected account's, which must exist (else the 403
/// `account_invalid` of the other Stripe-Account routes; an empty header names no account).
fn ledger_account<'r>(st: &State, req: &'r Req) -> Result<Option<&'r str>, Resp> {
    match req.header("stripe-account") {
        None => Ok(None),
        Some(a) if st.accounts.contains_key(a) => Ok(Some(a)),
        Some(a) => Err(account_invalid(a)),
    }
}

/// `POST /v1/payouts` as a connected account: its balance to its bank account.
fn create_payout(st: &mut State, ctx: &Ctx, req: &Req, root: &Node) -> Out {
    only(
        root,
        &[
            "amount",
            "currency",
            "description",
            "metadata",
            "method",
            "destination",
            "expand",
        ],
        "",
    )?;
    expand(root, &[])?;
    // Without Stripe-Account (or with an empty one) the platform pays out to its own bank.
    let account = match req.header("stripe-account").filter(|a| !a.is_empty()) {
        None => "",
        Some(_) => acting_account(st, req)?,
    };
    let amount = positive_amount(root)?;
    let currency = required(root.get("currency"), "currency")?.to_ascii_lowercase();
    match string(root.get("method"), "method")? {
        None | Some("") | Some("standard") => {}
        Some(_) => {
            return Err(invalid(
                "The sandbox PSP makes standard payouts only.",
                Some("method"),
            ))
        }
    }
    let description = string(root.get("description"), "description")?
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let md = metadata(root.get("metadata"), "metadata")?;
    settle_due(st);
    let new = connect::NewPayout {
        account,
        amount,
        currency: &currency,
        metadata: md,
        description,
    };
    match st.create_payout(new, &ctx.cause(), ctx.api_version) {
        Ok(body) => Ok(Resp::json(200, &body)),
        Err(connect::PayoutError::Insufficient(held)) => Err(balance_insufficient(&format!(
            "You have insufficient funds in your Stripe account for this transfer. Your available \
             balance is {}.",
            money(held, &currency)
        ))),
        Err(e) => Err(invalid(&format!("cannot pay out: {e:?}"), None)),
    }
}

fn retrieve_payout(st: &mut State, req: &Req, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let account = match req.header("stripe-account").filter(|a| !a.is_empty()) {
        None => String::new(),
        Some(_) => acting_account(st, req)?.to_string(),
    };
    settle_due(st);
    let p = st
        .payouts
        .get(id)
        .filter(|p| p.account == account)
        .ok_or_else(|| no_such("payout", id, "id"))?;
    Ok(Resp::json(200, &p.json()))
}

fn create_endpoint(st: &mut State, root: &Node) -> Out {
    only(
        root,
        &[
            "url",
            "enabled_events",
            "description",
            "metadata",
            "api_version",
            "connect",
            "expand",
        ],
        "",
    )?;
    let url = url_param(required(root.get("url"), "url")?, "url")?;
    let ee = root
        .get("enabled_events")
        .ok_or_else(|| missing("enabled_events"))?;
    let list = ee.as_list().ok_or_else(|| {
        invalid(
            "Invalid array: enabled_events must be an array",
            Some("enabled_events"),
        )
    })?;
    if list.is_empty() {
        return Err(missing("enabled_events"));
    }
    let mut enabled_events = Vec::new();
    for (i, n) in list {
        let p = format!("enabled_events[{i}]");
        let v = string(Some(n), &p)?.unwrap_or("");
        if !valid_event_type(v) {
            return Err(invalid(
                &format!("Invalid {p}: {v} is not an event type"),
                Some(&p),
            ));
        }
        if !enabled_events.iter().any(|e| e == v) {
            enabled_events.push(v.to_string());
        }
    }
    let description = string(root.get("description"), "description")?
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let api_version = string(root.get("api_version"), "api_version")?
        .filter(|d| !d.is_empty() && d.len() <= 64 && printable(d))
        .map(str::to_string);
    if let Some(c) = string(root.get("connect"), "connect")? {
        if c == "true" {
            return Err(invalid(
                "The sandbox PSP has no Connect endpoints.",
                Some("connect"),
            ));
        }
    }
    expand(root, &[])?;
    if st.endpoints.len() >= ENDPOINTS_MAX {
        return Err(invalid("Too many webhook endpoints in the sandbox.", Some("url")));
    }
    let endpoint = Endpoint {
        id: store::new_id("we_", 24),
        created: store::now(),
        url,
        enabled_events,
        description,
        metadata: metadata(root.get("metadata"), "metadata")?,
        api_version,
        secret: st.webhook_secret.clone(),
    };
    let body = State::endpoint_json(&endpoint, true);
    st.endpoints.push(endpoint);
    Ok(Resp::json(200, &body))
}

fn list_endpoints(st: &mut State, root: &Node) -> Out {
    only(root, &["limit", "starting_after", "ending_before"], "")?;
    let q = ListQuery::parse(root)?;
    let all: Vec<&Endpoint> = st.endpoints.iter().rev().collect();
    let (page, has_more) = q.page(&all, |e| e.id.as_str(), |_| true)?;
    let data: Vec<Value> = page.iter().map(|e| State::endpoint_json(e, false)).collect();
    Ok(list(data, has_more, "/v1/webhook_endpoints"))
}

fn retrieve_endpoint(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let e = st
        .endpoints
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| no_such("webhook_endpoint", id, "webhook_endpoint"))?;
    Ok(Resp::json(200, &State::endpoint_json(e, false)))
}

fn delete_endpoint(st: &mut State, root: &Node, id: &str) -> Out {
    only(root, &[], "")?;
    let pos = st
        .endpoints
        .iter()
        .position(|e| e.id == id)
        .ok_or_else(|| no_such("webhook_endpoint", id, "webhook_endpoint"))?;
    st.endpoints.remove(pos);
    Ok(Resp::json(
        200,
        &json!({"id": id, "object": "webhook_endpoint", "deleted": true}),
    ))
}

// --- balance transactions ------------------------------------------------------------------------

/// `GET /v1/balance`: the platform's balance from its ledger (net amounts; `available` once
/// `available_on` has passed, else `pending`), or with `Stripe-Account` that connected
/// account's (its rows are all available at once). One entry per currency with transactions.
fn retrieve_balance(st: &mut State, req: &Req, root: &Node) -> Out {
    only(root, &["expand"], "")?;
    let account = ledger_account(st, req)?.map(str::to_string);
    settle_due(st);
    let now = store::now();
    let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let rows: Box<dyn Iterator<Item = &store::BalanceTxn>> = match &account {
        None => Box::new(st.balance_txns.iter()),
        Some(a) => Box::new(
            st.account_txns
                .iter()
                .filter(move |t| t.account.as_deref() == Some(a.as_str())),
        ),
    };
    for t in rows {
        let e = sums.entry(t.currency.as_str()).or_default();
        if t.available_on <= now {
            e.0 += t.net;
        } else {
            e.1 += t.net;
        }
    }
    let entry = |currency: &str, amount: i64| json!({"amount": amount, "currency": currency, "source_types": {"card": amount}});
    let available: Vec<Value> = sums.iter().map(|(c, (a, _))| entry(c, *a)).collect();
    let pending: Vec<Value> = sums.iter().map(|(c, (_, p))| entry(c, *p)).collect();
    Ok(Resp::json(
        200,
        &json!({"object": "balance", "available": available, "livemode": false, "pending": pending}),
    ))
}

/// The platform's balance transactions, or with `Stripe-Account` that connected account's only.
/// `payout=po_…`: Stripe lists what an automatic payout paid out; a connected account's payouts
/// here are manual ones, whose transactions Stripe cannot attribute, so the list is the payout's
/// own `payout` transaction (its `payout_failure` one is found with `source=po_…`). Without the
/// header the same for the platform's own (manual) payouts; another ledger's payout lists nothing.
fn list_balance_txns(st: &mut State, req: &Req, root: &Node) -> Out {
    only(
        root,
        &[
            "limit",
            "starting_after",
            "ending_before",
            "created",
            "type",
            "source",
            "currency",
            "payout",
        ],
        "",
    )?;
    let q = ListQuery::parse(root)?;
    let kind = string(root.get("type"), "type")?.filter(|s| !s.is_empty());
    let source = string(root.get("source"), "source")?.filter(|s| !s.is_empty());
    let currency = string(root.get("currency"), "currency")?
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    let payout = string(root.get("payout"), "payout")?.filter(|p| !p.is_empty());
    let account = ledger_account(st, req)?;
    let (all, payout_txn): (Vec<&store::BalanceTxn>, Option<String>) = match account {
        None => {
            settle_due(st);
            // A platform payout's own `payout` transaction; any other payout's: nothing here.
            let payout_txn = match payout {
                None => None,
                Some(po) => match st.payouts.get(po).filter(|p| p.account.is_empty()) {
                    Some(p) => Some(p.balance_transaction.clone()),
                    None => return Ok(list(Vec::new(), false, "/v1/balance_transactions")),
                },
            };
            (st.balance_txns.iter().rev().collect(), payout_txn)
        }
        Some(account) => {
            settle_due(st);
            let payout_txn = match payout {
                None => None,
                Some(po) => Some(
                    st.payouts
                        .get(po)
                        .filter(|p| p.account == account)
                        .map(|p| p.balance_transaction.clone())
                        .ok_or_else(|| no_such("payout", po, "payout"))?,
                ),
            };
            let mine = st
                .account_txns
                .iter()
                .rev()
                .filter(|t| t.account.as_deref() == Some(account))
                .collect();
            (mine, payout_txn)
        }
    };
    let (page, has_more) = q.page(
        &all,
        |t| t.id.as_str(),
        |t| {
            q.created_ok(t.created)
                && kind.is_none_or(|k| k == t.kind)
                && source.is_none_or(|s| s == t.source)
                && currency.as_deref().is_none_or(|c| c == t.currency)
                && payout_txn.as_deref().is_none_or(|id| id == t.id)
        },
    )?;
    let data: Vec<Value> = page.iter().map(|t| State::balance_txn_json(t)).collect();
    Ok(list(data, has_more, "/v1/balance_transactions"))
}

/// One balance transaction of the platform's ledger, or with `Stripe-Account` of that
/// connected account's (another ledger's id → 404).
fn retrieve_balance_txn(st: &mut State, req: &Req, root: &Node, id: &str) -> Out {
    only(root, &["expand"], "")?;
    let t = match ledger_account(st, req)? {
        None => st.balance_txns.iter().find(|t| t.id == id),
        Some(account) => {
            settle_due(st);
            st.account_txns
                .iter()
                .find(|t| t.id == id && t.account.as_deref() == Some(account))
        }
    }
    .ok_or_else(|| no_such("balance_transaction", id, "id"))?;
    Ok(Resp::json(200, &State::balance_txn_json(t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::CardOutcome;
    use crate::refunds::RefundFlow;
    use bytes::Bytes;

    const KEY: &str = "sk_test_unit";

    fn req(method: hyper::Method, path: &str, body: &str, idem: Option<&str>) -> Req {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {KEY}").parse().expect("header"));
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().expect("header"),
        );
        if let Some(k) = idem {
            headers.insert("idempotency-key", k.parse().expect("header"));
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Req {
            method,
            path: path.to_string(),
            query: query.to_string(),
            headers,
            body: Bytes::from(body.to_string()),
            peer: "127.0.0.1:1".parse().expect("addr"),
        }
    }

    fn call(st: &mut State, r: &Req) -> (Resp, Value) {
        let ctx = Ctx {
            public_url: "http://127.0.0.1:4000",
            request_id: "req_unit",
            idempotency_key: r.header("idempotency-key"),
            api_version: store::DEFAULT_API_VERSION,
        };
        let resp = execute(st, &ctx, KEY, r);
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp, v)
    }

    #[test]
    fn a_connected_account_is_made_with_a_test_bank_account_and_read_back() {
        let mut st = State::new("whsec_unit".into());
        let body = "type=custom&country=US&email=s1%40example.com&metadata[seller_id]=s1\
                    &external_account[object]=bank_account&external_account[country]=US\
                    &external_account[currency]=usd&external_account[routing_number]=110000000\
                    &external_account[account_number]=000111111113";
        let (resp, a) = call(&mut st, &req(hyper::Method::POST, "/v1/accounts", body, None));
        assert_eq!(resp.status, 200, "{a}");
        let id = a["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("acct_"), "{id}");
        assert_eq!(a["metadata"]["seller_id"], "s1");
        let bank = &a["external_accounts"]["data"][0];
        assert_eq!(
            (bank["last4"].as_str(), bank["routing_number"].as_str()),
            (Some("1113"), Some("110000000"))
        );
        assert!(
            !a.to_string().contains("000111111113"),
            "the full number is never shown"
        );
        assert_eq!(
            st.accounts[&id].bank.outcome,
            connect::PayoutOutcome::Fails("account_closed")
        );
        let (resp, back) = call(
            &mut st,
            &req(hyper::Method::GET, &format!("/v1/accounts/{id}"), "", None),
        );
        assert_eq!((resp.status, &back), (200, &a));
        let (resp, e) = call(
            &mut st,
            &req(hyper::Method::GET, "/v1/accounts/acct_nope", "", None),
        );
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (404, Some("resource_missing"))
        );
    }

    #[test]
    fn an_account_needs_a_documented_test_bank_account() {
        let mut st = State::new("whsec_unit".into());
        let bank = |routing: &str, number: &str| {
            format!(
                "external_account[object]=bank_account&external_account[routing_number]={routing}\
                 &external_account[account_number]={number}"
            )
        };
        for (body, param) in [
            ("type=custom".to_owned(), "external_account"),
            (
                bank("021000021", "000123456789"),
                "external_account[routing_number]",
            ),
            (
                bank("110000000", "123456789012"),
                "external_account[account_number]",
            ),
            (
                format!("country=FR&{}", bank("110000000", "000123456789")),
                "country",
            ),
            (
                format!("{}&external_account[iban]=x", bank("110000000", "000123456789")),
                "external_account[iban]",
            ),
        ] {
            let (resp, e) = call(&mut st, &req(hyper::Method::POST, "/v1/accounts", &body, None));
            assert_eq!(
                (resp.status, e["error"]["param"].as_str()),
                (400, Some(param)),
                "{body}: {e}"
            );
        }
        assert!(st.accounts.is_empty());
        let (resp, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/accounts",
                &bank("110000000", "000123456789"),
                None,
            ),
        );
        assert_eq!(resp.status, 200);
        assert_eq!(
            st.accounts.values().next().unwrap().bank.outcome,
            connect::PayoutOutcome::Succeeds
        );
    }

    const BODY: &str =
        "mode=payment&success_url=https%3A%2F%2Fshop.test%2Fok%3Fs%3D%7BCHECKOUT_SESSION_ID%7D\
&line_items[0][quantity]=2&line_items[0][price_data][currency]=USD\
&line_items[0][price_data][unit_amount]=4999&line_items[0][price_data][product_data][name]=Mug\
&line_items[1][quantity]=1&line_items[1][price_data][currency]=usd\
&line_items[1][price_data][unit_amount]=1&line_items[1][price_data][product_data][name]=Sticker\
&metadata[checkout_id]=chk_1&client_reference_id=po_1";

    #[test]
    fn creates_a_session_in_stripes_shape() {
        let mut st = State::new("whsec_x".into());
        let (resp, v) = call(
            &mut st,
            &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, None),
        );
        assert_eq!(resp.status, 200, "{v}");
        assert_eq!(v["object"], "checkout.session");
        assert_eq!(v["amount_total"], 9999);
        assert_eq!(v["amount_subtotal"], 9999);
        assert_eq!(v["currency"], "usd");
        assert_eq!(v["status"], "open");
        assert_eq!(v["payment_status"], "unpaid");
        assert_eq!(v["livemode"], false);
        assert_eq!(v["metadata"]["checkout_id"], "chk_1");
        let id = v["id"].as_str().expect("id");
        assert!(id.starts_with("cs_test_"));
        assert_eq!(v["url"], format!("http://127.0.0.1:4000/pay/{id}"));
        let pi = v["payment_intent"].as_str().expect("pi");
        let (_, p) = call(
            &mut st,
            &req(hyper::Method::GET, &format!("/v1/payment_intents/{pi}"), "", None),
        );
        assert_eq!(p["status"], "requires_payment_method");
        assert_eq!(p["amount"], 9999);
    }

    #[test]
    fn idempotent_replay_and_mismatch() {
        let mut st = State::new("whsec_x".into());
        let r = req(hyper::Method::POST, "/v1/checkout/sessions", BODY, Some("key-1"));
        let (first, v1) = call(&mut st, &r);
        assert_eq!(first.status, 200);
        let (again, v2) = call(&mut st, &r);
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body, "byte-identical replay");
        assert_eq!(v1["id"], v2["id"]);
        assert!(again
            .headers
            .iter()
            .any(|(k, v)| k == "Idempotent-Replayed" && v == "true"));
        assert_eq!(st.sessions.len(), 1, "one session only");
        // Same parameters in another order: still the same request.
        let reordered = format!(
            "client_reference_id=po_1&{}",
            BODY.replace("&client_reference_id=po_1", "")
        );
        let (same, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/checkout/sessions",
                &reordered,
                Some("key-1"),
            ),
        );
        assert_eq!(same.body, first.body);
        // Other parameters with the same key: idempotency_error, nothing created.
        let other = BODY.replace("4999", "5000");
        let (bad, e) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/checkout/sessions",
                &other,
                Some("key-1"),
            ),
        );
        assert_eq!(bad.status, 400);
        assert_eq!(e["error"]["type"], "idempotency_error");
        assert_eq!(st.sessions.len(), 1);
        // A validation error is not stored: the key can be used for the corrected request.
        let broken = BODY.replace("mode=payment", "mode=bogus");
        let (v, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/checkout/sessions",
                &broken,
                Some("key-2"),
            ),
        );
        assert_eq!(v.status, 400);
        let (ok, _) = call(
            &mut st,
            &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, Some("key-2")),
        );
        assert_eq!(ok.status, 200);
        assert_eq!(st.sessions.len(), 2);
    }

    #[test]
    fn bad_input_is_a_4xx_with_param() {
        let mut st = State::new("whsec_x".into());
        let cases = [
            (BODY.replace("mode=payment&", ""), "mode"),
            (format!("{BODY}&bogus=1"), "bogus"),
            (
                BODY.replace("unit_amount]=4999", "unit_amount]=49.99"),
                "line_items[0][price_data][unit_amount]",
            ),
            (
                BODY.replace("unit_amount]=4999", "unit_amount]=-1"),
                "line_items[0][price_data][unit_amount]",
            ),
            (
                BODY.replace("[quantity]=2", "[quantity]=0"),
                "line_items[0][quantity]",
            ),
            (
                BODY.replacen("=usd", "=eur", 1),
                "line_items[1][price_data][currency]",
            ),
            (
                BODY.replace("=USD", "=xyz"),
                "line_items[0][price_data][currency]",
            ),
            (
                format!("{BODY}&line_items[0][price_data][foo]=1"),
                "line_items[0][price_data][foo]",
            ),
            (format!("{BODY}&expires_at=1"), "expires_at"),
            (format!("{BODY}&metadata=x"), "metadata"),
            (
                BODY.replace("unit_amount]=4999", "unit_amount]=99999999"),
                "line_items",
            ),
            (format!("{BODY}&line_items[0]=x"), "line_items[0]"),
        ];
        for (body, param) in cases {
            let (resp, v) = call(
                &mut st,
                &req(hyper::Method::POST, "/v1/checkout/sessions", &body, None),
            );
            assert_eq!(resp.status, 400, "{param}: {v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{param}");
            assert_eq!(v["error"]["param"], param, "{v}");
        }
        let (resp, v) = call(
            &mut st,
            &req(hyper::Method::GET, "/v1/checkout/sessions/cs_test_nope", "", None),
        );
        assert_eq!(resp.status, 404);
        assert_eq!(v["error"]["code"], "resource_missing");
        let (resp, _) = call(&mut st, &req(hyper::Method::GET, "/v1/events?limit=0", "", None));
        assert_eq!(resp.status, 400);
        assert!(st.sessions.is_empty());
    }

    #[test]
    fn auth_bearer_basic_and_masked_errors() {
        let mut r = req(hyper::Method::GET, "/v1/events", "", None);
        assert!(authenticate(KEY, &r).is_ok());
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
        r.headers
            .insert("authorization", format!("Basic {basic}").parse().expect("h"));
        assert!(authenticate(KEY, &r).is_ok());
        r.headers
            .insert("authorization", "Bearer sk_test_wrongkey1234".parse().expect("h"));
        let e = authenticate(KEY, &r).expect_err("401");
        assert_eq!(e.status, 401);
        let v: Value = serde_json::from_slice(&e.body).expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(
            v["error"]["message"],
            "Invalid API Key provided: sk_test_********1234"
        );
        r.headers.remove("authorization");
        assert_eq!(authenticate(KEY, &r).expect_err("401").status, 401);
        assert_eq!(mask_key("abc"), "***");
    }

    #[test]
    fn event_list_pagination_and_filters() {
        let mut st = State::new("whsec_x".into());
        for i in 0..5 {
            let t = if i % 2 == 0 {
                "checkout.session.completed"
            } else {
                "checkout.session.expired"
            };
            st.emit(t, json!({"n": i}), "2024-06-20", &Cause::default());
        }
        let (_, v) = call(&mut st, &req(hyper::Method::GET, "/v1/events?limit=2", "", None));
        assert_eq!(v["object"], "list");
        assert_eq!(v["has_more"], true);
        assert_eq!(v["data"][0]["data"]["object"]["n"], 4);
        let last = v["data"][1]["id"].as_str().expect("id").to_string();
        let (_, v) = call(
            &mut st,
            &req(
                hyper::Method::GET,
                &format!("/v1/events?limit=10&starting_after={last}"),
                "",
                None,
            ),
        );
        assert_eq!(v["data"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["has_more"], false);
        let (_, v) = call(
            &mut st,
            &req(
                hyper::Method::GET,
                "/v1/events?type=checkout.session.expired",
                "",
                None,
            ),
        );
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        let (_, v) = call(
            &mut st,
            &req(
                hyper::Method::GET,
                "/v1/events?type=checkout.session.*&created[gte]=0",
                "",
                None,
            ),
        );
        assert_eq!(v["data"].as_array().map(Vec::len), Some(5));
        let (_, v) = call(
            &mut st,
            &req(hyper::Method::GET, "/v1/events?created[lt]=1", "", None),
        );
        assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
    }

    // --- refunds ---------------------------------------------------------------------------------

    /// A session paid on the page with a card of the given refund flow; its PaymentIntent id.
    fn paid(st: &mut State, flow: RefundFlow) -> String {
        paid_with(st, flow, store::Funds::Pending)
    }

    fn paid_with(st: &mut State, flow: RefundFlow, funds: store::Funds) -> String {
        let (_, v) = call(st, &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, None));
        let id = v["id"].as_str().expect("session id").to_string();
        let resp = crate::page::pay(
            st,
            &id,
            CardOutcome::Success(flow, funds),
            "http://127.0.0.1:4000",
        );
        assert_eq!(resp.status, 303);
        v["payment_intent"].as_str().expect("pi").to_string()
    }

    fn account(st: &mut State) -> String {
        let body = "external_account[object]=bank_account&external_account[routing_number]=110000000\
                    &external_account[account_number]=000123456789";
        let (resp, a) = call(st, &req(hyper::Method::POST, "/v1/accounts", body, None));
        assert_eq!(resp.status, 200, "{a}");
        a["id"].as_str().unwrap().to_owned()
    }

    fn account_with(st: &mut State, number: &str) -> String {
        let body = format!(
            "external_account[object]=bank_account&external_account[routing_number]=110000000\
             &external_account[account_number]={number}"
        );
        let (resp, a) = call(st, &req(hyper::Method::POST, "/v1/accounts", &body, None));
        assert_eq!(resp.status, 200, "{a}");
        a["id"].as_str().unwrap().to_owned()
    }

    fn as_account(mut r: Req, account: &str) -> Req {
        r.headers
            .insert("stripe-account", account.parse().expect("header"));
        r
    }

    /// A connected account funded by a transfer pays out to its bank: `pending`, `in_transit`,
    /// then `paid` or `failed` as its test bank account decides; a failure (also after `paid`)
    /// puts the money back in its balance. Events name the account.
    #[test]
    fn a_connected_account_pays_out_and_its_bank_number_decides_the_end() {
        let mut st = State::new("whsec_unit".into());
        // An hour: only this test's own clock moves the payouts, however slow the machine.
        st.payout_settle_ms = 3_600_000;
        paid_with(&mut st, RefundFlow::Immediate, store::Funds::Available);
        let good = account_with(&mut st, "000123456789");
        let closed = account_with(&mut st, "000111111113");
        for acct in [&good, &closed] {
            let body = format!("amount=1000&currency=usd&destination={acct}");
            let (resp, t) = call(&mut st, &req(hyper::Method::POST, "/v1/transfers", &body, None));
            assert_eq!(resp.status, 200, "{t}");
        }
        let payout = |st: &mut State, acct: &str, amount: i64| {
            let body = format!("amount={amount}&currency=usd&metadata[payout_id]=pout_1");
            call(
                st,
                &as_account(req(hyper::Method::POST, "/v1/payouts", &body, None), acct),
            )
        };
        let (resp, e) = payout(&mut st, &good, 1001);
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (400, Some("balance_insufficient")),
            "{e}"
        );
        let (resp, e) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/payouts",
                "amount=99999999&currency=usd",
                None,
            ),
        );
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (400, Some("balance_insufficient")),
            "no Stripe-Account: the platform's own balance: {e}"
        );
        let (resp, e) = payout(&mut st, "acct_nope", 1);
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (403, Some("account_invalid"))
        );

        let (resp, p) = payout(&mut st, &good, 1000);
        assert_eq!((resp.status, p["status"].as_str()), (200, Some("pending")), "{p}");
        let (_, q) = payout(&mut st, &closed, 1000);
        assert_eq!(st.accounts[&good].balance["usd"], 0);
        let get_as = |st: &mut State, acct: &str, id: &str| {
            call(
                st,
                &as_account(
                    req(hyper::Method::GET, &format!("/v1/payouts/{id}"), "", None),
                    acct,
                ),
            )
            .1
        };
        let (pid, qid) = (
            p["id"].as_str().unwrap().to_owned(),
            q["id"].as_str().unwrap().to_owned(),
        );
        let (resp, _) = call(
            &mut st,
            &as_account(
                req(hyper::Method::GET, &format!("/v1/payouts/{pid}"), "", None),
                &closed,
            ),
        );
        assert_eq!(resp.status, 404, "another account's payout");
        // The clock: in transit, then the end its bank account decides.
        let half = st.payout_settle_ms / 2;
        assert_eq!(st.settle_due_payouts(store::now_ms() + half), 2);
        assert_eq!(get_as(&mut st, &good, &pid)["status"], "in_transit");
        assert_eq!(st.settle_due_payouts(store::now_ms() + 2 * half + 1_000), 2);
        assert_eq!(get_as(&mut st, &good, &pid)["status"], "paid");
        let failed = get_as(&mut st, &closed, &qid);
        assert_eq!(
            (failed["status"].as_str(), failed["failure_code"].as_str()),
            (Some("failed"), Some("account_closed"))
        );
        assert!(failed["failure_message"].as_str().unwrap().contains("closed"));
        assert_eq!(
            st.accounts[&closed].balance["usd"], 1000,
            "the failed payout's money is back"
        );
        // Paid, then failed (Stripe warns it happens): the money is back too.
        st.move_payout(
            &pid,
            connect::PayoutStatus::Failed,
            Some("could_not_process"),
            &store::Cause::default(),
        )
        .unwrap();
        assert_eq!(st.accounts[&good].balance["usd"], 1000);
        assert!(st
            .move_payout(&pid, connect::PayoutStatus::Paid, None, &store::Cause::default())
            .is_err());
        let events: Vec<(String, Value)> = st
            .events
            .values()
            .filter(|e| e.event_type.starts_with("payout."))
            .map(|e| (e.event_type.clone(), e.json["account"].clone()))
            .collect();
        for t in ["payout.created", "payout.updated", "payout.paid", "payout.failed"] {
            assert!(
                events.iter().any(|(k, a)| k == t && a.is_string()),
                "{t}: {events:?}"
            );
        }
    }

    /// Transfers draw on the platform's available balance only: a charge paid with 4242 is
    /// pending for two days, one paid with 0077 is available at once. A reversal takes the money
    /// back from the connected account; each leaves its balance transaction and its event.
    #[test]
    fn transfers_draw_on_the_available_balance_and_reversals_take_it_back() {
        let mut st = State::new("whsec_unit".into());
        let acct = account(&mut st);
        paid(&mut st, RefundFlow::Immediate);
        let transfer = |st: &mut State, amount: i64, idem: Option<&str>| {
            let body = format!(
                "amount={amount}&currency=usd&destination={acct}&transfer_group=pout_1&metadata[payout_id]=pout_1"
            );
            call(st, &req(hyper::Method::POST, "/v1/transfers", &body, idem))
        };
        let (resp, e) = transfer(&mut st, 100, None);
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (400, Some("balance_insufficient")),
            "{e}"
        );
        // BODY's session is 2 × 49.99 USD; the fee comes off (net available).
        paid_with(&mut st, RefundFlow::Immediate, store::Funds::Available);
        let available = st.platform_available("usd");
        assert!(available > 1500 && available < 9998, "{available}");
        let (resp, e) = transfer(&mut st, available + 1, None);
        assert_eq!(resp.status, 400, "{e}");
        let (resp, t) = transfer(&mut st, 1500, Some("pout_1-transfer"));
        assert_eq!(resp.status, 200, "{t}");
        assert_eq!(
            (t["destination"].as_str(), t["transfer_group"].as_str()),
            (Some(acct.as_str()), Some("pout_1"))
        );
        assert_eq!(t["metadata"]["payout_id"], "pout_1");
        // The same key: the same transfer, not a second one.
        let (_, again) = transfer(&mut st, 1500, Some("pout_1-transfer"));
        assert_eq!(again["id"], t["id"]);
        assert_eq!(st.transfers.len(), 1);
        assert_eq!(st.platform_available("usd"), available - 1500);
        assert_eq!(st.accounts[&acct].balance["usd"], 1500);
        let tr = t["id"].as_str().unwrap();
        assert_eq!(get(&mut st, &format!("/v1/transfers/{tr}")), t);

        let (resp, r) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                &format!("/v1/transfers/{tr}/reversals"),
                "metadata[payout_id]=pout_1",
                None,
            ),
        );
        assert_eq!(resp.status, 200, "{r}");
        assert_eq!(
            (r["object"].as_str(), r["amount"].as_i64()),
            (Some("transfer_reversal"), Some(1500))
        );
        assert_eq!(st.platform_available("usd"), available);
        assert_eq!(st.accounts[&acct].balance["usd"], 0);
        let back = get(&mut st, &format!("/v1/transfers/{tr}"));
        assert_eq!(
            (back["reversed"].as_bool(), back["amount_reversed"].as_i64()),
            (Some(true), Some(1500))
        );
        let (resp, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                &format!("/v1/transfers/{tr}/reversals"),
                "",
                None,
            ),
        );
        assert_eq!(resp.status, 400, "nothing left to reverse");
        let kinds: Vec<&str> = st.balance_txns.iter().map(|t| t.kind).collect();
        assert!(kinds.ends_with(&["transfer", "transfer_refund"]), "{kinds:?}");
        let types: Vec<&str> = st.events.values().map(|e| e.event_type.as_str()).collect();
        for t in ["transfer.created", "transfer.reversed"] {
            assert!(types.contains(&t), "{t}: {types:?}");
        }
        let (resp, e) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/transfers",
                "amount=1&currency=usd&destination=acct_nope",
                None,
            ),
        );
        assert_eq!(
            (resp.status, e["error"]["param"].as_str()),
            (404, Some("destination"))
        );
    }

    /// A GET as `account` (`Stripe-Account`): status and body.
    fn get_as(st: &mut State, account: &str, path: &str) -> (u16, Value) {
        let (resp, v) = call(st, &as_account(req(hyper::Method::GET, path, "", None), account));
        (resp.status, v)
    }

    fn ids(list: &Value) -> Vec<String> {
        list["data"]
            .as_array()
            .expect("list")
            .iter()
            .map(|t| t["id"].as_str().expect("id").to_owned())
            .collect()
    }

    /// Each connected account has its own ledger, as Stripe records it on the account: a
    /// transfer arrives as a `payment` (+A, source the transfer's `destination_payment`), a
    /// reversal leaves as a `payment_refund` (−A, source the reversal's
    /// `destination_payment_refund`), a payout is a `payout` (−A, source the payout, named by its
    /// `balance_transaction`), a failed payout's money returns as a `payout_failure` (+A, named
    /// by `failure_balance_transaction`). The list and retrieve are scoped by `Stripe-Account`;
    /// `payout=` gives the payout's own transaction; the platform's ledger is unchanged.
    #[test]
    fn connected_accounts_have_their_own_balance_transactions() {
        let mut st = State::new("whsec_unit".into());
        st.payout_settle_ms = 3_600_000;
        paid_with(&mut st, RefundFlow::Immediate, store::Funds::Available);
        let available = st.platform_available("usd");
        let good = account_with(&mut st, "000123456789");
        let closed = account_with(&mut st, "000111111113");
        let transfer = |st: &mut State, acct: &str, amount: i64| {
            let body = format!("amount={amount}&currency=usd&destination={acct}&metadata[payout_id]=pout_1");
            let (resp, t) = call(st, &req(hyper::Method::POST, "/v1/transfers", &body, None));
            assert_eq!(resp.status, 200, "{t}");
            t
        };
        let payout = |st: &mut State, acct: &str, amount: i64| {
            let body = format!("amount={amount}&currency=usd");
            let (resp, p) = call(
                st,
                &as_account(req(hyper::Method::POST, "/v1/payouts", &body, None), acct),
            );
            assert_eq!(resp.status, 200, "{p}");
            p
        };

        // Transfer → the account's `payment`, +A.
        let t = transfer(&mut st, &good, 1500);
        let py = t["destination_payment"].as_str().expect("destination_payment");
        assert!(py.starts_with("py_"), "{t}");
        let (status, l) = get_as(&mut st, &good, "/v1/balance_transactions");
        assert_eq!(status, 200, "{l}");
        let arrival = &l["data"][0];
        assert_eq!(l["data"].as_array().unwrap().len(), 1, "{l}");
        assert_eq!(
            (
                arrival["type"].as_str(),
                arrival["amount"].as_i64(),
                arrival["net"].as_i64()
            ),
            (Some("payment"), Some(1500), Some(1500))
        );
        assert_eq!(
            (arrival["source"].as_str(), arrival["fee"].as_i64()),
            (Some(py), Some(0))
        );
        assert_eq!(
            (arrival["reporting_category"].as_str(), arrival["status"].as_str()),
            (Some("charge"), Some("available"))
        );
        assert_eq!(arrival["sandbox"]["account"], good.as_str());
        assert_eq!(arrival["sandbox"]["transfer"], t["id"]);

        // Reversal → the account's `payment_refund`, −A.
        let tr = t["id"].as_str().unwrap();
        let (resp, r) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                &format!("/v1/transfers/{tr}/reversals"),
                "amount=500",
                None,
            ),
        );
        assert_eq!(resp.status, 200, "{r}");
        let pyr = r["destination_payment_refund"].as_str().expect("pyr");
        assert!(pyr.starts_with("pyr_"), "{r}");
        let (_, l) = get_as(&mut st, &good, "/v1/balance_transactions");
        let back = &l["data"][0];
        assert_eq!(
            (
                back["type"].as_str(),
                back["amount"].as_i64(),
                back["source"].as_str()
            ),
            (Some("payment_refund"), Some(-500), Some(pyr))
        );
        assert_eq!(back["reporting_category"], "refund");
        assert_eq!(back["sandbox"]["transfer_reversal"], r["id"]);

        // Payout → the account's `payout`, −A, its id on the payout.
        let p = payout(&mut st, &good, 1000);
        let (pid, ptxn) = (
            p["id"].as_str().unwrap().to_owned(),
            p["balance_transaction"]
                .as_str()
                .expect("balance_transaction")
                .to_owned(),
        );
        assert!(p["failure_balance_transaction"].is_null(), "{p}");
        let (status, txn) = get_as(&mut st, &good, &format!("/v1/balance_transactions/{ptxn}"));
        assert_eq!(status, 200, "{txn}");
        assert_eq!(
            (
                txn["type"].as_str(),
                txn["amount"].as_i64(),
                txn["source"].as_str()
            ),
            (Some("payout"), Some(-1000), Some(pid.as_str()))
        );
        let (_, l) = get_as(&mut st, &good, "/v1/balance_transactions");
        assert_eq!(ids(&l)[0], ptxn, "newest first");
        let ledger: i64 = l["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["net"].as_i64().unwrap())
            .sum();
        assert_eq!(
            ledger, st.accounts[&good].balance["usd"],
            "the ledger adds up to the balance"
        );
        assert_eq!(ledger, 0);

        // A failed payout → `payout_failure`, +A, named by `failure_balance_transaction`.
        transfer(&mut st, &closed, 1000);
        let q = payout(&mut st, &closed, 1000);
        let qid = q["id"].as_str().unwrap().to_owned();
        let half = st.payout_settle_ms / 2;
        st.settle_due_payouts(store::now_ms() + half);
        st.settle_due_payouts(store::now_ms() + 2 * half + 1_000);
        let (_, failed) = get_as(&mut st, &closed, &format!("/v1/payouts/{qid}"));
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["balance_transaction"], q["balance_transaction"]);
        let ftxn = failed["failure_balance_transaction"]
            .as_str()
            .expect("failure txn")
            .to_owned();
        let (_, f) = get_as(&mut st, &closed, &format!("/v1/balance_transactions/{ftxn}"));
        assert_eq!(
            (f["type"].as_str(), f["amount"].as_i64(), f["source"].as_str()),
            (Some("payout_failure"), Some(1000), Some(qid.as_str()))
        );
        assert_eq!(f["reporting_category"], "payout_reversal");
        let (_, l) = get_as(&mut st, &closed, "/v1/balance_transactions");
        let kinds: Vec<&str> = l["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["payout_failure", "payout", "payment"]);
        let ledger: i64 = l["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["net"].as_i64().unwrap())
            .sum();
        assert_eq!(ledger, st.accounts[&closed].balance["usd"]);
        assert_eq!(ledger, 1000);
        // Paid (the clock above moved it too), then failed: the same, after `paid`.
        assert_eq!(st.payouts[&pid].status, connect::PayoutStatus::Paid);
        let p = st
            .move_payout(
                &pid,
                connect::PayoutStatus::Failed,
                None,
                &store::Cause::default(),
            )
            .unwrap();
        assert!(p["failure_balance_transaction"].is_string(), "{p}");
        let (_, l) = get_as(&mut st, &good, "/v1/balance_transactions?type=payout_failure");
        assert_eq!(ids(&l), [p["failure_balance_transaction"].as_str().unwrap()]);

        // Scoped by the header: each account sees its own rows only; another's id is a 404.
        let (_, l) = get_as(&mut st, &good, "/v1/balance_transactions?limit=100");
        assert_eq!(l["data"].as_array().unwrap().len(), 4, "{l}");
        assert!(l["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["sandbox"]["account"] == good.as_str()));
        assert!(!ids(&l).contains(&ftxn));
        let (status, e) = get_as(&mut st, &good, &format!("/v1/balance_transactions/{ftxn}"));
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (404, Some("resource_missing"))
        );
        let (status, e) = get_as(
            &mut st,
            &good,
            &format!("/v1/balance_transactions?starting_after={ftxn}"),
        );
        assert_eq!(status, 400, "another ledger's cursor: {e}");
        for path in [
            "/v1/balance_transactions",
            &format!("/v1/balance_transactions/{ptxn}"),
        ] {
            let (status, e) = get_as(&mut st, "acct_nope", path);
            assert_eq!(
                (status, e["error"]["code"].as_str()),
                (403, Some("account_invalid")),
                "{path}: {e}"
            );
        }

        // `payout=`: the payout's own transaction (a manual payout's); another account's → 404.
        let (status, l) = get_as(
            &mut st,
            &closed,
            &format!("/v1/balance_transactions?payout={qid}"),
        );
        assert_eq!(status, 200, "{l}");
        assert_eq!(ids(&l), [q["balance_transaction"].as_str().unwrap()]);
        let (status, l) = get_as(&mut st, &good, &format!("/v1/balance_transactions?payout={pid}"));
        assert_eq!((status, ids(&l)), (200, vec![ptxn.clone()]));
        let (status, e) = get_as(&mut st, &good, &format!("/v1/balance_transactions?payout={qid}"));
        assert_eq!(
            (status, e["error"]["param"].as_str()),
            (404, Some("payout")),
            "{e}"
        );
        let (status, l) = get_as(
            &mut st,
            &closed,
            &format!("/v1/balance_transactions?source={qid}"),
        );
        assert_eq!(
            (status, l["data"].as_array().unwrap().len()),
            (200, 2),
            "payout and its failure"
        );

        // The platform's ledger is as before: its charge, transfers and reversal only, with
        // the same shape; no connected account's row in the list, the retrieve or the CSV.
        let platform = get(&mut st, &format!("/v1/balance_transactions?payout={pid}"));
        assert_eq!(platform["data"].as_array().unwrap().len(), 0);
        let platform = get(&mut st, "/v1/balance_transactions?limit=100");
        let kinds: Vec<&str> = platform["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["transfer", "transfer_refund", "transfer", "charge"]);
        assert!(platform["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["sandbox"]["checkout_session"].is_string()
                && t["reporting_category"]
                    == if t["type"] == "transfer_refund" {
                        "transfer_reversal"
                    } else {
                        t["type"].as_str().unwrap()
                    }));
        assert_eq!(st.balance_txns.len(), 4);
        assert_eq!(st.platform_available("usd"), available - 1500 + 500 - 1000);
        let (resp, _) = call(
            &mut st,
            &req(
                hyper::Method::GET,
                &format!("/v1/balance_transactions/{ptxn}"),
                "",
                None,
            ),
        );
        assert_eq!(resp.status, 404, "a connected account's id is not the platform's");
        let csv = crate::reports::settlement_csv(&st, 0, i64::MAX);
        assert_eq!(csv.lines().count(), 1 + 4, "{csv}");
        for t in st.account_txns.iter() {
            assert!(!csv.contains(&t.id));
        }
    }

    fn refund(st: &mut State, body: &str, idem: Option<&str>) -> (Resp, Value) {
        call(st, &req(hyper::Method::POST, "/v1/refunds", body, idem))
    }

    fn get(st: &mut State, path: &str) -> Value {
        let (resp, v) = call(st, &req(hyper::Method::GET, path, "", None));
        assert_eq!(resp.status, 200, "{path}: {v}");
        v
    }

    fn events_of(st: &State, prefix: &str) -> Vec<Value> {
        st.event_order
            .iter()
            .filter_map(|id| st.events.get(id))
            .filter(|e| e.event_type.starts_with(prefix))
            .map(|e| e.json.clone())
            .collect()
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().filter_map(|e| e["type"].as_str()).collect()
    }

    fn txns_of_kind(st: &State, kind: &str) -> Vec<store::BalanceTxn> {
        st.balance_txns
            .iter()
            .filter(|t| t.kind == kind)
            .cloned()
            .collect()
    }

    #[test]
    fn partial_refunds_up_to_the_charge_then_already_refunded() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::Immediate);
        let (resp, r1) = refund(
            &mut st,
            &format!("payment_intent={pi}&amount=4000&reason=requested_by_customer&metadata[refund_id]=rf_1"),
            None,
        );
        assert_eq!(resp.status, 200, "{r1}");
        assert_eq!(r1["object"], "refund");
        assert!(r1["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("re_") && i.len() == 27));
        assert_eq!(r1["amount"], 4000);
        assert_eq!(r1["currency"], "usd");
        assert_eq!(r1["status"], "succeeded");
        assert_eq!(r1["reason"], "requested_by_customer");
        assert_eq!(r1["metadata"]["refund_id"], "rf_1");
        assert_eq!(r1["payment_intent"], pi.as_str());
        assert!(r1["charge"].as_str().is_some_and(|c| c.starts_with("ch_")));
        assert!(r1["balance_transaction"]
            .as_str()
            .is_some_and(|t| t.starts_with("txn_")));
        for k in [
            "failure_balance_transaction",
            "failure_reason",
            "destination_details",
            "receipt_number",
            "source_transfer_reversal",
            "transfer_reversal",
        ] {
            assert_eq!(r1[k], Value::Null, "{k}");
        }
        let (resp, r2) = refund(&mut st, &format!("payment_intent={pi}&amount=5999"), None);
        assert_eq!(resp.status, 200, "{r2}");
        let charge = r1["charge"].as_str().expect("charge").to_string();
        for body in [
            format!("payment_intent={pi}&amount=1"),
            format!("payment_intent={pi}"),
        ] {
            let (resp, e) = refund(&mut st, &body, None);
            assert_eq!(resp.status, 400);
            assert_eq!(e["error"]["type"], "invalid_request_error");
            assert_eq!(e["error"]["code"], "charge_already_refunded");
            assert_eq!(
                e["error"]["message"],
                format!("Charge {charge} has already been refunded.")
            );
        }
        assert_eq!(st.refunds.len(), 2);
        // The charge, also as the PaymentIntent's expanded latest_charge.
        let p = get(
            &mut st,
            &format!("/v1/payment_intents/{pi}?expand[]=latest_charge"),
        );
        let c = &p["latest_charge"];
        assert_eq!(
            (c["id"].as_str(), c["amount_refunded"].as_i64()),
            (Some(charge.as_str()), Some(9999))
        );
        assert_eq!(c["refunded"], true);
        assert_eq!(c["refunds"]["data"][0]["id"], r2["id"], "newest first");
        assert_eq!(get(&mut st, &format!("/v1/charges/{charge}")), *c);
        let l = get(&mut st, &format!("/v1/charges/{charge}/refunds?limit=1"));
        assert_eq!(
            (l["data"][0]["id"].clone(), l["has_more"].clone()),
            (r2["id"].clone(), json!(true))
        );
        // Lists and retrieval.
        let l = get(&mut st, &format!("/v1/refunds?payment_intent={pi}"));
        let ids: Vec<&Value> = l["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| &r["id"])
            .collect();
        assert_eq!(ids, [&r2["id"], &r1["id"]]);
        let l = get(
            &mut st,
            &format!(
                "/v1/refunds?charge={charge}&limit=1&starting_after={}",
                r2["id"].as_str().expect("id")
            ),
        );
        assert_eq!(l["data"][0]["id"], r1["id"]);
        assert_eq!(
            get(&mut st, "/v1/refunds?payment_intent=pi_other")["data"],
            json!([])
        );
        assert_eq!(
            get(
                &mut st,
                &format!("/v1/refunds/{}", r1["id"].as_str().expect("id"))
            ),
            r1
        );
        let (resp, e) = call(&mut st, &req(hyper::Method::GET, "/v1/refunds/re_nope", "", None));
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (404, Some("resource_missing"))
        );
        // Each refund emitted refund.created and charge.refunded, with the request that caused it.
        let ev = events_of(&st, "");
        assert_eq!(
            types(&ev),
            [
                "checkout.session.completed",
                "refund.created",
                "charge.refunded",
                "refund.created",
                "charge.refunded"
            ]
        );
        assert_eq!(ev[1]["request"]["id"], "req_unit");
        assert_eq!(ev[1]["data"]["object"], r1);
    }

    #[test]
    fn refund_above_what_is_left_names_amount() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::Immediate);
        assert_eq!(
            refund(&mut st, &format!("payment_intent={pi}&amount=5000"), None)
                .0
                .status,
            200
        );
        let (resp, e) = refund(&mut st, &format!("payment_intent={pi}&amount=5000"), None);
        assert_eq!(resp.status, 400);
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], "amount");
        assert_eq!(
            e["error"]["message"],
            "Refund amount (50.00 USD) is greater than unrefunded amount on charge (49.99 USD)"
        );
        // No amount: what is left.
        let (resp, r) = refund(&mut st, &format!("payment_intent={pi}"), None);
        assert_eq!((resp.status, r["amount"].as_i64()), (200, Some(4999)));
    }

    #[test]
    fn refund_requests_are_validated() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::Immediate);
        let (resp, e) = refund(&mut st, "payment_intent=pi_x", None);
        assert_eq!(resp.status, 404);
        assert_eq!(e["error"]["code"], "resource_missing");
        assert_eq!(e["error"]["param"], "payment_intent");
        assert_eq!(e["error"]["message"], "No such payment_intent: 'pi_x'");
        let cases = [
            (format!("payment_intent={pi}&reason=changed_mind"), "reason", None),
            (format!("payment_intent={pi}&amount=0"), "amount", None),
            (format!("payment_intent={pi}&amount=-5"), "amount", None),
            (
                format!("payment_intent={pi}&amount=1.5"),
                "amount",
                Some("parameter_invalid_integer"),
            ),
            (
                format!("payment_intent={pi}&bogus=1"),
                "bogus",
                Some("parameter_unknown"),
            ),
            (
                format!("payment_intent={pi}&metadata[{}]=v", "k".repeat(41)),
                "",
                None,
            ),
            (
                "amount=100".to_string(),
                "payment_intent",
                Some("parameter_missing"),
            ),
            (format!("payment_intent={pi}&charge=ch_1"), "charge", None),
        ];
        for (body, param, code) in cases {
            let (resp, e) = refund(&mut st, &body, None);
            assert_eq!(resp.status, 400, "{body}: {e}");
            assert_eq!(e["error"]["type"], "invalid_request_error", "{body}");
            if !param.is_empty() {
                assert_eq!(e["error"]["param"], param, "{body}: {e}");
            }
            assert_eq!(e["error"]["code"].as_str(), code, "{body}: {e}");
        }
        // A PaymentIntent that has not succeeded has nothing to refund.
        let (_, s) = call(
            &mut st,
            &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, None),
        );
        let open_pi = s["payment_intent"].as_str().expect("pi");
        let (resp, e) = refund(&mut st, &format!("payment_intent={open_pi}"), None);
        assert_eq!(resp.status, 400);
        assert_eq!(
            e["error"]["message"],
            "This PaymentIntent does not have a successful charge to refund."
        );
        assert!(st.refunds.is_empty());
    }

    #[test]
    fn refund_idempotent_replay_and_mismatch() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::Immediate);
        let body = format!("payment_intent={pi}&amount=1000&metadata[refund_id]=rf_1");
        let (first, v1) = refund(&mut st, &body, Some("rf_1"));
        assert_eq!(first.status, 200, "{v1}");
        let (again, _) = refund(&mut st, &body, Some("rf_1"));
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body, "byte-identical replay");
        assert!(again
            .headers
            .iter()
            .any(|(k, v)| k == "Idempotent-Replayed" && v == "true"));
        assert_eq!(st.refunds.len(), 1, "one refund only");
        assert_eq!(types(&events_of(&st, "refund.")), ["refund.created"]);
        let (bad, e) = refund(&mut st, &body.replace("1000", "2000"), Some("rf_1"));
        assert_eq!(bad.status, 400);
        assert_eq!(e["error"]["type"], "idempotency_error");
        assert_eq!(st.refunds.len(), 1);
        // The event carries the key of the request that caused it.
        assert_eq!(
            events_of(&st, "refund.created")[0]["request"]["idempotency_key"],
            "rf_1"
        );
    }

    #[test]
    fn card_7726_refunds_start_pending_then_succeed() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::PendingThenSucceeded);
        let (resp, r) = refund(&mut st, &format!("payment_intent={pi}&amount=3000"), None);
        assert_eq!(resp.status, 200, "{r}");
        assert_eq!(r["status"], "pending");
        assert_eq!(r["balance_transaction"], Value::Null);
        assert!(txns_of_kind(&st, "refund").is_empty());
        assert_eq!(
            types(&events_of(&st, "")),
            ["checkout.session.completed", "refund.created"]
        );
        // A pending refund counts against what is left.
        let (resp, e) = refund(&mut st, &format!("payment_intent={pi}&amount=7000"), None);
        assert_eq!((resp.status, e["error"]["param"].as_str()), (400, Some("amount")));
        // Not due yet: nothing moves.
        assert_eq!(st.settle_due_refunds(store::now_ms()), 0);
        assert_eq!(
            st.refunds[r["id"].as_str().expect("id")].status.as_str(),
            "pending"
        );
        assert_eq!(st.settle_due_refunds(store::now_ms() + 60_000), 1);
        let id = r["id"].as_str().expect("id");
        let now = get(&mut st, &format!("/v1/refunds/{id}"));
        assert_eq!(now["status"], "succeeded");
        let txn = txns_of_kind(&st, "refund").pop().expect("refund txn");
        assert_eq!(now["balance_transaction"], txn.id.as_str());
        assert_eq!(
            (txn.amount, txn.fee, txn.net, txn.source.as_str()),
            (-3000, 0, -3000, id)
        );
        let ev = events_of(&st, "");
        assert_eq!(
            types(&ev),
            [
                "checkout.session.completed",
                "refund.created",
                "refund.updated",
                "charge.refunded"
            ]
        );
        assert_eq!(ev[1]["request"]["id"], "req_unit");
        assert_eq!(
            ev[2]["request"]["id"],
            Value::Null,
            "the timer is nobody's request"
        );
        assert_eq!(ev[2]["data"]["object"]["status"], "succeeded");
        assert_eq!(ev[3]["data"]["object"]["amount_refunded"], 3000);
        assert_eq!(st.settle_due_refunds(i64::MAX), 0, "moved once");
    }

    #[test]
    fn card_5126_refunds_succeed_then_fail() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::SucceededThenFailed);
        let (resp, r) = refund(&mut st, &format!("payment_intent={pi}"), None);
        assert_eq!(resp.status, 200, "{r}");
        assert_eq!(
            (r["status"].as_str(), r["amount"].as_i64()),
            (Some("succeeded"), Some(9999))
        );
        let refund_txn = txns_of_kind(&st, "refund").pop().expect("refund txn");
        assert_eq!(r["balance_transaction"], refund_txn.id.as_str());
        assert_eq!(refund_txn.amount, -9999);
        assert_eq!(
            types(&events_of(&st, "")),
            ["checkout.session.completed", "refund.created", "charge.refunded"]
        );
        assert_eq!(
            refund(&mut st, &format!("payment_intent={pi}"), None).0.status,
            400
        );
        assert_eq!(st.settle_due_refunds(store::now_ms() + 60_000), 1);
        let id = r["id"].as_str().expect("id");
        let now = get(&mut st, &format!("/v1/refunds/{id}"));
        assert_eq!(now["status"], "failed");
        assert_eq!(now["failure_reason"], "expired_or_canceled_card");
        assert_eq!(now["balance_transaction"], refund_txn.id.as_str());
        let failure = txns_of_kind(&st, "refund_failure")
            .pop()
            .expect("refund_failure txn");
        assert_eq!(now["failure_balance_transaction"], failure.id.as_str());
        assert_eq!(
            (failure.amount, failure.fee, failure.net, failure.source.as_str()),
            (9999, 0, 9999, id)
        );
        let ev = events_of(&st, "refund.");
        assert_eq!(types(&ev), ["refund.created", "refund.updated", "refund.failed"]);
        assert_eq!(ev[2]["data"]["object"]["status"], "failed");
        assert_eq!(ev[2]["request"]["id"], Value::Null);
        // The failed amount is unrefunded again.
        let p = get(
            &mut st,
            &format!("/v1/payment_intents/{pi}?expand[]=latest_charge"),
        );
        assert_eq!(p["latest_charge"]["amount_refunded"], 0);
        assert_eq!(p["latest_charge"]["refunded"], false);
        // Balance transactions by type and source, as the API lists them.
        let l = get(&mut st, "/v1/balance_transactions?type=refund_failure");
        assert_eq!(l["data"][0]["id"], failure.id.as_str());
        assert_eq!(l["data"][0]["reporting_category"], "refund_failure");
        assert_eq!(l["data"].as_array().map(Vec::len), Some(1));
        let l = get(&mut st, &format!("/v1/balance_transactions?source={id}"));
        assert_eq!(l["data"].as_array().map(Vec::len), Some(2));
        let l = get(&mut st, "/v1/balance_transactions?type=refund");
        assert_eq!(
            (
                l["data"][0]["amount"].as_i64(),
                l["data"][0]["fee_details"].clone()
            ),
            (Some(-9999), json!([]))
        );
        let l = get(&mut st, "/v1/balance_transactions?type=charge");
        assert_eq!(l["data"][0]["amount"], 9999);
        assert_eq!(l["data"][0]["source"], r["charge"]);
    }

    #[test]
    fn charge_refunded_lists_every_refund() {
        let mut st = State::new("whsec_x".into());
        st.endpoints.push(Endpoint {
            id: "we_1".into(),
            created: 0,
            url: "http://127.0.0.1:9/hook".into(),
            enabled_events: vec!["charge.refunded".into()],
            description: None,
            metadata: BTreeMap::new(),
            api_version: None,
            secret: "whsec_x".into(),
        });
        let pi = paid(&mut st, RefundFlow::Immediate);
        let (_, r1) = refund(&mut st, &format!("payment_intent={pi}&amount=100"), None);
        let (_, r2) = refund(
            &mut st,
            &format!("payment_intent={pi}&amount=200&reason=duplicate"),
            None,
        );
        let ev = events_of(&st, "charge.refunded");
        assert_eq!(ev.len(), 2);
        let c = &ev[1]["data"]["object"];
        assert_eq!(c["object"], "charge");
        assert_eq!(c["id"], r1["charge"]);
        assert_eq!(
            (c["amount"].as_i64(), c["amount_captured"].as_i64()),
            (Some(9999), Some(9999))
        );
        assert_eq!(c["amount_refunded"], 300);
        assert_eq!(c["refunded"], false);
        assert_eq!(c["status"], "succeeded");
        assert_eq!(c["payment_intent"], pi.as_str());
        assert_eq!(c["currency"], "usd");
        let list = &c["refunds"];
        assert_eq!(list["object"], "list");
        assert_eq!(list["has_more"], false);
        assert_eq!(
            list["url"],
            format!("/v1/charges/{}/refunds", r1["charge"].as_str().expect("ch"))
        );
        assert_eq!(list["data"], json!([r2, r1]));
        // Only charge.refunded was wanted: one delivery per charge.refunded event.
        assert!(st.outbox.iter().all(|j| j.event_type == "charge.refunded"));
        assert_eq!(st.outbox.len(), 2);
        // Endpoints may subscribe to the refund events.
        let (resp, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/webhook_endpoints",
                "url=http://127.0.0.1:9/h&enabled_events[]=refund.created&enabled_events[]=refund.updated\
&enabled_events[]=refund.failed&enabled_events[]=charge.refunded",
                None,
            ),
        );
        assert_eq!(resp.status, 200);
    }

    /// Fault `drop_sessions`: every event of the session (its own, its PaymentIntent's, its
    /// charge's) is recorded but never delivered, and stays `delivery_success=false`; another
    /// session's are sent. The faults reset clears it.
    #[test]
    fn a_dropped_sessions_events_are_never_delivered() {
        let mut st = State::new("whsec_x".into());
        let (resp, _) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/webhook_endpoints",
                "url=http%3A%2F%2F127.0.0.1%3A9%2Fhook&enabled_events[]=*",
                None,
            ),
        );
        assert_eq!(resp.status, 200);
        let (_, s1) = call(
            &mut st,
            &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, None),
        );
        let (_, s2) = call(
            &mut st,
            &req(hyper::Method::POST, "/v1/checkout/sessions", BODY, None),
        );
        let (cs1, cs2) = (s1["id"].as_str().unwrap(), s2["id"].as_str().unwrap());
        let pi1 = s1["payment_intent"].as_str().unwrap().to_string();
        let fault: crate::faults::FaultRequest =
            serde_json::from_value(json!({"webhooks": {"drop_sessions": [cs1]}})).expect("fault");
        st.faults.apply(fault).expect("ok");
        assert_eq!(st.faults.describe()["webhooks"]["drop_sessions"], json!([cs1]));
        crate::page::pay(
            &mut st,
            cs1,
            CardOutcome::Declined {
                decline_code: "generic_decline",
                message: "Your card was declined.",
            },
            "http://x",
        );
        crate::page::pay(
            &mut st,
            cs1,
            CardOutcome::Success(RefundFlow::Immediate, store::Funds::Pending),
            "http://x",
        );
        let (resp, _) = refund(&mut st, &format!("payment_intent={pi1}&amount=100"), None);
        assert_eq!(resp.status, 200);
        crate::page::pay(
            &mut st,
            cs2,
            CardOutcome::Success(RefundFlow::Immediate, store::Funds::Pending),
            "http://x",
        );
        let sent: Vec<&str> = st.outbox.iter().map(|j| j.event_type.as_str()).collect();
        // The refund's own events are not the session's: only charge.refunded is dropped.
        assert_eq!(sent, ["refund.created", "checkout.session.completed"]);
        let (_, undelivered) = call(
            &mut st,
            &req(
                hyper::Method::GET,
                "/v1/events?delivery_success=false&limit=100",
                "",
                None,
            ),
        );
        let types: Vec<&str> = undelivered["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["pending_webhooks"] == 1)
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert!(types.contains(&"payment_intent.payment_failed"), "{types:?}");
        assert!(types.contains(&"checkout.session.completed"));
        assert!(types.contains(&"charge.refunded"));
        let dropped = st
            .deliveries
            .iter()
            .filter(|d| d["error"].as_str().is_some_and(|e| e.contains("drop_sessions")))
            .count();
        assert_eq!(dropped, 3);
        st.faults.reset();
        assert!(st.faults.drop_sessions.is_empty());
    }

    /// `GET /v1/balance`: the platform's available and pending net amounts per currency; with
    /// `Stripe-Account` the connected account's.
    #[test]
    fn balance_of_the_platform_and_of_a_connected_account() {
        let mut st = State::new("whsec_unit".into());
        let (_, b) = call(&mut st, &req(hyper::Method::GET, "/v1/balance", "", None));
        assert_eq!(
            b,
            json!({"object": "balance", "available": [], "pending": [], "livemode": false})
        );
        paid_with(&mut st, RefundFlow::Immediate, store::Funds::Available);
        paid(&mut st, RefundFlow::Immediate);
        let acct = account(&mut st);
        let body = format!("amount=1000&currency=usd&destination={acct}");
        let (resp, _) = call(&mut st, &req(hyper::Method::POST, "/v1/transfers", &body, None));
        assert_eq!(resp.status, 200);
        let net = 9999 - store::fee_for(9999, "usd");
        let (_, b) = call(&mut st, &req(hyper::Method::GET, "/v1/balance", "", None));
        assert_eq!(b["object"], "balance");
        assert_eq!(
            b["available"],
            json!([{"amount": net - 1000, "currency": "usd", "source_types": {"card": net - 1000}}])
        );
        assert_eq!(b["pending"][0]["amount"], net);
        let (_, b) = get_as(&mut st, &acct, "/v1/balance");
        assert_eq!(b["available"][0]["amount"], 1000);
        assert_eq!(b["pending"][0]["amount"], 0);
        let (status, _) = get_as(&mut st, "acct_nope", "/v1/balance");
        assert_eq!(status, 403);
    }

    /// The platform pays out of its available balance to its own bank (no `Stripe-Account`):
    /// a `payout` row on its ledger (category `payout`), paid on the clock or failed by the
    /// admin, which writes a `payout_failure` (category `payout_reversal`) and gives it back.
    #[test]
    fn the_platform_pays_out_to_its_own_bank() {
        let mut st = State::new("whsec_unit".into());
        st.payout_settle_ms = 3_600_000;
        paid_with(&mut st, RefundFlow::Immediate, store::Funds::Available);
        paid(&mut st, RefundFlow::Immediate);
        let available = st.platform_available("usd");
        let body = format!("amount={}&currency=usd", available + 1);
        let (resp, e) = call(&mut st, &req(hyper::Method::POST, "/v1/payouts", &body, None));
        assert_eq!(
            (resp.status, e["error"]["code"].as_str()),
            (400, Some("balance_insufficient"))
        );
        let (resp, p) = call(
            &mut st,
            &req(
                hyper::Method::POST,
                "/v1/payouts",
                "amount=5000&currency=usd&metadata[k]=v",
                None,
            ),
        );
        assert_eq!(resp.status, 200, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        assert_eq!(
            (p["status"].as_str(), p["automatic"].as_bool()),
            (Some("pending"), Some(false))
        );
        assert_eq!(st.platform_available("usd"), available - 5000);
        let txn = st.balance_txns.back().unwrap().clone();
        assert_eq!(
            (txn.kind, txn.amount, txn.source.as_str()),
            (store::TXN_PAYOUT, -5000, id.as_str())
        );
        assert_eq!(p["balance_transaction"], txn.id.as_str());
        let ev = st
            .events
            .values()
            .find(|e| e.event_type == "payout.created")
            .unwrap();
        assert_eq!(ev.json["account"], Value::Null);
        let (status, got) = {
            let (r, v) = call(
                &mut st,
                &req(hyper::Method::GET, &format!("/v1/payouts/{id}"), "", None),
            );
            (r.status, v)
        };
        assert_eq!((status, got["id"].as_str()), (200, Some(id.as_str())));
        let listed = get(&mut st, &format!("/v1/balance_transactions?payout={id}"));
        assert_eq!(listed["data"][0]["id"], txn.id.as_str());
        assert_eq!(listed["data"][0]["reporting_category"], "payout");
        // The admin fails it in transit: the money comes back as a payout_failure.
        st.move_payout(
            &id,
            crate::connect::PayoutStatus::InTransit,
            None,
            &Cause::default(),
        )
        .expect("in transit");
        st.move_payout(
            &id,
            crate::connect::PayoutStatus::Failed,
            Some("could_not_process"),
            &Cause::default(),
        )
        .expect("failed");
        assert_eq!(st.platform_available("usd"), available);
        let back = st.balance_txns.back().unwrap();
        assert_eq!((back.kind, back.amount), (store::TXN_PAYOUT_FAILURE, 5000));
        assert_eq!(store::reporting_category(back.kind), "payout_reversal");
        let csv = crate::reports::settlement_csv(&st, 0, i64::MAX);
        assert!(
            csv.contains(&format!(",usd,-50.00,0.00,-50.00,payout,{id},")),
            "{csv}"
        );
        assert!(
            csv.contains(&format!(",usd,50.00,0.00,50.00,payout_reversal,{id},")),
            "{csv}"
        );
        // A connected account's payout ids are not the platform's.
        let (resp, _) = call(&mut st, &req(hyper::Method::GET, "/v1/payouts/po_nope", "", None));
        assert_eq!(resp.status, 404);
    }

    #[test]
    fn fault_injection_covers_refunds() {
        let mut st = State::new("whsec_x".into());
        let pi = paid(&mut st, RefundFlow::Immediate);
        st.faults.api_fail_next = 1;
        st.faults.api_fail_status = 503;
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let app = Arc::new(App {
            cfg: crate::Config {
                port: 0,
                secret_key: KEY.into(),
                webhook_secret: "whsec_x".into(),
                public_url: "http://127.0.0.1:4000".into(),
                webhook_retry_base_ms: 1000,
                webhook_attempts_max: 1,
                webhook_timeout_ms: 1000,
                refund_settle_ms: 1000,
                payout_settle_ms: 1000,
                report_run_ms: 300,
                exit_on_stdin_eof: false,
            },
            state: std::sync::Mutex::new(st),
            jobs: tx,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let body = format!("payment_intent={pi}&amount=100");
        let r = req(hyper::Method::POST, "/v1/refunds", &body, Some("rf_1"));
        let failed = rt.block_on(handle(&app, r, "req_1"));
        assert_eq!(failed.status, 503);
        assert!(app.lock().refunds.is_empty(), "nothing changed");
        let r = req(hyper::Method::POST, "/v1/refunds", &body, Some("rf_1"));
        let ok = rt.block_on(handle(&app, r, "req_2"));
        assert_eq!(ok.status, 200, "the key was not used up by the fault");
        assert_eq!(app.lock().refunds.len(), 1);
        let log: Vec<Value> = app.lock().requests.iter().cloned().collect();
        assert_eq!(log[0]["fault"], "fail_next");
        assert_eq!(log[1]["status"], 200);
    }
}
