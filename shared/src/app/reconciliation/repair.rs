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
