//! SQS event source: long-polls a moto queue and invokes the function with Lambda's SQS event.
//!
//! As Lambda does: messages the function handled are deleted; failed ones are not, so they
//! come back after the queue's visibility timeout, and moto's redrive policy moves a message
//! to the dead-letter queue once it has been received `maxReceiveCount` times. With
//! `ReportBatchItemFailures` only the messages listed in `batchItemFailures` stay. A function
//! error, a timeout or a crash deletes nothing. Messages that match no filter are deleted
//! without an invocation. `ScalingConfig.MaximumConcurrency` pollers run per mapping.

use crate::control::{MappingControl, Metrics, Wait};
use crate::esm::{parse_batch_response, BatchResponse, Context, Invoked, Throttle};
use crate::filter::Filters;
use crate::template::{EventSourceSpec, SourceKind, REGION};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long-poll wait per ReceiveMessage call (SQS allows up to 20 s; shorter keeps shutdown and
/// a binary appearing quick to notice).
const LONG_POLL_SECS: u64 = 5;
/// SQS's limit per ReceiveMessage and DeleteMessageBatch call.
const MESSAGES_PER_CALL_MAX: usize = 10;

pub struct SqsMapping {
    spec: EventSourceSpec,
    control: Arc<MappingControl>,
    label: String,
    ctx: Arc<Context>,
    queue_arn: String,
    filters: Filters,
}

/// A message as Lambda's SQS event record.
pub fn record_json(m: &Message, queue_arn: &str) -> Value {
    let mut attributes = Map::new();
    if let Some(attrs) = m.attributes() {
        for (k, v) in attrs {
            attributes.insert(k.as_str().to_string(), json!(v));
        }
    }
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut message_attributes = Map::new();
    if let Some(attrs) = m.message_attributes() {
        for (name, a) in attrs {
            let mut v = Map::new();
            if let Some(s) = a.string_value() {
                v.insert("stringValue".into(), json!(s));
            }
            if let Some(b) = a.binary_value() {
                v.insert("binaryValue".into(), json!(b64(b.as_ref())));
            }
            v.insert("stringListValues".into(), json!(a.string_list_values()));
            v.insert(
                "binaryListValues".into(),
                json!(a
                    .binary_list_values()
                    .iter()
                    .map(|b| b64(b.as_ref()))
                    .collect::<Vec<_>>()),
            );
            v.insert("dataType".into(), json!(a.data_type()));
            message_attributes.insert(name.clone(), Value::Object(v));
        }
    }
    let mut rec = json!({
        "messageId": m.message_id().unwrap_or_default(),
        "receiptHandle": m.receipt_handle().unwrap_or_default(),
        // An S3 notification from moto, as AWS shapes it (see `buckets::aws_shaped_s3_event`).
        "body": m
            .body()
            .and_then(crate::buckets::aws_shaped_s3_event)
            .unwrap_or_else(|| m.body().unwrap_or_default().to_owned()),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": m.md5_of_body().unwrap_or_default(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    });
    if let Some(md5) = m.md5_of_message_attributes() {
        rec["md5OfMessageAttributes"] = json!(md5);
    }
    rec
}

/// What filters see: the record, with a JSON body parsed (Lambda filters on `body` as JSON
/// when it is JSON, else as a plain string).
fn filter_view(rec: &Value) -> Value {
    let mut v = rec.clone();
    if let Some(parsed) = rec["body"]
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .filter(|p| p.is_object() || p.is_array())
    {
        v["body"] = parsed;
    }
    v
}

/// Which of a batch's messages to delete after the invocation. `answer` is the function's
/// response, or None if the invocation failed (error, timeout, crash): then none.
pub fn messages_to_delete<'a>(ids: &[&'a str], report_failures: bool, answer: Option<&[u8]>) -> Vec<&'a str> {
    let Some(payload) = answer else {
        return Vec::new();
    };
    if !report_failures {
        return ids.to_vec();
    }
    match parse_batch_response(payload, ids) {
        BatchResponse::AllSucceeded => ids.to_vec(),
        BatchResponse::ItemsFailed(failed) => ids
            .iter()
            .copied()
            .filter(|id| !failed.iter().any(|f| f == id))
            .collect(),
        BatchResponse::Invalid(_) => Vec::new(),
    }
}

