//! The hosted-page session a checkout is paid through (design §6), and what the PSP's events
//! about it mean for us.

use chrono::{DateTime, Duration, Utc};

use super::checkout::{Checkout, PaymentOrder};
use super::status::PaymentEvent;
use crate::domain::currency::Currency;
use crate::domain::ids::CheckoutId;
use crate::domain::money::Money;
use crate::domain::psp::{PaymentIntentId, PspSessionId};

/// How long the buyer has on the hosted page (Stripe allows at most 24 h).
pub const SESSION_TTL: Duration = Duration::hours(23);

/// A hosted-page session for one checkout. Built only from the stored checkout, so a retry
/// sends byte-identical parameters under the same idempotency key (the checkout id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    pub checkout_id: CheckoutId,
    pub total: Money,
    pub lines: Vec<SessionLine>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLine {
    pub name: String,
    pub amount: Money,
}

impl SessionRequest {
    /// `public_base_url` is our site (the completion page lives there).
    pub fn for_checkout(checkout: &Checkout, orders: &[PaymentOrder], public_base_url: &str) -> Self {
        let base = public_base_url.trim_end_matches('/');
        let lines = orders
            .iter()
            .map(|o| SessionLine {
                name: match &o.sub_order_id {
                    Some(sub) => format!("Order {} / {} (seller {})", o.order_id, sub, o.seller_id),
                    None => format!("Order {} (seller {})", o.order_id, o.seller_id),
                },
                amount: o.amount,
            })
            .collect();
        SessionRequest {
            checkout_id: checkout.id.clone(),
            total: checkout.total,
            lines,
            success_url: format!("{base}/checkout/complete?checkout_id={}", checkout.id),
            cancel_url: format!(
                "{base}/checkout/complete?checkout_id={}&cancelled=true",
                checkout.id
            ),
            expires_at: checkout.created_at + SESSION_TTL,
        }
    }
}

/// The PSP's session, as far as we need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspSession {
    /// The PSP token: stored on the checkout, matched against webhooks.
    pub id: PspSessionId,
    /// The hosted payment page the buyer is redirected to.
    pub url: String,
}

/// What a verified webhook event means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PspNotice {
    /// A checkout session changed: the session's id, our checkout id as we sent it, the amount
    /// it was for, and what happened.
    Session {
        session_id: PspSessionId,
        /// The charge behind the session, once there is one.
        payment_intent: Option<PaymentIntentId>,
        checkout_ref: Option<String>,
        amount_minor: i64,
        currency: Currency,
        outcome: SessionOutcome,
    },
    /// Informational (a declined attempt; the buyer may try again on the same page).
    PaymentAttemptFailed { reason: String },
    /// Refunds changed (`refund.*`: one; `charge.refunded`: the charge's refunds as listed).
    Refunds(Vec<crate::domain::refunds::PspRefundNotice>),
    /// A seller's payout changed at the PSP (`payout.*`, on the seller's connected account).
    Payout(crate::domain::payouts::PspPayoutNotice),
    /// An event type we do not act on.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    Paid,
    /// Completed but the money is still on its way (bank debits): wait for the async event.
    AwaitingPayment,
    Failed,
    Expired,
    /// Completed without proof of payment (`payment_status` other than `paid` or `unpaid`):
    /// the status as the PSP gave it. Nothing moves.
    NotPaid(String),
}

impl SessionOutcome {
    /// The state-machine event, if any.
    pub fn event(&self) -> Option<PaymentEvent> {
        match self {
            SessionOutcome::Paid => Some(PaymentEvent::PspSucceeded),
            SessionOutcome::Failed | SessionOutcome::Expired => Some(PaymentEvent::PspFailed),
            SessionOutcome::AwaitingPayment | SessionOutcome::NotPaid(_) => None,
        }
    }
}
