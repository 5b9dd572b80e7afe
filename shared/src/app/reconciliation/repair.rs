//! Repairing a webhook that never arrived (design §10): the PSP's own event, fetched from its
//! events API and applied through the very code the signed webhook runs — the same marker by
//! the PSP's event id (so a late delivery of the webhook is a duplicate), the same transaction,
//! the same outbox record; the wallet and the ledger follow from the outbox as always.

use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use crate::app::consumers::Failure;
use crate::app::pay_in::webhook::{apply_webhook, VerifiedEvent};
use crate::domain::ids::CheckoutId;
use crate::domain::pay_in::{PaymentStatus, PspNotice};
use crate::domain::psp::PspEventId;
use crate::ports::reconciliation::PspEvents;
use crate::ports::{Checkouts, Payouts, Refunds, Webhooks};

/// Settles a checkout the PSP charged but we never heard about.
pub trait Repairer: Send + Sync {
    /// `Ok(Ok(note))`: settled (or found settled), the note says by which event; `Ok(Err(why))`:
    /// the PSP has no usable event; `Err`: our side failed, retry.
    fn settle_checkout(
        &self,
        checkout: &CheckoutId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Result<String, String>, Failure>> + Send;
}

/// The repair through the PSP's events and the webhook's code.
pub struct WebhookRepair<'a, S, E> {
    pub store: &'a S,
    pub events: &'a E,
    pub fee_rate: Decimal,
}

impl<S, E> Repairer for WebhookRepair<'_, S, E>
where
    S: Webhooks + Checkouts + Refunds + Payouts,
    E: PspEvents,
{
    async fn settle_checkout(
        &self,
        id: &CheckoutId,
        now: DateTime<Utc>,
    ) -> Result<Result<String, String>, Failure> {
        let Some((checkout, _)) = self.store.get_checkout(id).await? else {
            return Ok(Err(format!("checkout {id} not found")));
        };
        if checkout.status != PaymentStatus::Executing {
            return Ok(Ok(format!("checkout {id} is already {}", checkout.status)));
        }
        let Some(session) = checkout.psp_session.clone() else {
            return Ok(Err(format!("checkout {id} has no PSP session")));
        };
        // Events are kept 30 days at Stripe; the checkout's own session started at its creation.
        let since = checkout.created_at - Duration::minutes(5);
        let events = match self.events.session_events(&session, since).await {
            Ok(e) => e,
            Err(e) => return Err(Failure::Retryable(format!("the PSP's events: {e}"))),
        };
        let mut tried = Vec::new();
        for (event_id, notice) in events {
            if !matches!(notice, PspNotice::Session { .. }) {
                continue;
            }
            let reply = apply_webhook(
                self.store,
                VerifiedEvent {
                    id: event_id.clone(),
                    notice,
                },
                self.fee_rate,
                now,
            )
            .await
            .map_err(|e| Failure::Retryable(format!("applying {event_id}: {}", e.message)))?;
            let outcome = serde_json::from_str::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_owned))
                .unwrap_or_default();
            tried.push(format!("{event_id}: {outcome}"));
            if let Some((after, _)) = self.store.get_checkout(id).await? {
                if after.status != PaymentStatus::Executing {
                    return Ok(Ok(format!(
                        "applied the PSP's event {event_id} ({outcome}); checkout {id} is {}",
                        after.status
                    )));
                }
            }
        }
        Ok(Err(if tried.is_empty() {
            format!("the PSP has no event for session {session}")
        } else {
            format!("the PSP's events did not settle it ({})", tried.join("; "))
        }))
    }
}

/// What one `repair_stuck` run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairSummary {
    /// Events the PSP has not delivered, and how many of them moved something.
    pub undelivered: u64,
    pub undelivered_applied: u64,
    /// Records waiting on the PSP past the threshold, and those the PSP's events moved.
    pub stuck: u64,
    pub stuck_applied: u64,
    /// Events whose application failed on our side (they are tried again next run).
    pub failed: u64,
}

