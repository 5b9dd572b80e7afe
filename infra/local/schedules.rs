//! `Type: Schedule` events: the EventBridge rules SAM makes of them, run by the twin.
//!
//! At each due time the function is invoked asynchronously, as EventBridge invokes a Lambda
//! target (invocation type `Event`): the schedule does not wait for the function, so the next
//! fire comes on time even while the last one runs. The event is EventBridge's Scheduled Event
//! (a fresh `id`, `time` the scheduled fire, `resources` the rule's ARN), or the rule's `Input`
//! text as written. A failed invocation (function error, timeout, crash, missing binary) is
//! logged on the twin's stderr with the function's error and retried twice, as Lambda retries
//! an asynchronous invocation (AWS waits about 1 then 2 minutes; the twin 1 then 2 seconds).
//!
//! A `rate(...)` first fires one period after the twin starts, as a new rule does, then every
//! period; a `cron(...)` at each matching minute (UTC). Fires missed while the machine slept
//! are not made up: the next one is the next due after now. A paused schedule keeps its place
//! in the list and fires nothing; resumed, a rate counts its period from the resume.
//!
//! The twin serves the switches under `/__twin/schedules` (see `Schedules::handle`).

use crate::esm::{Context, Invoked};
use crate::template::{FunctionSpec, ScheduleSpec, ACCOUNT_ID, REGION};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Waits before the two retries of a failed scheduled invocation.
pub const RETRY_BACKOFF: &[Duration] = &[Duration::from_secs(1), Duration::from_secs(2)];
/// The largest event a fire may carry: Lambda's limit for a synchronous invocation's payload.
pub const FIRE_PAYLOAD_MAX: usize = 6 * 1024 * 1024;
/// The longest a schedule sleeps before looking at the clock again (a machine that slept,
/// a wall clock that moved).
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// RFC 3339 in UTC to the second, as EventBridge writes `time`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// EventBridge's Scheduled Event, its fields in the order AWS sends them (SAM's
/// `sam local generate-event cloudwatch scheduled-event`, plus the `version` every
/// EventBridge event carries).
#[derive(Serialize)]
struct ScheduledEvent<'a> {
    version: &'a str,
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: &'a str,
    source: &'a str,
    account: &'a str,
    time: String,
    region: &'a str,
    resources: [&'a str; 1],
    detail: serde_json::Map<String, Value>,
}

pub fn scheduled_event(rule_arn: &str, at: DateTime<Utc>) -> Bytes {
    let event = ScheduledEvent {
        version: "0",
        id: uuid::Uuid::new_v4().to_string(),
        detail_type: "Scheduled Event",
        source: "aws.events",
        account: ACCOUNT_ID,
        time: rfc3339(at),
        region: REGION,
        resources: [rule_arn],
        detail: serde_json::Map::new(),
    };
    Bytes::from(serde_json::to_vec(&event).unwrap_or_default())
}

struct Plan {
    enabled: bool,
    /// Where a rate counts its periods from: the twin's start, or the last resume.
    origin: DateTime<Utc>,
    /// None: paused, or a cron that never fires again.
    next: Option<DateTime<Utc>>,
}

/// One schedule: its spec, its plan and its counts.
pub struct Schedule {
    pub spec: ScheduleSpec,
    plan: Mutex<Plan>,
    /// Wakes the schedule's task when the plan changes (pause, resume).
    changed: Notify,
    /// Fires sent (scheduled or by `fire`; a fire's retries are not counted again).
    fired: AtomicU64,
    /// Fires whose every attempt failed.
    failed: AtomicU64,
}

