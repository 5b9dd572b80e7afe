//! Operator controls over the event-source mappings, as AWS offers them through its API:
//! `UpdateEventSourceMapping --enabled/--no-enabled` (a disabled mapping reads nothing; its
//! messages wait in the queue, its stream records in the stream), and re-reading a stream
//! mapping from `TRIM_HORIZON`, which is what deleting a mapping and creating it again does
//! (every record still in the stream is delivered again), or from `LATEST` (`skip`: what the
//! stream holds now is never delivered, as a mapping re-created at `LATEST`).
//!
//! The twin serves them under `/__twin/event-sources/...` (see `http_api`).

use crate::esm::Context;
use crate::template::{FunctionSpec, SourceKind, StartingPosition};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

/// One mapping's switches. Pollers look at them between batches: a batch in flight finishes.
pub struct MappingControl {
    pub function: String,
    pub event: String,
    pub stream: bool,
    enabled: watch::Sender<bool>,
    /// Where the last re-creation started its stream.
    restart_at: std::sync::Mutex<StartingPosition>,
    generation: watch::Sender<u64>,
    /// Pollers inside a receive or an invocation (SQS mappings).
    busy: watch::Sender<usize>,
    pub metrics: Metrics,
}

/// Record counts since the twin started, as Lambda's event-source-mapping metrics name them
/// (`MetricsConfig: EventCount`): what a caller needs to see how far a mapping has got
/// without asking the queue or the stream.
#[derive(Default)]
pub struct Metrics {
    /// Records read from the queue or the stream.
    pub polled: AtomicU64,
    /// Records that matched no filter (never sent to the function).
    pub filtered_out: AtomicU64,
    /// Records sent to the function (each retry counts again).
    pub invoked: AtomicU64,
    /// Records of invocations that failed or reported them in `batchItemFailures`.
    pub failed_invoke: AtomicU64,
    /// SQS: messages deleted from the queue (handled, or filtered out).
    pub deleted: AtomicU64,
    /// Streams: records given up on and described to the on-failure destination.
    pub on_failure_delivered: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn describe(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "PolledEventCount": get(&self.polled),
            "FilteredOutEventCount": get(&self.filtered_out),
            "InvokedEventCount": get(&self.invoked),
            "FailedInvokeEventCount": get(&self.failed_invoke),
            "DeletedEventCount": get(&self.deleted),
            "OnFailureDestinationDeliveredEventCount": get(&self.on_failure_delivered),
        })
    }
}

/// Marks a poller busy while alive.
pub struct Busy<'a>(&'a watch::Sender<usize>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Why a poller stopped waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Enabled,
    /// The mapping was re-created (a stream worker must start over).
    Rewound,
    /// The twin is stopping.
    Stopping,
}

impl MappingControl {
    pub fn new(function: &str, event: &str, stream: bool, enabled: bool) -> Self {
        MappingControl {
            function: function.to_string(),
            event: event.to_string(),
            stream,
            enabled: watch::Sender::new(enabled),
            restart_at: std::sync::Mutex::new(StartingPosition::TrimHorizon),
            generation: watch::Sender::new(0),
            busy: watch::Sender::new(0),
            metrics: Metrics::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.send_replace(on);
    }

    pub fn busy(&self) -> Busy<'_> {
        self.busy.send_modify(|n| *n += 1);
        Busy(&self.busy)
    }

    /// Disable, then wait until no poller is inside a receive or an invocation, so that
    /// nothing more is read once this returns (up to `timeout`).
    pub async fn disable(&self, timeout: std::time::Duration) {
        self.set_enabled(false);
        let mut rx = self.busy.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await;
    }

    /// Bumped by each rewind.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    pub fn subscribe_generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-created at `at`; its workers end their batch and start over from there.
    pub fn restart(&self, at: StartingPosition) {
        *self.restart_at.lock().unwrap() = at;
        self.generation.send_modify(|g| *g += 1);
    }

    /// Where the last re-creation starts its stream.
    pub fn restart_at(&self) -> StartingPosition {
        *self.restart_at.lock().unwrap()
    }

    /// Wait until the mapping is enabled, it is rewound past `generation`, or the twin stops.
    pub async fn wait_enabled(&self, ctx: &Context, generation: u64) -> Wait {
        let mut on = self.enabled.subscribe();
        let mut gen = self.generation.subscribe();
        let mut shutdown = ctx.shutdown.clone();
        loop {
            if ctx.stopping() {
                return Wait::Stopping;
            }
            if *gen.borrow_and_update() != generation {
                return Wait::Rewound;
            }
            if *on.borrow_and_update() {
                return Wait::Enabled;
            }
            tokio::select! {
                _ = on.changed() => {}
                _ = gen.changed() => {}
                _ = crate::esm::stopped(&mut shutdown) => return Wait::Stopping,
            }
        }
    }

    pub fn describe(&self) -> Value {
        json!({
            "function": self.function,
            "event": self.event,
            "kind": if self.stream { "dynamodb-stream" } else { "sqs" },
            "enabled": self.enabled(),
            "rewinds": self.generation(),
            "metrics": self.metrics.describe(),
        })
    }
}

