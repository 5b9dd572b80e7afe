//! DynamoDB Streams event source: polls DynamoDB Local's stream of a table, shard by shard,
//! and invokes the function with Lambda's DynamoDB event.
//!
//! Per shard, one batch is in flight at a time and records are processed in order. A child
//! shard starts once its parent is finished. Behaviour on failure, as Lambda's:
//! - function error / timeout / crash: with `BisectBatchOnFunctionError` the batch is split in
//!   half and each half retried (a split does not count as a retry), else the batch is retried;
//! - `ReportBatchItemFailures`: records before the lowest failed sequence number are
//!   checkpointed, and the batch is retried from that record (this counts as a retry);
//! - after `MaximumRetryAttempts` retries, an on-failure record (Lambda's format) goes to the
//!   `DestinationConfig.OnFailure` SQS queue, the records are skipped, and the shard moves on.
//!
//! Checkpoints (the last sequence number done per shard) live in memory, and with `--data-dir`
//! also in a JSON file so a restart resumes where it stopped.

use crate::control::{MappingControl, Metrics, Wait};
use crate::esm::{parse_batch_response, BatchResponse, Context, Invoked, Throttle};
use crate::filter::Filters;
use crate::template::{EventSourceSpec, SourceKind, StartingPosition, REGION};
use aws_sdk_dynamodbstreams::error::ProvideErrorMetadata;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use aws_sdk_dynamodbstreams::Client;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Lambda polls a shard about four times a second when it is idle.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often the shard list is read again (a closed shard's children are looked up at once).
const RELIST: Duration = Duration::from_secs(2);
const GET_RECORDS_LIMIT: i32 = 1000;

// --- DynamoDB JSON -----------------------------------------------------------------------------

/// An item (a map of attribute values) in DynamoDB JSON (`{"S": ..}`, `{"N": ..}`,
/// `{"M": {..}}`, ...), as Lambda's event carries it: serde_dynamo's own wire form, the one
/// `aws_lambda_events` reads back.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    serde_json::to_value(serde_dynamo::Item::from(item.clone())).unwrap_or(Value::Null)
}

/// A stream record as Lambda's DynamoDB event record; None if it has no sequence number.
pub fn record_json(r: &Record, stream_arn: &str) -> Option<(String, Value)> {
    let d = r.dynamodb()?;
    let seq = d.sequence_number()?.to_string();
    let mut ddb = Map::new();
    if let Some(t) = d.approximate_creation_date_time() {
        ddb.insert("ApproximateCreationDateTime".into(), json!(t.secs()));
    }
    if let Some(k) = d.keys() {
        ddb.insert("Keys".into(), item_json(k));
    }
    if let Some(i) = d.new_image() {
        ddb.insert("NewImage".into(), item_json(i));
    }
    if let Some(i) = d.old_image() {
        ddb.insert("OldImage".into(), item_json(i));
    }
    ddb.insert("SequenceNumber".into(), json!(seq));
    ddb.insert("SizeBytes".into(), json!(d.size_bytes().unwrap_or_default()));
    if let Some(v) = d.stream_view_type() {
        ddb.insert("StreamViewType".into(), json!(v.as_str()));
    }
    let mut rec = json!({
        "eventID": r.event_id().unwrap_or_default(),
        "eventName": r.event_name().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": ddb,
        "eventSourceARN": stream_arn,
    });
    if let Some(u) = r.user_identity() {
        rec["userIdentity"] = json!({
            "type": u.r#type().unwrap_or_default(),
            "principalId": u.principal_id().unwrap_or_default(),
        });
    }
    Some((seq, rec))
}

// --- what to do after an invocation -----------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The whole batch is done: checkpoint its last record.
    Done,
    /// Records before index i are done (checkpoint the one before i); retry from i.
    RetryFrom(usize),
    /// The invocation failed as a whole.
    Error(String),
}

/// Lambda's reading of a stream batch's outcome. `seqs` are the batch's sequence numbers, in
/// order; with `ReportBatchItemFailures` the item identifiers are sequence numbers.
pub fn verdict(seqs: &[&str], report_failures: bool, outcome: &Invoked) -> Verdict {
    let payload = match outcome {
        Invoked::Ok(p) => p,
        Invoked::Failed(e) | Invoked::Unavailable(e) => return Verdict::Error(e.clone()),
        Invoked::Stopping => return Verdict::Error("the twin is stopping".into()),
    };
    if !report_failures {
        return Verdict::Done;
    }
    match parse_batch_response(payload, seqs) {
        BatchResponse::AllSucceeded => Verdict::Done,
        BatchResponse::Invalid(e) => Verdict::Error(format!("invalid batch response: {e}")),
        BatchResponse::ItemsFailed(ids) => {
            let first = seqs
                .iter()
                .position(|s| ids.iter().any(|id| id == s))
                .unwrap_or_default();
            Verdict::RetryFrom(first)
        }
    }
}