impl Schedule {
    fn new(spec: ScheduleSpec, now: DateTime<Utc>) -> Self {
        let origin = now.trunc_subsecs(0);
        let enabled = spec.enabled;
        let next = if enabled {
            spec.schedule.next_after(origin, now)
        } else {
            None
        };
        Schedule {
            spec,
            plan: Mutex::new(Plan {
                enabled,
                origin,
                next,
            }),
            changed: Notify::new(),
            fired: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn label(&self) -> String {
        format!("{}/{}", self.spec.function, self.spec.name)
    }

    pub fn next_fire_at(&self) -> Option<DateTime<Utc>> {
        self.plan().next
    }

    /// Nothing fires until `resume` (a `fire` still invokes).
    pub fn pause(&self) {
        {
            let mut p = self.plan();
            p.enabled = false;
            p.next = None;
        }
        self.changed.notify_one();
    }

    /// Enabled again: a rate fires one period after `now`, a cron at its next minute.
    pub fn resume(&self, now: DateTime<Utc>) {
        {
            let mut p = self.plan();
            if !p.enabled {
                p.enabled = true;
                p.origin = now.trunc_subsecs(0);
                p.next = self.spec.schedule.next_after(p.origin, now);
            }
        }
        self.changed.notify_one();
    }

    /// Takes the fire due at `due` if it is still the planned one (not paused or re-planned
    /// meanwhile), and plans the one after. False: not to be fired.
    fn claim(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let mut p = self.plan();
        if !p.enabled || p.next != Some(due) {
            return false;
        }
        p.next = self.spec.schedule.next_after(p.origin, now.max(due));
        true
    }

    /// The event a fire at `at` sends: the rule's `Input`, or the Scheduled Event.
    pub fn event(&self, at: DateTime<Utc>) -> Bytes {
        match &self.spec.input {
            Some(text) => Bytes::from(text.clone()),
            None => scheduled_event(&self.spec.rule_arn(), at),
        }
    }

    pub fn describe(&self) -> Value {
        let (enabled, next) = {
            let p = self.plan();
            (p.enabled, p.next)
        };
        json!({
            "function": self.spec.function,
            "event": self.spec.name,
            "expression": self.spec.expression,
            "enabled": enabled,
            "next_fire_at": next.map(rfc3339),
            "fired": self.fired.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// Every schedule of the template.
pub struct Schedules {
    list: Vec<Arc<Schedule>>,
    /// How the schedules invoke, once they run (set by `start`).
    ctx: OnceLock<Arc<Context>>,
    retry_backoff: &'static [Duration],
}

impl Schedules {
    /// One schedule per `Type: Schedule` event, planned from `now` (the twin's start).
    pub fn for_functions(functions: &[FunctionSpec], now: DateTime<Utc>) -> Self {
        Schedules {
            list: functions
                .iter()
                .flat_map(|f| &f.schedules)
                .map(|s| Arc::new(Schedule::new(s.clone(), now)))
                .collect(),
            ctx: OnceLock::new(),
            retry_backoff: RETRY_BACKOFF,
        }
    }

    pub fn get(&self, function: &str, event: &str) -> Option<&Arc<Schedule>> {
        self.list
            .iter()
            .find(|s| s.spec.function == function && s.spec.name == event)
    }

    pub fn describe(&self) -> Value {
        Value::Array(self.list.iter().map(|s| s.describe()).collect())
    }

    /// Run every schedule as a task in `tasks`, invoking through `ctx` (the event sources'
    /// context: they stop when it says the twin stops).
    pub fn start(&self, ctx: &Arc<Context>, tasks: &mut JoinSet<()>) {
        if self.ctx.set(Arc::clone(ctx)).is_err() {
            return;
        }
        for s in &self.list {
            tasks.spawn(run(Arc::clone(s), Arc::clone(ctx), self.retry_backoff));
        }
    }

    /// The `/__twin/schedules` controls:
    /// - `GET /__twin/schedules`: every schedule, its switch, next fire and counts;
    /// - `POST /__twin/schedules/{Function}/{Event}/fire`: invoke now and wait for the answer
    ///   (paused or not), `{"function", "event", "result"}`; 502 if the function failed, 503
    ///   if it cannot run. With a body (not blank), the function gets exactly that JSON as its
    ///   event instead of the scheduled one, as `aws lambda invoke --payload` would give it
    ///   (400 if it is not JSON, as Lambda's `InvalidRequestContentException`);
    /// - `POST /__twin/schedules/{Function}/{Event}/pause|resume`: the schedule, switched.
    ///
    /// Errors are (status, message); an unknown schedule or action is a 404.
    pub async fn handle(&self, method: &str, path: &str, body: &[u8]) -> Result<Value, (u16, String)> {
        let not_found = || (404, "Not Found".to_string());
        let rest = path.strip_prefix("/__twin/schedules").ok_or_else(not_found)?;
        if rest.is_empty() {
            return match method {
                "GET" => Ok(self.describe()),
                _ => Err(not_found()),
            };
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let ["", function, event, action] = parts[..] else {
            return Err(not_found());
        };
        if method != "POST" {
            return Err(not_found());
        }
        let s = self.get(function, event).ok_or_else(|| {
            (
                404,
                format!("no schedule {function}/{event} (GET /__twin/schedules lists them)"),
            )
        })?;
        match action {
            "fire" => self.fire_now(s, fire_payload(body)?).await,
            "pause" => {
                s.pause();
                Ok(s.describe())
            }
            "resume" => {
                s.resume(Utc::now());
                Ok(s.describe())
            }
            other => Err((404, format!("unknown action {other:?} (fire, pause or resume)"))),
        }
    }

    /// One invocation now, synchronously (no retries: the caller sees the failure), with
    /// `payload` as the event if given, else the schedule's own.
    async fn fire_now(&self, s: &Schedule, payload: Option<Bytes>) -> Result<Value, (u16, String)> {
        let Some(ctx) = self.ctx.get() else {
            return Err((503, "the twin's schedules are not running yet".into()));
        };
        let function = &s.spec.function;
        s.fired.fetch_add(1, Ordering::Relaxed);
        let outcome = ctx
            .invoke_bytes(
                function,
                payload.unwrap_or_else(|| s.event(Utc::now().trunc_subsecs(0))),
            )
            .await;
        let failed = |code: u16, msg: String| {
            s.failed.fetch_add(1, Ordering::Relaxed);
            Err((code, msg))
        };
        match outcome {
            Invoked::Ok(payload) => Ok(json!({
                "function": function,
                "event": s.spec.name,
                "result": payload_json(&payload),
            })),
            Invoked::Failed(e) => failed(502, format!("{function} failed: {e}")),
            Invoked::Unavailable(e) => failed(503, format!("{function} cannot run: {e}")),
            Invoked::Stopping => Err((503, "the twin is stopping".into())),
        }
    }
}

/// A fire's own event: the request's body as sent, if it is not blank; it must be JSON.
fn fire_payload(body: &[u8]) -> Result<Option<Bytes>, (u16, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body)
        .map_err(|e| (400, format!("the fire's body is not JSON: {e}")))?;
    Ok(Some(Bytes::copy_from_slice(body)))
}

/// A function's response as JSON: parsed, or its text if it is not JSON (null if empty).
fn payload_json(payload: &[u8]) -> Value {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(payload).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into()))
}

/// One schedule, until the twin stops: sleep until the next fire, fire without waiting for the
/// function, and so on.
async fn run(s: Arc<Schedule>, ctx: Arc<Context>, backoff: &'static [Duration]) {
    let mut deliveries: JoinSet<()> = JoinSet::new();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        if ctx.stopping() {
            break;
        }
        let next = s.next_fire_at();
        let wait = next.map(|due| (due - Utc::now()).to_std().unwrap_or_default().min(MAX_SLEEP));
        tokio::select! {
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                let now = Utc::now();
                if let Some(due) = next.filter(|due| now >= *due) {
                    if s.claim(due, now) {
                        deliveries.spawn(deliver(Arc::clone(&s), Arc::clone(&ctx), due, backoff));
                    }
                }
            }
            _ = s.changed.notified() => {}
            _ = crate::esm::stopped(&mut shutdown) => break,
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
    // Invocations in flight give up at once: the context says the twin is stopping.
    while deliveries.join_next().await.is_some() {}
}

/// One scheduled fire: the invocation, and its retries if it fails.
async fn deliver(s: Arc<Schedule>, ctx: Arc<Context>, due: DateTime<Utc>, backoff: &[Duration]) {
    let event = s.event(due);
    let label = s.label();
    let time = rfc3339(due);
    s.fired.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    for attempt in 0..=backoff.len() {
        let error = match ctx.invoke_bytes(&s.spec.function, event.clone()).await {
            Invoked::Ok(_) => {
                if ctx.echo {
                    eprintln!(
                        "twin: schedule {label}: fire of {time} done in {} ms",
                        started.elapsed().as_millis()
                    );
                }
                return;
            }
            Invoked::Stopping => return,
            Invoked::Failed(e) | Invoked::Unavailable(e) => e,
        };
        match backoff.get(attempt) {
            Some(wait) => {
                eprintln!(
                    "twin: schedule {label}: the invocation for {time} failed: {error}; retry {} of {} in {} s",
                    attempt + 1,
                    backoff.len(),
                    wait.as_secs_f64()
                );
                if !ctx.sleep(*wait).await {
                    return;
                }
            }
            None => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "twin: schedule {label}: the invocation for {time} failed after {} attempts: {error}",
                    attempt + 1
                );
            }
        }
    }
}

/// One banner line per schedule.
pub fn banner_lines(functions: &[FunctionSpec]) -> Vec<String> {
    functions
        .iter()
        .flat_map(|f| &f.schedules)
        .map(|s| {
            let mut notes = Vec::new();
            if s.input.is_some() {
                notes.push("Input");
            }
            if !s.enabled {
                notes.push("PAUSED");
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            format!("{} ← {} [{}]{notes}", s.function, s.expression, s.name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule_expr::Expression;

    fn spec(function: &str, name: &str, expression: &str, enabled: bool) -> ScheduleSpec {
        ScheduleSpec {
            function: function.into(),
            name: name.into(),
            expression: expression.into(),
            schedule: Expression::parse(expression).expect("expression"),
            enabled,
            input: None,
            rule_name: format!("{function}-{name}"),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn schedules(now: DateTime<Utc>) -> Schedules {
        Schedules {
            list: vec![
                Arc::new(Schedule::new(spec("Check", "Hourly", "rate(1 hour)", true), now)),
                Arc::new(Schedule::new(
                    spec("Payout", "Daily", "cron(0 6 * * ? *)", false),
                    now,
                )),
            ],
            ctx: OnceLock::new(),
            retry_backoff: &[Duration::ZERO, Duration::ZERO],
        }
    }

    /// A context over a pool without functions: every invocation is "no function …".
    fn context() -> (Arc<Context>, tokio::sync::watch::Sender<bool>) {
        context_with(&[], &std::env::temp_dir())
    }

    /// A context over a pool running `functions` from `bin_dir`.
    fn context_with(
        functions: &[FunctionSpec],
        bin_dir: &std::path::Path,
    ) -> (Arc<Context>, tokio::sync::watch::Sender<bool>) {
        let logs = crate::logs::LogWriter::start(false).expect("log thread");
        let pool = crate::runtime::Pool::new(
            functions,
            &crate::runtime::PoolOptions {
                bin_dir: bin_dir.to_path_buf(),
                max_instances: 1,
                base_env: Vec::new(),
            },
            &logs,
            &std::env::temp_dir(),
        )
        .expect("pool");
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .build(),
        );
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let ctx = Context {
            pool: Arc::new(pool),
            queues: Arc::new(crate::queues::Queues {
                client: sqs,
                list: Vec::new(),
            }),
            echo: false,
            shutdown,
        };
        (Arc::new(ctx), stop)
    }

    #[test]
    fn the_list_says_what_fires_when() {
        let now = at("2026-03-01T10:15:30.250Z");
        let list = schedules(now).describe();
        assert_eq!(
            list,
            json!([
                {"function": "Check", "event": "Hourly", "expression": "rate(1 hour)", "enabled": true,
                 "next_fire_at": "2026-03-01T11:15:30Z", "fired": 0, "failed": 0},
                {"function": "Payout", "event": "Daily", "expression": "cron(0 6 * * ? *)",
                 "enabled": false, "next_fire_at": null, "fired": 0, "failed": 0},
            ])
        );
    }

    #[tokio::test]
    async fn controls_are_routed() {
        let s = schedules(Utc::now());
        let list = s.handle("GET", "/__twin/schedules", b"").await.expect("list");
        assert_eq!(list.as_array().map(Vec::len), Some(2));
        // Pause and resume flip the switch and the plan.
        let paused = s
            .handle("POST", "/__twin/schedules/Check/Hourly/pause", b"")
            .await
            .expect("pause");
        assert_eq!(paused["enabled"], false);
        assert_eq!(paused["next_fire_at"], Value::Null);
        assert_eq!(
            s.get("Check", "Hourly").expect("schedule").describe()["enabled"],
            false
        );
        let before = Utc::now().trunc_subsecs(0);
        let resumed = s
            .handle("POST", "/__twin/schedules/Check/Hourly/resume", b"")
            .await
            .expect("resume");
        assert_eq!(resumed["enabled"], true);
        let next = at(resumed["next_fire_at"].as_str().expect("next fire"));
        assert!(next >= before + chrono::TimeDelta::hours(1), "{next}");
        // A paused-at-start cron resumes at its next 06:00.
        let daily = s
            .handle("POST", "/__twin/schedules/Payout/Daily/resume", b"")
            .await
            .expect("resume");
        assert!(
            daily["next_fire_at"]
                .as_str()
                .expect("next")
                .ends_with("T06:00:00Z"),
            "{daily}"
        );
        // Errors: what is unknown is a 404 saying so; other methods are not routes.
        for (method, path, code, says) in [
            (
                "POST",
                "/__twin/schedules/Nope/Hourly/fire",
                404,
                "no schedule Nope/Hourly",
            ),
            (
                "POST",
                "/__twin/schedules/Check/Nope/pause",
                404,
                "no schedule Check/Nope",
            ),
            (
                "POST",
                "/__twin/schedules/Check/Hourly/explode",
                404,
                "unknown action \"explode\"",
            ),
            ("GET", "/__twin/schedules/Check/Hourly/fire", 404, "Not Found"),
            ("POST", "/__twin/schedules", 404, "Not Found"),
            ("POST", "/__twin/schedules/Check/Hourly", 404, "Not Found"),
            (
                "POST",
                "/__twin/schedules/Check/Hourly/fire/now",
                404,
                "Not Found",
            ),
            ("GET", "/__twin/schedulesX", 404, "Not Found"),
            // Before the schedules run, a fire cannot invoke.
            (
                "POST",
                "/__twin/schedules/Check/Hourly/fire",
                503,
                "not running yet",
            ),
        ] {
            let (c, msg) = s.handle(method, path, b"").await.expect_err(path);
            assert_eq!(c, code, "{method} {path}: {msg}");
            assert!(msg.contains(says), "{method} {path}: {msg}");
        }
    }

    #[test]
    fn the_event_is_eventbridges_scheduled_event() {
        let arn = "arn:aws:events:us-east-1:000000000000:rule/Check-Hourly";
        let bytes = scheduled_event(arn, at("2026-03-01T11:15:30.900Z"));
        let text = std::str::from_utf8(&bytes).expect("utf-8");
        // AWS's field order.
        assert!(text.starts_with(r#"{"version":"0","id":""#), "{text}");
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        let id = v["id"].as_str().expect("id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        let mut v = v.clone();
        v["id"] = json!("x");
        assert_eq!(
            v,
            json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "000000000000", "time": "2026-03-01T11:15:30Z", "region": "us-east-1",
                   "resources": [arn], "detail": {}})
        );
        // A fresh id each fire.
        let again: Value = serde_json::from_slice(&scheduled_event(arn, Utc::now())).expect("json");
        assert_ne!(again["id"], id);
        // With Input, the input as written.
        let mut with_input = spec("Check", "Hourly", "rate(1 hour)", true);
        with_input.input = Some(r#"{ "mode" : "daily" }"#.into());
        let s = Schedule::new(with_input, Utc::now());
        assert_eq!(&s.event(Utc::now())[..], br#"{ "mode" : "daily" }"#);
    }

    #[test]
    fn a_fire_is_claimed_once_and_not_when_paused() {
        let now = at("2026-03-01T10:00:00Z");
        let s = Schedule::new(spec("Check", "Hourly", "rate(1 hour)", true), now);
        let due = at("2026-03-01T11:00:00Z");
        assert_eq!(s.next_fire_at(), Some(due));
        assert!(!s.claim(at("2026-03-01T10:30:00Z"), due), "not the planned fire");
        assert!(s.claim(due, due + chrono::TimeDelta::milliseconds(3)));
        assert_eq!(s.next_fire_at(), Some(at("2026-03-01T12:00:00Z")));
        assert!(!s.claim(due, due), "already taken");
        // Woken late (a machine that slept): the missed fires are not made up.
        let late = at("2026-03-01T14:30:00Z");
        assert!(s.claim(at("2026-03-01T12:00:00Z"), late));
        assert_eq!(s.next_fire_at(), Some(at("2026-03-01T15:00:00Z")));
        s.pause();
        assert!(!s.claim(at("2026-03-01T15:00:00Z"), late));
    }

    #[tokio::test]
    async fn a_failed_fire_is_retried_twice_then_counted() {
        let (ctx, stop) = context();
        let s = Arc::new(Schedule::new(
            spec("Gone", "Tick", "rate(1 minute)", true),
            Utc::now(),
        ));
        deliver(
            Arc::clone(&s),
            Arc::clone(&ctx),
            Utc::now(),
            &[Duration::ZERO, Duration::ZERO],
        )
        .await;
        assert_eq!(s.describe()["fired"], 1);
        assert_eq!(s.describe()["failed"], 1);
        // A fire through the control waits for the answer and names the error.
        let schedules = Schedules {
            list: vec![Arc::clone(&s)],
            ctx: OnceLock::new(),
            retry_backoff: &[Duration::ZERO, Duration::ZERO],
        };
        let mut tasks = JoinSet::new();
        schedules.start(&ctx, &mut tasks);
        let (code, msg) = schedules
            .handle("POST", "/__twin/schedules/Gone/Tick/fire", b"")
            .await
            .expect_err("no such function");
        assert_eq!(code, 503);
        assert!(msg.contains("Gone cannot run: no function Gone"), "{msg}");
        assert_eq!(s.describe()["fired"], 2);
        assert_eq!(s.describe()["failed"], 2);
        // The schedule's own task fires when due (brought forward here), and stops with the twin.
        let due = Utc::now() + chrono::TimeDelta::milliseconds(50);
        s.plan().next = Some(due);
        s.changed.notify_one();
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.describe()["failed"] != 3 {
            assert!(Instant::now() < deadline, "no scheduled fire: {}", s.describe());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.describe()["fired"], 3);
        assert!(s.next_fire_at().expect("next") > due);
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .expect("the schedule stops with the twin");
    }

    /// A bootstrap that answers each invocation with its event (the Runtime API over curl).
    const ECHO_BOOTSTRAP: &str = r#"#!/bin/sh
api="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
dir=$(mktemp -d)
while :; do
  curl -sf -D "$dir/h" -o "$dir/b" "$api/invocation/next" || exit 1
  id=$(grep -i '^lambda-runtime-aws-request-id:' "$dir/h" | cut -d' ' -f2 | tr -d '\r\n')
  curl -sf -X POST --data-binary "@$dir/b" "$api/invocation/$id/response" >/dev/null || exit 1
done
"#;

    #[tokio::test]
    async fn a_fire_with_a_body_invokes_with_exactly_that_event() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("twin-fire-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bin = dir.join("echo");
        std::fs::write(&bin, ECHO_BOOTSTRAP).expect("script");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut daily = spec("Fetch", "Daily", "cron(0 3 * * ? *)", true);
        daily.input = Some(r#"{"from":"input"}"#.into());
        let function = FunctionSpec {
            logical_id: "Fetch".into(),
            function_name: "Fetch".into(),
            binary: "echo".into(),
            handler: "bootstrap".into(),
            timeout_secs: 10,
            memory_mb: 128,
            environment: Default::default(),
            routes: Vec::new(),
            event_sources: Vec::new(),
            schedules: vec![spec("Fetch", "Hourly", "rate(1 hour)", true), daily],
        };
        let (ctx, stop) = context_with(std::slice::from_ref(&function), &dir);
        let schedules = Schedules::for_functions(std::slice::from_ref(&function), Utc::now());
        let mut tasks = JoinSet::new();
        schedules.start(&ctx, &mut tasks);
        // With a body: that JSON, byte for byte (the echo gives it back as the result).
        let payload = br#"{"interval_start": 1764460800, "interval_end": 1764547200}"#;
        let out = schedules
            .handle("POST", "/__twin/schedules/Fetch/Hourly/fire", payload)
            .await
            .expect("fire");
        assert_eq!(out["function"], "Fetch");
        assert_eq!(out["event"], "Hourly");
        assert_eq!(
            out["result"],
            json!({"interval_start": 1764460800, "interval_end": 1764547200})
        );
        // It wins over the rule's Input too; any JSON value will do.
        let out = schedules
            .handle("POST", "/__twin/schedules/Fetch/Daily/fire", b"[1, \"two\"]")
            .await
            .expect("fire");
        assert_eq!(out["result"], json!([1, "two"]));
        // Without one (empty or blank): the schedule's own event.
        for blank in [&b""[..], b"  \n"] {
            let out = schedules
                .handle("POST", "/__twin/schedules/Fetch/Hourly/fire", blank)
                .await
                .expect("fire");
            assert_eq!(out["result"]["detail-type"], "Scheduled Event", "{out}");
        }
        let out = schedules
            .handle("POST", "/__twin/schedules/Fetch/Daily/fire", b"")
            .await
            .expect("fire");
        assert_eq!(out["result"], json!({"from": "input"}));
        // Not JSON: refused, as Lambda refuses it, and nothing is invoked.
        let before = schedules.get("Fetch", "Hourly").expect("schedule").describe()["fired"].clone();
        let (code, msg) = schedules
            .handle("POST", "/__twin/schedules/Fetch/Hourly/fire", b"{not json")
            .await
            .expect_err("not json");
        assert_eq!(code, 400);
        assert!(msg.contains("not JSON"), "{msg}");
        assert_eq!(
            schedules.get("Fetch", "Hourly").expect("schedule").describe()["fired"],
            before
        );
        assert_eq!(
            schedules.get("Fetch", "Hourly").expect("schedule").describe()["failed"],
            0
        );
        let _ = stop.send(true);
        ctx.pool.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
