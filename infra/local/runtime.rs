//! Lambda Runtime API and per-function instance pools.
//!
//! Each instance is one child process of the function's `bootstrap` binary with its own Runtime
//! API listener on 127.0.0.1:<ephemeral> (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>`), so the
//! listener identifies the instance. An invocation goes to an idle instance (one blocked in
//! `GET .../invocation/next`, most recently used first), else waits in the function's queue
//! while a new instance starts, up to the per-function maximum.

use crate::logs::{LogTarget, LogWriter};
use crate::services::die_with_parent;
use crate::template::FunctionSpec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{oneshot, Notify};
use tokio::task::{AbortHandle, JoinSet};

/// Lambda's limit for a synchronous response payload.
const RESPONSE_BYTES_MAX: usize = 6 * 1024 * 1024;
/// Lambda's limit for the init phase of an on-demand function.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
const RUNTIME_PREFIX: &str = "/2018-06-01/runtime/";

pub type Body = Full<Bytes>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    UnknownFunction(String),
    /// The function posted to `/error`: error type header and the error document.
    FunctionError {
        error_type: Option<String>,
        body: Bytes,
    },
    /// The invocation ran past the function's Timeout; the instance was killed.
    Timeout(u64),
    /// The instance's process exited while holding the invocation.
    InstanceExited(String),
    /// The instance started for this invocation failed before asking for work.
    InitFailed(String),
    /// The bootstrap could not be started at all.
    Spawn(String),
    ResponseTooLarge,
    ShuttingDown,
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::UnknownFunction(id) => write!(f, "no function {id}"),
            InvokeError::FunctionError { error_type, body } => write!(
                f,
                "function error {}: {}",
                error_type.as_deref().unwrap_or("Unhandled"),
                String::from_utf8_lossy(body)
            ),
            InvokeError::Timeout(s) => write!(f, "task timed out after {s} seconds"),
            InvokeError::InstanceExited(m) => write!(f, "instance exited: {m}"),
            InvokeError::InitFailed(m) => write!(f, "init failed: {m}"),
            InvokeError::Spawn(m) => write!(f, "cannot start the function: {m}"),
            InvokeError::ResponseTooLarge => write!(f, "response exceeds 6 MB"),
            InvokeError::ShuttingDown => write!(f, "the twin is shutting down"),
        }
    }
}

impl std::error::Error for InvokeError {}

type Reply = oneshot::Sender<Result<Bytes, InvokeError>>;

struct Invocation {
    request_id: String,
    event: Bytes,
    reply: Reply,
}

struct IdleSlot {
    instance_id: u64,
    tx: oneshot::Sender<Invocation>,
}

#[derive(Default)]
struct State {
    /// Instances blocked in `/next`, most recently idle last.
    idle: Vec<IdleSlot>,
    /// Invocations waiting for an instance.
    pending: VecDeque<Invocation>,
    /// Instances alive or starting.
    live: usize,
    /// Instances started that have not yet called `/next`.
    starting: usize,
    /// Instances that answered an invocation and are about to call `/next` again.
    finishing: usize,
    instances: HashMap<u64, Arc<Instance>>,
    closed: bool,
}

pub struct PoolOptions {
    pub bin_dir: PathBuf,
    pub max_instances: usize,
    /// Variables every function process gets (AWS_REGION, endpoints, credentials, ...).
    pub base_env: Vec<(String, String)>,
}

struct Function {
    spec: FunctionSpec,
    arn: String,
    binary: PathBuf,
    /// Complete environment except the per-instance variables.
    env: Vec<(String, String)>,
    max_instances: usize,
    state: Mutex<State>,
    next_id: AtomicU64,
    log: Arc<LogTarget>,
    logs: LogWriter,
}

struct Current {
    request_id: String,
    reply: Reply,
    watchdog: AbortHandle,
}

struct Instance {
    id: u64,
    function: Arc<Function>,
    current: Mutex<Option<Current>>,
    initialized: AtomicBool,
    /// Counted in `State::finishing` (changed under the state lock).
    finishing: AtomicBool,
    dead: AtomicBool,
    kill: Notify,
    init_error: Mutex<Option<String>>,
    server: Mutex<Option<AbortHandle>>,
}

