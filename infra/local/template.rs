//! SAM template parsing and intrinsic-function resolution.
//!
//! The template is read as a `serde_yaml_ng::Value`. CloudFormation short tags (`!Ref`, `!GetAtt`,
//! `!Sub`, `!Join`) arrive as tagged values; the long forms (`Ref`, `Fn::GetAtt`, `Fn::Sub`,
//! `Fn::Join`) arrive as one-key mappings. Both are handled the same way.

use crate::schedule_expr::Expression;
use serde_yaml_ng::{Mapping, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "000000000000";
pub const STACK_NAME: &str = "local";

pub const T_TABLE: &str = "AWS::DynamoDB::Table";
pub const T_QUEUE: &str = "AWS::SQS::Queue";
pub const T_BUCKET: &str = "AWS::S3::Bucket";
pub const T_FUNCTION: &str = "AWS::Serverless::Function";
pub const T_HTTP_API: &str = "AWS::Serverless::HttpApi";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub attribute_name: String,
    /// HASH or RANGE
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<KeyElement>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_id: String,
    pub name: String,
    /// (name, type S|N|B)
    pub attribute_definitions: Vec<(String, String)>,
    pub key_schema: Vec<KeyElement>,
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub local_secondary_indexes: Vec<IndexSpec>,
    /// Some(view type) when the table has a stream.
    pub stream_view_type: Option<String>,
    /// Some(attribute) when TTL is enabled.
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Upper-cased method, or `ANY`.
    pub method: String,
    /// Path with `{param}` / `{proxy+}` segments, or `$default`.
    pub path: String,
}

impl RouteSpec {
    /// API Gateway's route key, e.g. `POST /v1/payments` (or `$default`).
    pub fn route_key(&self) -> String {
        if self.path == "$default" {
            "$default".to_string()
        } else {
            format!("{} {}", self.method, self.path)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// AWS_LAMBDA_FUNCTION_NAME (FunctionName property, else the logical id).
    pub function_name: String,
    /// Binary name (Metadata.BuildProperties.Binary).
    pub binary: String,
    pub handler: String,
    pub timeout_secs: u64,
    pub memory_mb: u64,
    /// Resolved environment variables.
    pub environment: BTreeMap<String, String>,
    pub routes: Vec<RouteSpec>,
    /// Event-source mappings (`Type: DynamoDB` / `Type: SQS` events), in template order.
    pub event_sources: Vec<EventSourceSpec>,
    /// EventBridge schedules (`Type: Schedule` events), in template order.
    pub schedules: Vec<ScheduleSpec>,
}

/// One `Events` entry of `Type: Schedule`: an EventBridge rule that invokes the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// The function's logical id.
    pub function: String,
    /// The event's key under `Events`.
    pub name: String,
    /// `Schedule`, parameters resolved, as written (e.g. `rate(1 hour)`).
    pub expression: String,
    pub schedule: Expression,
    /// False for `Enabled: false` or `State: DISABLED`: the rule starts paused.
    pub enabled: bool,
    /// `Input`: JSON text the function gets instead of the Scheduled Event (validated).
    pub input: Option<String>,
    /// The rule's name in its ARN: `Name`, else `<Function>-<Event>`.
    pub rule_name: String,
}

impl ScheduleSpec {
    pub fn rule_arn(&self) -> String {
        format!("arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{}", self.rule_name)
    }
}

/// Where a DynamoDB stream mapping starts when it has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
}

impl StartingPosition {
    pub fn as_str(self) -> &'static str {
        match self {
            StartingPosition::TrimHorizon => "TRIM_HORIZON",
            StartingPosition::Latest => "LATEST",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    DynamoDb {
        stream_arn: String,
        starting_position: StartingPosition,
        bisect_on_error: bool,
        /// None = retry until the record expires (AWS's -1).
        max_retry_attempts: Option<u32>,
        /// `DestinationConfig.OnFailure.Destination` (an SQS queue ARN).
        on_failure: Option<String>,
    },
    Sqs {
        queue_arn: String,
        /// `ScalingConfig.MaximumConcurrency`: pollers (and so concurrent invocations).
        max_concurrency: usize,
    },
}

/// One `Events` entry of type DynamoDB or SQS: an event-source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSourceSpec {
    /// The function's logical id.
    pub function: String,
    /// The event's key under `Events`.
    pub name: String,
    pub kind: SourceKind,
    pub batch_size: usize,
    pub batching_window_secs: u64,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `FilterCriteria.Filters[].Pattern`, as JSON text (validated).
    pub filters: Vec<String>,
    pub enabled: bool,
}

/// An `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub logical_id: String,
    pub name: String,
    /// SQS queue attributes other than `RedrivePolicy` (CloudFormation property names are
    /// SQS's attribute names).
    pub attributes: BTreeMap<String, String>,
    /// `RedrivePolicy` as SQS's JSON text, its `deadLetterTargetArn` resolved.
    pub redrive_policy: Option<String>,
}

/// An `AWS::S3::Bucket`: what the twin applies in moto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSpec {
    pub logical_id: String,
    pub name: String,
    /// `VersioningConfiguration.Status` (`Enabled` or `Suspended`).
    pub versioning: Option<String>,
    /// `NotificationConfiguration.QueueConfigurations`, queue ARNs resolved.
    pub queue_notifications: Vec<QueueNotificationSpec>,
    /// Notification kinds the twin does not apply (Lambda, Topic, EventBridge), by property name.
    pub unsupported_notifications: Vec<String>,
}

/// One `QueueConfigurations` entry: S3 sends `event`s on keys matching the filter to the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNotificationSpec {
    pub event: String,
    pub queue_arn: String,
    /// `Filter.S3Key.Rules` as (name lowercased: `prefix` or `suffix`, value).
    pub filter_rules: Vec<(String, String)>,
}

/// CloudFormation properties of `AWS::SQS::Queue` that are SQS attributes of the same name.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// The queue ARN moto gives a queue of this name (region and account fixed by the twin).
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// The last segment of an SQS queue ARN: its name.
pub fn queue_name_from_arn(arn: &str) -> Option<&str> {
    arn.strip_prefix("arn:aws:sqs:")?
        .rsplit(':')
        .next()
        .filter(|n| !n.is_empty())
}

/// The table name in a table or stream ARN (`...:table/<name>[/stream/<label>]`).
pub fn table_name_from_arn(arn: &str) -> Option<&str> {
    arn.split_once(":table/")?.1.split('/').next()
}

impl FunctionSpec {
    pub fn arn(&self) -> String {
        function_arn(&self.function_name)
    }
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}")
}

pub fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:ddblocal:{ACCOUNT_ID}:table/{name}")
}

/// The parsed template: parameters resolved, resources indexed by logical id.
#[derive(Debug)]
pub struct Template {
    parameters: BTreeMap<String, Option<String>>,
    /// (logical id, type, resource mapping) in template order.
    resources: Vec<(String, String, Mapping)>,
    globals_function: Mapping,
}

/// Values only known at run time (after resources exist), used to resolve `Ref`/`GetAtt`:
/// tables' `Arn`/`StreamArn`, queues' `Arn`/`QueueUrl` as the services report them.
#[derive(Debug, Default, Clone)]
pub struct Runtime {
    /// moto endpoint, e.g. `http://127.0.0.1:5000` (queue URLs).
    pub moto_endpoint: String,
    /// Known attributes by (logical id, attribute), e.g. ("PaymentsTable", "StreamArn").
    pub attributes: HashMap<(String, String), String>,
}