// --- checkpoints ------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardCheckpoint {
    /// The last sequence number done (processed, filtered out, or given up on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    /// The shard is closed and every record of it is done.
    #[serde(default)]
    pub finished: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MappingCheckpoints {
    stream_arn: String,
    #[serde(default)]
    shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckpointDoc {
    #[serde(default)]
    mappings: BTreeMap<String, MappingCheckpoints>,
}

/// Checkpoints of every stream mapping, by mapping (`Function/Event`) and shard.
pub struct CheckpointStore {
    path: Option<PathBuf>,
    doc: Mutex<CheckpointDoc>,
    dirty: AtomicBool,
    writing: tokio::sync::Mutex<()>,
}

impl CheckpointStore {
    /// In memory only (`path` None), or kept in `path` (read now if it exists).
    pub fn load(path: Option<PathBuf>) -> Result<Self, String> {
        let mut doc = CheckpointDoc::default();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(d) => doc = d,
                    Err(e) => eprintln!(
                        "twin: warning: {} is not a checkpoint file ({e}); streams start afresh",
                        p.display()
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
            }
        }
        Ok(CheckpointStore {
            path,
            doc: Mutex::new(doc),
            dirty: AtomicBool::new(false),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn doc(&self) -> MutexGuard<'_, CheckpointDoc> {
        self.doc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True if the store already follows this stream for this mapping; else it starts to
    /// (forgetting checkpoints of an older stream: the table was created anew).
    pub fn adopt(&self, mapping: &str, stream_arn: &str) -> bool {
        let mut doc = self.doc();
        if doc
            .mappings
            .get(mapping)
            .is_some_and(|m| m.stream_arn == stream_arn)
        {
            return true;
        }
        doc.mappings.insert(
            mapping.to_string(),
            MappingCheckpoints {
                stream_arn: stream_arn.to_string(),
                shards: BTreeMap::new(),
            },
        );
        self.dirty.store(true, Ordering::SeqCst);
        false
    }

    pub fn shard(&self, mapping: &str, shard: &str) -> Option<ShardCheckpoint> {
        self.doc().mappings.get(mapping)?.shards.get(shard).cloned()
    }

    fn update(&self, mapping: &str, shard: &str, f: impl FnOnce(&mut ShardCheckpoint)) {
        let mut doc = self.doc();
        if let Some(m) = doc.mappings.get_mut(mapping) {
            let before = m.shards.get(shard).cloned();
            let c = m.shards.entry(shard.to_string()).or_default();
            f(c);
            // Only real changes make a write (the idle poll re-sets the same checkpoint).
            if before.as_ref() != Some(c) {
                self.dirty.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Drop every checkpoint of the mapping (it is read again from the stream's start).
    pub fn forget(&self, mapping: &str, stream_arn: &str) {
        self.doc().mappings.insert(
            mapping.to_string(),
            MappingCheckpoints {
                stream_arn: stream_arn.to_string(),
                shards: BTreeMap::new(),
            },
        );
        self.dirty.store(true, Ordering::SeqCst);
    }

    pub fn ensure(&self, mapping: &str, shard: &str) {
        self.update(mapping, shard, |_| {});
    }

    pub fn set(&self, mapping: &str, shard: &str, seq: &str) {
        self.update(mapping, shard, |c| c.sequence_number = Some(seq.to_string()));
    }

    pub fn finish(&self, mapping: &str, shard: &str) {
        self.update(mapping, shard, |c| c.finished = true);
    }

    /// Write the file if anything changed (off the async threads).
    pub async fn flush(&self) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let _one_writer = self.writing.lock().await;
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        let text = match serde_json::to_vec_pretty(&*self.doc()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("twin: warning: cannot serialize stream checkpoints: {e}");
                return;
            }
        };
        let write = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        })
        .await;
        let failed = match write {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(e) = failed {
            self.dirty.store(true, Ordering::SeqCst);
            eprintln!("twin: warning: cannot write stream checkpoints: {e}");
        }
    }
}

/// Write changed checkpoints every second until the twin stops.
pub async fn flush_periodically(store: Arc<CheckpointStore>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => store.flush().await,
            _ = crate::esm::stopped(&mut shutdown) => return,
        }
    }
}

// --- the mapping --------------------------------------------------------------------------------

pub struct StreamMapping {
    spec: EventSourceSpec,
    /// `Function/Event`: the checkpoint key.
    key: String,
    label: String,
    ctx: Arc<Context>,
    client: Client,
    store: Arc<CheckpointStore>,
    stream_arn: String,
    starting_position: StartingPosition,
    bisect_on_error: bool,
    max_retry_attempts: Option<u32>,
    on_failure: Option<String>,
    filters: Filters,
    control: Arc<MappingControl>,
}

impl StreamMapping {
    pub fn new(
        spec: EventSourceSpec,
        ctx: Arc<Context>,
        client: Client,
        store: Arc<CheckpointStore>,
        control: Arc<MappingControl>,
    ) -> Result<Self, String> {
        let SourceKind::DynamoDb {
            stream_arn,
            starting_position,
            bisect_on_error,
            max_retry_attempts,
            on_failure,
        } = spec.kind.clone()
        else {
            return Err(format!("{}: not a DynamoDB event source", spec.name));
        };
        let filters = Filters::parse(&spec.filters).map_err(|e| format!("{}: {e}", spec.name))?;
        Ok(StreamMapping {
            key: format!("{}/{}", spec.function, spec.name),
            label: crate::esm::describe(&spec),
            spec,
            ctx,
            client,
            store,
            stream_arn,
            starting_position,
            bisect_on_error,
            max_retry_attempts,
            on_failure,
            filters,
            control,
        })
    }

    /// Every shard of the stream: (shard id, parent shard id).
    async fn list_shards(&self) -> Result<Vec<(String, Option<String>)>, String> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let resp = self
                .client
                .describe_stream()
                .stream_arn(&self.stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| format!("DescribeStream: {}", e.message().unwrap_or(&format!("{e:?}"))))?;
            let Some(desc) = resp.stream_description() else {
                return Ok(out);
            };
            for s in desc.shards() {
                if let Some(id) = s.shard_id() {
                    out.push((id.to_string(), s.parent_shard_id().map(str::to_string)));
                }
            }
            match desc.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => return Ok(out),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    At(StartingPosition),
    After(String),
}

/// Run a stream mapping until the twin stops: list shards, run one worker per shard.
pub async fn run(m: Arc<StreamMapping>) {
    let known = m.store.adopt(&m.key, &m.stream_arn);
    // Shards seen on the mapping's very first listing start at StartingPosition; shards that
    // appear later (children of closed shards) are read from their start.
    let mut first_listing = !known;
    let mut initial = m.starting_position;
    let mut running: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut workers: JoinSet<(String, bool)> = JoinSet::new();
    let mut errors = Throttle::default();
    let mut shutdown = m.ctx.shutdown.clone();
    let mut rewinds = m.control.subscribe_generation();
    let mut generation = *rewinds.borrow_and_update();
    loop {
        if m.ctx.stopping() {
            break;
        }
        if m.control.generation() != generation {
            // Re-created: every worker ends its batch and stops, the checkpoints go, and the
            // shards are read again from where it was re-created: TRIM_HORIZON (every record
            // still in the stream again) or LATEST (none of them).
            while workers.join_next().await.is_some() {}
            running.clear();
            finished.clear();
            m.store.forget(&m.key, &m.stream_arn);
            first_listing = true;
            initial = m.control.restart_at();
            generation = *rewinds.borrow_and_update();
            eprintln!("twin: {}: re-created at {}", m.label, initial.as_str());
        }
        match m.list_shards().await {
            Ok(shards) => {
                let present: HashSet<&str> = shards.iter().map(|(id, _)| id.as_str()).collect();
                for (id, parent) in &shards {
                    if running.contains(id) || finished.contains(id) {
                        continue;
                    }
                    let saved = m.store.shard(&m.key, id);
                    if saved.as_ref().is_some_and(|c| c.finished) {
                        finished.insert(id.clone());
                        continue;
                    }
                    let parent_done = match parent {
                        None => true,
                        Some(p) => {
                            finished.contains(p)
                                || !present.contains(p.as_str())
                                || m.store.shard(&m.key, p).is_some_and(|c| c.finished)
                        }
                    };
                    if !parent_done {
                        continue;
                    }
                    let start = match saved {
                        Some(ShardCheckpoint {
                            sequence_number: Some(seq),
                            ..
                        }) => Start::After(seq),
                        Some(_) => Start::At(m.starting_position),
                        None if first_listing => Start::At(initial),
                        None => Start::At(StartingPosition::TrimHorizon),
                    };
                    m.store.ensure(&m.key, id);
                    running.insert(id.clone());
                    let worker = ShardWorker::new(Arc::clone(&m), id.clone(), start, generation);
                    workers.spawn(worker.run());
                }
                first_listing = false;
            }
            Err(e) => errors.report(&m.label, &e),
        }
        tokio::select! {
            _ = crate::esm::stopped(&mut shutdown) => break,
            _ = tokio::time::sleep(RELIST) => {}
            _ = rewinds.changed() => {}
            Some(joined) = workers.join_next(), if !workers.is_empty() => {
                if let Ok((id, done)) = joined {
                    running.remove(&id);
                    if done {
                        finished.insert(id);
                    }
                }
            }
        }
    }
    while workers.join_next().await.is_some() {}
}

struct Rec {
    seq: String,
    json: Value,
}

enum Fetched {
    /// GetRecords answered with this many records (before filtering).
    Records(usize),
    /// Try again shortly.
    Retry,
    /// The stream or shard no longer exists.
    Gone,
}

struct ShardWorker {
    m: Arc<StreamMapping>,
    shard: String,
    start: Start,
    iterator: Option<String>,
    last_fetched: Option<String>,
    buffer: VecDeque<Rec>,
    buffered_since: Option<Instant>,
    closed: bool,
    errors: Throttle,
    /// The mapping's generation this worker reads for (a rewind ends it).
    generation: u64,
}

impl ShardWorker {
    fn new(m: Arc<StreamMapping>, shard: String, start: Start, generation: u64) -> Self {
        ShardWorker {
            m,
            shard,
            start,
            iterator: None,
            last_fetched: None,
            buffer: VecDeque::new(),
            buffered_since: None,
            closed: false,
            errors: Throttle::default(),
            generation,
        }
    }

    fn checkpoint(&self, seq: &str) {
        self.m.store.set(&self.m.key, &self.shard, seq);
    }

    /// Returns (shard id, finished: closed and all done).
    async fn run(mut self) -> (String, bool) {
        let batch_size = self.m.spec.batch_size;
        let window = Duration::from_secs(self.m.spec.batching_window_secs);
        loop {
            // Gather a batch: BatchSize records, the batching window, or the shard's end.
            loop {
                if self.m.ctx.stopping() {
                    return (self.shard, false);
                }
                // Disabled: nothing more is read or invoked until enabled (what is buffered
                // waits); rewound: this worker is done, a new one starts over.
                if !self.m.control.enabled() || self.m.control.generation() != self.generation {
                    match self.m.control.wait_enabled(&self.m.ctx, self.generation).await {
                        Wait::Enabled => {}
                        Wait::Rewound | Wait::Stopping => return (self.shard, false),
                    }
                }
                if self.buffer.len() >= batch_size || self.closed {
                    break;
                }
                if self.buffered_since.is_some_and(|t| t.elapsed() >= window) {
                    break;
                }
                match self.fetch().await {
                    Fetched::Records(n) => {
                        if n == 0 && !self.closed {
                            let pause = match self.buffered_since {
                                Some(t) => window.saturating_sub(t.elapsed()).min(IDLE_POLL),
                                None => IDLE_POLL,
                            };
                            if !self.m.ctx.sleep(pause).await {
                                return (self.shard, false);
                            }
                        }
                    }
                    Fetched::Retry => {
                        if !self.m.ctx.sleep(Duration::from_secs(1)).await {
                            return (self.shard, false);
                        }
                    }
                    Fetched::Gone => return (self.shard, false),
                }
            }
            if self.buffer.is_empty() {
                if self.closed {
                    self.m.store.finish(&self.m.key, &self.shard);
                    return (self.shard, true);
                }
                continue;
            }
            let n = batch_size.min(self.buffer.len());
            let batch: Vec<Rec> = self.buffer.drain(..n).collect();
            self.buffered_since = if self.buffer.is_empty() {
                None
            } else {
                Some(Instant::now())
            };
            if !self.process(batch).await {
                return (self.shard, false);
            }
            if self.buffer.is_empty() {
                if let Some(seq) = &self.last_fetched {
                    self.checkpoint(seq);
                }
            }
        }
    }

    async fn iterator(&mut self) -> Result<Option<String>, Fetched> {
        let (ty, seq) = match (&self.last_fetched, &self.start) {
            (Some(seq), _) | (None, Start::After(seq)) => {
                (ShardIteratorType::AfterSequenceNumber, Some(seq.clone()))
            }
            (None, Start::At(StartingPosition::TrimHorizon)) => (ShardIteratorType::TrimHorizon, None),
            (None, Start::At(StartingPosition::Latest)) => (ShardIteratorType::Latest, None),
        };
        let resp = self
            .m
            .client
            .get_shard_iterator()
            .stream_arn(&self.m.stream_arn)
            .shard_id(&self.shard)
            .shard_iterator_type(ty)
            .set_sequence_number(seq.clone())
            .send()
            .await;
        match resp {
            Ok(out) => Ok(out.shard_iterator().map(str::to_string)),
            Err(e) => match e.code() {
                Some("ResourceNotFoundException") => Err(Fetched::Gone),
                Some("TrimmedDataAccessException") if seq.is_some() => {
                    eprintln!(
                        "twin: {}: shard {}: records after the checkpoint were trimmed; reading from TRIM_HORIZON",
                        self.m.label, self.shard
                    );
                    self.last_fetched = None;
                    self.start = Start::At(StartingPosition::TrimHorizon);
                    Err(Fetched::Retry)
                }
                _ => {
                    let msg = format!(
                        "GetShardIterator {}: {}",
                        self.shard,
                        e.message().unwrap_or(&format!("{e:?}"))
                    );
                    self.errors.report(&self.m.label, &msg);
                    Err(Fetched::Retry)
                }
            },
        }
    }

    async fn fetch(&mut self) -> Fetched {
        let it = match self.iterator.take() {
            Some(it) => it,
            None => match self.iterator().await {
                Ok(Some(it)) => it,
                // No iterator: the shard is closed and nothing is left after the position.
                Ok(None) => {
                    self.closed = true;
                    return Fetched::Records(0);
                }
                Err(f) => return f,
            },
        };
        let mut shutdown = self.m.ctx.shutdown.clone();
        let call = self
            .m
            .client
            .get_records()
            .shard_iterator(it)
            .limit(GET_RECORDS_LIMIT)
            .send();
        let resp = tokio::select! {
            r = call => r,
            _ = crate::esm::stopped(&mut shutdown) => return Fetched::Retry,
        };
        match resp {
            Ok(out) => {
                self.iterator = out.next_shard_iterator().map(str::to_string);
                if self.iterator.is_none() {
                    self.closed = true;
                }
                let metrics = &self.m.control.metrics;
                Metrics::add(&metrics.polled, out.records().len());
                for r in out.records() {
                    let Some((seq, json)) = record_json(r, &self.m.stream_arn) else {
                        continue;
                    };
                    self.last_fetched = Some(seq.clone());
                    // Lambda drops records that match no filter (before batching).
                    if !self.m.filters.passes(&json) {
                        Metrics::add(&metrics.filtered_out, 1);
                    } else {
                        if self.buffer.is_empty() {
                            self.buffered_since = Some(Instant::now());
                        }
                        self.buffer.push_back(Rec { seq, json });
                    }
                }
                if self.buffer.is_empty() {
                    if let Some(seq) = &self.last_fetched {
                        self.checkpoint(seq);
                    }
                }
                Fetched::Records(out.records().len())
            }
            Err(e) => match e.code() {
                Some("ResourceNotFoundException") => Fetched::Gone,
                // A new iterator from the last record read is asked for on the next fetch.
                Some("ExpiredIteratorException") => Fetched::Records(0),
                // DynamoDB Local answers this to a TRIM_HORIZON iterator taken while the shard
                // was empty once the first record's sequence number is past it: a new
                // TRIM_HORIZON iterator reads on. Past a real checkpoint, records were trimmed.
                Some("TrimmedDataAccessException") => {
                    let quiet =
                        self.last_fetched.is_none() && self.start == Start::At(StartingPosition::TrimHorizon);
                    if !quiet {
                        eprintln!(
                            "twin: {}: shard {}: records after {} were trimmed; reading from TRIM_HORIZON",
                            self.m.label,
                            self.shard,
                            self.last_fetched.as_deref().unwrap_or("the start position")
                        );
                        self.last_fetched = None;
                        self.start = Start::At(StartingPosition::TrimHorizon);
                    }
                    Fetched::Records(0)
                }
                _ => {
                    let msg = format!(
                        "GetRecords {}: {}",
                        self.shard,
                        e.message().unwrap_or(&format!("{e:?}"))
                    );
                    self.errors.report(&self.m.label, &msg);
                    Fetched::Retry
                }
            },
        }
    }

    fn exhausted(&self, failures: u32) -> bool {
        // `failures` invocations failed: failures - 1 retries were made.
        self.m.max_retry_attempts.is_some_and(|max| failures > max)
    }

    fn backoff(failures: u32) -> Duration {
        Duration::from_millis(100u64 << failures.saturating_sub(1).min(4)).min(Duration::from_secs(2))
    }

    /// Process one batch to the end (done, or given up on). False if the twin is stopping.
    async fn process(&mut self, batch: Vec<Rec>) -> bool {
        let ctx = Arc::clone(&self.m.ctx);
        let function = self.m.spec.function.clone();
        let report = self.m.spec.report_batch_item_failures;
        let mut work: VecDeque<(Vec<Rec>, u32)> = VecDeque::from([(batch, 0)]);
        while let Some((mut recs, mut failures)) = work.pop_front() {
            loop {
                if !ctx.wait_for_binary(&function).await {
                    return false;
                }
                let event = json!({ "Records": recs.iter().map(|r| &r.json).collect::<Vec<_>>() });
                let started = Instant::now();
                let outcome = ctx.invoke(&function, &event).await;
                let took = started.elapsed();
                let n = recs.len();
                let metrics = &self.m.control.metrics;
                match &outcome {
                    Invoked::Stopping => return false,
                    Invoked::Unavailable(e) => {
                        self.errors.report(&self.m.label, e);
                        if !ctx.sleep(Duration::from_secs(1)).await {
                            return false;
                        }
                        continue;
                    }
                    _ => Metrics::add(&metrics.invoked, n),
                }
                let seqs: Vec<&str> = recs.iter().map(|r| r.seq.as_str()).collect();
                match verdict(&seqs, report, &outcome) {
                    Verdict::Done => {
                        ctx.log_batch(&self.m.label, n, 0, took, "");
                        if let Some(last) = recs.last() {
                            self.checkpoint(&last.seq);
                        }
                        break;
                    }
                    Verdict::RetryFrom(i) => {
                        Metrics::add(&metrics.failed_invoke, n - i);
                        failures += 1;
                        let note = format!("retrying from {}", recs[i].seq);
                        ctx.log_batch(&self.m.label, n, n - i, took, &note);
                        if i > 0 {
                            self.checkpoint(&recs[i - 1].seq);
                            recs.drain(..i);
                        }
                        if self.exhausted(failures) {
                            self.give_up(&recs, failures, None).await;
                            break;
                        }
                    }
                    Verdict::Error(e) => {
                        Metrics::add(&metrics.failed_invoke, n);
                        ctx.log_batch(&self.m.label, n, n, took, &e);
                        if self.m.bisect_on_error && recs.len() > 1 {
                            let second = recs.split_off(recs.len() / 2);
                            work.push_front((second, failures));
                            work.push_front((recs, failures));
                            break;
                        }
                        failures += 1;
                        if self.exhausted(failures) {
                            self.give_up(&recs, failures, Some("Unhandled")).await;
                            break;
                        }
                    }
                }
                if !ctx.sleep(Self::backoff(failures)).await {
                    return false;
                }
            }
        }
        true
    }

    /// Retries exhausted: send Lambda's on-failure record to the destination (if any) and
    /// skip the records.
    async fn give_up(&mut self, recs: &[Rec], invocations: u32, function_error: Option<&str>) {
        let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
            return;
        };
        let doc = on_failure_record(OnFailure {
            function_arn: &crate::template::function_arn(&self.m.spec.function),
            shard_id: &self.shard,
            stream_arn: &self.m.stream_arn,
            first: &first.json,
            last: &last.json,
            batch_size: recs.len(),
            invocations,
            function_error,
        });
        let what = format!(
            "{}: retry attempts exhausted for {} record(s) {}..{} of shard {}",
            self.m.label,
            recs.len(),
            first.seq,
            last.seq,
            self.shard
        );
        match &self.m.on_failure {
            None => eprintln!("twin: {what}; no on-failure destination: records skipped"),
            Some(dest) => {
                let mut sent = Err(String::new());
                for attempt in 0..3 {
                    if attempt > 0 && !self.m.ctx.sleep(Duration::from_secs(1)).await {
                        break;
                    }
                    sent = self.send_to(dest, &doc).await;
                    if sent.is_ok() {
                        break;
                    }
                }
                match sent {
                    Ok(()) => {
                        Metrics::add(&self.m.control.metrics.on_failure_delivered, recs.len());
                        eprintln!("twin: {what}; on-failure record sent to {dest}")
                    }
                    Err(e) => eprintln!("twin: {what}; cannot send the on-failure record to {dest}: {e}"),
                }
            }
        }
        self.checkpoint(&last.seq);
    }

    async fn send_to(&self, dest: &str, doc: &Value) -> Result<(), String> {
        let url = self.m.ctx.queues.url_for_arn(dest).await?;
        self.m
            .ctx
            .queues
            .client
            .send_message()
            .queue_url(url)
            .message_body(doc.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("SendMessage: {e:?}"))
    }
}

pub struct OnFailure<'a> {
    pub function_arn: &'a str,
    pub shard_id: &'a str,
    pub stream_arn: &'a str,
    pub first: &'a Value,
    pub last: &'a Value,
    pub batch_size: usize,
    pub invocations: u32,
    pub function_error: Option<&'a str>,
}