/// All function pools.
pub struct Pool {
    functions: HashMap<String, Arc<Function>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn trace_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    let secs = epoch_ms() / 1000;
    format!(
        "Root=1-{secs:08x}-{};Parent={}{};Sampled=0;Lineage=1:00000000:0",
        &u[..24],
        &u[24..32],
        &u[..8]
    )
}

impl Pool {
    pub fn new(
        specs: &[FunctionSpec],
        opts: &PoolOptions,
        logs: &LogWriter,
        log_dir: &Path,
    ) -> Result<Self, String> {
        let mut functions = HashMap::new();
        for spec in specs {
            let mut env: BTreeMap<String, String> = spec.environment.clone();
            // AWS-reserved variables win over the template's.
            for (k, v) in &opts.base_env {
                env.insert(k.clone(), v.clone());
            }
            let fixed = [
                ("AWS_LAMBDA_FUNCTION_NAME", spec.function_name.clone()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", spec.memory_mb.to_string()),
                (
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{}", spec.function_name),
                ),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
                ("_HANDLER", spec.handler.clone()),
                ("LAMBDA_TASK_ROOT", opts.bin_dir.to_string_lossy().into_owned()),
                ("TZ", ":UTC".to_string()),
                ("LANG", "en_US.UTF-8".to_string()),
            ];
            for (k, v) in fixed {
                env.insert(k.to_string(), v);
            }
            // Not Lambda's, but useful locally.
            for name in ["PATH", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
                if let Ok(v) = std::env::var(name) {
                    env.entry(name.into()).or_insert(v);
                }
            }
            let log_path = log_dir.join(format!("{}.log", spec.logical_id));
            let log = logs.target(&log_path, &spec.logical_id)?;
            let f = Function {
                arn: spec.arn(),
                binary: opts.bin_dir.join(&spec.binary),
                spec: spec.clone(),
                env: env.into_iter().collect(),
                max_instances: opts.max_instances.max(1),
                state: Mutex::new(State::default()),
                next_id: AtomicU64::new(1),
                log,
                logs: logs.clone(),
            };
            functions.insert(spec.logical_id.clone(), Arc::new(f));
        }
        Ok(Pool { functions })
    }

    /// Invokes a function synchronously with a serialized JSON event; the response payload.
    pub async fn invoke_bytes(&self, function_logical_id: &str, event: Bytes) -> Result<Bytes, InvokeError> {
        let f = self
            .functions
            .get(function_logical_id)
            .ok_or_else(|| InvokeError::UnknownFunction(function_logical_id.to_string()))?;
        let (tx, rx) = oneshot::channel();
        let inv = Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            event,
            reply: tx,
        };
        f.dispatch(inv);
        rx.await.unwrap_or(Err(InvokeError::ShuttingDown))
    }

    /// Whether a function's binary exists now (event sources poll only for functions that can
    /// run; an HTTP request to a function without one gets a 500).
    pub fn binary_exists(&self, function_logical_id: &str) -> bool {
        self.functions
            .get(function_logical_id)
            .is_some_and(|f| f.binary.is_file())
    }

    /// Binaries that do not exist (yet): (logical id, path).
    pub fn missing_binaries(&self) -> Vec<(String, PathBuf)> {
        let mut out: Vec<_> = self
            .functions
            .values()
            .filter(|f| !f.binary.is_file())
            .map(|f| (f.spec.logical_id.clone(), f.binary.clone()))
            .collect();
        out.sort();
        out
    }

    /// Start `n` instances of every function ahead of traffic.
    pub fn prewarm(&self, n: usize) {
        for f in self.functions.values() {
            for _ in 0..n.min(f.max_instances) {
                let start = {
                    let mut st = lock(&f.state);
                    if st.closed || st.live >= f.max_instances {
                        false
                    } else {
                        st.live += 1;
                        st.starting += 1;
                        true
                    }
                };
                if start {
                    f.start_instance();
                }
            }
        }
    }

