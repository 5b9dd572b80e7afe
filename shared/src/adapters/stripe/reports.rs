//! What reconciliation asks of Stripe: the balance, a session's events (to repair a webhook
//! that never arrived), and the Reporting API's report runs and their files.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, USER_AGENT};
use serde::Deserialize;

use super::events::parse_event;
use super::{encode_form, Call, StripeClient, STRIPE_VERSION};
use crate::domain::pay_in::PspNotice;
use crate::domain::psp::{PspAccountId, PspError, PspEventId, PspPayoutId, PspRefundId, PspSessionId};
use crate::ports::reconciliation::{PspEvents, ReconPsp};

/// Stripe's itemized balance-change report: one row per balance transaction.
pub const REPORT_TYPE: &str = "balance_change_from_activity.itemized.3";

/// Events of a checkout session that settle or end it.
const SESSION_EVENT_TYPES: &[&str] = &[
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
];

/// Pages of events read at most when looking for one session's.
const EVENT_PAGES_MAX: usize = 50;

#[derive(Deserialize)]
struct Amount {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
struct Balance {
    #[serde(default)]
    available: Vec<Amount>,
    #[serde(default)]
    pending: Vec<Amount>,
}

#[derive(Deserialize)]
struct EventList {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    has_more: bool,
}

/// A report run as Stripe returns it (`reporting.report_run`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportRun {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub result: Option<ReportFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReportFile {
    pub id: String,
    pub url: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

fn unexpected(what: &str, e: impl std::fmt::Display) -> PspError {
    PspError::Unavailable(format!("unexpected {what}: {e}"))
}

#[derive(Deserialize)]
struct SessionList {
    data: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl ReconPsp for StripeClient {
    async fn session_of(&self, payment_intent: &str) -> Result<Option<String>, String> {
        let path = format!(
            "/v1/checkout/sessions?{}",
            encode_form(&[
                ("payment_intent".to_owned(), payment_intent.to_owned()),
                ("limit".to_owned(), "1".to_owned())
            ])
        );
        let body = self
            .call(Call::Get, &path, None)
            .await
            .map_err(|e| e.to_string())?;
        let list: SessionList =
            serde_json::from_str(&body).map_err(|e| format!("unexpected session list: {e}"))?;
        Ok(list.data.into_iter().next().map(|s| s.id))
    }

    async fn balance(&self) -> Result<BTreeMap<String, i64>, String> {
        let body = self
            .call(Call::Get, "/v1/balance", None)
            .await
            .map_err(|e| e.to_string())?;
        let b: Balance = serde_json::from_str(&body).map_err(|e| format!("unexpected balance: {e}"))?;
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        for a in b.available.iter().chain(&b.pending) {
            *out.entry(a.currency.to_ascii_uppercase()).or_default() += a.amount;
        }
        Ok(out)
    }
}

/// Refund events (a refund's `charge.refunded` names its charge, not the refund: its
/// `refund.*` events carry it).
const REFUND_EVENT_TYPES: &[&str] = &["refund.created", "refund.updated", "refund.failed"];
const PAYOUT_EVENT_TYPES: &[&str] = &[
    "payout.updated",
    "payout.paid",
    "payout.failed",
    "payout.canceled",
];

impl StripeClient {
    /// The events of `types` since `since` (as the platform, or as connected account
    /// `account`), newest first, for which `keep` holds, up to [`EVENT_PAGES_MAX`] pages.
    async fn events(
        &self,
        types: &[&str],
        since: DateTime<Utc>,
        undelivered: bool,
        account: Option<&str>,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<Vec<(PspEventId, PspNotice)>, String> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..EVENT_PAGES_MAX {
            let mut params: Vec<(String, String)> = types
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("types[{i}]"), (*t).to_owned()))
                .collect();
            params.push(("created[gte]".into(), since.timestamp().to_string()));
            params.push(("limit".into(), "100".into()));
            if undelivered {
                params.push(("delivery_success".into(), "false".into()));
            }
            if let Some(a) = &after {
                params.push(("starting_after".into(), a.clone()));
            }
            let path = format!("/v1/events?{}", encode_form(&params));
            let body = self
                .call(Call::Get, &path, account)
                .await
                .map_err(|e| e.to_string())?;
            let list: EventList =
                serde_json::from_str(&body).map_err(|e| format!("unexpected event list: {e}"))?;
            after = list.data.last().and_then(|e| e["id"].as_str()).map(str::to_owned);
            for mut event in list.data {
                if !keep(&event) {
                    continue;
                }
                // Listed as the connected account, an event names it as its webhook would.
                if let (Some(a), None) = (account, event.get("account").and_then(|v| v.as_str())) {
                    event["account"] = serde_json::Value::String(a.to_owned());
                }
                let raw = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
                match parse_event(&raw) {
                    Ok(parsed) => found.push(parsed),
                    Err(e) => {
                        tracing::warn!(error = %e, "an event the webhook could not read either; skipped")
                    }
                }
            }
            if !list.has_more || after.is_none() {
                break;
            }
        }
        // Newest first from the API; applied oldest first.
        found.reverse();
        Ok(found)
    }
}