impl Template {
    /// `overrides` must name declared parameters (`--param`); `twin_values` are the twin's own
    /// values (local endpoints), applied only to parameters the template declares, and only
    /// where `--param` did not set them.
    pub fn load(
        path: &Path,
        overrides: &[(String, String)],
        twin_values: &[(String, String)],
    ) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TemplateError(format!("cannot read template {}: {e}", path.display())))?;
        let declared = Self::parse(&text, &[])?;
        let mut all: Vec<(String, String)> = twin_values
            .iter()
            .filter(|(k, _)| declared.parameters.contains_key(k) && !overrides.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        all.extend(overrides.iter().cloned());
        Self::parse(&text, &all)
    }

    pub fn parse(text: &str, overrides: &[(String, String)]) -> Result<Self, TemplateError> {
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| TemplateError(format!("template is not valid YAML: {e}")))?;
        let empty = Mapping::new();
        let root = doc.as_mapping().unwrap_or(&empty);

        let mut parameters = BTreeMap::new();
        if let Some(params) = root.get("Parameters").and_then(Value::as_mapping) {
            for (k, v) in params {
                let name = key_str(k);
                let default = v.get("Default").map(scalar_string).transpose()?;
                parameters.insert(name, default);
            }
        }
        for (name, value) in overrides {
            if !parameters.contains_key(name) {
                return err(format!(
                    "--param {name}: the template has no parameter named {name}"
                ));
            }
            parameters.insert(name.clone(), Some(value.clone()));
        }

        let mut resources = Vec::new();
        if let Some(res) = root.get("Resources").and_then(Value::as_mapping) {
            for (k, v) in res {
                let id = key_str(k);
                let Some(m) = v.as_mapping() else {
                    return err(format!("resource {id} is not a mapping"));
                };
                let ty = m
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                resources.push((id, ty, m.clone()));
            }
        }

        let globals_function = root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();

        Ok(Template {
            parameters,
            resources,
            globals_function,
        })
    }

    /// Logical ids of resources of one type, in template order.
    pub fn ids_of_type(&self, ty: &str) -> Vec<String> {
        self.resources
            .iter()
            .filter(|(_, t, _)| t == ty)
            .map(|(id, _, _)| id.clone())
            .collect()
    }

    fn resource(&self, id: &str) -> Option<(&str, &Mapping)> {
        self.resources
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, t, m)| (t.as_str(), m))
    }

    fn properties(&self, id: &str) -> Option<&Mapping> {
        self.resource(id)
            .and_then(|(_, m)| m.get("Properties"))
            .and_then(Value::as_mapping)
    }

    /// Physical name of a resource (what `!Ref` gives for tables, queues, buckets, functions).
    fn physical_name(&self, id: &str, rt: &Runtime) -> Result<String, TemplateError> {
        let (ty, _) = self
            .resource(id)
            .ok_or_else(|| TemplateError(format!("no resource {id}")))?;
        let prop = match ty {
            T_TABLE => "TableName",
            T_QUEUE => "QueueName",
            T_BUCKET => "BucketName",
            T_FUNCTION => "FunctionName",
            _ => return Ok(id.to_string()),
        };
        match self.properties(id).and_then(|p| p.get(prop)) {
            Some(v) => self.resolve_string(v, rt, &format!("{id}.Properties.{prop}")),
            None if ty == T_BUCKET => Ok(id.to_lowercase()),
            None => Ok(id.to_string()),
        }
    }

    pub fn tables(&self) -> Result<Vec<TableSpec>, TemplateError> {
        let rt = Runtime::default();
        let mut out = Vec::new();
        for id in self.ids_of_type(T_TABLE) {
            let empty = Mapping::new();
            let p = self.properties(&id).unwrap_or(&empty);
            let name = self.physical_name(&id, &rt)?;
            let ctx = |f: &str| format!("{id}.Properties.{f}");
            let mut attribute_definitions = Vec::new();
            for a in seq(p.get("AttributeDefinitions")) {
                attribute_definitions.push((
                    self.field_string(a, "AttributeName", &rt, &ctx("AttributeDefinitions"))?,
                    self.field_string(a, "AttributeType", &rt, &ctx("AttributeDefinitions"))?,
                ));
            }
            let key_schema = self.key_schema(p.get("KeySchema"), &rt, &ctx("KeySchema"))?;
            if key_schema.is_empty() {
                return err(format!("{id}: KeySchema is missing"));
            }
            let global_secondary_indexes = self.indexes(
                p.get("GlobalSecondaryIndexes"),
                &rt,
                &ctx("GlobalSecondaryIndexes"),
            )?;
            let local_secondary_indexes =
                self.indexes(p.get("LocalSecondaryIndexes"), &rt, &ctx("LocalSecondaryIndexes"))?;
            let stream_view_type = match p.get("StreamSpecification") {
                Some(s) => Some(self.field_string(s, "StreamViewType", &rt, &ctx("StreamSpecification"))?),
                None => None,
            };
            let ttl_attribute = match p.get("TimeToLiveSpecification") {
                Some(t) => {
                    let enabled = match t.get("Enabled") {
                        Some(v) => self.resolve_string(v, &rt, &ctx("TimeToLiveSpecification"))?,
                        None => "true".to_string(),
                    };
                    if enabled.eq_ignore_ascii_case("true") {
                        Some(self.field_string(t, "AttributeName", &rt, &ctx("TimeToLiveSpecification"))?)
                    } else {
                        None
                    }
                }
                None => None,
            };
            out.push(TableSpec {
                logical_id: id.clone(),
                name,
                attribute_definitions,
                key_schema,
                global_secondary_indexes,
                local_secondary_indexes,
                stream_view_type,
                ttl_attribute,
            });
        }
        Ok(out)
    }

    /// Every `AWS::SQS::Queue`, in template order.
    pub fn queues(&self, rt: &Runtime) -> Result<Vec<QueueSpec>, TemplateError> {
        let mut out = Vec::new();
        for id in self.ids_of_type(T_QUEUE) {
            let empty = Mapping::new();
            let p = self.properties(&id).unwrap_or(&empty);
            let name = self.physical_name(&id, rt)?;
            let mut attributes = BTreeMap::new();
            for attr in QUEUE_ATTRIBUTES {
                if let Some(v) = p.get(*attr) {
                    attributes.insert(
                        attr.to_string(),
                        self.resolve_string(v, rt, &format!("{id}.Properties.{attr}"))?,
                    );
                }
            }
            if attributes.get("FifoQueue").is_some_and(|v| v == "true") && !name.ends_with(".fifo") {
                return err(format!("{id}: a FIFO queue's QueueName must end with .fifo"));
            }
            let redrive_policy = match p.get("RedrivePolicy") {
                None => None,
                Some(v) => {
                    let ctx = format!("{id}.Properties.RedrivePolicy");
                    let (target, max) = match v {
                        Value::String(text) => {
                            let j: serde_json::Value = serde_json::from_str(text)
                                .map_err(|e| TemplateError(format!("{ctx}: not JSON: {e}")))?;
                            (
                                j.get("deadLetterTargetArn")
                                    .and_then(|a| a.as_str())
                                    .map(str::to_string),
                                j.get("maxReceiveCount").map(|m| match m {
                                    serde_json::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                }),
                            )
                        }
                        _ => (
                            v.get("deadLetterTargetArn")
                                .map(|a| self.resolve_string(a, rt, &format!("{ctx}.deadLetterTargetArn")))
                                .transpose()?,
                            v.get("maxReceiveCount")
                                .map(|m| self.resolve_string(m, rt, &format!("{ctx}.maxReceiveCount")))
                                .transpose()?,
                        ),
                    };
                    let target = target
                        .ok_or_else(|| TemplateError(format!("{ctx}: deadLetterTargetArn is missing")))?;
                    let max: u32 = max
                        .ok_or_else(|| TemplateError(format!("{ctx}: maxReceiveCount is missing")))?
                        .trim()
                        .parse()
                        .map_err(|_| {
                            TemplateError(format!("{ctx}: maxReceiveCount must be a whole number"))
                        })?;
                    Some(
                        serde_json::json!({"deadLetterTargetArn": target, "maxReceiveCount": max})
                            .to_string(),
                    )
                }
            };
            out.push(QueueSpec {
                logical_id: id.clone(),
                name,
                attributes,
                redrive_policy,
            });
        }
        Ok(out)
    }

    /// Every `AWS::S3::Bucket`, in template order (queue ARNs resolved through `rt`).
    pub fn buckets(&self, rt: &Runtime) -> Result<Vec<BucketSpec>, TemplateError> {
        let mut out = Vec::new();
        for id in self.ids_of_type(T_BUCKET) {
            let empty = Mapping::new();
            let p = self.properties(&id).unwrap_or(&empty);
            let name = self.physical_name(&id, rt)?;
            let ctx = |f: &str| format!("{id}.Properties.{f}");
            let versioning = match p.get("VersioningConfiguration") {
                Some(v) => {
                    let status = self.field_string(v, "Status", rt, &ctx("VersioningConfiguration"))?;
                    if status != "Enabled" && status != "Suspended" {
                        return err(format!(
                            "{}: Status must be Enabled or Suspended, not {status:?}",
                            ctx("VersioningConfiguration")
                        ));
                    }
                    Some(status)
                }
                None => None,
            };
            let mut queue_notifications = Vec::new();
            let mut unsupported_notifications = Vec::new();
            if let Some(n) = p.get("NotificationConfiguration").and_then(Value::as_mapping) {
                for (k, v) in n {
                    let key = key_str(k);
                    if key != "QueueConfigurations" {
                        unsupported_notifications.push(key);
                        continue;
                    }
                    for (i, q) in seq(Some(v)).iter().enumerate() {
                        let qctx = ctx(&format!("NotificationConfiguration.QueueConfigurations[{i}]"));
                        let event = self.field_string(q, "Event", rt, &qctx)?;
                        let queue_arn = self.field_string(q, "Queue", rt, &qctx)?;
                        let mut filter_rules = Vec::new();
                        let rules = q
                            .get("Filter")
                            .and_then(|f| f.get("S3Key"))
                            .and_then(|k| k.get("Rules"));
                        for r in seq(rules) {
                            let rctx = format!("{qctx}.Filter.S3Key.Rules");
                            let rule = self.field_string(r, "Name", rt, &rctx)?.to_ascii_lowercase();
                            if rule != "prefix" && rule != "suffix" {
                                return err(format!("{rctx}: Name must be prefix or suffix, not {rule:?}"));
                            }
                            filter_rules.push((rule, self.field_string(r, "Value", rt, &rctx)?));
                        }
                        queue_notifications.push(QueueNotificationSpec {
                            event,
                            queue_arn,
                            filter_rules,
                        });
                    }
                }
            }
            out.push(BucketSpec {
                logical_id: id.clone(),
                name,
                versioning,
                queue_notifications,
                unsupported_notifications,
            });
        }
        Ok(out)
    }

    /// An event-source mapping from a function's `Events` entry of type DynamoDB or SQS.
    fn event_source(
        &self,
        function: &str,
        name: &str,
        ty: &str,
        props: Option<&Value>,
        rt: &Runtime,
    ) -> Result<EventSourceSpec, TemplateError> {
        let ctx = format!("{function}.Events.{name}");
        let empty = Value::Mapping(Mapping::new());
        let p = props.unwrap_or(&empty);
        let string = |field: &str| -> Result<Option<String>, TemplateError> {
            p.get(field)
                .map(|v| self.resolve_string(v, rt, &format!("{ctx}.{field}")))
                .transpose()
        };
        let int = |field: &str| -> Result<Option<i64>, TemplateError> {
            match string(field)? {
                None => Ok(None),
                Some(s) => s
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| TemplateError(format!("{ctx}.{field}: {s:?} is not a whole number"))),
            }
        };
        let boolean = |field: &str, default: bool| -> Result<bool, TemplateError> {
            match string(field)? {
                None => Ok(default),
                Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(s) => err(format!("{ctx}.{field}: {s:?} is not true or false")),
            }
        };
        let (default_batch, max_batch) = if ty == "SQS" { (10, 10_000) } else { (100, 10_000) };
        let batch_size = int("BatchSize")?.unwrap_or(default_batch);
        if !(1..=max_batch).contains(&batch_size) {
            return err(format!(
                "{ctx}.BatchSize: {batch_size} is not within 1..={max_batch}"
            ));
        }
        let window = int("MaximumBatchingWindowInSeconds")?.unwrap_or(0);
        if !(0..=300).contains(&window) {
            return err(format!(
                "{ctx}.MaximumBatchingWindowInSeconds: {window} is not within 0..=300"
            ));
        }
        let mut report_batch_item_failures = false;
        for t in seq(p.get("FunctionResponseTypes")) {
            match self
                .resolve_string(t, rt, &format!("{ctx}.FunctionResponseTypes"))?
                .as_str()
            {
                "ReportBatchItemFailures" => report_batch_item_failures = true,
                other => return err(format!("{ctx}.FunctionResponseTypes: unknown type {other:?}")),
            }
        }
        let mut filters = Vec::new();
        if let Some(fc) = p.get("FilterCriteria") {
            for f in seq(fc.get("Filters")) {
                let fctx = format!("{ctx}.FilterCriteria.Filters.Pattern");
                let text = match f.get("Pattern") {
                    Some(Value::Mapping(_)) | Some(Value::Sequence(_)) => {
                        let v = f.get("Pattern").cloned().unwrap_or(Value::Null);
                        serde_json::to_string(&v).map_err(|e| TemplateError(format!("{fctx}: {e}")))?
                    }
                    Some(v) => self.resolve_string(v, rt, &fctx)?,
                    None => return err(format!("{fctx} is missing")),
                };
                crate::filter::Pattern::parse(&text).map_err(|e| TemplateError(format!("{fctx}: {e}")))?;
                filters.push(text);
            }
        }
        let enabled = boolean("Enabled", true)?;
        let kind = if ty == "SQS" {
            let queue_arn =
                string("Queue")?.ok_or_else(|| TemplateError(format!("{ctx}.Queue is missing")))?;
            if queue_name_from_arn(&queue_arn).is_none() {
                return err(format!("{ctx}.Queue: {queue_arn:?} is not an SQS queue ARN"));
            }
            if batch_size > 10 && window < 1 {
                return err(format!(
                    "{ctx}: a BatchSize over 10 needs MaximumBatchingWindowInSeconds of at least 1"
                ));
            }
            let max_concurrency = match p.get("ScalingConfig").and_then(|s| s.get("MaximumConcurrency")) {
                Some(v) => {
                    let s = self.resolve_string(v, rt, &format!("{ctx}.ScalingConfig.MaximumConcurrency"))?;
                    s.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (2..=1000).contains(n))
                        .ok_or_else(|| {
                            TemplateError(format!(
                                "{ctx}.ScalingConfig.MaximumConcurrency: {s:?} is not within 2..=1000"
                            ))
                        })?
                }
                None => 2,
            };
            SourceKind::Sqs {
                queue_arn,
                max_concurrency,
            }
        } else {
            let stream_arn =
                string("Stream")?.ok_or_else(|| TemplateError(format!("{ctx}.Stream is missing")))?;
            if !stream_arn.contains("/stream/") {
                return err(format!(
                    "{ctx}.Stream: {stream_arn:?} is not a DynamoDB stream ARN"
                ));
            }
            let starting_position = match string("StartingPosition")?.as_deref() {
                Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
                Some("LATEST") => StartingPosition::Latest,
                Some(other) => {
                    return err(format!(
                        "{ctx}.StartingPosition: {other:?} (DynamoDB streams take TRIM_HORIZON or LATEST)"
                    ))
                }
                None => return err(format!("{ctx}.StartingPosition is missing")),
            };
            let max_retry_attempts = match int("MaximumRetryAttempts")? {
                None | Some(-1) => None,
                Some(n) if (0..=10_000).contains(&n) => Some(n as u32),
                Some(n) => {
                    return err(format!(
                        "{ctx}.MaximumRetryAttempts: {n} is not -1 or within 0..=10000"
                    ))
                }
            };
            let on_failure = match p
                .get("DestinationConfig")
                .and_then(|d| d.get("OnFailure"))
                .and_then(|o| o.get("Destination"))
            {
                Some(v) => {
                    let arn = self.resolve_string(
                        v,
                        rt,
                        &format!("{ctx}.DestinationConfig.OnFailure.Destination"),
                    )?;
                    if queue_name_from_arn(&arn).is_none() {
                        return err(format!(
                            "{ctx}.DestinationConfig.OnFailure.Destination: {arn:?}: the twin supports SQS \
                             destinations only"
                        ));
                    }
                    Some(arn)
                }
                None => None,
            };
            SourceKind::DynamoDb {
                stream_arn,
                starting_position,
                bisect_on_error: boolean("BisectBatchOnFunctionError", false)?,
                max_retry_attempts,
                on_failure,
            }
        };
        Ok(EventSourceSpec {
            function: function.to_string(),
            name: name.to_string(),
            kind,
            batch_size: batch_size as usize,
            batching_window_secs: window as u64,
            report_batch_item_failures,
            filters,
            enabled,
        })
    }

    /// An EventBridge schedule from a function's `Events` entry of type Schedule.
    fn schedule(
        &self,
        function: &str,
        name: &str,
        props: Option<&Value>,
        rt: &Runtime,
    ) -> Result<ScheduleSpec, TemplateError> {
        let ctx = format!("{function}.Events.{name}");
        let empty = Value::Mapping(Mapping::new());
        let p = props.unwrap_or(&empty);
        let string = |field: &str| -> Result<Option<String>, TemplateError> {
            p.get(field)
                .map(|v| self.resolve_string(v, rt, &format!("{ctx}.{field}")))
                .transpose()
        };
        let expression = string("Schedule")?
            .ok_or_else(|| TemplateError(format!("{ctx}.Schedule is missing")))?
            .trim()
            .to_string();
        let schedule =
            Expression::parse(&expression).map_err(|e| TemplateError(format!("{ctx}.Schedule: {e}")))?;
        let enabled = match (string("Enabled")?, string("State")?) {
            (Some(_), Some(_)) => return err(format!("{ctx}: Enabled and State exclude each other")),
            (Some(e), None) if e.eq_ignore_ascii_case("true") => true,
            (Some(e), None) if e.eq_ignore_ascii_case("false") => false,
            (Some(e), None) => return err(format!("{ctx}.Enabled: {e:?} is not true or false")),
            (None, Some(s)) => match s.as_str() {
                "ENABLED" | "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS" => true,
                "DISABLED" => false,
                other => return err(format!("{ctx}.State: {other:?} is not ENABLED or DISABLED")),
            },
            (None, None) => true,
        };
        let input = string("Input")?;
        if let Some(text) = &input {
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| TemplateError(format!("{ctx}.Input: not JSON: {e}")))?;
        }
        let rule_name = string("Name")?.unwrap_or_else(|| format!("{function}-{name}"));
        Ok(ScheduleSpec {
            function: function.to_string(),
            name: name.to_string(),
            expression,
            schedule,
            enabled,
            input,
            rule_name,
        })
    }

    fn key_schema(
        &self,
        v: Option<&Value>,
        rt: &Runtime,
        ctx: &str,
    ) -> Result<Vec<KeyElement>, TemplateError> {
        seq(v)
            .iter()
            .map(|k| {
                Ok(KeyElement {
                    attribute_name: self.field_string(k, "AttributeName", rt, ctx)?,
                    key_type: self.field_string(k, "KeyType", rt, ctx)?,
                })
            })
            .collect()
    }

    fn indexes(&self, v: Option<&Value>, rt: &Runtime, ctx: &str) -> Result<Vec<IndexSpec>, TemplateError> {
        let mut out = Vec::new();
        for ix in seq(v) {
            let name = self.field_string(ix, "IndexName", rt, ctx)?;
            let ictx = format!("{ctx}.{name}");
            let key_schema = self.key_schema(ix.get("KeySchema"), rt, &ictx)?;
            let (projection_type, non_key_attributes) = match ix.get("Projection") {
                Some(p) => {
                    let ty = match p.get("ProjectionType") {
                        Some(t) => self.resolve_string(t, rt, &ictx)?,
                        None => "ALL".to_string(),
                    };
                    let mut nk = Vec::new();
                    for a in seq(p.get("NonKeyAttributes")) {
                        nk.push(self.resolve_string(a, rt, &ictx)?);
                    }
                    (ty, nk)
                }
                None => ("ALL".to_string(), Vec::new()),
            };
            out.push(IndexSpec {
                name,
                key_schema,
                projection_type,
                non_key_attributes,
            });
        }
        Ok(out)
    }

    fn field_string(&self, v: &Value, field: &str, rt: &Runtime, ctx: &str) -> Result<String, TemplateError> {
        match v.get(field) {
            Some(x) => self.resolve_string(x, rt, &format!("{ctx}.{field}")),
            None => err(format!("{ctx}: {field} is missing")),
        }
    }

    /// Resolve every `AWS::Serverless::Function` (Globals merged, intrinsics resolved).
    pub fn functions(&self, rt: &Runtime) -> Result<Vec<FunctionSpec>, TemplateError> {
        let mut out = Vec::new();
        for id in self.ids_of_type(T_FUNCTION) {
            let Some((_, res)) = self.resource(&id) else {
                continue;
            };
            let empty = Mapping::new();
            let props = res
                .get("Properties")
                .and_then(Value::as_mapping)
                .unwrap_or(&empty);
            let merged = merge_globals(&self.globals_function, props);

            let binary = res
                .get("Metadata")
                .and_then(|m| m.get("BuildProperties"))
                .and_then(|b| b.get("Binary"))
                .map(|b| self.resolve_string(b, rt, &format!("{id}.Metadata.BuildProperties.Binary")))
                .transpose()?
                .ok_or_else(|| TemplateError(format!("{id}: Metadata.BuildProperties.Binary is missing")))?;
            let function_name = self.physical_name(&id, rt)?;
            let num = |field: &str, default: u64| -> Result<u64, TemplateError> {
                match merged.get(field) {
                    Some(v) => {
                        let s = self.resolve_string(v, rt, &format!("{id}.{field}"))?;
                        s.trim()
                            .parse::<u64>()
                            .map_err(|_| TemplateError(format!("{id}.{field}: {s:?} is not a whole number")))
                    }
                    None => Ok(default),
                }
            };
            let timeout_secs = num("Timeout", 3)?;
            let memory_mb = num("MemorySize", 128)?;
            let handler = match merged.get("Handler") {
                Some(v) => self.resolve_string(v, rt, &format!("{id}.Handler"))?,
                None => "bootstrap".to_string(),
            };

            let mut environment = BTreeMap::new();
            if let Some(vars) = merged
                .get("Environment")
                .and_then(|e| e.get("Variables"))
                .and_then(Value::as_mapping)
            {
                for (k, v) in vars {
                    let name = key_str(k);
                    let ctx = format!("{id}.Environment.Variables.{name}");
                    environment.insert(name, self.resolve_string(v, rt, &ctx)?);
                }
            }

            let mut routes = Vec::new();
            let mut event_sources = Vec::new();
            let mut schedules = Vec::new();
            if let Some(events) = props.get("Events").and_then(Value::as_mapping) {
                for (ek, ev) in events {
                    let ename = key_str(ek);
                    let ty = ev.get("Type").and_then(Value::as_str).unwrap_or_default();
                    if ty == "DynamoDB" || ty == "SQS" {
                        event_sources.push(self.event_source(&id, &ename, ty, ev.get("Properties"), rt)?);
                        continue;
                    }
                    if ty == "Schedule" {
                        schedules.push(self.schedule(&id, &ename, ev.get("Properties"), rt)?);
                        continue;
                    }
                    if ty != "HttpApi" {
                        continue;
                    }
                    let ctx = format!("{id}.Events.{ename}");
                    let ep = ev.get("Properties");
                    let path = match ep.and_then(|p| p.get("Path")) {
                        Some(p) => self.resolve_string(p, rt, &format!("{ctx}.Path"))?,
                        None => "$default".to_string(),
                    };
                    let method = match ep.and_then(|p| p.get("Method")) {
                        Some(m) => self.resolve_string(m, rt, &format!("{ctx}.Method"))?,
                        None => "ANY".to_string(),
                    };
                    let method = normalize_method(&method);
                    if path != "$default" && !path.starts_with('/') {
                        return err(format!("{ctx}.Path: {path:?} must start with '/'"));
                    }
                    routes.push(RouteSpec { method, path });
                }
            }

            out.push(FunctionSpec {
                logical_id: id.clone(),
                function_name,
                binary,
                handler,
                timeout_secs,
                memory_mb,
                environment,
                routes,
                event_sources,
                schedules,
            });
        }
        Ok(out)
    }

    /// Resolve a value to a string (scalars as text, intrinsics resolved).
    pub fn resolve_string(&self, v: &Value, rt: &Runtime, ctx: &str) -> Result<String, TemplateError> {
        if let Some((name, arg)) = intrinsic(v) {
            return self.resolve_intrinsic(&name, arg, rt, ctx);
        }
        match v {
            Value::Mapping(_) | Value::Sequence(_) => {
                err(format!("{ctx}: expected a string, found a {}", kind(v)))
            }
            other => scalar_string(other),
        }
    }

    fn resolve_intrinsic(
        &self,
        name: &str,
        arg: &Value,
        rt: &Runtime,
        ctx: &str,
    ) -> Result<String, TemplateError> {
        match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| TemplateError(format!("{ctx}: Ref needs a name")))?;
                self.resolve_ref(target, rt, ctx)
            }
            "GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return err(format!("{ctx}: GetAtt {s:?} needs Resource.Attribute")),
                    },
                    Value::Sequence(items) if items.len() == 2 => (
                        self.resolve_string(&items[0], rt, ctx)?,
                        self.resolve_string(&items[1], rt, ctx)?,
                    ),
                    _ => return err(format!("{ctx}: GetAtt needs Resource.Attribute")),
                };
                self.resolve_getatt(&res, &attr, rt, ctx)
            }
            "Sub" => {
                let (template, vars) = match arg {
                    Value::String(s) => (s.clone(), Mapping::new()),
                    Value::Sequence(items) if items.len() == 2 => {
                        let s = items[0]
                            .as_str()
                            .ok_or_else(|| TemplateError(format!("{ctx}: Sub needs a string")))?;
                        let vars = items[1].as_mapping().cloned().ok_or_else(|| {
                            TemplateError(format!("{ctx}: Sub's second item must be a mapping"))
                        })?;
                        (s.to_string(), vars)
                    }
                    _ => return err(format!("{ctx}: Sub needs a string or [string, mapping]")),
                };
                self.resolve_sub(&template, &vars, rt, ctx)
            }
            "Join" => {
                let items = arg
                    .as_sequence()
                    .filter(|s| s.len() == 2)
                    .ok_or_else(|| TemplateError(format!("{ctx}: Join needs [delimiter, [values]]")))?;
                let delim = self.resolve_string(&items[0], rt, ctx)?;
                let values = items[1]
                    .as_sequence()
                    .ok_or_else(|| TemplateError(format!("{ctx}: Join needs a list of values")))?;
                let parts = values
                    .iter()
                    .map(|v| self.resolve_string(v, rt, ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(parts.join(&delim))
            }
            other => err(format!(
                "{ctx}: intrinsic function {} is not supported by the local twin \
                 (supported: Ref, Fn::GetAtt, Fn::Sub, Fn::Join)",
                if other == "Ref" {
                    other.to_string()
                } else {
                    format!("Fn::{other}")
                }
            )),
        }
    }

    fn resolve_ref(&self, target: &str, rt: &Runtime, ctx: &str) -> Result<String, TemplateError> {
        if let Some(v) = pseudo_parameter(target) {
            return Ok(v);
        }
        if let Some(p) = self.parameters.get(target) {
            return p.clone().ok_or_else(|| {
                TemplateError(format!(
                    "{ctx}: parameter {target} has no Default; pass --param {target}=VALUE"
                ))
            });
        }
        let Some((ty, _)) = self.resource(target) else {
            return err(format!(
                "{ctx}: Ref {target}: no parameter or resource of that name"
            ));
        };
        match ty {
            T_QUEUE => {
                if let Some(url) = rt.attributes.get(&(target.to_string(), "QueueUrl".to_string())) {
                    return Ok(url.clone());
                }
                let name = self.physical_name(target, rt)?;
                Ok(format!("{}/{ACCOUNT_ID}/{name}", rt.moto_endpoint))
            }
            T_HTTP_API => Ok("local".to_string()),
            _ => self.physical_name(target, rt),
        }
    }

    fn resolve_getatt(
        &self,
        res: &str,
        attr: &str,
        rt: &Runtime,
        ctx: &str,
    ) -> Result<String, TemplateError> {
        if let Some(v) = rt.attributes.get(&(res.to_string(), attr.to_string())) {
            return Ok(v.clone());
        }
        let Some((ty, _)) = self.resource(res) else {
            return err(format!("{ctx}: GetAtt {res}.{attr}: no resource {res}"));
        };
        let name = || self.physical_name(res, rt);
        match (ty, attr) {
            (T_TABLE, "Arn") => Ok(table_arn(&name()?)),
            (T_QUEUE, "Arn") => Ok(queue_arn(&name()?)),
            (T_QUEUE, "QueueName") => name(),
            (T_QUEUE, "QueueUrl") => self.resolve_ref(res, rt, ctx),
            (T_BUCKET, "Arn") => Ok(format!("arn:aws:s3:::{}", name()?)),
            (T_FUNCTION, "Arn") => Ok(function_arn(&name()?)),
            _ => err(format!(
                "{ctx}: GetAtt {res}.{attr} ({ty}) is not supported by the local twin"
            )),
        }
    }

    fn resolve_sub(
        &self,
        template: &str,
        vars: &Mapping,
        rt: &Runtime,
        ctx: &str,
    ) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return err(format!("{ctx}: Sub {template:?} has an unclosed ${{"));
            };
            let inner = after[..end].trim();
            if let Some(literal) = inner.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(inner) {
                out.push_str(&self.resolve_string(v, rt, ctx)?);
            } else if pseudo_parameter(inner).is_some() || self.parameters.contains_key(inner) {
                out.push_str(&self.resolve_ref(inner, rt, ctx)?);
            } else if let Some((res, attr)) = inner.split_once('.') {
                out.push_str(&self.resolve_getatt(res, attr, rt, ctx)?);
            } else {
                out.push_str(&self.resolve_ref(inner, rt, ctx)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn pseudo_parameter(name: &str) -> Option<String> {
    Some(match name {
        "AWS::Region" => REGION.to_string(),
        "AWS::AccountId" => ACCOUNT_ID.to_string(),
        "AWS::StackName" => STACK_NAME.to_string(),
        "AWS::StackId" => format!(
            "arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/00000000-0000-0000-0000-000000000000"
        ),
        "AWS::Partition" => "aws".to_string(),
        "AWS::URLSuffix" => "amazonaws.com".to_string(),
        _ => return None,
    })
}

/// `Some((name, argument))` if `v` is an intrinsic function call, with `name` without `Fn::`.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let name = name.strip_prefix("Fn::").unwrap_or(name);
            Some((name.to_string(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" {
                Some(("Ref".to_string(), arg))
            } else {
                k.strip_prefix("Fn::").map(|n| (n.to_string(), arg))
            }
        }
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Sequence(_) => "list",
        Value::Mapping(_) => "mapping",
        Value::Tagged(_) => "tagged value",
    }
}

fn scalar_string(v: &Value) -> Result<String, TemplateError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        other => err(format!("expected a scalar, found a {}", kind(other))),
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => scalar_string(other).unwrap_or_default(),
    }
}

