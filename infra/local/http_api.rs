//! The HTTP API: routes from the template's `HttpApi` events, requests turned into API Gateway
//! HTTP API payload format 2.0 events, and the functions' 2.0 responses turned back into HTTP.

use crate::queues::Queues;
use crate::runtime::{collect, Body, InvokeError, Pool};
use crate::template::{FunctionSpec, ACCOUNT_ID};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, SET_COOKIE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// API Gateway's payload limit.
pub const REQUEST_BYTES_MAX: usize = 10 * 1024 * 1024;
pub const API_ID: &str = "local";
/// HTTP APIs give up on an integration after 30 s (queueing for an instance included).
pub const INTEGRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// None = ANY
    method: Option<String>,
    segments: Vec<Seg>,
    is_default: bool,
    pub route_key: String,
    pub function: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub route: &'a Route,
    pub params: Vec<(String, String)>,
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.route_key == other.route_key && self.function == other.function
    }
}
impl Eq for Route {}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn parse_path(path: &str) -> Vec<Seg> {
    path.trim_start_matches('/')
        .split('/')
        .map(|s| {
            if let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                match inner.strip_suffix('+') {
                    Some(name) => Seg::Greedy(name.to_string()),
                    None => Seg::Param(inner.to_string()),
                }
            } else {
                Seg::Lit(s.to_string())
            }
        })
        .collect()
}

impl Router {
    pub fn new(functions: &[FunctionSpec]) -> Result<Self, String> {
        let mut routes: Vec<Route> = Vec::new();
        for f in functions {
            for r in &f.routes {
                let is_default = r.path == "$default";
                let segments = if is_default {
                    Vec::new()
                } else {
                    parse_path(&r.path)
                };
                if let Some(pos) = segments.iter().position(|s| matches!(s, Seg::Greedy(_))) {
                    if pos + 1 != segments.len() {
                        return Err(format!(
                            "{}: greedy path variable must be last in {}",
                            f.logical_id, r.path
                        ));
                    }
                }
                let route = Route {
                    method: (r.method != "ANY").then(|| r.method.clone()),
                    segments,
                    is_default,
                    route_key: r.route_key(),
                    function: f.logical_id.clone(),
                };
                if let Some(dup) = routes.iter().find(|x| x.route_key == route.route_key) {
                    return Err(format!(
                        "route {} is declared by both {} and {}",
                        route.route_key, dup.function, route.function
                    ));
                }
                routes.push(route);
            }
        }
        Ok(Router { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for a request (API Gateway's rules: literal segments beat path
    /// variables, which beat greedy variables; a method beats ANY; `$default` comes last).
    pub fn find(&self, method: &str, raw_path: &str) -> Option<Match<'_>> {
        let req: Vec<&str> = raw_path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(Vec<u8>, Match<'_>)> = None;
        for route in &self.routes {
            if let Some(m) = &route.method {
                if m != method {
                    continue;
                }
            }
            let Some(params) = match_segments(&route.segments, &req, route.is_default) else {
                continue;
            };
            let mut rank = vec![u8::from(route.is_default)];
            rank.push(u8::from(
                route.segments.iter().any(|s| matches!(s, Seg::Greedy(_))),
            ));
            rank.extend(route.segments.iter().map(|s| match s {
                Seg::Lit(_) => 0,
                Seg::Param(_) => 1,
                Seg::Greedy(_) => 2,
            }));
            rank.push(u8::from(route.method.is_none()));
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, Match { route, params }));
            }
        }
        best.map(|(_, m)| m)
    }
}

fn match_segments(segs: &[Seg], req: &[&str], is_default: bool) -> Option<Vec<(String, String)>> {
    if is_default {
        return Some(Vec::new());
    }
    let mut params = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Greedy(name) => {
                let rest = req.get(i..)?.join("/");
                if rest.is_empty() {
                    return None;
                }
                params.push((name.clone(), percent_decode(&rest)));
                return Some(params);
            }
            Seg::Lit(lit) => {
                if req.get(i)? != lit {
                    return None;
                }
            }
            Seg::Param(name) => {
                let v = req.get(i)?;
                if v.is_empty() {
                    return None;
                }
                params.push((name.clone(), percent_decode(v)));
            }
        }
    }
    (segs.len() == req.len()).then_some(params)
}