fn arrival(rec: &Value) -> Value {
    rec["dynamodb"]["ApproximateCreationDateTime"]
        .as_i64()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null)
}

/// Lambda's on-failure record for a DynamoDB stream batch.
pub fn on_failure_record(f: OnFailure<'_>) -> Value {
    let mut response = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
    if let Some(e) = f.function_error {
        response["functionError"] = json!(e);
    }
    json!({
        "requestContext": {
            "requestId": uuid::Uuid::new_v4().to_string(),
            "functionArn": f.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": f.invocations,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "DDBStreamBatchInfo": {
            "shardId": f.shard_id,
            "startSequenceNumber": f.first["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": f.last["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": arrival(f.first),
            "approximateArrivalOfLastRecord": arrival(f.last),
            "batchSize": f.batch_size,
            "streamArn": f.stream_arn,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{Identity, OperationType, StreamRecord, StreamViewType};
    use bytes::Bytes;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn every_type() -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("s".to_string(), s("text")),
            ("n".to_string(), AttributeValue::N("12.50".into())),
            (
                "b".to_string(),
                AttributeValue::B(Blob::new(vec![0u8, 1, 2, 255])),
            ),
            ("ss".to_string(), AttributeValue::Ss(vec!["a".into(), "b".into()])),
            (
                "ns".to_string(),
                AttributeValue::Ns(vec!["1".into(), "2.5".into()]),
            ),
            (
                "bs".to_string(),
                AttributeValue::Bs(vec![Blob::new(vec![1u8]), Blob::new(vec![2u8])]),
            ),
            ("bool".to_string(), AttributeValue::Bool(true)),
            ("null".to_string(), AttributeValue::Null(true)),
            (
                "l".to_string(),
                AttributeValue::L(vec![
                    s("x"),
                    AttributeValue::N("1".into()),
                    AttributeValue::Bool(false),
                ]),
            ),
            (
                "m".to_string(),
                AttributeValue::M(HashMap::from([
                    ("inner".to_string(), s("y")),
                    (
                        "deep".to_string(),
                        AttributeValue::M(HashMap::from([("z".to_string(), s("1"))])),
                    ),
                ])),
            ),
        ])
    }

    #[test]
    fn dynamodb_json_of_every_type() {
        let j = item_json(&every_type());
        assert_eq!(
            j,
            json!({
                "s": {"S": "text"},
                "n": {"N": "12.50"},
                "b": {"B": "AAEC/w=="},
                "ss": {"SS": ["a", "b"]},
                "ns": {"NS": ["1", "2.5"]},
                "bs": {"BS": ["AQ==", "Ag=="]},
                "bool": {"BOOL": true},
                "null": {"NULL": true},
                "l": {"L": [{"S": "x"}, {"N": "1"}, {"BOOL": false}]},
                "m": {"M": {"inner": {"S": "y"}, "deep": {"M": {"z": {"S": "1"}}}}},
            })
        );
    }

    const ARN: &str = "arn:aws:dynamodb:ddblocal:000000000000:table/Payments/stream/2026-11-25T09:00:00.000";

    fn record(seq: &str, name: OperationType, new: Option<HashMap<String, AttributeValue>>) -> Record {
        record_by(seq, name, new, None)
    }

    fn record_by(
        seq: &str,
        name: OperationType,
        new: Option<HashMap<String, AttributeValue>>,
        who: Option<Identity>,
    ) -> Record {
        let keys = HashMap::from([
            ("pk".to_string(), s("OUTBOX#obx_1")),
            ("sk".to_string(), s("OUTBOX")),
        ]);
        let mut d = StreamRecord::builder()
            .approximate_creation_date_time(DateTime::from_secs(1_795_597_620))
            .set_keys(Some(keys.clone()))
            .sequence_number(seq)
            .size_bytes(123)
            .stream_view_type(StreamViewType::NewAndOldImages);
        if let Some(n) = new {
            d = d.set_new_image(Some(n));
        }
        if name != OperationType::Insert {
            d = d.set_old_image(Some(keys));
        }
        Record::builder()
            .event_id(format!("ev-{seq}"))
            .event_name(name)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("ddblocal")
            .dynamodb(d.build())
            .set_user_identity(who)
            .build()
    }

    #[test]
    fn record_has_lambdas_shape() {
        let (seq, j) =
            record_json(&record("000100", OperationType::Insert, Some(every_type())), ARN).expect("record");
        assert_eq!(seq, "000100");
        assert_eq!(j["eventID"], "ev-000100");
        assert_eq!(j["eventName"], "INSERT");
        assert_eq!(j["eventVersion"], "1.1");
        assert_eq!(j["eventSource"], "aws:dynamodb");
        assert_eq!(j["awsRegion"], REGION);
        assert_eq!(j["eventSourceARN"], ARN);
        let d = &j["dynamodb"];
        assert_eq!(d["ApproximateCreationDateTime"], 1_795_597_620);
        assert_eq!(d["Keys"]["pk"], json!({"S": "OUTBOX#obx_1"}));
        assert_eq!(d["NewImage"]["m"]["M"]["inner"], json!({"S": "y"}));
        assert!(d.get("OldImage").is_none());
        assert_eq!(d["SequenceNumber"], "000100");
        assert_eq!(d["SizeBytes"], 123);
        assert_eq!(d["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert!(j.get("userIdentity").is_none());

        let ttl = record_by(
            "000101",
            OperationType::Remove,
            None,
            Some(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            ),
        );
        let (_, j) = record_json(&ttl, ARN).expect("record");
        assert_eq!(
            j["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        assert!(j["dynamodb"].get("NewImage").is_none());
    }

    /// The events we build parse with the types the functions use.
    #[test]
    fn events_parse_as_aws_lambda_events() {
        use aws_lambda_events::event::dynamodb::Event;
        let recs: Vec<Value> = [
            record("000100", OperationType::Insert, Some(every_type())),
            record("000200", OperationType::Modify, Some(every_type())),
            record("000300", OperationType::Remove, None),
        ]
        .iter()
        .filter_map(|r| record_json(r, ARN))
        .map(|(_, j)| j)
        .collect();
        let event = json!({ "Records": recs });
        let parsed: Event = serde_json::from_value(event).expect("DynamoDB event parses");
        assert_eq!(parsed.records.len(), 3);
        let r = &parsed.records[0];
        assert_eq!(r.event_name, "INSERT");
        assert_eq!(r.event_source_arn.as_deref(), Some(ARN));
        assert_eq!(r.change.sequence_number.as_deref(), Some("000100"));
        assert_eq!(r.change.size_bytes, 123);
        assert_eq!(r.change.approximate_creation_date_time.timestamp(), 1_795_597_620);
        // The image survives the functions' parser unchanged.
        let back = serde_json::to_value(&r.change.new_image).expect("serialize");
        assert_eq!(back, item_json(&every_type()));
        assert!(parsed.records[2].change.new_image.is_empty());
        assert!(!parsed.records[2].change.old_image.is_empty());
    }

    fn ok(body: &str) -> Invoked {
        Invoked::Ok(Bytes::from(body.to_string()))
    }

    #[test]
    fn checkpoint_goes_before_the_lowest_failed_record() {
        let seqs = ["100", "200", "300", "400"];
        let failures = r#"{"batchItemFailures":[{"itemIdentifier":"300"},{"itemIdentifier":"200"}]}"#;
        assert_eq!(verdict(&seqs, true, &ok(failures)), Verdict::RetryFrom(1));
        let first = r#"{"batchItemFailures":[{"itemIdentifier":"100"}]}"#;
        assert_eq!(verdict(&seqs, true, &ok(first)), Verdict::RetryFrom(0));
        assert_eq!(
            verdict(&seqs, true, &ok(r#"{"batchItemFailures":[]}"#)),
            Verdict::Done
        );
        assert_eq!(verdict(&seqs, true, &ok("null")), Verdict::Done);
        // Without ReportBatchItemFailures the response is not read.
        assert_eq!(verdict(&seqs, false, &ok(failures)), Verdict::Done);
        // An unknown identifier fails the whole batch (bisect / retry applies).
        let bad = r#"{"batchItemFailures":[{"itemIdentifier":"999"}]}"#;
        assert!(matches!(verdict(&seqs, true, &ok(bad)), Verdict::Error(_)));
        assert!(matches!(
            verdict(&seqs, true, &Invoked::Failed("crash".into())),
            Verdict::Error(_)
        ));
    }

    #[test]
    fn on_failure_record_has_lambdas_shape() {
        let (_, a) = record_json(&record("100", OperationType::Insert, None), ARN).expect("a");
        let (_, b) = record_json(&record("200", OperationType::Insert, None), ARN).expect("b");
        let doc = on_failure_record(OnFailure {
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:Relay",
            shard_id: "shardId-1",
            stream_arn: ARN,
            first: &a,
            last: &b,
            batch_size: 2,
            invocations: 6,
            function_error: Some("Unhandled"),
        });
        assert_eq!(doc["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(doc["requestContext"]["approximateInvokeCount"], 6);
        assert_eq!(doc["responseContext"]["functionError"], "Unhandled");
        let info = &doc["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], "shardId-1");
        assert_eq!(info["startSequenceNumber"], "100");
        assert_eq!(info["endSequenceNumber"], "200");
        assert_eq!(info["batchSize"], 2);
        assert_eq!(info["streamArn"], ARN);
        assert_eq!(info["approximateArrivalOfFirstRecord"], "2026-11-25T09:07:00Z");
    }

    #[test]
    fn checkpoints_survive_a_reload() {
        let dir = std::env::temp_dir().join(format!("twin-ck-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("checkpoints.json");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = CheckpointStore::load(Some(path.clone())).expect("load");
        assert!(!store.adopt("Fn/Ev", ARN));
        store.ensure("Fn/Ev", "shard-a");
        store.set("Fn/Ev", "shard-a", "300");
        store.finish("Fn/Ev", "shard-b");
        rt.block_on(store.flush());
        let again = CheckpointStore::load(Some(path.clone())).expect("reload");
        assert!(again.adopt("Fn/Ev", ARN));
        assert_eq!(
            again.shard("Fn/Ev", "shard-a"),
            Some(ShardCheckpoint {
                sequence_number: Some("300".into()),
                finished: false
            })
        );
        assert!(again.shard("Fn/Ev", "shard-b").is_some_and(|c| c.finished));
        // Another stream (the table was made anew): start afresh.
        assert!(!again.adopt("Fn/Ev", "arn:other/stream/x"));
        assert_eq!(again.shard("Fn/Ev", "shard-a"), None);
        let _ = std::fs::remove_dir_all(dir);
    }
}
