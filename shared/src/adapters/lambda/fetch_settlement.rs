//! `fetch_settlement`: the daily loop's first step. On its schedule (EventBridge's "Scheduled
//! Event"), the previous UTC day of the event's `time`; invoked with
//! `{"interval_start": <unix>, "interval_end": <unix>}` (and optionally `"account_id"`), that
//! interval (for that account). Then Stripe's Reporting
//! API: `POST /v1/reporting/report_runs` (idempotent per account and interval), poll until
//! `succeeded`, stream `result.url` into S3 at `psp/<account_id>/<date>.csv` (or
//! `<start>-<end>.csv`), with the interval in the object's metadata. That upload starts the
//! reconciliation run; nothing in the loop needs a person.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use chrono::{DateTime, Duration as Days, Utc};
use http_body_util::BodyExt;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};

use crate::adapters::config::{psp_client, var, FromEnv};
use crate::adapters::s3::{META_INTERVAL_END, META_INTERVAL_START};
use crate::adapters::stripe::StripeClient;
use crate::domain::ids::AccountId;
use crate::domain::reconciliation::row::requested_columns;
use crate::domain::reconciliation::Interval;

/// How long a report run may take before this invocation gives up (Lambda retries it).
const POLL_BUDGET: Duration = Duration::from_secs(600);
/// Parts of a large report go to S3 this big (S3's minimum part is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

pub struct FetchEnv {
    pub psp: StripeClient,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub account: AccountId,
}

impl FromEnv for FetchEnv {
    async fn load() -> Result<Self, String> {
        let config = crate::adapters::aws::sdk_config().await;
        let account = var("SETTLEMENT_ACCOUNT_ID")?;
        Ok(FetchEnv {
            psp: psp_client()?,
            s3: crate::adapters::s3::client(&config),
            bucket: var("SETTLEMENT_BUCKET")?,
            account: AccountId::parse(&account).map_err(|e| format!("SETTLEMENT_ACCOUNT_ID {e}"))?,
        })
    }
}

/// The interval an invocation asks for, and the object's name for it.
pub fn requested_interval(event: &Value, now: DateTime<Utc>) -> Result<(Interval, String), String> {
    let unix = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        match event.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .and_then(|t| DateTime::from_timestamp(t, 0))
                .map(Some)
                .ok_or_else(|| format!("{name} must be Unix seconds")),
        }
    };
    match (unix("interval_start")?, unix("interval_end")?) {
        (Some(start), Some(end)) if start < end => Ok((
            Interval { start, end },
            format!("{}-{}.csv", start.timestamp(), end.timestamp()),
        )),
        (Some(_), Some(_)) => Err("interval_start must be before interval_end".into()),
        (None, None) => {
            let at = event
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .unwrap_or(now);
            let day = at.date_naive() - Days::days(1);
            let start = day.and_hms_opt(0, 0, 0).ok_or("no midnight")?.and_utc();
            Ok((
                Interval {
                    start,
                    end: start + Days::days(1),
                },
                format!("{}.csv", day.format("%Y-%m-%d")),
            ))
        }
        _ => Err("give both interval_start and interval_end, or neither".into()),
    }
}

pub async fn handle_fetch(env: &FetchEnv, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let (interval, name) = requested_interval(&event.payload, Utc::now())?;
    // An operator may fetch for another of our accounts that owns the PSP account's reports.
    let account = match event.payload.get("account_id").and_then(Value::as_str) {
        Some(a) => AccountId::parse(a).map_err(|e| format!("account_id {e}"))?,
        None => env.account.clone(),
    };
    let key = format!("psp/{account}/{name}");
    let columns = requested_columns();
    let idem = format!(
        "settlement-{}-{}-{}",
        account,
        interval.start.timestamp(),
        interval.end.timestamp()
    );
    let mut run = env
        .psp
        .create_report_run(interval.start, interval.end, &columns, &idem)
        .await
        .map_err(|e| format!("creating the report run: {e}"))?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    while run.status == "pending" {
        if started.elapsed() > POLL_BUDGET {
            return Err(format!("report run {} still pending after {POLL_BUDGET:?}", run.id).into());
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(10));
        run = env
            .psp
            .report_run(&run.id)
            .await
            .map_err(|e| format!("polling report run {}: {e}", run.id))?;
    }
    if run.status != "succeeded" {
        return Err(format!(
            "report run {} ended {}: {}",
            run.id,
            run.status,
            run.error.unwrap_or_default()
        )
        .into());
    }
    let url = run
        .result
        .and_then(|f| f.url)
        .ok_or_else(|| format!("report run {} succeeded without a file", run.id))?;
    let bytes = upload(env, &key, &interval, &url).await?;
    tracing::info!(report_run = %run.id, key = %key, bytes, "settlement report stored");
    Ok(
        json!({"report_run": run.id, "bucket": env.bucket, "key": key, "bytes": bytes,
        "interval_start": interval.start.timestamp(), "interval_end": interval.end.timestamp()}),
    )
}