fn seq(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Sequence(s)) => s,
        _ => &[],
    }
}

pub fn normalize_method(m: &str) -> String {
    let m = m.trim().to_ascii_uppercase();
    if m == "*" || m == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
        "ANY".to_string()
    } else {
        m
    }
}

/// `Globals.Function` merged under a function's Properties: the function wins, and
/// `Environment.Variables` are merged key-wise.
fn merge_globals(globals: &Mapping, props: &Mapping) -> Mapping {
    let mut merged = globals.clone();
    for (k, v) in props {
        merged.insert(k.clone(), v.clone());
    }
    let global_vars = globals
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping);
    let own_vars = props
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping);
    if global_vars.is_some() || own_vars.is_some() {
        let mut vars = global_vars.cloned().unwrap_or_default();
        if let Some(own) = own_vars {
            for (k, v) in own {
                vars.insert(k.clone(), v.clone());
            }
        }
        let mut env = Mapping::new();
        env.insert(Value::from("Variables"), Value::Mapping(vars));
        merged.insert(Value::from("Environment"), Value::Mapping(env));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = r#"
Parameters:
  LogLevel:
    Type: String
    Default: info
  Rps:
    Type: Number
    Default: 50
  NoDefault:
    Type: String
Globals:
  Function:
    Timeout: 10
    MemorySize: 256
    Environment:
      Variables:
        RUST_LOG: !Ref LogLevel
        SHARED: global
        RPS: !Ref Rps
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  Orders:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-orders"
      AttributeDefinitions:
        - { AttributeName: pk, AttributeType: S }
        - { AttributeName: g, AttributeType: S }
      KeySchema:
        - { AttributeName: pk, KeyType: HASH }
      GlobalSecondaryIndexes:
        - IndexName: by_g
          KeySchema: [{ AttributeName: g, KeyType: HASH }]
          Projection: { ProjectionType: KEYS_ONLY }
      StreamSpecification: { StreamViewType: NEW_IMAGE }
      TimeToLiveSpecification: { AttributeName: exp, Enabled: true }
  Keys:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{ AttributeName: h, AttributeType: S }]
      KeySchema: [{ AttributeName: h, KeyType: HASH }]
  Fn1:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: fn_one
    Properties:
      Timeout: 3
      Environment:
        Variables:
          SHARED: mine
          ORDERS: !Ref Orders
          KEYS_ARN: !GetAtt Keys.Arn
          LONG_ARN: { "Fn::GetAtt": [Keys, Arn] }
          LONG_REF: { Ref: Keys }
          SUBBED: !Sub "${Orders}|${Keys.Arn}|${AWS::Region}|${!Lit}"
          SUBLIST: { "Fn::Sub": ["${X}-${LogLevel}", { X: !Ref Keys }] }
          JOINED: !Join [",", [a, !Ref Rps]]
          FLAG: true
      Events:
        Create:
          Type: HttpApi
          Properties: { ApiId: !Ref Api, Path: /v1/orders, Method: post }
        Any:
          Type: HttpApi
          Properties: { Path: "/v1/{proxy+}", Method: "*" }
