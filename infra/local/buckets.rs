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