/// Streams the file into S3: one PutObject (with its SHA-256, so the run need not hash it)
/// when it is small, a multipart upload of [`PART_BYTES`] parts otherwise.
async fn upload(env: &FetchEnv, key: &str, interval: &Interval, url: &str) -> Result<u64, String> {
    let mut body = env
        .psp
        .open_file(url)
        .await
        .map_err(|e| format!("downloading the report: {e}"))?;
    let start = interval.start.timestamp().to_string();
    let end = interval.end.timestamp().to_string();
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0u64;
    let mut multipart: Option<(String, Vec<CompletedPart>)> = None;
    loop {
        let frame = body
            .frame()
            .await
            .transpose()
            .map_err(|e| format!("downloading the report: {e}"))?;
        let done = frame.is_none();
        if let Some(data) = frame.and_then(|f| f.into_data().ok()) {
            total += data.len() as u64;
            buf.extend_from_slice(&data);
        }
        if buf.len() >= PART_BYTES || (done && multipart.is_some() && !buf.is_empty()) {
            if multipart.is_none() {
                let created = env
                    .s3
                    .create_multipart_upload()
                    .bucket(&env.bucket)
                    .key(key)
                    .content_type("text/csv")
                    .metadata(META_INTERVAL_START, &start)
                    .metadata(META_INTERVAL_END, &end)
                    .send()
                    .await
                    .map_err(|e| format!("CreateMultipartUpload: {e}"))?;
                let id = created.upload_id.ok_or("CreateMultipartUpload without an id")?;
                multipart = Some((id, Vec::new()));
            }
            let (id, parts) = multipart.as_mut().expect("set above");
            let number = parts.len() as i32 + 1;
            let part = env
                .s3
                .upload_part()
                .bucket(&env.bucket)
                .key(key)
                .upload_id(id.as_str())
                .part_number(number)
                .body(ByteStream::from(std::mem::take(&mut buf)))
                .send()
                .await
                .map_err(|e| format!("UploadPart {number}: {e}"))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag)
                    .build(),
            );
        }
        if done {
            break;
        }
    }
    match multipart {
        Some((id, parts)) => {
            env.s3
                .complete_multipart_upload()
                .bucket(&env.bucket)
                .key(key)
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| format!("CompleteMultipartUpload: {e}"))?;
        }
        None => {
            env.s3
                .put_object()
                .bucket(&env.bucket)
                .key(key)
                .content_type("text/csv")
                .metadata(META_INTERVAL_START, &start)
                .metadata(META_INTERVAL_END, &end)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| format!("PutObject {key}: {e}"))?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_fetches_the_previous_utc_day_and_an_invocation_its_interval() {
        let now = Utc::now();
        let event = json!({"detail-type": "Scheduled Event", "time": "2026-12-01T03:00:00Z"});
        let (iv, name) = requested_interval(&event, now).unwrap();
        assert_eq!(name, "2026-11-30.csv");
        assert_eq!(iv.start.to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(iv.end.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(Interval::day_of_key(&format!("psp/a/{name}")), Some(iv));
        let (iv, name) =
            requested_interval(&json!({"interval_start": 100, "interval_end": 200}), now).unwrap();
        assert_eq!((iv.start.timestamp(), iv.end.timestamp()), (100, 200));
        assert_eq!(name, "100-200.csv");
        assert!(requested_interval(&json!({"interval_start": 200, "interval_end": 100}), now).is_err());
        assert!(requested_interval(&json!({"interval_start": 200}), now).is_err());
        assert!(requested_interval(&json!({"interval_start": "x", "interval_end": 1}), now).is_err());
    }
}