"#;

    fn t(overrides: &[(&str, &str)]) -> Template {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Template::parse(T, &o).expect("parse")
    }

    #[test]
    fn tables_are_parsed() {
        let tables = t(&[]).tables().expect("tables");
        assert_eq!(tables.len(), 2);
        let o = &tables[0];
        assert_eq!(o.logical_id, "Orders");
        assert_eq!(o.name, "local-orders");
        assert_eq!(o.key_schema.len(), 1);
        assert_eq!(o.global_secondary_indexes[0].name, "by_g");
        assert_eq!(o.global_secondary_indexes[0].projection_type, "KEYS_ONLY");
        assert_eq!(o.stream_view_type.as_deref(), Some("NEW_IMAGE"));
        assert_eq!(o.ttl_attribute.as_deref(), Some("exp"));
        assert_eq!(tables[1].name, "Keys");
        assert_eq!(tables[1].stream_view_type, None);
    }

    #[test]
    fn function_env_is_merged_and_resolved() {
        let rt = Runtime {
            moto_endpoint: "http://127.0.0.1:5000".into(),
            ..Default::default()
        };
        let fns = t(&[("LogLevel", "debug")]).functions(&rt).expect("functions");
        assert_eq!(fns.len(), 1);
        let f = &fns[0];
        assert_eq!(f.binary, "fn_one");
        assert_eq!(f.timeout_secs, 3);
        assert_eq!(f.memory_mb, 256);
        let e = &f.environment;
        assert_eq!(e["RUST_LOG"], "debug");
        assert_eq!(e["SHARED"], "mine");
        assert_eq!(e["RPS"], "50");
        assert_eq!(e["ORDERS"], "local-orders");
        let arn = "arn:aws:dynamodb:ddblocal:000000000000:table/Keys";
        assert_eq!(e["KEYS_ARN"], arn);
        assert_eq!(e["LONG_ARN"], arn);
        assert_eq!(e["LONG_REF"], "Keys");
        assert_eq!(e["SUBBED"], format!("local-orders|{arn}|us-east-1|${{Lit}}"));
        assert_eq!(e["SUBLIST"], "Keys-debug");
        assert_eq!(e["JOINED"], "a,50");
        assert_eq!(e["FLAG"], "true");
    }

    #[test]
    fn routes_are_collected() {
        let fns = t(&[]).functions(&Runtime::default()).expect("functions");
        let r = &fns[0].routes;
        assert_eq!(r.len(), 2);
        assert!(r.contains(&RouteSpec {
            method: "POST".into(),
            path: "/v1/orders".into()
        }));
        assert!(r.contains(&RouteSpec {
            method: "ANY".into(),
            path: "/v1/{proxy+}".into()
        }));
        assert_eq!(r[0].route_key(), "POST /v1/orders");
        assert_eq!(r[1].route_key(), "ANY /v1/{proxy+}");
    }

    #[test]
    fn unknown_intrinsic_fails_clearly() {
        let text = T.replace("FLAG: true", "FLAG: !If [c, a, b]");
        let tpl = Template::parse(&text, &[]).expect("parse");
        let e = tpl.functions(&Runtime::default()).expect_err("must fail");
        assert!(e.0.contains("Fn::If"), "{e}");
        assert!(e.0.contains("Fn1.Environment.Variables.FLAG"), "{e}");
    }

    #[test]
    fn unknown_param_override_fails() {
        let e = Template::parse(T, &[("Nope".into(), "1".into())]).expect_err("must fail");
        assert!(e.0.contains("Nope"));
    }

    #[test]
    fn missing_parameter_value_fails() {
        let text = T.replace("FLAG: true", "FLAG: !Ref NoDefault");
        let tpl = Template::parse(&text, &[]).expect("parse");
        let e = tpl.functions(&Runtime::default()).expect_err("must fail");
        assert!(e.0.contains("--param NoDefault"), "{e}");
    }
    const Q: &str = r#"
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{ AttributeName: pk, AttributeType: S }]
      KeySchema: [{ AttributeName: pk, KeyType: HASH }]
      StreamSpecification: { StreamViewType: NEW_AND_OLD_IMAGES }
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      MessageRetentionPeriod: 1209600
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDLQ.Arn
        maxReceiveCount: 5
      Tags: [{ Key: a, Value: b }]
  WorkDLQ:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: work-dlq
  Relay:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: relay } }
    Properties:
      Environment:
        Variables:
          WORK_URL: !Ref Work
          WORK_ARN: !GetAtt Work.Arn
      Events:
        Outbox:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Items.StreamArn
            StartingPosition: LATEST
            MaximumBatchingWindowInSeconds: 1
            BisectBatchOnFunctionError: true
            MaximumRetryAttempts: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT"]}'
            DestinationConfig:
              OnFailure: { Type: SQS, Destination: !GetAtt WorkDLQ.Arn }
  Consumer:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: consumer } }
    Properties:
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 7
            ScalingConfig: { MaximumConcurrency: 3 }