/// `repair_stuck` (design §10, Stripe's recipe for missed webhooks): every few minutes,
/// (1) the PSP's undelivered events of the kinds we act on, and (2) our records that have
/// waited on the PSP longer than `stuck_after` (a checkout `EXECUTING`, a refund `PENDING`
/// at the PSP, a payout `IN_TRANSIT`), each brought up to date from its own events. Every
/// event goes through the webhook's code: its marker makes a second application (and the
/// late webhook itself) a duplicate.
pub struct StuckRepair<'a, S, E> {
    pub store: &'a S,
    pub events: &'a E,
    pub fee_rate: Decimal,
    pub stuck_after: Duration,
    /// How far back undelivered events are looked for (Stripe retries for 3 days).
    pub lookback: Duration,
    /// Records of each kind looked at per run.
    pub batch: usize,
}

impl<S, E> StuckRepair<'_, S, E>
where
    S: Webhooks + Checkouts + Refunds + Payouts + crate::ports::reconciliation::StuckRecords,
    E: PspEvents,
{
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RepairSummary, Failure> {
        use crate::ports::reconciliation::Stuck;
        let mut summary = RepairSummary::default();
        let undelivered = self
            .events
            .undelivered(now - self.lookback)
            .await
            .map_err(|e| Failure::Retryable(format!("the PSP's undelivered events: {e}")))?;
        for (id, notice) in undelivered {
            summary.undelivered += 1;
            match self.apply(id, notice, now).await {
                Some(true) => summary.undelivered_applied += 1,
                Some(false) => {}
                None => summary.failed += 1,
            }
        }
        let stuck = self.store.stuck(now - self.stuck_after, self.batch).await?;
        for record in stuck {
            summary.stuck += 1;
            let events = match &record {
                Stuck::Checkout(id) => match self.repair_checkout(id, now).await {
                    Ok(true) => {
                        summary.stuck_applied += 1;
                        continue;
                    }
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(checkout_id = %id, error = %e, "repair failed");
                        summary.failed += 1;
                        continue;
                    }
                },
                Stuck::Refund { psp, since, .. } => {
                    self.events
                        .refund_events(psp, *since - Duration::minutes(5))
                        .await
                }
                Stuck::Payout {
                    psp, account, since, ..
                } => {
                    self.events
                        .payout_events(psp, account, *since - Duration::minutes(5))
                        .await
                }
            };
            let events = match events {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(record = ?record, error = %e, "the PSP's events could not be read");
                    summary.failed += 1;
                    continue;
                }
            };
            let mut moved = false;
            for (id, notice) in events {
                match self.apply(id, notice, now).await {
                    Some(applied) => moved |= applied,
                    None => summary.failed += 1,
                }
            }
            if moved {
                summary.stuck_applied += 1;
            }
        }
        tracing::info!(?summary, "repair_stuck run");
        Ok(summary)
    }

    async fn repair_checkout(&self, id: &CheckoutId, now: DateTime<Utc>) -> Result<bool, String> {
        let repair = WebhookRepair {
            store: self.store,
            events: self.events,
            fee_rate: self.fee_rate,
        };
        match repair.settle_checkout(id, now).await {
            Ok(Ok(note)) => {
                tracing::info!(checkout_id = %id, note = %note, "stuck checkout settled from the PSP's events");
                Ok(true)
            }
            Ok(Err(why)) => {
                tracing::info!(checkout_id = %id, why = %why, "stuck checkout: nothing at the PSP yet");
                Ok(false)
            }
            Err(Failure::Poison(e) | Failure::Retryable(e)) => Err(e),
        }
    }

    /// One event through the webhook's code: `Some(true)` it moved something, `Some(false)`
    /// nothing to do (a duplicate, an anomaly recorded), `None` our side failed.
    async fn apply(&self, id: PspEventId, notice: PspNotice, now: DateTime<Utc>) -> Option<bool> {
        match apply_webhook(
            self.store,
            VerifiedEvent {
                id: id.clone(),
                notice,
            },
            self.fee_rate,
            now,
        )
        .await
        {
            Ok(reply) => {
                let outcome = serde_json::from_str::<serde_json::Value>(&reply.body)
                    .ok()
                    .and_then(|v| v["outcome"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                tracing::info!(psp_event_id = %id, outcome = %outcome, "PSP event applied by repair");
                Some(outcome == "applied")
            }
            Err(e) => {
                tracing::warn!(psp_event_id = %id, error = %e.message, "PSP event not applied; next run tries again");
                None
            }
        }
    }
}