// --- payload format 2.0 ------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventV2<'a> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<Vec<String>>,
    headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string_parameters: Option<BTreeMap<String, String>>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_parameters: Option<BTreeMap<String, String>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    account_id: &'static str,
    api_id: &'static str,
    domain_name: String,
    domain_prefix: String,
    http: HttpContext<'a>,
    request_id: &'a str,
    route_key: &'a str,
    stage: &'static str,
    time: String,
    time_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpContext<'a> {
    method: &'a str,
    path: String,
    protocol: &'static str,
    source_ip: String,
    user_agent: String,
}

/// The pieces of an HTTP request that go into the event.
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a hyper::HeaderMap,
    pub body: &'a [u8],
    pub source: SocketAddr,
    pub local_port: u16,
    pub request_id: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
}

pub fn build_event(m: &Match<'_>, r: &RequestParts<'_>) -> Vec<u8> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in r.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        if name.as_str() == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let source_ip = r.source.ip().to_string();
    headers
        .entry("x-forwarded-for".into())
        .or_insert_with(|| source_ip.clone());
    headers
        .entry("x-forwarded-port".into())
        .or_insert_with(|| r.local_port.to_string());
    headers
        .entry("x-forwarded-proto".into())
        .or_insert_with(|| "http".into());
    if !r.body.is_empty() {
        headers
            .entry("content-length".into())
            .or_insert_with(|| r.body.len().to_string());
    }

    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for pair in r.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query
            .entry(percent_decode(k))
            .and_modify(|x| {
                x.push(',');
                x.push_str(&percent_decode(v));
            })
            .or_insert_with(|| percent_decode(v));
    }

    let domain_name = headers
        .get("host")
        .cloned()
        .unwrap_or_else(|| format!("localhost:{}", r.local_port));
    let host_only = domain_name.split(':').next().unwrap_or_default();
    let domain_prefix = if host_only.parse::<std::net::IpAddr>().is_ok() {
        host_only.to_string()
    } else {
        host_only.split('.').next().unwrap_or_default().to_string()
    };
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();

    let (body, is_base64_encoded) = if r.body.is_empty() {
        (None, false)
    } else {
        match std::str::from_utf8(r.body) {
            Ok(s) => (Some(s.to_string()), false),
            Err(_) => (Some(base64_encode(r.body)), true),
        }
    };

    let event = EventV2 {
        version: "2.0",
        route_key: &m.route.route_key,
        raw_path: r.raw_path,
        raw_query_string: r.raw_query,
        cookies: (!cookies.is_empty()).then_some(cookies),
        headers,
        query_string_parameters: (!query.is_empty()).then_some(query),
        request_context: RequestContext {
            account_id: ACCOUNT_ID,
            api_id: API_ID,
            domain_name,
            domain_prefix,
            http: HttpContext {
                method: r.method,
                path: percent_decode(r.raw_path),
                protocol: "HTTP/1.1",
                source_ip,
                user_agent,
            },
            request_id: r.request_id,
            route_key: &m.route.route_key,
            stage: "$default",
            time: r.now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            time_epoch: r.now.timestamp_millis(),
        },
        body,
        path_parameters: (!m.params.is_empty()).then(|| m.params.iter().cloned().collect()),
        is_base64_encoded,
    };
    serde_json::to_vec(&event).unwrap_or_default()
}