fn about(id: &str) -> impl Fn(&serde_json::Value) -> bool + '_ {
    move |event| event["data"]["object"]["id"].as_str() == Some(id)
}

impl PspEvents for StripeClient {
    async fn session_events(
        &self,
        session: &PspSessionId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(PspEventId, PspNotice)>, String> {
        self.events(SESSION_EVENT_TYPES, since, false, None, about(session.as_str()))
            .await
    }

    async fn refund_events(
        &self,
        refund: &PspRefundId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(PspEventId, PspNotice)>, String> {
        self.events(REFUND_EVENT_TYPES, since, false, None, about(refund.as_str()))
            .await
    }

    async fn payout_events(
        &self,
        payout: &PspPayoutId,
        account: &PspAccountId,
        since: DateTime<Utc>,
    ) -> Result<Vec<(PspEventId, PspNotice)>, String> {
        self.events(
            PAYOUT_EVENT_TYPES,
            since,
            false,
            Some(account.as_str()),
            about(payout.as_str()),
        )
        .await
    }

    async fn undelivered(&self, since: DateTime<Utc>) -> Result<Vec<(PspEventId, PspNotice)>, String> {
        let types: Vec<&str> = SESSION_EVENT_TYPES
            .iter()
            .chain(REFUND_EVENT_TYPES)
            .chain(["charge.refunded"].iter())
            .copied()
            .collect();
        self.events(&types, since, true, None, |_| true).await
    }
}

impl StripeClient {
    /// `POST /v1/reporting/report_runs` for `[start, end)` with our columns.
    pub async fn create_report_run(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        columns: &[&str],
        idempotency_key: &str,
    ) -> Result<ReportRun, PspError> {
        let mut params = vec![
            ("report_type".to_owned(), REPORT_TYPE.to_owned()),
            (
                "parameters[interval_start]".to_owned(),
                start.timestamp().to_string(),
            ),
            ("parameters[interval_end]".to_owned(), end.timestamp().to_string()),
        ];
        params.extend(
            columns
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("parameters[columns][{i}]"), (*c).to_owned())),
        );
        let body = self
            .post_form("/v1/reporting/report_runs", encode_form(&params), idempotency_key)
            .await?;
        serde_json::from_str(&body).map_err(|e| unexpected("report run", e))
    }

    pub async fn report_run(&self, id: &str) -> Result<ReportRun, PspError> {
        let body = self
            .call(Call::Get, &format!("/v1/reporting/report_runs/{id}"), None)
            .await?;
        serde_json::from_str(&body).map_err(|e| unexpected("report run", e))
    }

    /// A report file's contents, streamed (Stripe serves them from `files.stripe.com` with
    /// the same key).
    pub async fn open_file(&self, url: &str) -> Result<Incoming, PspError> {
        let request = hyper::Request::get(url)
            .header(AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header("Stripe-Version", STRIPE_VERSION)
            .header(USER_AGENT, concat!("payment-system/", env!("CARGO_PKG_VERSION")))
            .body(http_body_util::Full::new(Bytes::new()))
            .map_err(|e| PspError::Unavailable(format!("building the request: {e}")))?;
        let response = tokio::time::timeout(self.policy.attempt_timeout, self.http.request(request))
            .await
            .map_err(|_| PspError::Unavailable("file download: timeout".into()))?
            .map_err(|e| PspError::Unavailable(format!("file download: {e}")))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(PspError::Unavailable(format!("file download: HTTP {status}")));
        }
        Ok(response.into_body())
    }
}
