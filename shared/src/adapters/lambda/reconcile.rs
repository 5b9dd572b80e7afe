//! `reconcile_settlement`: S3 → ReconcileQueue → here. Each message is an S3 event
//! notification (AWS's `S3Event`, keys form-encoded); each object created under
//! `psp/<account_id>/` is one run. S3's `s3:TestEvent` (sent when the notification is
//! configured) is acknowledged and ignored. Runs in the one SQS batch harness: a run that fails
//! on our side comes back with backoff and ends in ReconcileDLQ with its reason.

use aws_lambda_events::event::s3::S3Event;
use chrono::Utc;
use rust_decimal::Decimal;

use crate::adapters::config::{fee_rate, var};
use crate::adapters::dynamo::ledger::LedgerStore;
use crate::adapters::dynamo::reconciliation::ReconDynamo;
use crate::adapters::dynamo::{DynamoStore, Tables};
use crate::adapters::lambda::sqs_batch::ConsumerFromEnv;
use crate::adapters::s3::{decode_key, S3Files};
use crate::adapters::stripe::StripeClient;
use crate::app::consumers::{Consumer, Failure};
use crate::app::reconciliation::{Reconciler, RunOutcome, WebhookRepair};
use crate::domain::reconciliation::account_of_key;
use crate::ports::Written;

pub struct ReconcileConsumer {
    pub files: S3Files,
    pub recon: ReconDynamo,
    pub psp: StripeClient,
    pub fee_rate: Decimal,
    pub settling: chrono::Duration,
}

/// The objects an S3 notification (AWS's `S3Event`; keys form-encoded) announces as created:
/// (bucket, decoded key). `None` for S3's test event.
pub fn created_objects(body: &str) -> Result<Option<Vec<(String, String)>>, String> {
    let value: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(None);
    }
    let event: S3Event = serde_json::from_value(value).map_err(|e| format!("not an S3 event: {e}"))?;
    let mut out = Vec::new();
    for r in event.records {
        if r.event_name
            .as_deref()
            .is_some_and(|n| n.starts_with("ObjectCreated"))
        {
            let bucket = r.s3.bucket.name.ok_or("an S3 record without its bucket")?;
            let key = r.s3.object.key.ok_or("an S3 record without its key")?;
            out.push((bucket, decode_key(&key)?));
        }
    }
    Ok(Some(out))
}

impl Consumer for ReconcileConsumer {
    const NAME: &'static str = "reconcile_settlement";

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let Some(objects) = created_objects(body).map_err(Failure::Poison)? else {
            tracing::info!("S3 test event: nothing to reconcile");
            return Ok(Written::AlreadyApplied);
        };
        let repair = WebhookRepair {
            store: &self.recon.store,
            events: &self.psp,
            fee_rate: self.fee_rate,
        };
        let reconciler = Reconciler {
            files: &self.files,
            store: &self.recon,
            ledger: &self.recon.ledger,
            psp: &self.psp,
            repair: &repair,
            settling: self.settling,
        };
        let mut written = Written::AlreadyApplied;
        for (bucket, key) in objects {
            let account = account_of_key(&key).map_err(Failure::Poison)?;
            match reconciler.reconcile(account, &bucket, &key, Utc::now()).await? {
                RunOutcome::Done(run) => {
                    tracing::info!(run_id = %run.id, status = %run.status, key = %key, "run done");
                    written = Written::Written;
                }
                RunOutcome::AlreadyDone(run) => {
                    tracing::info!(run_id = %run.id, key = %key, "same content as an earlier run");
                }
            }
        }
        Ok(written)
    }
}

impl ConsumerFromEnv for ReconcileConsumer {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        let dynamo = aws_sdk_dynamodb::Client::new(config);
        let settling: i64 = std::env::var("SETTLING_WINDOW_S")
            .unwrap_or_else(|_| "900".into())
            .parse()
            .map_err(|_| "SETTLING_WINDOW_S must be a whole number of seconds")?;
        Ok(ReconcileConsumer {
            files: S3Files {
                s3: crate::adapters::s3::client(config),
            },
            recon: ReconDynamo {
                store: DynamoStore::new(dynamo.clone(), Tables::from_env()?),
                ledger: LedgerStore::with_client(dynamo)?,
                table: var("RECONCILIATION_TABLE")?,
            },
            psp: crate::adapters::config::psp_client()?,
            fee_rate: fee_rate()?,
            settling: chrono::Duration::seconds(settling.max(0)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_notifications_name_their_objects_and_the_test_event_is_nothing() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
            "eventTime":"2026-11-30T03:00:05.000Z","eventName":"ObjectCreated:Put",
            "userIdentity":{"principalId":"x"},"requestParameters":{"sourceIPAddress":"1.2.3.4"},
            "responseElements":{"x-amz-request-id":"r","x-amz-id-2":"i"},
            "s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"settlement",
            "ownerIdentity":{"principalId":"x"},"arn":"arn:aws:s3:::settlement"},
            "object":{"key":"psp/acct_1/my+day%3A1.csv","size":10,"eTag":"e","sequencer":"0A"}}}]}"#;
        assert_eq!(
            created_objects(body).unwrap(),
            Some(vec![("settlement".into(), "psp/acct_1/my day:1.csv".into())])
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-30T03:00:00.000Z","Bucket":"settlement","RequestId":"r","HostId":"h"}"#;
        assert_eq!(created_objects(test).unwrap(), None);
        assert!(created_objects("nope").is_err());
        // moto's own shape (no userIdentity or requestParameters) is not AWS's: the twin
        // shapes it as AWS does before it reaches a function.
        let moto = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-12-01T05:33:48.504Z", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0",
            "configurationId": "A00x", "bucket": {"name": "settlementbucket", "arn": "arn:aws:s3:::settlementbucket"},
            "object": {"key": "psp%2Facct_x%2Fa+b%2Bc.csv", "size": 8, "eTag": "e5eb"}}}]}"#;
        assert!(created_objects(moto).unwrap_err().contains("userIdentity"));
        let removed = body.replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(created_objects(&removed).unwrap(), Some(vec![]));
    }
}