    /// Kills every instance of a function now, busy or idle, as a crash would: the invocations
    /// they hold fail and later ones start new instances. How many were killed (`None`: no
    /// such function).
    pub fn kill(&self, function_logical_id: &str) -> Option<usize> {
        let f = self.functions.get(function_logical_id)?;
        let instances: Vec<_> = lock(&f.state).instances.values().cloned().collect();
        for inst in &instances {
            inst.request_kill();
        }
        Some(instances.len())
    }

    /// Kill every instance and wait for the processes to be gone.
    pub async fn shutdown(&self) {
        let mut all = Vec::new();
        for f in self.functions.values() {
            let (pending, instances) = {
                let mut st = lock(&f.state);
                st.closed = true;
                st.idle.clear();
                let pending: Vec<_> = st.pending.drain(..).collect();
                let instances: Vec<_> = st.instances.values().cloned().collect();
                (pending, instances)
            };
            for inv in pending {
                let _ = inv.reply.send(Err(InvokeError::ShuttingDown));
            }
            all.extend(instances);
        }
        for inst in &all {
            inst.request_kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live: usize = self.functions.values().map(|f| lock(&f.state).live).sum();
            if live == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Function {
    fn dispatch(self: &Arc<Self>, mut inv: Invocation) {
        let start = {
            let mut st = lock(&self.state);
            if st.closed {
                drop(st);
                let _ = inv.reply.send(Err(InvokeError::ShuttingDown));
                return;
            }
            while let Some(slot) = st.idle.pop() {
                match slot.tx.send(inv) {
                    Ok(()) => return,
                    Err(back) => inv = back,
                }
            }
            st.pending.push_back(inv);
            self.need_instance(&mut st)
        };
        if start {
            self.start_instance();
        }
    }

    /// Reserve a new instance if queued invocations outnumber the instances about to take
    /// one (starting, or finishing their previous invocation: under steady load the next
    /// request often arrives a few microseconds before the instance is back in `/next`).
    fn need_instance(&self, st: &mut State) -> bool {
        let coming = st.starting + st.finishing;
        if !st.closed && st.pending.len() > coming && st.live < self.max_instances {
            st.live += 1;
            st.starting += 1;
            true
        } else {
            false
        }
    }

    /// Start one instance (already counted in `live` and `starting`).
    fn start_instance(self: &Arc<Self>) {
        if let Err(e) = self.try_start_instance() {
            let failed = {
                let mut st = lock(&self.state);
                st.live -= 1;
                st.starting -= 1;
                if st.pending.len() > st.starting {
                    st.pending.pop_front()
                } else {
                    None
                }
            };
            self.logs.line(
                &self.log,
                format!("twin: cannot start {}: {e}", self.binary.display()),
            );
            if let Some(inv) = failed {
                let _ = inv.reply.send(Err(InvokeError::Spawn(e)));
            }
        }
    }

    fn try_start_instance(self: &Arc<Self>) -> Result<(), String> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind a Runtime API port: {e}"))?;
        std_listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let port = std_listener.local_addr().map_err(|e| e.to_string())?.port();
        let listener = TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;

        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = format!(
            "{}/[$LATEST]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            uuid::Uuid::new_v4().simple()
        );
        let mut cmd = Command::new(&self.binary);
        cmd.env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", stream)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;

        let inst = Arc::new(Instance {
            id,
            function: Arc::clone(self),
            current: Mutex::new(None),
            initialized: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            kill: Notify::new(),
            init_error: Mutex::new(None),
            server: Mutex::new(None),
        });
        let closed = {
            let mut st = lock(&self.state);
            st.instances.insert(id, Arc::clone(&inst));
            st.closed
        };

        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, self.logs.clone(), Arc::clone(&self.log)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, self.logs.clone(), Arc::clone(&self.log)));
        }
        let server = tokio::spawn(serve_runtime_api(listener, Arc::clone(&inst)));
        *lock(&inst.server) = Some(server.abort_handle());

        let sup = Arc::clone(&inst);
        tokio::spawn(async move {
            let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
            tokio::pin!(init_deadline);
            let mut init_checked = false;
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    _ = sup.kill.notified() => {
                        let _ = child.start_kill();
                        break child.wait().await;
                    }
                    _ = &mut init_deadline, if !init_checked => {
                        init_checked = true;
                        if !sup.initialized.load(Ordering::SeqCst) {
                            *lock(&sup.init_error) = Some(format!(
                                "the bootstrap did not call {RUNTIME_PREFIX}invocation/next \
                                 within {} s", INIT_TIMEOUT.as_secs()));
                            let _ = child.start_kill();
                            break child.wait().await;
                        }
                    }
                }
            };
            sup.on_exit(status);
        });
        if closed {
            inst.request_kill();
        }
        Ok(())
    }
}

