//! Outbox events: written in the same DynamoDB transaction as the state change they announce,
//! relayed from the table's stream to the queues that need them (at least once; every consumer
//! deduplicates by `event_id`).
//!
//! An event is a header every kind shares and a body with one variant per kind. Everything
//! that acts on events (the relay's routing, the posting rules, the wallet's effects, the
//! invariant check) matches the body exhaustively, so a new kind cannot be silently ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::currency::Currency;
use super::ids::{
    AccountId, BuyerId, CheckoutId, OrderId, PaymentOrderId, PayoutId, RefundId, SellerId, SubOrderId,
};
use super::pay_in::{Checkout, PaymentOrder, PaymentStatus};
use super::payouts::{Payout, PayoutMove, PayoutStatus};
use super::psp::{PaymentIntentId, PspAccountId, PspSessionId, PspTransferId, PspTransferReversalId};
use super::refunds::{Refund, RefundMove};
use super::time::format_time;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxEvent {
    pub header: OutboxHeader,
    pub body: OutboxBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxHeader {
    /// Deterministic: derived from what caused it (the PSP event), so a redelivered cause can
    /// never write a second event, and the ledger's transaction ids derive from it in turn.
    pub event_id: String,
    pub account_id: AccountId,
    pub occurred_at: String,
    /// The PSP event (or the request) that caused it.
    pub cause: String,
}

/// One variant per event kind, each with exactly what its consumers need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboxBody {
    /// A checkout's charge succeeded: every payment order is `SUCCESS`.
    PaymentSucceeded(SettledPayment),
    /// A checkout failed (refused, failed or expired at the PSP): nothing was charged.
    PaymentFailed(SettledPayment),
    /// A refund was created (`PENDING`, its amount reserved and the seller's part held): the
    /// refund executor asks the PSP for it.
    RefundRequested(RefundNotice),
    /// The PSP refunded it: the reversal posts and the hold leaves the wallet.
    RefundSucceeded(RefundNotice),
    /// The PSP refused it or it failed before succeeding: the hold returns to available.
    RefundFailed(RefundNotice),
    /// It failed after it had succeeded: the correcting transaction posts and the seller's
    /// part comes back.
    RefundReversed(RefundNotice),
    /// A payout was created (`PENDING`, its amount held): the payout executor sends it.
    PayoutRequested(PayoutNotice),
    /// Canceled before it was sent: the hold returns to available.
    PayoutCanceled(PayoutNotice),
    /// The PSP refused it before anything was sent (`PENDING → FAILED`): the hold returns to
    /// available.
    PayoutRefused(PayoutNotice),
    /// The transfer to the seller's connected account is made and its payout created
    /// (`IN_TRANSIT`): the transfer posts, and the hold becomes a debit of the balance.
    PayoutSent(PayoutNotice),
    /// The seller's bank has it (`PAID`): nothing moves on our books.
    PayoutPaid(PayoutNotice),
    /// It failed after it was sent (`IN_TRANSIT` or `PAID` → `FAILED`): the money is back in
    /// the seller's connected account, and the executor reverses the transfer.
    PayoutFailed(PayoutNotice),
    /// The failed payout's transfer is reversed: the reversal posts, and the money is the
    /// seller's available again.
    PayoutReturned(PayoutNotice),
}

impl OutboxBody {
    /// The kind's name on the wire and in the outbox item (`PAYMENT_SUCCEEDED`, …).
    pub fn event_type(&self) -> &'static str {
        match self {
            OutboxBody::PaymentSucceeded(_) => "PAYMENT_SUCCEEDED",
            OutboxBody::PaymentFailed(_) => "PAYMENT_FAILED",
            OutboxBody::RefundRequested(_) => "REFUND_REQUESTED",
            OutboxBody::RefundSucceeded(_) => "REFUND_SUCCEEDED",
            OutboxBody::RefundFailed(_) => "REFUND_FAILED",
            OutboxBody::RefundReversed(_) => "REFUND_REVERSED",
            OutboxBody::PayoutRequested(_) => "PAYOUT_REQUESTED",
            OutboxBody::PayoutCanceled(_) => "PAYOUT_CANCELED",
            OutboxBody::PayoutRefused(_) => "PAYOUT_REFUSED",
            OutboxBody::PayoutFailed(_) => "PAYOUT_FAILED",
            OutboxBody::PayoutSent(_) => "PAYOUT_SENT",
            OutboxBody::PayoutPaid(_) => "PAYOUT_PAID",
            OutboxBody::PayoutReturned(_) => "PAYOUT_RETURNED",
        }
    }
}