"#;

    fn stream_rt() -> Runtime {
        let mut attributes = HashMap::new();
        attributes.insert(
            ("Items".to_string(), "StreamArn".to_string()),
            "arn:aws:dynamodb:ddblocal:000000000000:table/Items/stream/2026-01-01T00:00:00.000".to_string(),
        );
        attributes.insert(
            ("Work".to_string(), "QueueUrl".to_string()),
            "http://127.0.0.1:5123/000000000000/Work".to_string(),
        );
        Runtime {
            moto_endpoint: "http://127.0.0.1:5000".into(),
            attributes,
        }
    }

    #[test]
    fn queues_are_parsed() {
        let tpl = Template::parse(Q, &[]).expect("parse");
        let qs = tpl.queues(&Runtime::default()).expect("queues");
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].name, "Work");
        assert_eq!(qs[0].attributes["VisibilityTimeout"], "60");
        assert_eq!(qs[0].attributes["MessageRetentionPeriod"], "1209600");
        assert!(!qs[0].attributes.contains_key("Tags"));
        let policy: serde_json::Value =
            serde_json::from_str(qs[0].redrive_policy.as_deref().expect("redrive")).expect("json");
        assert_eq!(
            policy,
            serde_json::json!({
                "deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:work-dlq",
                "maxReceiveCount": 5
            })
        );
        assert_eq!(qs[1].name, "work-dlq");
        assert_eq!(qs[1].redrive_policy, None);
    }

    const B: &str = r#"