impl SqsMapping {
    pub fn new(
        spec: EventSourceSpec,
        ctx: Arc<Context>,
        control: Arc<MappingControl>,
    ) -> Result<Self, String> {
        let SourceKind::Sqs { queue_arn, .. } = &spec.kind else {
            return Err(format!("{}: not an SQS event source", spec.name));
        };
        let filters = Filters::parse(&spec.filters).map_err(|e| format!("{}: {e}", spec.name))?;
        Ok(SqsMapping {
            label: crate::esm::describe(&spec),
            queue_arn: queue_arn.clone(),
            spec,
            control,
            ctx,
            filters,
        })
    }

    /// Receive up to BatchSize messages: wait (long poll) for the first, then keep gathering
    /// for MaximumBatchingWindowInSeconds. None if the twin is stopping.
    async fn gather(&self, url: &str) -> Result<Option<Vec<Message>>, String> {
        let window = Duration::from_secs(self.spec.batching_window_secs);
        let mut batch: Vec<Message> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            // WaitTimeSeconds is whole seconds: under a second left, wait it out, then take
            // what is there with one last short poll.
            let (wait, last) = match deadline {
                None => (LONG_POLL_SECS, false),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left >= Duration::from_secs(1) {
                        (left.as_secs().min(LONG_POLL_SECS), false)
                    } else {
                        if !left.is_zero() && !self.ctx.sleep(left).await {
                            return Ok(None);
                        }
                        (0, true)
                    }
                }
            };
            let want = (self.spec.batch_size - batch.len()).min(MESSAGES_PER_CALL_MAX);
            let call = self
                .ctx
                .queues
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(want as i32)
                .wait_time_seconds(wait as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send();
            let mut shutdown = self.ctx.shutdown.clone();
            let resp = tokio::select! {
                r = call => r.map_err(|e| format!("ReceiveMessage: {e:?}"))?,
                _ = crate::esm::stopped(&mut shutdown) => return Ok(None),
            };
            let got = resp.messages().len();
            batch.extend(resp.messages().iter().cloned());
            if batch.len() >= self.spec.batch_size || window.is_zero() || last {
                break;
            }
            if batch.is_empty() {
                // Nothing yet: let the caller look at shutdown and the binary again.
                break;
            }
            if deadline.is_none() && got > 0 {
                deadline = Some(Instant::now() + window);
            }
        }
        Ok(Some(batch))
    }

    async fn delete(&self, url: &str, handles: &[(&str, &str)], errors: &mut Throttle) {
        for chunk in handles.chunks(MESSAGES_PER_CALL_MAX) {
            let mut req = self.ctx.queues.client.delete_message_batch().queue_url(url);
            for (i, (_, handle)) in chunk.iter().enumerate() {
                match DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*handle)
                    .build()
                {
                    Ok(e) => req = req.entries(e),
                    Err(e) => errors.report(&self.label, &format!("DeleteMessageBatch entry: {e}")),
                }
            }
            match req.send().await {
                Ok(out) => {
                    Metrics::add(&self.control.metrics.deleted, out.successful().len());
                    for f in out.failed() {
                        let id = f
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| chunk.get(i))
                            .map(|(m, _)| *m);
                        errors.report(
                            &self.label,
                            &format!(
                                "DeleteMessageBatch: message {} not deleted: {}",
                                id.unwrap_or("?"),
                                f.message().unwrap_or(f.code())
                            ),
                        );
                    }
                }
                Err(e) => errors.report(&self.label, &format!("DeleteMessageBatch: {e:?}")),
            }
        }
    }

    /// Invoke the function with one batch and delete what Lambda would delete.
    async fn handle(&self, url: &str, messages: Vec<Message>, errors: &mut Throttle) {
        let records: Vec<Value> = messages.iter().map(|m| record_json(m, &self.queue_arn)).collect();
        let (pass, dropped): (Vec<&Value>, Vec<&Value>) =
            records.iter().partition(|r| self.filters.passes(&filter_view(r)));
        let metrics = &self.control.metrics;
        Metrics::add(&metrics.polled, records.len());
        Metrics::add(&metrics.filtered_out, dropped.len());
        Metrics::add(&metrics.invoked, pass.len());
        let handle_of = |r: &&Value| -> Option<(String, String)> {
            Some((
                r["messageId"].as_str()?.to_string(),
                r["receiptHandle"].as_str()?.to_string(),
            ))
        };
        // Lambda deletes messages that match no filter.
        let mut to_delete: Vec<(String, String)> = dropped.iter().filter_map(handle_of).collect();
        if !pass.is_empty() {
            let event = json!({ "Records": pass });
            let started = Instant::now();
            let outcome = self.ctx.invoke(&self.spec.function, &event).await;
            let took = started.elapsed();
            let ids: Vec<&str> = pass.iter().filter_map(|r| r["messageId"].as_str()).collect();
            let (answer, note) = match &outcome {
                Invoked::Ok(p) => (Some(p.as_ref()), String::new()),
                Invoked::Failed(e) | Invoked::Unavailable(e) => (None, e.clone()),
                // Abandoned: everything comes back after the visibility timeout.
                Invoked::Stopping => return,
            };
            let done = messages_to_delete(&ids, self.spec.report_batch_item_failures, answer);
            Metrics::add(&metrics.failed_invoke, ids.len() - done.len());
            let note = if note.is_empty() && done.len() < ids.len() {
                "failed messages return after the visibility timeout".to_string()
            } else {
                note
            };
            self.ctx
                .log_batch(&self.label, ids.len(), ids.len() - done.len(), took, &note);
            to_delete.extend(
                pass.iter()
                    .filter_map(handle_of)
                    .filter(|(id, _)| done.contains(&id.as_str())),
            );
        }
        if !to_delete.is_empty() {
            let handles: Vec<(&str, &str)> =
                to_delete.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            self.delete(url, &handles, errors).await;
        }
    }
}