/// A checkout that reached `SUCCESS` or `FAILED`, with every seller's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettledPayment {
    pub checkout_id: CheckoutId,
    pub order_id: OrderId,
    pub buyer_id: BuyerId,
    pub psp_session: Option<PspSessionId>,
    pub payment_intent: Option<PaymentIntentId>,
    pub total_minor: i64,
    pub currency: Currency,
    pub payment_orders: Vec<OutboxOrder>,
}

/// One seller's line as the consumers need it: exact minor units and the currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxOrder {
    pub payment_order_id: PaymentOrderId,
    pub seller_id: SellerId,
    pub sub_order_id: Option<SubOrderId>,
    pub amount_minor: i64,
    /// The same amount as a decimal string, for people reading queues and DLQs.
    pub amount: String,
    pub currency: Currency,
    /// The platform's fee on it, fixed when it succeeded (absent in events written before
    /// fees were fixed there: the consumers' configured rate applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_minor: Option<i64>,
}

/// A payout as its consumers need it: exact minor units, where it goes, and what the PSP made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutNotice {
    pub payout_id: PayoutId,
    pub seller_id: SellerId,
    pub amount_minor: i64,
    /// The same amount as a decimal string, for people reading queues and DLQs.
    pub amount: String,
    pub currency: Currency,
    pub automatic: bool,
    /// The seller's connected account.
    pub destination: PspAccountId,
    pub psp_transfer: Option<PspTransferId>,
    pub psp_reversal: Option<PspTransferReversalId>,
}

impl PayoutNotice {
    pub fn of(payout: &Payout) -> Self {
        PayoutNotice {
            payout_id: payout.id.clone(),
            seller_id: payout.seller_id.clone(),
            amount_minor: payout.amount.minor(),
            amount: payout.amount.to_string(),
            currency: payout.amount.currency(),
            automatic: payout.automatic,
            destination: payout.destination.clone(),
            psp_transfer: payout.psp_transfer.clone(),
            psp_reversal: payout.psp_reversal.clone(),
        }
    }
}

/// A refund as its consumers need it: exact minor units, and its split once it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundNotice {
    pub refund_id: RefundId,
    pub payment_order_id: PaymentOrderId,
    pub checkout_id: CheckoutId,
    pub seller_id: SellerId,
    pub payment_intent: PaymentIntentId,
    pub amount_minor: i64,
    /// The same amount as a decimal string, for people reading queues and DLQs.
    pub amount: String,
    pub currency: Currency,
    /// What creating it moved from the seller's available balance to held.
    pub seller_held_minor: i64,
    /// Once it succeeded: the platform fee returned and the seller's part.
    pub fee_refunded_minor: Option<i64>,
    pub seller_debited_minor: Option<i64>,
}

impl RefundNotice {
    pub fn of(refund: &Refund) -> Self {
        RefundNotice {
            refund_id: refund.id.clone(),
            payment_order_id: refund.payment_order_id.clone(),
            checkout_id: refund.checkout_id.clone(),
            seller_id: refund.seller_id.clone(),
            payment_intent: refund.payment_intent.clone(),
            amount_minor: refund.amount.minor(),
            amount: refund.amount.to_string(),
            currency: refund.amount.currency(),
            seller_held_minor: refund.seller_held.minor(),
            fee_refunded_minor: refund.split.map(|s| s.fee.minor()),
            seller_debited_minor: refund.split.map(|s| s.seller.minor()),
        }
    }
}