Resources:
  Files:
    Type: AWS::S3::Bucket
    DependsOn: FilesQueuePolicy
    Properties:
      VersioningConfiguration: { Status: Enabled }
      BucketEncryption: { ServerSideEncryptionConfiguration: [] }
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt FilesQueue.Arn
            Filter:
              S3Key:
                Rules:
                  - { Name: prefix, Value: psp/ }
                  - { Name: Suffix, Value: .csv }
          - Event: s3:ObjectRemoved:*
            Queue: !GetAtt FilesQueue.Arn
        LambdaConfigurations:
          - { Event: s3:ObjectCreated:*, Function: arn:aws:lambda:us-east-1:000000000000:function:f }
  Named:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "my-files-${AWS::AccountId}"
  FilesQueue:
    Type: AWS::SQS::Queue
  FilesQueuePolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref FilesQueue]
      PolicyDocument: { Statement: [] }
  Reader:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: reader } }
    Properties:
      Environment:
        Variables:
          FILES: !Ref Files
          NAMED: !Ref Named
          FILES_ARN: !GetAtt Files.Arn
"#;

    #[test]
    fn buckets_are_parsed_and_named_as_ref_names_them() {
        let tpl = Template::parse(B, &[]).expect("parse");
        let bs = tpl.buckets(&Runtime::default()).expect("buckets");
        assert_eq!(bs.len(), 2);
        assert_eq!(bs[0].name, "files");
        assert_eq!(bs[0].versioning.as_deref(), Some("Enabled"));
        assert_eq!(
            bs[0].queue_notifications,
            vec![
                QueueNotificationSpec {
                    event: "s3:ObjectCreated:*".into(),
                    queue_arn: "arn:aws:sqs:us-east-1:000000000000:FilesQueue".into(),
                    filter_rules: vec![("prefix".into(), "psp/".into()), ("suffix".into(), ".csv".into())],
                },
                QueueNotificationSpec {
                    event: "s3:ObjectRemoved:*".into(),
                    queue_arn: "arn:aws:sqs:us-east-1:000000000000:FilesQueue".into(),
                    filter_rules: vec![],
                },
            ]
        );
        assert_eq!(
            bs[0].unsupported_notifications,
            vec!["LambdaConfigurations".to_string()]
        );
        assert_eq!(bs[1].name, "my-files-000000000000");
        assert_eq!(bs[1].versioning, None);
        assert!(bs[1].queue_notifications.is_empty());
        // The functions see the same names (and the queue policy, unknown, is no obstacle).
        let fns = tpl.functions(&Runtime::default()).expect("functions");
        let env = &fns[0].environment;
        assert_eq!(env["FILES"], "files");
        assert_eq!(env["NAMED"], "my-files-000000000000");
        assert_eq!(env["FILES_ARN"], "arn:aws:s3:::files");
        // A bad filter rule names itself.
        let bad = B.replace("Name: Suffix", "Name: middle");
        let e = Template::parse(&bad, &[])
            .expect("parse")
            .buckets(&Runtime::default())
            .expect_err("bad rule");
        assert!(
            e.0.contains(
                "Files.Properties.NotificationConfiguration.QueueConfigurations[0].Filter.S3Key.Rules"
            ),
            "{e}"
        );
    }

    #[test]
    fn queue_refs_resolve_to_moto_urls() {
        let fns = Template::parse(Q, &[])
            .expect("parse")
            .functions(&stream_rt())
            .expect("functions");
        let env = &fns[0].environment;
        // The URL moto returned wins; without it, moto's URL scheme.
        assert_eq!(env["WORK_URL"], "http://127.0.0.1:5123/000000000000/Work");
        assert_eq!(env["WORK_ARN"], "arn:aws:sqs:us-east-1:000000000000:Work");
        let mut rt = stream_rt();
        rt.attributes
            .remove(&("Work".to_string(), "QueueUrl".to_string()));
        let fns = Template::parse(Q, &[])
            .expect("parse")
            .functions(&rt)
            .expect("functions");
        assert_eq!(
            fns[0].environment["WORK_URL"],
            "http://127.0.0.1:5000/000000000000/Work"
        );
    }

    #[test]
    fn event_sources_are_parsed() {
        let fns = Template::parse(Q, &[])
            .expect("parse")
            .functions(&stream_rt())
            .expect("functions");
        let relay = &fns[0].event_sources[0];
        assert_eq!(relay.function, "Relay");
        assert_eq!(relay.name, "Outbox");
        assert_eq!(relay.batch_size, 100);
        assert_eq!(relay.batching_window_secs, 1);
        assert!(relay.report_batch_item_failures);
        assert!(relay.enabled);
        assert_eq!(relay.filters, vec![r#"{"eventName": ["INSERT"]}"#.to_string()]);
        assert_eq!(
            relay.kind,
            SourceKind::DynamoDb {
                stream_arn:
                    "arn:aws:dynamodb:ddblocal:000000000000:table/Items/stream/2026-01-01T00:00:00.000".into(),
                starting_position: StartingPosition::Latest,
                bisect_on_error: true,
                max_retry_attempts: Some(5),
                on_failure: Some("arn:aws:sqs:us-east-1:000000000000:work-dlq".into()),
            }
        );
        let consumer = &fns[1].event_sources[0];
        assert_eq!(consumer.batch_size, 7);
        assert!(!consumer.report_batch_item_failures);
        assert_eq!(
            consumer.kind,
            SourceKind::Sqs {
                queue_arn: "arn:aws:sqs:us-east-1:000000000000:Work".into(),
                max_concurrency: 3
            }
        );
        assert!(fns[1].routes.is_empty());
    }

    #[test]
    fn bad_event_sources_fail_clearly() {
        for (from, to, expect) in [
            (
                "StartingPosition: LATEST",
                "StartingPosition: AT_TIMESTAMP",
                "StartingPosition",
            ),
            (
                "'{\"eventName\": [\"INSERT\"]}'",
                "'{\"eventName\": \"INSERT\"}'",
                "Pattern",
            ),
            ("BatchSize: 7", "BatchSize: 70", "MaximumBatchingWindowInSeconds"),
            (
                "MaximumConcurrency: 3",
                "MaximumConcurrency: 1",
                "MaximumConcurrency",
            ),
            (
                "MaximumRetryAttempts: 5",
                "MaximumRetryAttempts: -2",
                "MaximumRetryAttempts",
            ),
        ] {
            assert!(Q.contains(from), "{from}");
            let tpl = Template::parse(&Q.replace(from, to), &[]).expect("parse");
            let e = tpl.functions(&stream_rt()).expect_err("must fail");
            assert!(e.0.contains(expect), "{e}");
        }
    }

    const S: &str = r#"
Parameters:
  PayoutSchedule:
    Type: String
    Default: cron(0 6 * * ? *)
Resources:
  Checker:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: checker } }
    Properties:
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
        Daily:
          Type: Schedule
          Properties:
            Schedule: !Ref PayoutSchedule
            Input: '{"mode": "daily"}'
            Name: daily-run
        Off:
          Type: Schedule
          Properties: { Schedule: rate(5 minutes), Enabled: false }
        Stopped:
          Type: Schedule
          Properties: { Schedule: "cron(0/30 * ? * MON-FRI *)", State: DISABLED }
