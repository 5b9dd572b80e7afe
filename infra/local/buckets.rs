//! The template's S3 buckets, created in moto (idempotently), with their versioning and their
//! queue notifications.
//!
//! moto itself sends the S3 event notifications (and, when a configuration is put, S3's
//! `s3:TestEvent`) to the queues, where the SQS event-source mappings pick them up, as on AWS.

use crate::resources::Attributes;
use crate::template::BucketSpec;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use aws_sdk_s3::Client;
use serde_json::{json, Value};

/// One bucket as the twin made it.
#[derive(Debug, Clone)]
pub struct BucketInfo {
    pub logical_id: String,
    pub name: String,
    pub arn: String,
    pub versioning: Option<String>,
    /// Each queue notification as `event → queue ARN (rules)`.
    pub notifications: Vec<String>,
}

pub struct Buckets {
    pub list: Vec<BucketInfo>,
}

fn sdk_err<E: std::fmt::Debug>(what: &str, e: E) -> String {
    format!("{what}: {e:?}")
}

/// An S3 client for moto from its shared config (`Builder::from(&sdk_config)`): path-style
/// addressing (`http://127.0.0.1:PORT/<bucket>/<key>`), as a bucket name cannot be a subdomain
/// of an IP address.
pub fn client(config: aws_sdk_s3::config::Builder) -> Client {
    Client::from_conf(config.force_path_style(true).build())
}

fn notification_configuration(b: &BucketSpec) -> Result<NotificationConfiguration, String> {
    let mut queues = Vec::new();
    for n in &b.queue_notifications {
        let mut q = QueueConfiguration::builder()
            .queue_arn(&n.queue_arn)
            .events(Event::from(n.event.as_str()));
        if !n.filter_rules.is_empty() {
            let mut key = S3KeyFilter::builder();
            for (name, value) in &n.filter_rules {
                key = key.filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::from(name.as_str()))
                        .value(value)
                        .build(),
                );
            }
            q = q.filter(
                NotificationConfigurationFilter::builder()
                    .key(key.build())
                    .build(),
            );
        }
        queues.push(
            q.build()
                .map_err(|e| format!("bucket {}: notification: {e}", b.name))?,
        );
    }
    Ok(NotificationConfiguration::builder()
        .set_queue_configurations(Some(queues))
        .build())
}

async fn create_one(client: &Client, b: &BucketSpec) -> Result<&'static str, String> {
    let state = if client.head_bucket().bucket(&b.name).send().await.is_ok() {
        "exists"
    } else {
        match client.create_bucket().bucket(&b.name).send().await {
            Ok(_) => "created",
            Err(e) => {
                let owned = e
                    .as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists());
                if !owned {
                    return Err(sdk_err(&format!("CreateBucket {}", b.name), e));
                }
                "exists"
            }
        }
    };
    if let Some(status) = &b.versioning {
        client
            .put_bucket_versioning()
            .bucket(&b.name)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::from(status.as_str()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_err(&format!("PutBucketVersioning {}", b.name), e))?;
    }
    if !b.queue_notifications.is_empty() {
        client
            .put_bucket_notification_configuration()
            .bucket(&b.name)
            .notification_configuration(notification_configuration(b)?)
            .send()
            .await
            .map_err(|e| sdk_err(&format!("PutBucketNotificationConfiguration {}", b.name), e))?;
    }
    for kind in &b.unsupported_notifications {
        eprintln!(
            "twin: warning: bucket {}: NotificationConfiguration.{kind} is not applied by the twin \
             (only QueueConfigurations)",
            b.logical_id
        );
    }
    Ok(state)
}

impl Buckets {
    /// Create every bucket (queues first: the notifications name them).
    pub async fn create(client: &Client, specs: &[BucketSpec]) -> Result<Self, String> {
        let mut list = Vec::new();
        for b in specs {
            let state = create_one(client, b).await?;
            let notifications: Vec<String> = b
                .queue_notifications
                .iter()
                .map(|n| {
                    let rules: Vec<String> = n.filter_rules.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    let queue = crate::template::queue_name_from_arn(&n.queue_arn).unwrap_or(&n.queue_arn);
                    if rules.is_empty() {
                        format!("{} → {queue}", n.event)
                    } else {
                        format!("{} → {queue} ({})", n.event, rules.join(", "))
                    }
                })
                .collect();
            eprintln!("twin: bucket {:<27} {state}", b.name);
            list.push(BucketInfo {
                logical_id: b.logical_id.clone(),
                name: b.name.clone(),
                arn: format!("arn:aws:s3:::{}", b.name),
                versioning: b.versioning.clone(),
                notifications,
            });
        }
        Ok(Buckets { list })
    }