impl OutboxEvent {
    /// The event announcing a checkout that has just reached SUCCESS or FAILED; `None` for any
    /// other status.
    pub fn settled(
        checkout: &Checkout,
        orders: &[PaymentOrder],
        psp_event_id: &str,
        now: DateTime<Utc>,
    ) -> Option<Self> {
        let payment = SettledPayment {
            checkout_id: checkout.id.clone(),
            order_id: checkout.order_id.clone(),
            buyer_id: checkout.buyer_id.clone(),
            psp_session: checkout.psp_session.clone(),
            payment_intent: checkout.payment_intent.clone(),
            total_minor: checkout.total.minor(),
            currency: checkout.total.currency(),
            payment_orders: orders
                .iter()
                .map(|o| OutboxOrder {
                    payment_order_id: o.id.clone(),
                    seller_id: o.seller_id.clone(),
                    sub_order_id: o.sub_order_id.clone(),
                    amount_minor: o.amount.minor(),
                    amount: o.amount.to_string(),
                    currency: o.amount.currency(),
                    fee_minor: o.fee.map(|f| f.minor()),
                })
                .collect(),
        };
        let body = match checkout.status {
            PaymentStatus::Success => OutboxBody::PaymentSucceeded(payment),
            PaymentStatus::Failed => OutboxBody::PaymentFailed(payment),
            PaymentStatus::Created | PaymentStatus::Executing => return None,
        };
        Some(OutboxEvent {
            header: OutboxHeader {
                event_id: format!("obx_{psp_event_id}"),
                account_id: checkout.account_id.clone(),
                occurred_at: format_time(now),
                cause: psp_event_id.to_owned(),
            },
            body,
        })
    }

    /// The event a refund's move announces: `REFUND_REQUESTED` when it was created, then one
    /// per transition. Each happens at most once per refund, so its id derives from the refund
    /// and the move: a second writer of the same move cannot write a second event.
    pub fn refund(refund: &Refund, moved: Option<RefundMove>, cause: &str, now: DateTime<Utc>) -> Self {
        let notice = RefundNotice::of(refund);
        let (suffix, body) = match moved {
            None => ("requested", OutboxBody::RefundRequested(notice)),
            Some(RefundMove::Succeeded) => ("succeeded", OutboxBody::RefundSucceeded(notice)),
            Some(RefundMove::Failed) => ("failed", OutboxBody::RefundFailed(notice)),
            Some(RefundMove::Reversed) => ("reversed", OutboxBody::RefundReversed(notice)),
        };
        OutboxEvent {
            header: OutboxHeader {
                event_id: format!("obx_{}_{suffix}", refund.id),
                account_id: refund.account_id.clone(),
                occurred_at: format_time(now),
                cause: cause.to_owned(),
            },
            body,
        }
    }

    /// The event a payout's move announces: `PAYOUT_REQUESTED` when it was created, then one
    /// per transition, its id derived from the payout and the step (each happens at most
    /// once per payout).
    pub fn payout(payout: &Payout, moved: Option<PayoutMove>, cause: &str, now: DateTime<Utc>) -> Self {
        let notice = PayoutNotice::of(payout);
        let (suffix, body) = match (moved, payout.status) {
            (None, _) => ("requested", OutboxBody::PayoutRequested(notice)),
            (Some(PayoutMove::Released), PayoutStatus::Canceled) => {
                ("canceled", OutboxBody::PayoutCanceled(notice))
            }
            (Some(PayoutMove::Released), _) => ("refused", OutboxBody::PayoutRefused(notice)),
            (Some(PayoutMove::Transferred), _) => ("sent", OutboxBody::PayoutSent(notice)),
            (Some(PayoutMove::Paid), _) => ("paid", OutboxBody::PayoutPaid(notice)),
            (Some(PayoutMove::Bounced), _) => ("failed", OutboxBody::PayoutFailed(notice)),
        };
        Self::payout_event(payout, suffix, body, cause, now)
    }

