//! `sandbox_psp`: a local stand-in for Stripe's API (Checkout Sessions, PaymentIntents, refunds,
//! events, webhook endpoints, balance transactions), its hosted payment page, and its signed
//! webhooks, with fault injection for tests under `/__sandbox/`. The client code that talks to it
//! is the code that talks to `https://api.stripe.com`: only the base URL and the key change.
//!
//! It listens on 127.0.0.1 only. State is in memory and bounded.

// Stripe-shaped objects are large `json!` literals.
#![recursion_limit = "512"]

mod admin;
mod api;
mod connect;
mod faults;
mod form;
mod page;
mod refunds;
mod reports;
mod store;
mod webhooks;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::State;
use tokio::sync::mpsc::UnboundedSender;
use webhooks::Work;

const USAGE: &str = "\
usage: sandbox_psp [--exit-on-stdin-eof]

Listens on 127.0.0.1 and prints one line `SANDBOX PSP READY url=http://127.0.0.1:<port>` when ready.
Stops on SIGINT/SIGTERM, and on stdin EOF with --exit-on-stdin-eof.

environment:
  PSP_PORT=4000                         0 = any free port (read it from the READY line)
  PSP_SECRET_KEY=sk_test_sandbox_51PsysLocalDev
  PSP_WEBHOOK_SECRET=whsec_sandbox_localdev_7c1e9a   secret of every webhook endpoint created
  PSP_PUBLIC_URL=http://127.0.0.1:<port>             base of the hosted page URLs
  SANDBOX_WEBHOOK_RETRY_BASE_MS=1000    retry k+1 starts base x 2^(k-1) after attempt k
  SANDBOX_WEBHOOK_ATTEMPTS_MAX=8        attempts per delivery, the first included
  SANDBOX_WEBHOOK_TIMEOUT_MS=5000       an endpoint slower than this counts as failed
  SANDBOX_REFUND_SETTLE_MS=1000         delayed refund moves (test cards 7726, 5126) happen this long after creation
  SANDBOX_PAYOUT_SETTLE_MS=1000         a connected account's payout is in_transit half this long after creation, then paid or failed
  SANDBOX_REPORT_RUN_MS=300             a report run succeeds (its CSV is rendered) this long after creation";

const BODY_BYTES_MAX: usize = 1 << 20;

pub struct Config {
    pub port: u16,
    pub secret_key: String,
    pub webhook_secret: String,
    pub public_url: String,
    pub webhook_retry_base_ms: u64,
    pub webhook_attempts_max: u32,
    pub webhook_timeout_ms: u64,
    pub refund_settle_ms: u64,
    pub payout_settle_ms: u64,
    pub report_run_ms: u64,
    pub exit_on_stdin_eof: bool,
}

pub struct App {
    pub cfg: Config,
    state: Mutex<State>,
    jobs: UnboundedSender<Work>,
}

impl App {
    /// The state lock (a panic elsewhere never wedges the sandbox: poisoning is ignored).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the state, then hand the webhook jobs it queued to the delivery worker.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut st = self.lock();
        let r = f(&mut st);
        for job in st.outbox.drain(..) {
            let _ = self.jobs.send(Work::Fresh(job));
        }
        r
    }

    /// Send deliveries released from hold/reorder as they are.
    pub fn release(&self, jobs: Vec<webhooks::Job>) {
        for job in jobs {
            let _ = self.jobs.send(Work::Release(job));
        }
    }
}

/// A request, body read (at most 1 MiB).
pub struct Req {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(status: u16, v: &Value) -> Resp {
        let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
        body.push(b'\n');
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    pub fn html(status: u16, html: String) -> Resp {
        Resp {
            status,
            headers: vec![
                ("Content-Type".into(), "text/html; charset=utf-8".into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: html.into_bytes(),
        }
    }

    pub fn text(status: u16, content_type: &str, text: String) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: text.into_bytes(),
        }
    }

