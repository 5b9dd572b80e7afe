//! Event-source mappings read from the template: DynamoDB Streams and SQS pollers that invoke
//! the functions through the instance pool, as Lambda's pollers do.
//!
//! This module holds what both kinds share: reading the function's batch response
//! (`batchItemFailures`), the invocation outcome, shutdown, and starting/stopping the pollers.

use crate::control::Controls;
use crate::queues::Queues;
use crate::runtime::{InvokeError, Pool};
use crate::schedules::Schedules;
use crate::template::{queue_name_from_arn, table_name_from_arn, EventSourceSpec, FunctionSpec, SourceKind};
use crate::{sqs_source, streams};
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a function's answer says about a batch (with `ReportBatchItemFailures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchResponse {
    /// Null, empty, `{}`, or an empty / null `batchItemFailures`.
    AllSucceeded,
    /// The item identifiers listed, each one of the batch's, in the order given (no repeats).
    ItemsFailed(Vec<String>),
    /// Lambda treats the whole batch as failed: not JSON, not the response's shape, or an
    /// item identifier that is missing, empty, or not one of the batch's.
    Invalid(String),
}

/// AWS's rules for a partial batch response (the same for SQS and streams).
pub fn parse_batch_response(payload: &[u8], ids: &[&str]) -> BatchResponse {
    let text = std::str::from_utf8(payload).unwrap_or_default().trim();
    if text.is_empty() {
        return BatchResponse::AllSucceeded;
    }
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return BatchResponse::Invalid(format!("the response is not JSON: {e}")),
    };
    let obj = match &v {
        Value::Null => return BatchResponse::AllSucceeded,
        Value::Object(o) => o,
        _ => return BatchResponse::Invalid("the response is not a JSON object".into()),
    };
    let items = match obj.get("batchItemFailures") {
        None | Some(Value::Null) => return BatchResponse::AllSucceeded,
        Some(Value::Array(a)) => a,
        Some(_) => return BatchResponse::Invalid("batchItemFailures is not a list".into()),
    };
    let mut failed: Vec<String> = Vec::new();
    for item in items {
        let id = match item.get("itemIdentifier") {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) => return BatchResponse::Invalid("an itemIdentifier is empty".into()),
            _ => return BatchResponse::Invalid("a batchItemFailures entry has no itemIdentifier".into()),
        };
        if !ids.contains(&id.as_str()) {
            return BatchResponse::Invalid(format!("itemIdentifier {id:?} is not in the batch"));
        }
        if !failed.contains(id) {
            failed.push(id.clone());
        }
    }
    if failed.is_empty() {
        BatchResponse::AllSucceeded
    } else {
        BatchResponse::ItemsFailed(failed)
    }
}

/// Resolves once the twin starts stopping (holds no borrow of the channel across awaits).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// An invocation's outcome, as a poller sees it.
#[derive(Debug)]
pub enum Invoked {
    /// The function answered (its payload).
    Ok(Bytes),
    /// A function error, a timeout or a crash: counts as a failed attempt.
    Failed(String),
    /// The function could not be started at all (its binary is missing or not executable):
    /// not the function's fault, so it is retried without counting an attempt.
    Unavailable(String),
    /// The twin is stopping: give up without side effects.
    Stopping,
}

pub struct Context {
    pub pool: Arc<Pool>,
    pub queues: Arc<Queues>,
    pub echo: bool,
    pub shutdown: watch::Receiver<bool>,
}