    /// `Arn` of each bucket, for `!GetAtt`.
    pub fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        for b in &self.list {
            a.insert((b.logical_id.clone(), "Arn".into()), b.arn.clone());
        }
        a
    }

    /// `GET /__twin/buckets`: each bucket by logical id, with its physical name.
    pub fn describe(&self) -> Value {
        let list: Vec<Value> = self
            .list
            .iter()
            .map(|b| {
                json!({
                    "logical_id": b.logical_id,
                    "name": b.name,
                    "arn": b.arn,
                    "versioning": b.versioning,
                    "notifications": b.notifications,
                })
            })
            .collect();
        json!({ "buckets": list })
    }
}

/// moto's S3 event notification, shaped as AWS shapes it, so a function reads on the twin
/// exactly what it reads on AWS: moto leaves out `userIdentity`, `requestParameters`,
/// `responseElements`, the bucket's `ownerIdentity` and the object's `sequencer`, and encodes
/// `/` in keys (Python's `quote_plus`), which AWS leaves as is. `None` for any other body (an
/// AWS-shaped one is returned unchanged in substance).
pub fn aws_shaped_s3_event(body: &str) -> Option<String> {
    let mut v: Value = serde_json::from_str(body).ok()?;
    let records = v.get_mut("Records")?.as_array_mut()?;
    if records.is_empty() || !records.iter().all(|r| r["eventSource"] == "aws:s3") {
        return None;
    }
    for (i, r) in records.iter_mut().enumerate() {
        let obj = r.as_object_mut()?;
        obj.entry("userIdentity")
            .or_insert_with(|| json!({"principalId": "AWS:AIDALOCALTWIN"}));
        obj.entry("requestParameters")
            .or_insert_with(|| json!({"sourceIPAddress": "127.0.0.1"}));
        obj.entry("responseElements").or_insert_with(
            || json!({"x-amz-request-id": format!("TWIN{i:012}"), "x-amz-id-2": "twin/local"}),
        );
        let millis = obj
            .get("eventTime")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis());
        let s3 = obj.get_mut("s3")?.as_object_mut()?;
        if let Some(bucket) = s3.get_mut("bucket").and_then(Value::as_object_mut) {
            bucket
                .entry("ownerIdentity")
                .or_insert_with(|| json!({"principalId": "A3TWINLOCALOWNER"}));
        }
        let object = s3.get_mut("object")?.as_object_mut()?;
        object
            .entry("sequencer")
            .or_insert_with(|| json!(format!("{millis:016X}")));
        let key = object.get("key")?.as_str()?;
        let aws_key = aws_key_encoding(&form_decode(key)?);
        object.insert("key".into(), json!(aws_key));
    }
    serde_json::to_string(&v).ok()
}

/// `+` is a space, `%XX` a byte.
fn form_decode(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                out.push(u8::from_str_radix(key.get(i + 1..i + 3)?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A key as AWS writes it in an event: form-encoded (a space is `+`), `/` and the unreserved
/// characters left as they are.
fn aws_key_encoding(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod event_shape_tests {
    use super::*;

    const MOTO: &str = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-12-01T05:33:48.504Z", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "configurationId": "A00x0x", "bucket": {"name": "settlementbucket", "arn": "arn:aws:s3:::settlementbucket"}, "object": {"key": "psp%2Facct_x%2Fa+b%2Bc%3A1.csv", "size": 8, "eTag": "e5ebd4c02cefbe7955977c67ada242b7"}}}]}"#;

    #[test]
    fn motos_s3_event_reaches_the_function_as_aws_shapes_it() {
        let body = aws_shaped_s3_event(MOTO).expect("an S3 event");
        // moto's own body does not parse as Lambda's S3 event; the twin's does.
        assert!(serde_json::from_str::<aws_lambda_events::event::s3::S3Event>(MOTO).is_err());
        let e: aws_lambda_events::event::s3::S3Event = serde_json::from_str(&body).unwrap();
        let r = &e.records[0];
        assert_eq!(r.event_name.as_deref(), Some("ObjectCreated:Put"));
        assert_eq!(r.s3.bucket.name.as_deref(), Some("settlementbucket"));
        assert_eq!(
            r.s3.object.key.as_deref(),
            Some("psp/acct_x/a+b%2Bc%3A1.csv"),
            "AWS's encoding"
        );
        assert_eq!(r.s3.object.size, Some(8));
        assert!(r.s3.object.sequencer.is_some());
        // Shaping twice changes nothing.
        assert_eq!(aws_shaped_s3_event(&body).as_deref(), Some(body.as_str()));
    }

    #[test]
    fn other_bodies_are_left_alone() {
        assert_eq!(
            aws_shaped_s3_event(r#"{"Event":"s3:TestEvent","Service":"Amazon S3"}"#),
            None
        );
        assert_eq!(aws_shaped_s3_event(r#"{"event_id":"evt_1"}"#), None);
        assert_eq!(aws_shaped_s3_event("not json"), None);
        assert_eq!(
            aws_shaped_s3_event(r#"{"Records":[{"eventSource":"aws:sqs"}]}"#),
            None
        );
    }
}
