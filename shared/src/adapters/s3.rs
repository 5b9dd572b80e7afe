//! Settlement files in S3: GetObject's body streamed into a CSV reader (a record at a time,
//! never the whole file), the object's SHA-256 (S3's stored checksum when the uploader asked
//! for one, else hashed while streaming), and the run's report written back.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumMode;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::adapters::dynamo::codec::unavailable;
use crate::domain::reconciliation::Interval;
use crate::ports::reconciliation::{CsvRecord, CsvRecords, ReadError, SettlementFiles};
use crate::ports::StoreError;

/// The S3 client for the functions: the standard configuration; with a custom endpoint
/// (`AWS_ENDPOINT_URL_S3`, e.g. an S3-compatible store that has no per-bucket host names),
/// path-style addressing.
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint =
        std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

#[derive(Debug, Clone)]
pub struct S3Files {
    pub s3: aws_sdk_s3::Client,
}

/// An object's metadata keys for the interval it covers (Unix seconds), set by
/// fetch_settlement; a key named `<YYYY-MM-DD>.csv` without them covers that UTC day.
pub const META_INTERVAL_START: &str = "interval-start";
pub const META_INTERVAL_END: &str = "interval-end";

type Body = Box<dyn AsyncRead + Send + Unpin>;

/// A CSV reader over a streamed body.
pub struct S3Records {
    reader: csv_async::AsyncReader<Body>,
    record: csv_async::StringRecord,
}

impl CsvRecords for S3Records {
    async fn next_record(&mut self) -> Result<Option<CsvRecord>, ReadError> {
        match self.reader.read_record(&mut self.record).await {
            Ok(false) => Ok(None),
            Ok(true) => Ok(Some(CsvRecord {
                line: self.record.position().map_or(0, |p| p.line()),
                fields: self.record.iter().map(str::to_owned).collect(),
            })),
            Err(e) => match e.kind() {
                csv_async::ErrorKind::Io(_) => Err(ReadError::Store(StoreError::Unavailable(format!(
                    "reading the file: {e}"
                )))),
                _ => Err(ReadError::Malformed {
                    line: e.position().map_or(0, |p| p.line()),
                    reason: e.to_string(),
                }),
            },
        }
    }
}

impl S3Files {
    async fn body(&self, bucket: &str, key: &str) -> Result<Body, StoreError> {
        let out = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("GetObject", e))?;
        Ok(Box::new(out.body.into_async_read()))
    }
}

/// A stored full-object SHA-256 (base64, as S3 gives it) in hex; `None` for a composite
/// (multipart) checksum or none.
fn stored_sha256(b64: Option<&str>) -> Option<String> {
    let b64 = b64?;
    if b64.contains('-') {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bytes.len() == 32).then(|| hex::encode(bytes))
}

fn unix(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.and_then(|s| s.parse::<i64>().ok())
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

impl SettlementFiles for S3Files {
    type Records = S3Records;

    async fn sha256(&self, bucket: &str, key: &str) -> Result<String, StoreError> {
        let head = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .map_err(|e| unavailable("HeadObject", e))?;
        if let Some(hex) = stored_sha256(head.checksum_sha256()) {
            return Ok(hex);
        }
        let mut body = self.body(bucket, key).await?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .await
                .map_err(|e| StoreError::Unavailable(format!("reading {key}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    async fn interval(&self, bucket: &str, key: &str) -> Result<Option<Interval>, StoreError> {
        let head = self
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| unavailable("HeadObject", e))?;
        let meta = head.metadata();
        let start = unix(meta.and_then(|m| m.get(META_INTERVAL_START)));
        let end = unix(meta.and_then(|m| m.get(META_INTERVAL_END)));
        Ok(match (start, end) {
            (Some(start), Some(end)) if start < end => Some(Interval { start, end }),
            _ => None,
        })
    }

    async fn open(&self, bucket: &str, key: &str) -> Result<S3Records, StoreError> {
        let body = self.body(bucket, key).await?;
        let reader = csv_async::AsyncReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .create_reader(body);
        Ok(S3Records {
            reader,
            record: csv_async::StringRecord::new(),
        })
    }

    async fn put_report(&self, bucket: &str, key: &str, csv: Vec<u8>) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("text/csv")
            .body(ByteStream::from(csv))
            .send()
            .await
            .map_err(|e| unavailable("PutObject report", e))?;
        Ok(())
    }
}

/// Decodes an S3 event's object key: `+` is a space, `%XX` a byte (AWS's form encoding).
pub fn decode_key(key: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = key
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape in key {key:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("key {key:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_form_decoded() {
        assert_eq!(
            decode_key("psp/acct_1/2026-11-30.csv").unwrap(),
            "psp/acct_1/2026-11-30.csv"
        );
        assert_eq!(
            decode_key("psp/acct_1/my+file%3A1.csv").unwrap(),
            "psp/acct_1/my file:1.csv"
        );
        assert_eq!(decode_key("a%2Bb").unwrap(), "a+b");
        assert!(decode_key("bad%zz").is_err());
        assert!(decode_key("cut%2").is_err());
    }

    #[test]
    fn only_a_full_object_sha256_is_trusted() {
        let digest = Sha256::digest(b"x");
        let b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        assert_eq!(stored_sha256(Some(&b64)), Some(hex::encode(digest)));
        assert_eq!(stored_sha256(Some(&format!("{b64}-3"))), None);
        assert_eq!(stored_sha256(Some("AAAA")), None);
        assert_eq!(stored_sha256(None), None);
    }
}
