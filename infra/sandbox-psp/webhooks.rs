//! Webhook signing and delivery, as Stripe does it.
//!
//! Signature: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`,
//! the key being the whole endpoint secret string (`whsec_…`).
//!
//! Delivery: one worker sends first attempts in event order (so hold/reorder faults are
//! observable); a failed attempt (non-2xx, connection error, or no answer within
//! `SANDBOX_WEBHOOK_TIMEOUT_MS`) is retried by its own task, attempt k+1 starting
//! `SANDBOX_WEBHOOK_RETRY_BASE_MS × 2^(k-1)` after attempt k, up to `SANDBOX_WEBHOOK_ATTEMPTS_MAX`
//! attempts in all. Every attempt is recorded (`GET /__sandbox/deliveries`).

use crate::store::{now, now_ms, push_bounded};
use crate::App;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// One event to one endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    pub url: String,
    pub secret: String,
    /// The exact bytes sent (and signed) on every attempt.
    pub body: String,
    /// Sign with a timestamp this far in the past (fault `late_next`).
    pub late_by_s: i64,
    /// 0 for the delivery, 1 for the copy made by fault `duplicate_next`.
    pub copy: u32,
}

pub enum Work {
    /// A new delivery: goes through the webhook faults first.
    Fresh(Job),
    /// A delivery released from hold or reorder: sent as is.
    Release(Job),
}

/// Hex HMAC-SHA256 of `"<t>.<body>"` keyed with the endpoint secret.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// Backoff before attempt `next_attempt` (2, 3, …): `base × 2^(next_attempt − 2)`.
pub fn backoff_ms(base_ms: u64, next_attempt: u32) -> u64 {
    let exp = next_attempt.saturating_sub(2).min(30);
    base_ms.saturating_mul(1u64 << exp)
}

pub async fn worker(app: Arc<App>, mut rx: UnboundedReceiver<Work>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(app.cfg.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sandbox-psp: cannot build the webhook HTTP client: {e}");
            return;
        }
    };
    while let Some(work) = rx.recv().await {
        let jobs = match work {
            Work::Release(job) => vec![job],
            Work::Fresh(job) => {
                let routed = app.lock().faults.route(job);
                if let Some(dropped) = routed.dropped {
                    record(
                        &app,
                        &dropped,
                        1,
                        now(),
                        None,
                        Some("dropped by fault injection (drop_next)"),
                    );
                }
                routed.send
            }
        };
        for job in jobs {
            deliver(&app, &client, job).await;
        }
    }
}

/// First attempt now (in order); retries, if needed, in their own task.
async fn deliver(app: &Arc<App>, client: &reqwest::Client, job: Job) {
    if attempt(app, client, &job, 1).await {
        return;
    }
    let max = app.cfg.webhook_attempts_max;
    if max <= 1 {
        return;
    }
    let app = app.clone();
    let client = client.clone();
    tokio::spawn(async move {
        for n in 2..=max {
            tokio::time::sleep(Duration::from_millis(backoff_ms(
                app.cfg.webhook_retry_base_ms,
                n,
            )))
            .await;
            if attempt(&app, &client, &job, n).await {
                return;
            }
        }
    });
}

async fn attempt(app: &Arc<App>, client: &reqwest::Client, job: &Job, n: u32) -> bool {
    let t = now() - job.late_by_s;
    let header = signature_header(&job.secret, t, job.body.as_bytes());
    let result = client
        .post(&job.url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Stripe-Signature", header)
        .body(job.body.clone())
        .send()
        .await;
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Drain (bounded by the client timeout); the answer body is not kept.
            let _ = resp.bytes().await;
            let ok = (200..300).contains(&status);
            record(app, job, n, t, Some(status), None);
            if ok && job.copy == 0 {
                app.lock().delivered(&job.event_id);
            }
            ok
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timeout".to_string()
            } else if e.is_connect() {
                "connection refused or unreachable".to_string()
            } else {
                // No URL in the text: it is already in the record.
                e.without_url().to_string()
            };
            record(app, job, n, t, None, Some(&what));
            false
        }
    }
}

fn record(app: &Arc<App>, job: &Job, n: u32, t: i64, status: Option<u16>, error: Option<&str>) {
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let entry = json!({
        "event_id": job.event_id, "type": job.event_type, "endpoint": job.endpoint_id,
        "url": job.url, "attempt": n, "duplicate": job.copy > 0, "signed_at": t,
        "late_by_s": job.late_by_s, "status": status, "error": error, "ok": ok,
        "at_ms": now_ms(),
    });
    push_bounded(&mut app.lock().deliveries, entry);
}

/// Stripe's verification (as its SDKs do it), for tests: any `v1` matches, `t` within tolerance.
#[cfg(test)]
pub fn verify(header: &str, body: &[u8], secret: &str, tolerance_s: i64, now_s: i64) -> bool {
    let mut t: Option<i64> = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let expected = sign(secret, t, body);
    (now_s - t).abs() <= tolerance_s && sigs.iter().any(|s| s.as_bytes() == expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_stripes_scheme() {
        // Computed independently: python3 hmac.new(b"whsec_test_secret",
        //   b'1492774577.{"id":"evt_test_webhook","object":"event"}', hashlib.sha256).hexdigest()
        let body = br#"{"id":"evt_test_webhook","object":"event"}"#;
        let header = signature_header("whsec_test_secret", 1_492_774_577, body);
        assert_eq!(
            header,
            "t=1492774577,v1=88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a"
        );
        assert!(verify(&header, body, "whsec_test_secret", 300, 1_492_774_600));
        // Tampered body, other secret, or a timestamp outside the tolerance: rejected.
        assert!(!verify(&header, b"{}", "whsec_test_secret", 300, 1_492_774_600));
        assert!(!verify(&header, body, "whsec_other", 300, 1_492_774_600));
        assert!(!verify(
            &header,
            body,
            "whsec_test_secret",
            300,
            1_492_774_577 + 600
        ));
    }

    #[test]
    fn backoff_doubles() {
        assert_eq!(backoff_ms(1000, 2), 1000);
        assert_eq!(backoff_ms(1000, 3), 2000);
        assert_eq!(backoff_ms(50, 8), 3200);
        assert_eq!(backoff_ms(u64::MAX, 9), u64::MAX);
    }
}