"#;

    #[test]
    fn schedules_are_parsed_with_parameters_resolved() {
        let fns = Template::parse(S, &[])
            .expect("parse")
            .functions(&Runtime::default())
            .expect("functions");
        let s = &fns[0].schedules;
        assert_eq!(s.len(), 4);
        assert!(fns[0].event_sources.is_empty() && fns[0].routes.is_empty());
        assert_eq!(s[0].function, "Checker");
        assert_eq!(s[0].name, "Hourly");
        assert_eq!(s[0].expression, "rate(1 hour)");
        assert_eq!(s[0].schedule, Expression::Rate { secs: 3600 });
        assert!(s[0].enabled);
        assert_eq!(s[0].input, None);
        assert_eq!(
            s[0].rule_arn(),
            "arn:aws:events:us-east-1:000000000000:rule/Checker-Hourly"
        );
        assert_eq!(s[1].expression, "cron(0 6 * * ? *)");
        assert!(matches!(s[1].schedule, Expression::Cron(_)));
        assert_eq!(s[1].input.as_deref(), Some(r#"{"mode": "daily"}"#));
        assert_eq!(s[1].rule_name, "daily-run");
        assert!(!s[2].enabled, "Enabled: false");
        assert!(!s[3].enabled, "State: DISABLED");
        // A parameter override reaches the schedule.
        let fns = Template::parse(S, &[("PayoutSchedule".into(), "rate(1 day)".into())])
            .expect("parse")
            .functions(&Runtime::default())
            .expect("functions");
        assert_eq!(fns[0].schedules[1].expression, "rate(1 day)");
        assert_eq!(fns[0].schedules[1].schedule, Expression::Rate { secs: 86_400 });
    }

    #[test]
    fn bad_schedules_fail_naming_the_function_and_event() {
        for (from, to, expect) in [
            (
                "Schedule: rate(1 hour)",
                "Schedule: rate(1 hours)",
                "Checker.Events.Hourly.Schedule",
            ),
            (
                "Schedule: rate(1 hour)",
                "Schedule: cron(0 6 * * * *)",
                "Checker.Events.Hourly.Schedule",
            ),
            (
                "Schedule: rate(1 hour)",
                "Schedule: cron(0 6 L * ? *)",
                "not supported by the local twin",
            ),
            (
                "Schedule: rate(1 hour)",
                "Input: '{}'",
                "Checker.Events.Hourly.Schedule is missing",
            ),
            (
                "Input: '{\"mode\": \"daily\"}'",
                "Input: 'daily'",
                "Checker.Events.Daily.Input: not JSON",
            ),
            ("State: DISABLED", "State: PAUSED", "Checker.Events.Stopped.State"),
            (
                "State: DISABLED",
                "State: DISABLED, Enabled: true",
                "Enabled and State",
            ),
            ("Enabled: false", "Enabled: nope", "Checker.Events.Off.Enabled"),
        ] {
            assert!(S.contains(from), "{from}");
            let tpl = Template::parse(&S.replacen(from, to, 1), &[]).expect("parse");
            let e = tpl.functions(&Runtime::default()).expect_err(to);
            assert!(e.0.contains(expect), "{to}: {e}");
        }
        let tpl = Template::parse(S, &[("PayoutSchedule".into(), "daily".into())]).expect("parse");
        let e = tpl.functions(&Runtime::default()).expect_err("a bad parameter");
        assert!(e.0.contains("Checker.Events.Daily.Schedule"), "{e}");
    }

    #[test]
    fn arn_helpers() {
        assert_eq!(
            queue_name_from_arn("arn:aws:sqs:us-east-1:000000000000:q.fifo"),
            Some("q.fifo")
        );
        assert_eq!(queue_name_from_arn("arn:aws:s3:::b"), None);
        assert_eq!(
            table_name_from_arn("arn:aws:dynamodb:ddblocal:000000000000:table/T/stream/2026"),
            Some("T")
        );
    }
}