impl Instance {
    fn request_kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.kill.notify_one();
    }

    fn on_exit(self: &Arc<Self>, status: std::io::Result<ExitStatus>) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(server) = lock(&self.server).take() {
            server.abort();
        }
        let f = &self.function;
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let (failed, start) = {
            let mut st = lock(&f.state);
            st.instances.remove(&self.id);
            st.live -= 1;
            if self.finishing.swap(false, Ordering::SeqCst) {
                st.finishing -= 1;
            }
            st.idle.retain(|s| s.instance_id != self.id);
            let mut failed = None;
            if !self.initialized.load(Ordering::SeqCst) {
                st.starting -= 1;
                if st.pending.len() > st.starting {
                    failed = st.pending.pop_front();
                }
            }
            let start = f.need_instance(&mut st);
            (failed, start)
        };
        let reason = match lock(&self.init_error).take() {
            Some(e) => format!("{e} (process {status})"),
            None => format!("process {status}"),
        };
        if let Some(cur) = lock(&self.current).take() {
            cur.watchdog.abort();
            let _ = cur.reply.send(Err(InvokeError::InstanceExited(reason.clone())));
        }
        if let Some(inv) = failed {
            let _ = inv.reply.send(Err(InvokeError::InitFailed(reason)));
        }
        if start {
            f.start_instance();
        }
    }

    /// `GET /2018-06-01/runtime/invocation/next`
    async fn next(self: Arc<Self>) -> Response<Body> {
        let f = &self.function;
        // A runtime asking for more work without answering gives up on the current one.
        if let Some(cur) = lock(&self.current).take() {
            cur.watchdog.abort();
            let _ = cur.reply.send(Err(InvokeError::FunctionError {
                error_type: Some("Runtime.NoResponse".into()),
                body: Bytes::from_static(
                    br#"{"errorMessage":"the runtime asked for the next invocation without responding","errorType":"Runtime.NoResponse"}"#,
                ),
            }));
        }
        let waiting = {
            let mut st = lock(&f.state);
            if self.dead.load(Ordering::SeqCst) || st.closed {
                None
            } else {
                if !self.initialized.swap(true, Ordering::SeqCst) {
                    st.starting -= 1;
                }
                if self.finishing.swap(false, Ordering::SeqCst) {
                    st.finishing -= 1;
                }
                let mut found = None;
                while let Some(inv) = st.pending.pop_front() {
                    if !inv.reply.is_closed() {
                        found = Some(inv);
                        break;
                    }
                }
                Some(match found {
                    Some(inv) => Ok(inv),
                    None => {
                        let (tx, rx) = oneshot::channel();
                        st.idle.push(IdleSlot {
                            instance_id: self.id,
                            tx,
                        });
                        Err(rx)
                    }
                })
            }
        };
        let inv = match waiting {
            // Being killed: never answer (a runtime panics on an answer without an event).
            None => return std::future::pending().await,
            Some(Ok(inv)) => inv,
            Some(Err(rx)) => match rx.await {
                Ok(inv) => inv,
                // The slot was dropped: the instance is being killed.
                Err(_) => return std::future::pending().await,
            },
        };
        self.deliver(inv)
    }

    fn deliver(self: &Arc<Self>, inv: Invocation) -> Response<Body> {
        let timeout = self.function.spec.timeout_secs;
        let deadline = epoch_ms() + timeout * 1000;
        let watchdog = {
            let inst = Arc::clone(self);
            let rid = inv.request_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(timeout)).await;
                inst.on_timeout(&rid);
            })
            .abort_handle()
        };
        let request_id = inv.request_id;
        let mut resp = Response::new(Full::new(inv.event));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("lambda-runtime-aws-request-id", v);
        }
        h.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline));
        if let Ok(v) = HeaderValue::from_str(&self.function.arn) {
            h.insert("lambda-runtime-invoked-function-arn", v);
        }
        if let Ok(v) = HeaderValue::from_str(&trace_id()) {
            h.insert("lambda-runtime-trace-id", v);
        }
        *lock(&self.current) = Some(Current {
            request_id,
            reply: inv.reply,
            watchdog,
        });
        resp
    }

    fn on_timeout(&self, request_id: &str) {
        let cur = {
            let mut c = lock(&self.current);
            match c.as_ref() {
                Some(cur) if cur.request_id == request_id => c.take(),
                _ => None,
            }
        };
        if let Some(cur) = cur {
            let secs = self.function.spec.timeout_secs;
            self.function.logs.line(
                &self.function.log,
                format!("twin: RequestId: {request_id} Task timed out after {secs}.00 seconds; killing the instance"),
            );
            let _ = cur.reply.send(Err(InvokeError::Timeout(secs)));
            self.request_kill();
        }
    }

    /// Take the current invocation if `request_id` is it.
    fn take_current(&self, request_id: &str) -> Option<Current> {
        let mut c = lock(&self.current);
        match c.as_ref() {
            Some(cur) if cur.request_id == request_id => {
                let cur = c.take();
                if let Some(cur) = &cur {
                    cur.watchdog.abort();
                }
                cur
            }
            _ => None,
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(RUNTIME_PREFIX) else {
            return not_found();
        };
        if rest == "invocation/next" {
            return if req.method() == Method::GET {
                self.next().await
            } else {
                not_found()
            };
        }
        if req.method() != Method::POST {
            return not_found();
        }
        if rest == "init/error" {
            let body = collect(req.into_body(), RESPONSE_BYTES_MAX)
                .await
                .unwrap_or_default();
            *lock(&self.init_error) = Some(format!("init error: {}", String::from_utf8_lossy(&body)));
            self.request_kill();
            return accepted();
        }
        let Some(inv) = rest.strip_prefix("invocation/") else {
            return not_found();
        };
        let (request_id, kind) = match inv.rsplit_once('/') {
            Some((id, k @ ("response" | "error"))) => (id.to_string(), k),
            _ => return not_found(),
        };
        let error_type = req
            .headers()
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = collect(req.into_body(), RESPONSE_BYTES_MAX).await;
        let Some(cur) = self.take_current(&request_id) else {
            return plain(
                StatusCode::BAD_REQUEST,
                r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
            );
        };
        {
            let mut st = lock(&self.function.state);
            if !self.dead.load(Ordering::SeqCst) && !self.finishing.swap(true, Ordering::SeqCst) {
                st.finishing += 1;
            }
        }
        match (kind, body) {
            ("response", Ok(body)) => {
                let _ = cur.reply.send(Ok(body));
                accepted()
            }
            ("error", Ok(body)) => {
                let _ = cur
                    .reply
                    .send(Err(InvokeError::FunctionError { error_type, body }));
                accepted()
            }
            (_, Ok(_)) => accepted(),
            (_, Err(too_large)) => {
                let _ = cur.reply.send(Err(if too_large {
                    InvokeError::ResponseTooLarge
                } else {
                    InvokeError::InstanceExited("the runtime's request body was cut".into())
                }));
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}"#,
                )
            }
        }
    }
}

/// Collect a body up to `limit` bytes. Err(true) if larger, Err(false) on an I/O error.
pub async fn collect(body: Incoming, limit: usize) -> Result<Bytes, bool> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(e.is::<http_body_util::LengthLimitError>()),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn accepted() -> Response<Body> {
    plain(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, r#"{"errorMessage":"Not Found"}"#)
}

async fn serve_runtime_api(listener: TcpListener, inst: Arc<Instance>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let inst = Arc::clone(&inst);
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let inst = Arc::clone(&inst);
                            async move { Ok::<_, Infallible>(inst.handle(req).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Copy a function's stdout/stderr, line by line, to its log.
async fn pump<R: AsyncRead + Unpin>(out: R, logs: LogWriter, target: Arc<LogTarget>) {
    let mut reader = BufReader::new(out);
    loop {
        let mut line = Vec::with_capacity(256);
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                logs.write(&target, line);
            }
        }
    }
}