    /// The event a bounced payout's transfer reversal announces (`PAYOUT_RETURNED`).
    pub fn payout_returned(payout: &Payout, cause: &str, now: DateTime<Utc>) -> Self {
        let body = OutboxBody::PayoutReturned(PayoutNotice::of(payout));
        Self::payout_event(payout, "returned", body, cause, now)
    }

    fn payout_event(
        payout: &Payout,
        suffix: &str,
        body: OutboxBody,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Self {
        OutboxEvent {
            header: OutboxHeader {
                event_id: format!("obx_{}_{suffix}", payout.id),
                account_id: payout.account_id.clone(),
                occurred_at: format_time(now),
                cause: cause.to_owned(),
            },
            body,
        }
    }

    pub fn event_id(&self) -> &str {
        &self.header.event_id
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a relayed event; amounts are integers (minor units), never floats, and every id
    /// is checked as it is read.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not an outbox event: {e}"))
    }
}

/// Something reconciliation must look at: a verified PSP event we could not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub psp_event_id: String,
    /// Stable code: `unknown_session`, `amount_mismatch`, `illegal_transition`, `unparseable_event`…
    pub kind: &'static str,
    pub detail: String,
    pub checkout_id: Option<CheckoutId>,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pay_in::{CheckoutForm, CheckoutRequest, LineItem, PaymentEvent};
    use crate::domain::Money;

    fn paid() -> (Checkout, Vec<PaymentOrder>) {
        let usd = Currency::parse("USD").unwrap();
        let req = CheckoutRequest {
            form: CheckoutForm::Single,
            buyer_id: BuyerId::parse("b").unwrap(),
            order_id: OrderId::parse("o").unwrap(),
            currency: usd,
            total: Money::from_minor(999, usd),
            lines: vec![LineItem {
                seller_id: SellerId::parse("s").unwrap(),
                amount: Money::from_minor(999, usd),
                sub_order_id: None,
            }],
        };
        let (mut c, mut o) = Checkout::open(&req, &AccountId::parse("acct_a").unwrap(), Utc::now());
        c.psp_session = Some(PspSessionId::parse("cs_test_1").unwrap());
        c.apply(&mut o, PaymentEvent::Submitted, Utc::now()).unwrap();
        (c, o)
    }

    #[test]
    fn settled_events_round_trip_with_their_kind() {
        let (mut c, mut o) = paid();
        assert!(
            OutboxEvent::settled(&c, &o, "evt_1", Utc::now()).is_none(),
            "EXECUTING announces nothing"
        );
        c.apply(&mut o, PaymentEvent::PspSucceeded, Utc::now()).unwrap();
        let e = OutboxEvent::settled(&c, &o, "evt_1", Utc::now()).unwrap();
        assert_eq!(
            (e.event_id(), e.body.event_type()),
            ("obx_evt_1", "PAYMENT_SUCCEEDED")
        );
        let json = e.to_json();
        assert!(json.contains(r#""event_type":"PAYMENT_SUCCEEDED""#), "{json}");
        assert_eq!(OutboxEvent::from_json(&json).unwrap(), e);
    }

    #[test]
    fn malformed_events_are_refused() {
        let (mut c, mut o) = paid();
        c.apply(&mut o, PaymentEvent::PspSucceeded, Utc::now()).unwrap();
        let json = OutboxEvent::settled(&c, &o, "evt_1", Utc::now())
            .unwrap()
            .to_json();
        for bad in [
            json.replace("PAYMENT_SUCCEEDED", "PAYMENT_EXPLODED"),
            json.replace(r#""currency":"USD""#, r#""currency":"XXX""#),
            json.replace(r#""amount_minor":999"#, r#""amount_minor":9.99"#),
            json.replace(r#""seller_id":"s""#, r#""seller_id":"a b""#),
            json.replace(r#""cause""#, r#""extra":1,"cause""#),
            "{}".to_owned(),
        ] {
            assert!(OutboxEvent::from_json(&bad).is_err(), "{bad}");
        }
    }
}
