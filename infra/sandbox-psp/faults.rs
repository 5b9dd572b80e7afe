//! Fault injection for tests (`POST /__sandbox/faults`). Counters are consumed one per API call
//! (under `/v1`) or one per webhook delivery (an event to one endpoint, first attempt).

use crate::reports::ReportFaults;
use crate::webhooks::Job;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct Faults {
    /// The next N `/v1` calls answer `api_fail_status` with an `api_error` and change nothing.
    pub api_fail_next: u32,
    pub api_fail_status: u16,
    /// The next N `/v1` calls are performed, then answered after `api_delay_ms`.
    pub api_delay_next: u32,
    pub api_delay_ms: u64,
    /// The next N deliveries are not sent at all.
    pub drop_next: u32,
    /// The next N deliveries are sent twice (two independent deliveries, each with its retries).
    pub duplicate_next: u32,
    /// The next N deliveries are held, then sent in reverse order once all N are in.
    pub reorder_next: u32,
    pub reorder_buffer: Vec<Job>,
    /// The next N deliveries are signed with a timestamp `late_by_s` seconds in the past.
    pub late_next: u32,
    pub late_by_s: i64,
    /// While true, deliveries queue up; `hold: false` releases them in order.
    pub hold: bool,
    pub held: Vec<Job>,
    /// Checkout Sessions none of whose events (the session's, its PaymentIntent's, its
    /// charges') is ever delivered: recorded, `pending_webhooks` left as it was.
    pub drop_sessions: BTreeSet<String>,
    /// Faults applied to every report rendered (report runs, settlement CSV).
    pub report: ReportFaults,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub api: Option<ApiFaults>,
    pub webhooks: Option<WebhookFaults>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFaults {
    pub fail_next: Option<u32>,
    pub status: Option<u16>,
    pub delay_next: Option<u32>,
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFaults {
    pub drop_next: Option<u32>,
    pub duplicate_next: Option<u32>,
    pub reorder_next: Option<u32>,
    pub late_next: Option<u32>,
    pub late_by_s: Option<i64>,
    pub hold: Option<bool>,
    /// Checkout Session ids (`cs_…`) added to the sessions whose events are never delivered.
    pub drop_sessions: Option<Vec<String>>,
}

/// Longest injected API delay (10 minutes).
const DELAY_MS_MAX: u64 = 600_000;

impl Faults {
    /// Apply a fault request. Returns jobs to send now (released by `hold: false`) or an error
    /// message for a bad request (nothing is changed then).
    pub fn apply(&mut self, req: FaultRequest) -> Result<Vec<Job>, String> {
        if let Some(api) = &req.api {
            if let Some(s) = api.status {
                if !(400..=599).contains(&s) {
                    return Err("api.status must be an HTTP error status (400-599)".into());
                }
            }
            if api.delay_ms.is_some_and(|d| d > DELAY_MS_MAX) {
                return Err(format!("api.delay_ms must be at most {DELAY_MS_MAX}"));
            }
        }
        if let Some(w) = &req.webhooks {
            if w.late_by_s.is_some_and(|s| !(0..=10 * 365 * 86_400).contains(&s)) {
                return Err("webhooks.late_by_s must be between 0 and ten years".into());
            }
        }
        let mut release = Vec::new();
        if let Some(api) = req.api {
            if let Some(n) = api.fail_next {
                self.api_fail_next = n;
                self.api_fail_status = api.status.unwrap_or(500);
            } else if let Some(s) = api.status {
                self.api_fail_status = s;
            }
            if let Some(n) = api.delay_next {
                self.api_delay_next = n;
            }
            if let Some(ms) = api.delay_ms {
                self.api_delay_ms = ms;
            }
        }
        if let Some(w) = req.webhooks {
            if let Some(n) = w.drop_next {
                self.drop_next = n;
            }
            if let Some(n) = w.duplicate_next {
                self.duplicate_next = n;
            }
            if let Some(n) = w.reorder_next {
                self.reorder_next = n;
                if n == 0 {
                    release.extend(self.reorder_buffer.drain(..).rev());
                }
            }
            if let Some(n) = w.late_next {
                self.late_next = n;
                self.late_by_s = w.late_by_s.unwrap_or(600);
            } else if let Some(s) = w.late_by_s {
                self.late_by_s = s;
            }
            if let Some(ids) = w.drop_sessions {
                self.drop_sessions
                    .extend(ids.into_iter().filter(|i| !i.is_empty()));
            }
            if let Some(h) = w.hold {
                self.hold = h;
                if !h {
                    release.append(&mut self.held);
                }
            }
        }
        Ok(release)
    }

    /// Clear every fault; held and reorder-buffered deliveries are released (in arrival order).
    pub fn reset(&mut self) -> Vec<Job> {
        let mut release = std::mem::take(&mut self.held);
        release.append(&mut self.reorder_buffer);
        *self = Faults::default();
        release
    }

    pub fn describe(&self) -> Value {
        json!({
            "api": {"fail_next": self.api_fail_next, "status": self.api_fail_status,
                    "delay_next": self.api_delay_next, "delay_ms": self.api_delay_ms},
            "webhooks": {"drop_next": self.drop_next, "duplicate_next": self.duplicate_next,
                         "reorder_next": self.reorder_next, "reorder_buffered": self.reorder_buffer.len(),
                         "late_next": self.late_next, "late_by_s": self.late_by_s,
                         "hold": self.hold, "held": self.held.len(),
                         "drop_sessions": self.drop_sessions},
        })
    }

    /// For an API call: `Some(status)` if it must fail (consumes one).
    pub fn take_api_failure(&mut self) -> Option<u16> {
        if self.api_fail_next > 0 {
            self.api_fail_next -= 1;
            Some(if self.api_fail_status == 0 {
                500
            } else {
                self.api_fail_status
            })
        } else {
            None
        }
    }

    /// For an API call: `Some(ms)` if its answer must be delayed (consumes one).
    pub fn take_api_delay(&mut self) -> Option<u64> {
        if self.api_delay_next > 0 {
            self.api_delay_next -= 1;
            Some(self.api_delay_ms)
        } else {
            None
        }
    }

    /// Route one fresh delivery through the webhook faults. Returns what to send now; jobs may
    /// be held (hold / reorder: nothing returned), dropped (returned in `dropped`), duplicated
    /// or marked late.
    pub fn route(&mut self, mut job: Job) -> Routed {
        let mut out = Routed::default();
        if self.hold {
            self.held.push(job);
            return out;
        }
        if self.reorder_next > 0 {
            self.reorder_next -= 1;
            self.reorder_buffer.push(job);
            if self.reorder_next == 0 {
                out.send.extend(self.reorder_buffer.drain(..).rev());
            }
            return out;
        }
        if self.drop_next > 0 {
            self.drop_next -= 1;
            out.dropped = Some(job);
            return out;
        }
        if self.late_next > 0 {
            self.late_next -= 1;
            job.late_by_s = self.late_by_s;
        }
        if self.duplicate_next > 0 {
            self.duplicate_next -= 1;
            let mut copy = job.clone();
            copy.copy = 1;
            out.send.push(job);
            out.send.push(copy);
        } else {
            out.send.push(job);
        }
        out
    }
}

#[derive(Debug, Default)]
pub struct Routed {
    pub send: Vec<Job>,
    pub dropped: Option<Job>,
}

#[cfg(test)]
impl Routed {
    /// Neither sent nor dropped: waiting (hold or reorder).
    fn held(&self) -> bool {
        self.send.is_empty() && self.dropped.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32) -> Job {
        Job {
            event_id: format!("evt_{n}"),
            event_type: "checkout.session.completed".into(),
            endpoint_id: "we_1".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: "whsec_x".into(),
            body: "{}".into(),
            late_by_s: 0,
            copy: 0,
        }
    }

    fn parse(v: Value) -> FaultRequest {
        serde_json::from_value(v).expect("fault json")
    }

    #[test]
    fn api_fail_and_delay_counters() {
        let mut f = Faults::default();
        f.apply(parse(json!({"api": {"fail_next": 2, "status": 503}})))
            .expect("ok");
        assert_eq!(f.take_api_failure(), Some(503));
        assert_eq!(f.take_api_failure(), Some(503));
        assert_eq!(f.take_api_failure(), None);
        f.apply(parse(json!({"api": {"delay_next": 1, "delay_ms": 50}})))
            .expect("ok");
        assert_eq!(f.take_api_delay(), Some(50));
        assert_eq!(f.take_api_delay(), None);
        assert!(f
            .apply(parse(json!({"api": {"fail_next": 1, "status": 200}})))
            .is_err());
        assert_eq!(f.api_fail_next, 0);
        assert!(serde_json::from_value::<FaultRequest>(json!({"api": {"nope": 1}})).is_err());
    }

    #[test]
    fn reorder_holds_then_reverses() {
        let mut f = Faults::default();
        f.apply(parse(json!({"webhooks": {"reorder_next": 2}})))
            .expect("ok");
        assert!(f.route(job(1)).held());
        let r = f.route(job(2));
        let ids: Vec<_> = r.send.iter().map(|j| j.event_id.as_str()).collect();
        assert_eq!(ids, ["evt_2", "evt_1"]);
        assert_eq!(f.route(job(3)).send.len(), 1);
    }

    #[test]
    fn drop_duplicate_late_hold() {
        let mut f = Faults::default();
        f.apply(parse(
            json!({"webhooks": {"drop_next": 1, "duplicate_next": 1, "late_next": 1,
                                          "late_by_s": 900}}),
        ))
        .expect("ok");
        assert!(f.route(job(1)).dropped.is_some());
        let r = f.route(job(2));
        assert_eq!(r.send.len(), 2);
        assert_eq!(r.send[0].late_by_s, 900);
        assert_eq!(r.send[1].copy, 1);
        f.apply(parse(json!({"webhooks": {"hold": true}}))).expect("ok");
        assert!(f.route(job(3)).held());
        assert!(f.route(job(4)).held());
        let released = f.apply(parse(json!({"webhooks": {"hold": false}}))).expect("ok");
        let ids: Vec<_> = released.iter().map(|j| j.event_id.as_str()).collect();
        assert_eq!(ids, ["evt_3", "evt_4"]);
        f.apply(parse(json!({"webhooks": {"hold": true}}))).expect("ok");
        f.route(job(5));
        assert_eq!(f.reset().len(), 1);
        assert!(!f.hold);
    }
}