impl Context {
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleep; false if the twin started stopping meanwhile.
    pub async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = crate::esm::stopped(&mut rx) => false,
        }
    }

    /// Wait until the function's binary exists (the banner warns when it does not; it may be
    /// built while the twin runs): nothing is read from a stream or a queue for a function that
    /// cannot run. False if the twin started stopping meanwhile.
    pub async fn wait_for_binary(&self, function: &str) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            if self.pool.binary_exists(function) {
                return true;
            }
            if !self.sleep(Duration::from_secs(1)).await {
                return false;
            }
        }
    }

    /// Invoke the function with an event; stops waiting when the twin stops.
    pub async fn invoke(&self, function: &str, event: &Value) -> Invoked {
        match serde_json::to_vec(event) {
            Ok(b) => self.invoke_bytes(function, Bytes::from(b)).await,
            Err(e) => Invoked::Failed(format!("cannot serialize the event: {e}")),
        }
    }

    /// Invoke the function with an event already serialized (a schedule's `Input` is passed
    /// as written); stops waiting when the twin stops.
    pub async fn invoke_bytes(&self, function: &str, bytes: Bytes) -> Invoked {
        let mut rx = self.shutdown.clone();
        let outcome = tokio::select! {
            r = self.pool.invoke_bytes(function, bytes) => r,
            _ = crate::esm::stopped(&mut rx) => return Invoked::Stopping,
        };
        match outcome {
            Ok(payload) => Invoked::Ok(payload),
            Err(InvokeError::ShuttingDown) => Invoked::Stopping,
            Err(e @ (InvokeError::Spawn(_) | InvokeError::UnknownFunction(_))) => {
                Invoked::Unavailable(e.to_string())
            }
            Err(e) => Invoked::Failed(e.to_string()),
        }
    }

    /// A batch line on the twin's stderr (only with TWIN_ECHO_LOGS=1).
    pub fn log_batch(&self, mapping: &str, size: usize, failed: usize, took: Duration, note: &str) {
        if self.echo {
            eprintln!(
                "twin: {mapping}: batch of {size}, {failed} failed, {} ms{}{note}",
                took.as_millis(),
                if note.is_empty() { "" } else { ": " }
            );
        }
    }
}

/// Prints a recurring error at most every 30 s (or when it changes).
#[derive(Default)]
pub struct Throttle {
    last: Option<(std::time::Instant, String)>,
}

impl Throttle {
    pub fn report(&mut self, what: &str, msg: &str) {
        let now = std::time::Instant::now();
        let quiet = self
            .last
            .as_ref()
            .is_some_and(|(t, m)| m == msg && now.duration_since(*t) < Duration::from_secs(30));
        if !quiet {
            eprintln!("twin: {what}: {msg}");
            self.last = Some((now, msg.to_string()));
        }
    }
}

/// A human name for a mapping: `Function ← source`.
pub fn describe(spec: &EventSourceSpec) -> String {
    let source = match &spec.kind {
        SourceKind::DynamoDb { stream_arn, .. } => {
            format!("{} stream", table_name_from_arn(stream_arn).unwrap_or(stream_arn))
        }
        SourceKind::Sqs { queue_arn, .. } => {
            format!("{} queue", queue_name_from_arn(queue_arn).unwrap_or(queue_arn))
        }
    };
    format!("{} ← {source}", spec.function)
}

/// One banner line per mapping.
pub fn banner_lines(functions: &[FunctionSpec]) -> Vec<String> {
    let mut out = Vec::new();
    for spec in functions.iter().flat_map(|f| &f.event_sources) {
        let mut opts = vec![format!("batch {}", spec.batch_size)];
        if spec.batching_window_secs > 0 {
            opts.push(format!("window {} s", spec.batching_window_secs));
        }
        match &spec.kind {
            SourceKind::DynamoDb {
                starting_position,
                bisect_on_error,
                max_retry_attempts,
                on_failure,
                ..
            } => {
                opts.insert(0, starting_position.as_str().to_string());
                if *bisect_on_error {
                    opts.push("bisect".into());
                }
                opts.push(match max_retry_attempts {
                    Some(n) => format!("{n} retries"),
                    None => "retries until expiry".into(),
                });
                if let Some(d) = on_failure {
                    opts.push(format!("on failure → {}", queue_name_from_arn(d).unwrap_or(d)));
                }
            }
            SourceKind::Sqs { max_concurrency, .. } => {
                opts.push(format!("{max_concurrency} pollers"));
            }
        }
        if spec.report_batch_item_failures {
            opts.push("ReportBatchItemFailures".into());
        }
        if !spec.filters.is_empty() {
            opts.push(format!("{} filter(s)", spec.filters.len()));
        }
        if !spec.enabled {
            opts.push("DISABLED".into());
        }
        out.push(format!("{} ({})", describe(spec), opts.join(", ")));
    }
    out
}