fn json_message(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &serde_json::json!({ "message": msg }))
}

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn header_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Turn a function's payload into the HTTP response, as API Gateway does for format 2.0.
pub fn build_response(payload: &[u8]) -> Response<Body> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return json_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let obj = match v.as_object() {
        Some(o) if o.contains_key("statusCode") => o,
        _ => {
            // Not the 2.0 response shape: the payload is the body of a 200 JSON response.
            let mut r = Response::new(Full::new(Bytes::copy_from_slice(payload)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return r;
        }
    };
    let status = obj
        .get("statusCode")
        .and_then(|s| match s {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .and_then(|n| u16::try_from(n).ok())
        .and_then(|n| StatusCode::from_u16(n).ok());
    let Some(status) = status else {
        return json_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let is_b64 = obj
        .get("isBase64Encoded")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let body = match obj.get("body") {
        None | Some(serde_json::Value::Null) => Bytes::new(),
        Some(serde_json::Value::String(s)) if is_b64 => match base64_decode(s) {
            Some(b) => Bytes::from(b),
            None => return json_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        },
        Some(serde_json::Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(headers) = obj.get("headers").and_then(serde_json::Value::as_object) {
        for (k, v) in headers {
            let (Ok(name), Some(val)) = (HeaderName::from_bytes(k.as_bytes()), header_text(v)) else {
                continue;
            };
            if let Ok(val) = HeaderValue::from_str(&val) {
                h.insert(name, val);
            }
        }
    }
    if let Some(multi) = obj
        .get("multiValueHeaders")
        .and_then(serde_json::Value::as_object)
    {
        for (k, vs) in multi {
            let Ok(name) = HeaderName::from_bytes(k.as_bytes()) else {
                continue;
            };
            // `headers` wins; a name only in multiValueHeaders gets all its values.
            if h.contains_key(&name) {
                continue;
            }
            for v in vs.as_array().map(Vec::as_slice).unwrap_or_default() {
                if let Some(val) = header_text(v).and_then(|s| HeaderValue::from_str(&s).ok()) {
                    h.append(name.clone(), val);
                }
            }
        }
    }
    if let Some(cookies) = obj.get("cookies").and_then(serde_json::Value::as_array) {
        for c in cookies {
            if let Some(val) = c.as_str().and_then(|s| HeaderValue::from_str(s).ok()) {
                h.append(SET_COOKIE, val);
            }
        }
    }
    // The body's real length, whatever the function claimed.
    h.remove(CONTENT_LENGTH);
    resp
}

// --- server ------------------------------------------------------------------------------------

/// The template's HTTP API.
pub struct Api {
    pub router: Router,
    pub pool: Arc<Pool>,
    pub local_port: u16,
    /// A request whose body has not arrived in full by then is answered 408 and dropped.
    pub body_read_timeout: std::time::Duration,
}

/// Slow clients: headers must arrive within this (also how long an idle keep-alive
/// connection stays open), bodies within `Api::body_read_timeout`.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The header a control request must carry. A web page cannot send it cross-site without a
/// preflight the twin never answers, so a page open on the developer's machine cannot stop
/// DynamoDB or switch mappings.
pub const CONTROL_HEADER: &str = "x-twin-control";

/// The twin's own endpoints, on a port of their own (`TWIN_CONTROL_PORT`), so they can never
/// shadow a template route:
/// - `GET /__twin/queues`: messages visible, in flight and delayed per queue;
/// - `GET /__twin/event-sources`; `POST /__twin/event-sources/{Function}/enable|disable|rewind|skip`
///   (AWS's `UpdateEventSourceMapping --enabled/--no-enabled`, and a stream mapping
///   re-created at `TRIM_HORIZON` or at `LATEST`);
/// - `POST /__twin/functions/{Function}/kill`: kills the function's running instances, as a
///   crash would (the invocations they hold fail);
/// - `POST /__twin/dynamodb/stop|start`: an outage drill (needs `--data-dir`);
/// - `GET /__twin/schedules`; `POST /__twin/schedules/{Function}/{Event}/fire|pause|resume`
///   (see `Schedules::handle`; a fire's optional JSON body is the event to invoke with);
/// - `GET /__twin/buckets`: each bucket's logical id, physical name and notifications.
pub struct ControlApi {
    pub pool: Arc<Pool>,
    pub queues: Arc<Queues>,
    pub controls: Arc<crate::control::Controls>,
    pub schedules: Arc<crate::schedules::Schedules>,
    pub dynamodb: Arc<crate::services::DynamoDb>,
    pub buckets: Arc<crate::buckets::Buckets>,
}

/// Something `serve` hands each request to.
pub trait Service: Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Incoming>,
        source: SocketAddr,
    ) -> impl std::future::Future<Output = Response<Body>> + Send;
}

/// A control request from a browser page (it has an `Origin`) or without the control header
/// is refused.
pub fn control_refusal(headers: &hyper::HeaderMap, header: &str) -> Option<String> {
    if headers.contains_key(hyper::header::ORIGIN) {
        return Some("control requests from web pages are refused".into());
    }
    if !headers.contains_key(header) {
        return Some(format!("control requests must carry the {header} header"));
    }
    None
}

impl Service for ControlApi {
    async fn handle(&self, req: Request<Incoming>, _source: SocketAddr) -> Response<Body> {
        if let Some(why) = control_refusal(req.headers(), CONTROL_HEADER) {
            return json_message(StatusCode::FORBIDDEN, &why);
        }
        let method = req.method().as_str().to_owned();
        let path = req.uri().path().to_owned();
        match (method.as_str(), path.as_str()) {
            ("GET", "/__twin/queues") => json_response(StatusCode::OK, &self.queues.stats().await),
            ("GET", "/__twin/event-sources") => json_response(StatusCode::OK, &self.controls.describe()),
            ("GET", "/__twin/buckets") => json_response(StatusCode::OK, &self.buckets.describe()),
            ("POST", "/__twin/dynamodb/stop") => match self.dynamodb.stop().await {
                Ok(()) => json_response(StatusCode::OK, &serde_json::json!({"dynamodb": "stopped"})),
                Err(e) => json_message(StatusCode::CONFLICT, &e),
            },
            ("POST", "/__twin/dynamodb/start") => match self.dynamodb.restart().await {
                Ok(took) => json_response(
                    StatusCode::OK,
                    &serde_json::json!({"dynamodb": "running", "start_ms": took.as_millis() as u64}),
                ),
                Err(e) => json_message(StatusCode::SERVICE_UNAVAILABLE, &e),
            },
            ("POST", p) if p.starts_with("/__twin/functions/") && p.ends_with("/kill") => {
                let function = &p["/__twin/functions/".len()..p.len() - "/kill".len()];
                match self.pool.kill(function) {
                    Some(killed) => json_response(
                        StatusCode::OK,
                        &serde_json::json!({"function": function, "killed": killed}),
                    ),
                    None => json_message(StatusCode::NOT_FOUND, &format!("no function {function}")),
                }
            }
            (m, p) if p == "/__twin/schedules" || p.starts_with("/__twin/schedules/") => {
                // A fire may carry the event to invoke with, as `aws lambda invoke --payload`
                // (a synchronous invocation's 6 MB limit).
                let body = match collect(req.into_body(), crate::schedules::FIRE_PAYLOAD_MAX).await {
                    Ok(b) => b,
                    Err(true) => {
                        return json_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
                    }
                    Err(false) => return json_message(StatusCode::BAD_REQUEST, "Bad Request"),
                };
                match self.schedules.handle(m, p, &body).await {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err((code, msg)) => json_message(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                        &msg,
                    ),
                }
            }
            ("POST", p) if p.starts_with("/__twin/event-sources/") => {
                let rest = &p["/__twin/event-sources/".len()..];
                let Some((function, action)) = rest.split_once('/') else {
                    return json_message(StatusCode::NOT_FOUND, "Not Found");
                };
                match self.controls.apply(function, action).await {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err((code, msg)) => json_message(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                        &msg,
                    ),
                }
            }
            _ => json_message(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

impl Service for Api {
    async fn handle(&self, req: Request<Incoming>, source: SocketAddr) -> Response<Body> {
        let now = chrono::Utc::now();
        let method = req.method().as_str().to_string();
        let raw_path = req.uri().path().to_string();
        let raw_query = req.uri().query().unwrap_or_default().to_string();
        let Some(m) = self.router.find(&method, &raw_path) else {
            return json_message(StatusCode::NOT_FOUND, "Not Found");
        };
        let too_large = || json_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > REQUEST_BYTES_MAX as u64) {
            return too_large();
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(self.body_read_timeout, collect(body, REQUEST_BYTES_MAX)).await
        {
            Ok(Ok(b)) => b,
            Ok(Err(true)) => return too_large(),
            Ok(Err(false)) => return json_message(StatusCode::BAD_REQUEST, "Bad Request"),
            Err(_) => {
                let mut resp = json_message(StatusCode::REQUEST_TIMEOUT, "Request Timeout");
                resp.headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                return resp;
            }
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = build_event(
            &m,
            &RequestParts {
                method: &method,
                raw_path: &raw_path,
                raw_query: &raw_query,
                headers: &parts.headers,
                body: &body,
                source,
                local_port: self.local_port,
                request_id: &request_id,
                now,
            },
        );
        let invocation = self.pool.invoke_bytes(&m.route.function, event.into());
        let outcome = tokio::time::timeout(INTEGRATION_TIMEOUT, invocation)
            .await
            .unwrap_or(Err(InvokeError::Timeout(INTEGRATION_TIMEOUT.as_secs())));
        let mut resp = match outcome {
            Ok(payload) => build_response(&payload),
            Err(InvokeError::Timeout(_)) => {
                json_message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
            }
            Err(e) => {
                eprintln!("twin: {} {}: {e}", m.route.route_key, m.route.function);
                json_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("apigw-requestid", v);
        }
        resp
    }
}

/// Serves `api` until the task is aborted; a connection whose request headers do not arrive
/// within `header_read_timeout` is closed.
pub async fn serve<S: Service>(listener: TcpListener, api: Arc<S>, header_read_timeout: std::time::Duration) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, source)) => {
                    let _ = stream.set_nodelay(true);
                    let api = Arc::clone(&api);
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let api = Arc::clone(&api);
                            async move { Ok::<_, Infallible>(api.handle(req, source).await) }
                        });
                        let _ = http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(header_read_timeout)
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

// --- small codecs ------------------------------------------------------------------------------

/// Decode `%XX` escapes (invalid escapes are kept as they are; `+` stays `+`).
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = match chunk.len() {
            3 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]),
            2 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8,
            _ => u32::from(chunk[0]) << 16,
        };
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' => continue,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{FunctionSpec, RouteSpec};

    fn f(id: &str, routes: &[(&str, &str)]) -> FunctionSpec {
        FunctionSpec {
            logical_id: id.into(),
            function_name: id.into(),
            binary: id.into(),
            handler: "bootstrap".into(),
            timeout_secs: 3,
            memory_mb: 128,
            environment: Default::default(),
            routes: routes
                .iter()
                .map(|(m, p)| RouteSpec {
                    method: m.to_string(),
                    path: p.to_string(),
                })
                .collect(),
            event_sources: Vec::new(),
            schedules: Vec::new(),
        }
    }

    fn router() -> Router {
        Router::new(&[
            f("Create", &[("POST", "/v1/payments")]),
            f("Get", &[("GET", "/v1/payments/{id}")]),
            f("Special", &[("GET", "/v1/payments/special")]),
            f("AnyPay", &[("ANY", "/v1/payments/{id}")]),
            f("Proxy", &[("ANY", "/v1/{proxy+}")]),
            f("Fallback", &[("ANY", "$default")]),
        ])
        .expect("router")
    }

    fn hit(r: &Router, m: &str, p: &str) -> Option<(String, Vec<(String, String)>)> {
        r.find(m, p).map(|x| (x.route.function.clone(), x.params.clone()))
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router();
        assert_eq!(
            hit(&r, "POST", "/v1/payments").map(|x| x.0),
            Some("Create".into())
        );
        assert_eq!(
            hit(&r, "GET", "/v1/payments/po_1"),
            Some(("Get".into(), vec![("id".into(), "po_1".into())]))
        );
        assert_eq!(
            hit(&r, "GET", "/v1/payments/special").map(|x| x.0),
            Some("Special".into())
        );
        assert_eq!(
            hit(&r, "DELETE", "/v1/payments/po_1").map(|x| x.0),
            Some("AnyPay".into())
        );
        assert_eq!(
            hit(&r, "GET", "/v1/a/b%20c/d"),
            Some(("Proxy".into(), vec![("proxy".into(), "a/b c/d".into())]))
        );
        assert_eq!(hit(&r, "GET", "/other").map(|x| x.0), Some("Fallback".into()));
    }

    #[test]
    fn no_route_is_none() {
        let r = Router::new(&[
            f("Create", &[("POST", "/v1/payments")]),
            f("Get", &[("GET", "/v1/payments/{id}")]),
        ])
        .expect("router");
        assert!(r.find("GET", "/v1/payments").is_none());
        assert!(r.find("POST", "/v1/payments/").is_none());
        assert!(r.find("GET", "/v1/payments/a/b").is_none());
        assert!(r.find("GET", "/v1/payments/").is_none());
        assert!(r.find("GET", "/").is_none());
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let e = Router::new(&[f("A", &[("GET", "/x")]), f("B", &[("GET", "/x")])]);
        assert!(e.is_err());
    }

    #[test]
    fn event_has_the_v2_shape() {
        let r = router();
        let m = r.find("GET", "/v1/payments/po%201").expect("match");
        let mut headers = hyper::HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:3000"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.insert("cookie", HeaderValue::from_static("c1=v1; c2=v2"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T08:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        let ev = build_event(
            &m,
            &RequestParts {
                method: "GET",
                raw_path: "/v1/payments/po%201",
                raw_query: "a=1&a=2&b=x%2By&flag",
                headers: &headers,
                body: &[0xff, 0x00],
                source: "127.0.0.1:5555".parse().expect("addr"),
                local_port: 3000,
                request_id: "rid",
                now,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&ev).expect("json");
        assert_eq!(v["version"], "2.0");
        assert_eq!(v["routeKey"], "GET /v1/payments/{id}");
        assert_eq!(v["rawPath"], "/v1/payments/po%201");
        assert_eq!(v["rawQueryString"], "a=1&a=2&b=x%2By&flag");
        assert_eq!(v["cookies"], serde_json::json!(["c1=v1", "c2=v2"]));
        assert_eq!(v["headers"]["x-multi"], "a,b");
        assert!(v["headers"].get("cookie").is_none());
        assert_eq!(v["queryStringParameters"]["a"], "1,2");
        assert_eq!(v["queryStringParameters"]["b"], "x+y");
        assert_eq!(v["queryStringParameters"]["flag"], "");
        assert_eq!(v["pathParameters"]["id"], "po 1");
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["body"], "/wA=");
        let rc = &v["requestContext"];
        assert_eq!(rc["accountId"], "000000000000");
        assert_eq!(rc["apiId"], "local");
        assert_eq!(rc["stage"], "$default");
        assert_eq!(rc["routeKey"], "GET /v1/payments/{id}");
        assert_eq!(rc["http"]["method"], "GET");
        assert_eq!(rc["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(rc["http"]["userAgent"], "curl/8");
        assert_eq!(rc["http"]["protocol"], "HTTP/1.1");
        assert_eq!(rc["time"], "25/Nov/2026:08:00:00 +0000");
        assert_eq!(rc["timeEpoch"], 1_795_593_600_000_i64);
        assert_eq!(rc["requestId"], "rid");
    }

    #[test]
    fn event_omits_absent_fields() {
        let r = router();
        let m = r.find("POST", "/v1/payments").expect("match");
        let headers = hyper::HeaderMap::new();
        let ev = build_event(
            &m,
            &RequestParts {
                method: "POST",
                raw_path: "/v1/payments",
                raw_query: "",
                headers: &headers,
                body: b"",
                source: "127.0.0.1:5555".parse().expect("addr"),
                local_port: 3000,
                request_id: "rid",
                now: chrono::Utc::now(),
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&ev).expect("json");
        for absent in ["cookies", "queryStringParameters", "pathParameters", "body"] {
            assert!(v.get(absent).is_none(), "{absent} should be omitted");
        }
        assert_eq!(v["isBase64Encoded"], false);
        assert_eq!(v["rawQueryString"], "");
    }

    #[tokio::test]
    async fn responses_are_mapped() {
        use http_body_util::BodyExt;
        let r = build_response(
            br#"{"statusCode":201,"headers":{"content-type":"application/json","x-n":1},
                "multiValueHeaders":{"x-m":["a","b"],"x-n":["ignored"]},
                "cookies":["s=1; Path=/"],"body":"{\"ok\":true}","isBase64Encoded":false}"#,
        );
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["x-n"], "1");
        assert_eq!(r.headers().get_all("x-m").iter().count(), 2);
        assert_eq!(r.headers()["set-cookie"], "s=1; Path=/");

        let r = build_response(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#);
        assert_eq!(r.status(), 200);
        let body = r.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, Bytes::from_static(b"hi"));

        let r = build_response(br#"{"hello":"world"}"#);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");

        let r = build_response(b"not json");
        assert_eq!(r.status(), 500);
    }

    #[test]
    fn codecs_round_trip() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            assert_eq!(base64_decode(&base64_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(percent_decode("a%20b%zz%4"), "a b%zz%4");
    }
}