/// Every mapping's switches, by function logical id.
#[derive(Default)]
pub struct Controls {
    by_function: BTreeMap<String, Vec<Arc<MappingControl>>>,
}

impl Controls {
    /// One control per mapping in the template, starting as its `Enabled` says.
    pub fn for_functions(functions: &[FunctionSpec]) -> Self {
        let mut by_function: BTreeMap<String, Vec<Arc<MappingControl>>> = BTreeMap::new();
        for spec in functions.iter().flat_map(|f| &f.event_sources) {
            let list = by_function.entry(spec.function.clone()).or_default();
            if list.iter().any(|c| c.event == spec.name) {
                continue;
            }
            let stream = matches!(spec.kind, SourceKind::DynamoDb { .. });
            list.push(Arc::new(MappingControl::new(
                &spec.function,
                &spec.name,
                stream,
                spec.enabled,
            )));
        }
        Controls { by_function }
    }

    pub fn get(&self, function: &str, event: &str) -> Option<Arc<MappingControl>> {
        self.by_function
            .get(function)?
            .iter()
            .find(|c| c.event == event)
            .cloned()
    }

    pub fn of_function(&self, function: &str) -> Option<&[Arc<MappingControl>]> {
        self.by_function.get(function).map(Vec::as_slice)
    }

    pub fn describe(&self) -> Value {
        Value::Array(
            self.by_function
                .values()
                .flatten()
                .map(|c| c.describe())
                .collect(),
        )
    }

    /// Apply `action` (`enable`, `disable`, `rewind`, `skip`) to every mapping of `function`. A
    /// disable returns once the SQS pollers are idle (a long poll ends within seconds).
    pub async fn apply(&self, function: &str, action: &str) -> Result<Value, (u16, String)> {
        let Some(list) = self.of_function(function) else {
            return Err((404, format!("no event source mapping invokes {function}")));
        };
        match action {
            "enable" => list.iter().for_each(|c| c.set_enabled(true)),
            "disable" => {
                for c in list {
                    c.disable(std::time::Duration::from_secs(30)).await;
                }
            }
            "rewind" | "skip" => {
                let streams: Vec<_> = list.iter().filter(|c| c.stream).collect();
                if streams.is_empty() {
                    return Err((
                        409,
                        format!("{function} reads no stream; only stream mappings can be re-created at a position"),
                    ));
                }
                let at = match action {
                    "rewind" => StartingPosition::TrimHorizon,
                    _ => StartingPosition::Latest,
                };
                streams.iter().for_each(|c| c.restart(at));
            }
            other => {
                return Err((
                    404,
                    format!("unknown action {other:?} (enable, disable, rewind or skip)"),
                ))
            }
        }
        Ok(Value::Array(list.iter().map(|c| c.describe()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewinding_counts_and_switches_flip() {
        let c = MappingControl::new("F", "Stream", true, true);
        assert!(c.enabled());
        c.set_enabled(false);
        assert!(!c.enabled());
        assert_eq!(c.generation(), 0);
        c.restart(StartingPosition::TrimHorizon);
        assert_eq!(c.restart_at(), StartingPosition::TrimHorizon);
        c.restart(StartingPosition::Latest);
        assert_eq!(c.restart_at(), StartingPosition::Latest);
        assert_eq!(c.describe()["rewinds"], 2);
        assert_eq!(c.describe()["enabled"], false);
    }

    #[test]
    fn counts_are_reported_under_lambdas_metric_names() {
        let c = MappingControl::new("Q", "Queue", false, true);
        Metrics::add(&c.metrics.polled, 10);
        Metrics::add(&c.metrics.invoked, 9);
        Metrics::add(&c.metrics.filtered_out, 1);
        Metrics::add(&c.metrics.failed_invoke, 2);
        Metrics::add(&c.metrics.deleted, 8);
        let m = &c.describe()["metrics"];
        assert_eq!(
            *m,
            json!({"PolledEventCount": 10, "FilteredOutEventCount": 1, "InvokedEventCount": 9,
                   "FailedInvokeEventCount": 2, "DeletedEventCount": 8,
                   "OnFailureDestinationDeliveredEventCount": 0})
        );
    }

    #[tokio::test]
    async fn actions_are_checked() {
        let mut controls = Controls::default();
        controls.by_function.insert(
            "Q".into(),
            vec![Arc::new(MappingControl::new("Q", "Queue", false, true))],
        );
        assert_eq!(controls.apply("Nope", "enable").await.unwrap_err().0, 404);
        assert_eq!(controls.apply("Q", "explode").await.unwrap_err().0, 404);
        assert_eq!(controls.apply("Q", "rewind").await.unwrap_err().0, 409);
        assert_eq!(controls.apply("Q", "skip").await.unwrap_err().0, 409);
        let out = controls.apply("Q", "disable").await.unwrap();
        assert_eq!(out[0]["enabled"], false);
        assert!(!controls.get("Q", "Queue").unwrap().enabled());
    }
}