/// The running pollers.
pub struct EventSources {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    checkpoints: Arc<streams::CheckpointStore>,
    ctx: Arc<Context>,
}

impl EventSources {
    /// Start a poller set per enabled mapping. `checkpoint_file` (with `--data-dir`) keeps the
    /// streams' checkpoints across restarts.
    pub fn start(
        functions: &[FunctionSpec],
        pool: Arc<Pool>,
        queues: Arc<Queues>,
        ddb_streams: aws_sdk_dynamodbstreams::Client,
        echo: bool,
        checkpoint_file: Option<PathBuf>,
        controls: &Controls,
    ) -> Result<Self, String> {
        let (stop, shutdown) = watch::channel(false);
        let ctx = Arc::new(Context {
            pool,
            queues,
            echo,
            shutdown,
        });
        let checkpoints = Arc::new(streams::CheckpointStore::load(checkpoint_file)?);
        let mut tasks = JoinSet::new();
        let mut seen = HashSet::new();
        for spec in functions.iter().flat_map(|f| &f.event_sources) {
            if !seen.insert((spec.function.clone(), spec.name.clone())) {
                continue;
            }
            // A mapping disabled in the template runs too, waiting until it is enabled.
            let control = controls
                .get(&spec.function, &spec.name)
                .ok_or_else(|| format!("{}/{}: no control", spec.function, spec.name))?;
            match &spec.kind {
                SourceKind::DynamoDb { .. } => {
                    let mapping = streams::StreamMapping::new(
                        spec.clone(),
                        Arc::clone(&ctx),
                        ddb_streams.clone(),
                        Arc::clone(&checkpoints),
                        control,
                    )?;
                    tasks.spawn(streams::run(Arc::new(mapping)));
                }
                SourceKind::Sqs { max_concurrency, .. } => {
                    let mapping = Arc::new(sqs_source::SqsMapping::new(
                        spec.clone(),
                        Arc::clone(&ctx),
                        control,
                    )?);
                    for _ in 0..*max_concurrency {
                        tasks.spawn(sqs_source::run_poller(Arc::clone(&mapping)));
                    }
                }
            }
        }
        tasks.spawn(streams::flush_periodically(
            Arc::clone(&checkpoints),
            ctx.shutdown.clone(),
        ));
        Ok(EventSources {
            stop,
            tasks,
            checkpoints,
            ctx,
        })
    }

    /// Run the template's schedules, invoking as the pollers do; they stop with them.
    pub fn run_schedules(&mut self, schedules: &Schedules) {
        schedules.start(&self.ctx, &mut self.tasks);
    }

    /// Stop polling and scheduling: in-flight invocations are abandoned (their SQS messages
    /// come back after the visibility timeout; their stream records are read again from the
    /// checkpoint; a schedule's fire is not retried).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(3), drain).await.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        self.checkpoints.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> BatchResponse {
        parse_batch_response(s.as_bytes(), &["a", "b", "c"])
    }

    #[test]
    fn success_shapes() {
        for ok in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(parse(ok), BatchResponse::AllSucceeded, "{ok}");
        }
    }

    #[test]
    fn listed_failures() {
        assert_eq!(
            parse(
                r#"{"batchItemFailures":[{"itemIdentifier":"c"},{"itemIdentifier":"a"},{"itemIdentifier":"c"}]}"#
            ),
            BatchResponse::ItemsFailed(vec!["c".into(), "a".into()])
        );
    }

    #[test]
    fn invalid_responses_fail_the_whole_batch() {
        for bad in [
            "not json",
            r#""ok""#,
            r#"{"batchItemFailures":{}}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"id":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
        ] {
            assert!(matches!(parse(bad), BatchResponse::Invalid(_)), "{bad}");
        }
    }
}
