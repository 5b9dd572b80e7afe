//! The template's SQS queues, created in moto (idempotently), and their message counts.

use crate::resources::Attributes;
use crate::template::{queue_name_from_arn, QueueSpec};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use serde_json::{json, Value};

/// One queue as moto knows it.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub logical_id: String,
    pub name: String,
    pub url: String,
    pub arn: String,
    /// The redrive policy's target ARN and maxReceiveCount.
    pub dead_letter: Option<(String, u32)>,
}

pub struct Queues {
    pub client: Client,
    pub list: Vec<QueueInfo>,
}

fn sdk_err<E: std::fmt::Debug>(what: &str, e: E) -> String {
    format!("{what}: {e:?}")
}

async fn create_one(client: &Client, q: &QueueSpec) -> Result<String, String> {
    let mut req = client.create_queue().queue_name(&q.name);
    for (k, v) in &q.attributes {
        req = req.attributes(QueueAttributeName::from(k.as_str()), v);
    }
    match req.send().await {
        Ok(out) => out
            .queue_url()
            .map(str::to_string)
            .ok_or_else(|| format!("CreateQueue {}: no QueueUrl in the answer", q.name)),
        // It exists with other attributes (a restart against a long-lived moto): adopt it.
        Err(create_err) => {
            let url = client
                .get_queue_url()
                .queue_name(&q.name)
                .send()
                .await
                .map_err(|_| sdk_err(&format!("CreateQueue {}", q.name), create_err))?
                .queue_url()
                .map(str::to_string)
                .ok_or_else(|| format!("GetQueueUrl {}: no QueueUrl in the answer", q.name))?;
            if !q.attributes.is_empty() {
                let mut set = client.set_queue_attributes().queue_url(&url);
                for (k, v) in &q.attributes {
                    set = set.attributes(QueueAttributeName::from(k.as_str()), v);
                }
                set.send()
                    .await
                    .map_err(|e| sdk_err(&format!("SetQueueAttributes {}", q.name), e))?;
            }
            Ok(url)
        }
    }
}

async fn queue_arn(client: &Client, url: &str) -> Result<String, String> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_err(&format!("GetQueueAttributes {url}"), e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| format!("GetQueueAttributes {url}: no QueueArn"))
}

impl Queues {
    /// Create every queue (dead-letter targets first, then the redrive policies).
    pub async fn create(client: Client, specs: &[QueueSpec]) -> Result<Self, String> {
        let mut list = Vec::new();
        for q in specs {
            let url = create_one(&client, q).await?;
            let arn = queue_arn(&client, &url).await?;
            eprintln!("twin: queue {:<28} {url}", q.name);
            list.push(QueueInfo {
                logical_id: q.logical_id.clone(),
                name: q.name.clone(),
                url,
                arn,
                dead_letter: None,
            });
        }
        for (q, info) in specs.iter().zip(list.iter_mut()) {
            let Some(policy) = &q.redrive_policy else {
                continue;
            };
            let parsed: Value = serde_json::from_str(policy).unwrap_or_default();
            let target = parsed["deadLetterTargetArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let max = parsed["maxReceiveCount"].as_u64().unwrap_or_default() as u32;
            if !specs
                .iter()
                .any(|s| Some(s.name.as_str()) == queue_name_from_arn(&target))
            {
                eprintln!(
                    "twin: warning: queue {}: dead-letter target {target} is not a queue of the template",
                    q.name
                );
            }
            client
                .set_queue_attributes()
                .queue_url(&info.url)
                .attributes(QueueAttributeName::RedrivePolicy, policy)
                .send()
                .await
                .map_err(|e| sdk_err(&format!("SetQueueAttributes RedrivePolicy {}", q.name), e))?;
            info.dead_letter = Some((target, max));
        }
        Ok(Queues { client, list })
    }

    /// `Arn`, `QueueUrl` and `QueueName` of each queue, for `Ref` / `GetAtt`.
    pub fn attributes(&self) -> Attributes {
        let mut a = Attributes::new();
        for q in &self.list {
            a.insert((q.logical_id.clone(), "Arn".into()), q.arn.clone());
            a.insert((q.logical_id.clone(), "QueueUrl".into()), q.url.clone());
            a.insert((q.logical_id.clone(), "QueueName".into()), q.name.clone());
        }
        a
    }

    pub fn by_arn(&self, arn: &str) -> Option<&QueueInfo> {
        self.list.iter().find(|q| q.arn == arn)
    }

    /// The URL of a queue by ARN: one of ours, else asked of moto by name.
    pub async fn url_for_arn(&self, arn: &str) -> Result<String, String> {
        if let Some(q) = self.by_arn(arn) {
            return Ok(q.url.clone());
        }
        let name = queue_name_from_arn(arn).ok_or_else(|| format!("{arn} is not an SQS queue ARN"))?;
        self.client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| sdk_err(&format!("GetQueueUrl {name}"), e))?
            .queue_url()
            .map(str::to_string)
            .ok_or_else(|| format!("GetQueueUrl {name}: no QueueUrl in the answer"))
    }

    /// `GET /__twin/queues`: each queue with its approximate message counts.
    pub async fn stats(&self) -> Value {
        let mut out = Vec::new();
        for q in &self.list {
            let counts = self
                .client
                .get_queue_attributes()
                .queue_url(&q.url)
                // "All", not the three counts: moto works out every attribute (walking the
                // queue) once per name asked for, and three times over for each.
                .attribute_names(QueueAttributeName::All)
                .send()
                .await;
            let mut entry = json!({
                "logical_id": q.logical_id,
                "name": q.name,
                "url": q.url,
                "arn": q.arn,
                "dead_letter_target_arn": q.dead_letter.as_ref().map(|d| d.0.clone()),
                "max_receive_count": q.dead_letter.as_ref().map(|d| d.1),
            });
            match counts {
                Ok(c) => {
                    let get = |n: QueueAttributeName| -> u64 {
                        c.attributes()
                            .and_then(|a| a.get(&n))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_default()
                    };
                    entry["visible"] = json!(get(QueueAttributeName::ApproximateNumberOfMessages));
                    entry["not_visible"] =
                        json!(get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible));
                    entry["delayed"] = json!(get(QueueAttributeName::ApproximateNumberOfMessagesDelayed));
                }
                Err(e) => entry["error"] = json!(format!("{e:?}")),
            }
            out.push(entry);
        }
        json!({ "queues": out })
    }
}