    pub fn redirect(location: &str) -> Resp {
        Resp {
            status: 303,
            headers: vec![
                ("Location".into(), location.into()),
                ("Cache-Control".into(), "no-store".into()),
            ],
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A Stripe error object: `{"error": {"type", "message", "code"?, "param"?, ...}}`.
pub fn stripe_error(status: u16, kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Resp {
    let mut err = json!({"type": kind, "message": message});
    if let Some(c) = code {
        err["code"] = json!(c);
        err["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            c.replace('_', "-")
        ));
    }
    if let Some(p) = param {
        err["param"] = json!(p);
    }
    Resp::json(status, &json!({ "error": err }))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid number")),
        None => Ok(default),
    }
}

fn config() -> Result<Config, String> {
    let mut exit_on_stdin_eof = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let secret_key = env_or("PSP_SECRET_KEY", "sk_test_sandbox_51PsysLocalDev");
    let webhook_secret = env_or("PSP_WEBHOOK_SECRET", "whsec_sandbox_localdev_7c1e9a");
    if secret_key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("PSP_SECRET_KEY must not contain whitespace".into());
    }
    let webhook_attempts_max: u32 = env_number("SANDBOX_WEBHOOK_ATTEMPTS_MAX", 8)?;
    if webhook_attempts_max == 0 {
        return Err("SANDBOX_WEBHOOK_ATTEMPTS_MAX must be at least 1".into());
    }
    Ok(Config {
        port: env_number("PSP_PORT", 4000)?,
        secret_key,
        webhook_secret,
        public_url: env_or("PSP_PUBLIC_URL", "").trim_end_matches('/').to_string(),
        webhook_retry_base_ms: env_number("SANDBOX_WEBHOOK_RETRY_BASE_MS", 1000)?,
        webhook_attempts_max,
        webhook_timeout_ms: env_number("SANDBOX_WEBHOOK_TIMEOUT_MS", 5000)?,
        refund_settle_ms: env_number("SANDBOX_REFUND_SETTLE_MS", store::REFUND_SETTLE_MS_DEFAULT)?,
        payout_settle_ms: env_number("SANDBOX_PAYOUT_SETTLE_MS", store::PAYOUT_SETTLE_MS_DEFAULT)?,
        report_run_ms: env_number("SANDBOX_REPORT_RUN_MS", reports::REPORT_RUN_MS_DEFAULT)?,
        exit_on_stdin_eof,
    })
}

fn main() {
    let mut cfg = match config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sandbox_psp: {e}");
            std::process::exit(2);
        }
    };
    let listener = match std::net::TcpListener::bind(("127.0.0.1", cfg.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sandbox_psp: cannot listen on 127.0.0.1:{}: {e}", cfg.port);
            std::process::exit(1);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.port);
    cfg.port = port;
    if cfg.public_url.is_empty() {
        cfg.public_url = format!("http://127.0.0.1:{port}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sandbox_psp: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(run(cfg, listener));
    // Do not wait for blocked reads (stdin) or in-flight webhook retries.
    std::process::exit(code);
}

async fn run(cfg: Config, listener: std::net::TcpListener) -> i32 {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sandbox_psp: {e}");
            return 1;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let exit_on_eof = cfg.exit_on_stdin_eof;
    let port = cfg.port;
    let mut state = State::new(cfg.webhook_secret.clone());
    state.refund_settle_ms = i64::try_from(cfg.refund_settle_ms).unwrap_or(i64::MAX);
    state.payout_settle_ms = i64::try_from(cfg.payout_settle_ms).unwrap_or(i64::MAX);
    state.report_run_ms = i64::try_from(cfg.report_run_ms).unwrap_or(i64::MAX);
    let app = Arc::new(App {
        state: Mutex::new(state),
        cfg,
        jobs: tx,
    });
    tokio::spawn(webhooks::worker(app.clone(), rx));
    tokio::spawn(sweeper(app.clone()));
    tokio::spawn(refund_settler(app.clone()));

    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if exit_on_eof {
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = eof_tx.send(());
        });
    } else {
        std::mem::forget(eof_tx);
    }

    let mut out = std::io::stdout();
    let _ = writeln!(out, "SANDBOX PSP READY url=http://127.0.0.1:{port}");
    let _ = out.flush();

    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandbox_psp: cannot watch SIGTERM: {e}");
            return 1;
        }
    };
    let accept = async {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("sandbox_psp: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let app = app.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(app.clone(), peer, req));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .title_case_headers(true)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    };
    tokio::select! {
        _ = accept => 0,
        _ = tokio::signal::ctrl_c() => 0,
        _ = sigterm.recv() => 0,
        _ = eof_rx => 0,
    }
}

/// Expire sessions past `expires_at`; forget idempotency keys older than 24 h. Every second.
async fn sweeper(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let public_url = app.cfg.public_url.clone();
        app.with_state(|st| {
            let t = store::now();
            let due: Vec<String> = st
                .sessions
                .values()
                .filter(|s| s.status == store::SessionStatus::Open && s.expires_at <= t)
                .map(|s| s.id.clone())
                .collect();
            for id in due {
                st.expire_session(&id, &public_url, &store::Cause::default());
            }
            st.idempotency
                .retain(|_, r| t - r.created < store::IDEMPOTENCY_TTL_S);
        });
    }
}