/// One poller of a mapping; runs until the twin stops.
pub async fn run_poller(m: Arc<SqsMapping>) {
    let mut errors = Throttle::default();
    let url = loop {
        match m.ctx.queues.url_for_arn(&m.queue_arn).await {
            Ok(u) => break u,
            Err(e) => {
                errors.report(&m.label, &e);
                if !m.ctx.sleep(Duration::from_secs(2)).await {
                    return;
                }
            }
        }
    };
    loop {
        // A disabled mapping receives nothing: its messages wait in the queue.
        if m.control.wait_enabled(&m.ctx, m.control.generation()).await == Wait::Stopping {
            return;
        }
        if !m.ctx.wait_for_binary(&m.spec.function).await {
            return;
        }
        // Busy first, then look again: a disable in between waits for us or is seen here.
        let _busy = m.control.busy();
        if !m.control.enabled() {
            continue;
        }
        match m.gather(&url).await {
            Ok(None) => return,
            Ok(Some(batch)) if batch.is_empty() => {}
            Ok(Some(batch)) => m.handle(&url, batch, &mut errors).await,
            Err(e) => {
                errors.report(&m.label, &e);
                if !m.ctx.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::MessageAttributeValue;

    const ARN: &str = "arn:aws:sqs:us-east-1:000000000000:LedgerQueue";

    fn message(id: &str, body: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("rh-{id}"))
            .body(body)
            .md5_of_body("5d41402abc4b2a76b9719d911017c592")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1795597620705")
            .attributes(MessageSystemAttributeName::SenderId, "AIDAIT2UOQQY3AUEKVGXU")
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1795597620709",
            )
            .message_attributes(
                "event_type",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("PAYMENT_SUCCEEDED")
                    .build()
                    .expect("attribute"),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1u8, 2]))
                    .build()
                    .expect("attribute"),
            )
            .build()
    }

    #[test]
    fn record_has_lambdas_shape() {
        let r = record_json(&message("m1", r#"{"event_id":"evt_1"}"#), ARN);
        assert_eq!(r["messageId"], "m1");
        assert_eq!(r["receiptHandle"], "rh-m1");
        assert_eq!(r["body"], r#"{"event_id":"evt_1"}"#);
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(r["attributes"]["SentTimestamp"], "1795597620705");
        assert_eq!(r["attributes"]["SenderId"], "AIDAIT2UOQQY3AUEKVGXU");
        assert_eq!(
            r["attributes"]["ApproximateFirstReceiveTimestamp"],
            "1795597620709"
        );
        assert_eq!(
            r["messageAttributes"]["event_type"],
            json!({"stringValue": "PAYMENT_SUCCEEDED", "stringListValues": [], "binaryListValues": [], "dataType": "String"})
        );
        assert_eq!(r["messageAttributes"]["raw"]["binaryValue"], "AQI=");
        assert_eq!(r["md5OfBody"], "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], ARN);
        assert_eq!(r["awsRegion"], REGION);
    }

    /// The events we build parse with the types the functions use.
    #[test]
    fn events_parse_as_aws_lambda_events() {
        use aws_lambda_events::event::sqs::SqsEvent;
        let event = json!({ "Records": [record_json(&message("m1", "hello"), ARN), record_json(&message("m2", "x"), ARN)] });
        let parsed: SqsEvent = serde_json::from_value(event.clone()).expect("SQS event parses");
        assert_eq!(parsed.records.len(), 2);
        let m = &parsed.records[0];
        assert_eq!(m.message_id.as_deref(), Some("m1"));
        assert_eq!(m.receipt_handle.as_deref(), Some("rh-m1"));
        assert_eq!(m.body.as_deref(), Some("hello"));
        assert_eq!(m.event_source_arn.as_deref(), Some(ARN));
        assert_eq!(m.attributes["ApproximateReceiveCount"], "2");
        assert_eq!(
            m.message_attributes["event_type"].string_value.as_deref(),
            Some("PAYMENT_SUCCEEDED")
        );
        let raw = m.message_attributes["raw"].binary_value.as_ref().expect("binary");
        assert_eq!(raw.0, vec![1u8, 2]);
        // And back: nothing is lost.
        let again = serde_json::to_value(&parsed).expect("serialize");
        assert_eq!(again["Records"][1]["messageId"], "m2");
    }

    #[test]
    fn what_gets_deleted() {
        let ids = ["a", "b", "c"];
        // Success without ReportBatchItemFailures: all; the response is not read.
        assert_eq!(messages_to_delete(&ids, false, Some(b"whatever")), ids.to_vec());
        // A failed invocation (error, timeout, crash): none.
        assert!(messages_to_delete(&ids, false, None).is_empty());
        assert!(messages_to_delete(&ids, true, None).is_empty());
        // Partial batch response: all but the listed.
        let partial = br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#;
        assert_eq!(messages_to_delete(&ids, true, Some(partial)), vec!["a", "c"]);
        assert_eq!(messages_to_delete(&ids, true, Some(b"{}")), ids.to_vec());
        assert_eq!(messages_to_delete(&ids, true, Some(b"")), ids.to_vec());
        // An invalid partial response fails the whole batch.
        let unknown = br#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#;
        assert!(messages_to_delete(&ids, true, Some(unknown)).is_empty());
    }

    #[test]
    fn filters_see_a_json_body_parsed() {
        let f = Filters::parse(&[r#"{"body": {"event_type": ["PAYMENT_SUCCEEDED"]}}"#.to_string()])
            .expect("filter");
        let yes = record_json(&message("m1", r#"{"event_type":"PAYMENT_SUCCEEDED"}"#), ARN);
        let no = record_json(&message("m2", r#"{"event_type":"PAYMENT_FAILED"}"#), ARN);
        let plain = record_json(&message("m3", "PAYMENT_SUCCEEDED"), ARN);
        assert!(f.passes(&filter_view(&yes)));
        assert!(!f.passes(&filter_view(&no)));
        assert!(!f.passes(&filter_view(&plain)));
        // The event itself keeps the body as the string it was.
        assert!(yes["body"].is_string());
    }
}