/// Apply the refund moves that are due (`SANDBOX_REFUND_SETTLE_MS` after creation). Every 50 ms,
/// so that a short settle time is honoured closely; with nothing due a tick is one lookup.
async fn refund_settler(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        app.with_state(|st| {
            st.settle_due_refunds(store::now_ms());
            st.settle_due_payouts(store::now_ms());
            st.settle_due_reports(store::now_ms());
        });
    }
}

/// Slow clients: headers within this (also how long an idle keep-alive connection stays open),
/// bodies within `BODY_READ_TIMEOUT`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The header `/__sandbox/` requests must carry.
pub const ADMIN_HEADER: &str = "x-sandbox-control";

async fn serve(
    app: Arc<App>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let request_id = store::new_id("req_", 14);
    let resp =
        match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, BODY_BYTES_MAX).collect()).await {
            Err(_) => stripe_error(
                408,
                "invalid_request_error",
                None,
                "The request body did not arrive in time.",
                None,
            ),
            Ok(Err(_)) => stripe_error(
                413,
                "invalid_request_error",
                None,
                "Request body too large (at most 1 MiB).",
                None,
            ),
            Ok(Ok(collected)) => {
                let r = Req {
                    method: parts.method,
                    path: parts.uri.path().to_string(),
                    query: parts.uri.query().unwrap_or("").to_string(),
                    headers: parts.headers,
                    body: collected.to_bytes(),
                    peer,
                };
                route(&app, r, &request_id).await
            }
        };
    Ok(to_hyper(resp, &request_id))
}

async fn route(app: &Arc<App>, req: Req, request_id: &str) -> Resp {
    if req.path == "/v1" || req.path.starts_with("/v1/") {
        api::handle(app, req, request_id).await
    } else if let Some(rest) = req.path.strip_prefix("/pay/") {
        let id = rest.to_string();
        page::handle(app, &req, &id)
    } else if req.path.starts_with("/__sandbox/") {
        // Test controls: never from a web page (it would send an Origin, and cannot add the
        // header cross-site without a preflight the sandbox never answers).
        if req.headers.contains_key(hyper::header::ORIGIN) || !req.headers.contains_key(ADMIN_HEADER) {
            return stripe_error(
                403,
                "invalid_request_error",
                None,
                &format!(
                    "/__sandbox/ requests must carry the {ADMIN_HEADER} header and come from no web page"
                ),
                None,
            );
        }
        admin::handle(app, &req)
    } else {
        unrecognized(&req)
    }
}

pub fn unrecognized(req: &Req) -> Resp {
    let msg = format!(
        "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at \
         https://support.stripe.com/.",
        req.method, req.path
    );
    stripe_error(404, "invalid_request_error", None, &msg, None)
}

fn to_hyper(resp: Resp, request_id: &str) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(resp.status);
    let mut has_request_id = false;
    for (k, v) in &resp.headers {
        has_request_id |= k.eq_ignore_ascii_case("request-id");
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !has_request_id {
        builder = builder.header("Request-Id", request_id);
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|_| {
            let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"internal error\n")));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}
