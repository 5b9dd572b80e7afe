//! Refunds (design §8 "How corrections work", §13, §14): money going back to a buyer, one
//! seller's line (one payment order) at a time, as a partial refund of the checkout's single
//! PSP charge. A refund never edits the payment: it is its own record with its own machine, and
//! its money moves as new ledger entries.

pub mod fee;
pub mod status;

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use fee::{split, FeePolicy, Split};
pub use status::{IllegalRefundTransition, RefundEvent, RefundMove, RefundStatus};

use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, CheckoutId, PaymentOrderId, RefundId, SellerId};
use crate::domain::metadata::Metadata;
use crate::domain::money::{Money, MoneyError};
use crate::domain::pay_in::{PaymentOrder, PaymentStatus};
use crate::domain::psp::{PaymentIntentId, PspRefundId};

/// Why a refund is asked for: Stripe's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

impl RefundReason {
    pub const ALL: [RefundReason; 3] = [
        RefundReason::Duplicate,
        RefundReason::Fraudulent,
        RefundReason::RequestedByCustomer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
            RefundReason::RequestedByCustomer => "requested_by_customer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RefundReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated `POST /v1/refunds` body. The amount is exact but not yet money: its currency
/// is the order's, known once the order is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub payment_order_id: PaymentOrderId,
    /// `None`: everything still refundable.
    pub amount: Option<Decimal>,
    /// If sent, it must be the order's.
    pub currency: Option<Currency>,
    pub reason: Option<RefundReason>,
    pub metadata: Metadata,
}

impl RefundRequest {
    /// SHA-256 of the request's canonical form (`10`, `"10.00"` and `10.0` are one amount).
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Canon<'a> {
            kind: &'static str,
            payment_order_id: &'a str,
            amount: Option<String>,
            currency: Option<&'a str>,
            reason: Option<&'static str>,
            metadata: &'a Metadata,
        }
        let canon = Canon {
            kind: "refund",
            payment_order_id: self.payment_order_id.as_str(),
            amount: self.amount.map(|a| a.normalize().to_string()),
            currency: self.currency.as_ref().map(Currency::code),
            reason: self.reason.map(RefundReason::as_str),
            metadata: &self.metadata,
        };
        let text = serde_json::to_string(&canon).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Why a refund cannot be made. Each is a `400` with its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefusal {
    #[error("payment order {id} is {status}: only a SUCCESS payment can be refunded")]
    NotRefundable {
        id: PaymentOrderId,
        status: PaymentStatus,
    },
    #[error("amount {requested} {currency} exceeds what is still refundable: {left} {currency}", currency = .left.currency())]
    ExceedsRefundable { requested: Money, left: Money },
    #[error("nothing is left to refund on payment order {id}")]
    NothingLeft { id: PaymentOrderId },
    #[error("currency {got} is not the payment's currency {expected}")]
    CurrencyMismatch { expected: Currency, got: Currency },
    #[error("amount {0}")]
    Amount(MoneyError),
}

impl RefundRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            RefundRefusal::NotRefundable { .. } => "payment_not_refundable",
            RefundRefusal::ExceedsRefundable { .. } | RefundRefusal::NothingLeft { .. } => {
                "amount_exceeds_refundable"
            }
            RefundRefusal::CurrencyMismatch { .. } => "currency_mismatch",
            RefundRefusal::Amount(MoneyError::TooPrecise { .. }) => "amount_too_precise",
            RefundRefusal::Amount(MoneyError::NotPositive) => "amount_not_positive",
            RefundRefusal::Amount(MoneyError::TooLarge { .. } | MoneyError::Overflow) => "amount_too_large",
            RefundRefusal::Amount(_) => "amount_invalid",
        }
    }

    /// The request parameter it is about.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            RefundRefusal::NotRefundable { .. } => Some("payment_order_id"),
            RefundRefusal::CurrencyMismatch { .. } => Some("currency"),
            _ => Some("amount"),
        }
    }
}

/// What we ask the PSP: a partial refund of the checkout's charge, keyed by our refund id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspRefundRequest {
    pub refund_id: RefundId,
    pub payment_order_id: PaymentOrderId,
    pub payment_intent: PaymentIntentId,
    pub amount: Money,
    pub reason: Option<RefundReason>,
}

impl PspRefundRequest {
    pub fn of(refund: &Refund) -> Self {
        PspRefundRequest {
            refund_id: refund.id.clone(),
            payment_order_id: refund.payment_order_id.clone(),
            payment_intent: refund.payment_intent.clone(),
            amount: refund.amount,
            reason: refund.reason,
        }
    }
}

/// A refund's status at the PSP (Stripe's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PspRefundStatus {
    Pending,
    RequiresAction,
    Succeeded,
    Failed,
    Canceled,
}

impl PspRefundStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => PspRefundStatus::Pending,
            "requires_action" => PspRefundStatus::RequiresAction,
            "succeeded" => PspRefundStatus::Succeeded,
            "failed" => PspRefundStatus::Failed,
            "canceled" => PspRefundStatus::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PspRefundStatus::Pending => "pending",
            PspRefundStatus::RequiresAction => "requires_action",
            PspRefundStatus::Succeeded => "succeeded",
            PspRefundStatus::Failed => "failed",
            PspRefundStatus::Canceled => "canceled",
        }
    }

    /// What it means for our machine; `None` while the PSP is still working on it.
    pub fn event(self) -> Option<RefundEvent> {
        match self {
            PspRefundStatus::Succeeded => Some(RefundEvent::PspSucceeded),
            PspRefundStatus::Failed | PspRefundStatus::Canceled => Some(RefundEvent::PspFailed),
            PspRefundStatus::Pending | PspRefundStatus::RequiresAction => None,
        }
    }
}

/// The PSP's refund as it answered or notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspRefund {
    pub id: PspRefundId,
    pub status: PspRefundStatus,
    /// Why it failed, in the PSP's words (`charge_for_pending_refund_disputed`, …).
    pub failure_reason: Option<String>,
}

/// A refund as a PSP webhook describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspRefundNotice {
    pub refund: PspRefund,
    /// Our refund id as we sent it (`metadata[refund_id]`), signed back by the PSP.
    pub refund_ref: Option<String>,
    pub amount_minor: i64,
    pub currency: Currency,
}

/// One refund of one payment order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub id: RefundId,
    pub account_id: AccountId,
    pub payment_order_id: PaymentOrderId,
    pub checkout_id: CheckoutId,
    pub seller_id: SellerId,
    /// The charge it refunds part of.
    pub payment_intent: PaymentIntentId,
    pub amount: Money,
    pub reason: Option<RefundReason>,
    pub metadata: Metadata,
    pub status: RefundStatus,
    /// The fee policy in force when it was asked for; it decides its split when it succeeds.
    pub fee_policy: FeePolicy,
    /// The order's amount and platform fee, for the split.
    pub order_amount: Money,
    pub order_fee: Money,
    /// What creating it moved from the seller's available balance to held (the seller's part
    /// if every refund reserved before it succeeds); released when it succeeds or fails.
    pub seller_held: Money,
    /// Fixed when it succeeds: the platform fee returned and what the seller gave back
    /// (`fee_refunded + seller_debited == amount`).
    pub split: Option<Split>,
    pub psp_refund: Option<PspRefundId>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a refund needs to know about the payment order it refunds.
#[derive(Debug, Clone)]
pub struct Refundable<'a> {
    pub order: &'a PaymentOrder,
    pub payment_intent: PaymentIntentId,
    /// The order's platform fee (fixed when it succeeded).
    pub fee: Money,
}

impl Refund {
    /// A new `PENDING` refund of `request` against the order as read. The store re-checks
    /// the amount against the order's counters in the same write that reserves it.
    pub fn open(
        id: RefundId,
        target: &Refundable<'_>,
        request: &RefundRequest,
        policy: FeePolicy,
        now: DateTime<Utc>,
    ) -> Result<Refund, RefundRefusal> {
        let order = target.order;
        if order.status != PaymentStatus::Success {
            return Err(RefundRefusal::NotRefundable {
                id: order.id.clone(),
                status: order.status,
            });
        }
        let currency = order.amount.currency();
        if let Some(got) = request.currency {
            if got != currency {
                return Err(RefundRefusal::CurrencyMismatch {
                    expected: currency,
                    got,
                });
            }
        }
        let left = order.refundable();
        let amount = match request.amount {
            Some(value) => {
                let amount = Money::from_decimal(value, currency).map_err(RefundRefusal::Amount)?;
                amount.check_charge().map_err(RefundRefusal::Amount)?;
                if amount.minor() > left.minor() {
                    return Err(RefundRefusal::ExceedsRefundable {
                        requested: amount,
                        left,
                    });
                }
                amount
            }
            None if left.minor() > 0 => left,
            None => return Err(RefundRefusal::NothingLeft { id: order.id.clone() }),
        };
        // The seller's part if everything reserved before it succeeds first.
        let reserved = order.refunds.reserved_minor;
        let fee_before = fee::fee_returned(policy, order.amount.minor(), target.fee.minor(), reserved);
        let held = split(policy, order.amount, target.fee, reserved, fee_before, amount)
            .map_err(RefundRefusal::Amount)?
            .seller;
        Ok(Refund {
            id,
            account_id: order.account_id.clone(),
            payment_order_id: order.id.clone(),
            checkout_id: order.checkout_id.clone(),
            seller_id: order.seller_id.clone(),
            payment_intent: target.payment_intent.clone(),
            amount,
            reason: request.reason,
            metadata: request.metadata.clone(),
            status: RefundStatus::Pending,
            fee_policy: policy,
            order_amount: order.amount,
            order_fee: target.fee,
            seller_held: held,
            split: None,
            psp_refund: None,
            failure_code: None,
            failure_message: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Applies what the PSP said, given the order's counters as read. Returns the move and the
    /// counters after it (the store writes them on condition that they are still `before`).
    pub fn apply(
        &mut self,
        event: RefundEvent,
        before: crate::domain::pay_in::OrderRefunds,
        now: DateTime<Utc>,
    ) -> Result<(RefundMove, crate::domain::pay_in::OrderRefunds), RefundApplyError> {
        let (next, moved) = self.status.apply(event)?;
        let mut after = before;
        let r = self.amount.minor();
        match moved {
            RefundMove::Succeeded => {
                let split = split(
                    self.fee_policy,
                    self.order_amount,
                    self.order_fee,
                    before.refunded_minor,
                    before.fee_refunded_minor,
                    self.amount,
                )?;
                after.refunded_minor = add(before.refunded_minor, r)?;
                after.fee_refunded_minor = add(before.fee_refunded_minor, split.fee.minor())?;
                self.split = Some(split);
            }
            RefundMove::Failed => {
                after.reserved_minor = add(before.reserved_minor, -r)?;
            }
            RefundMove::Reversed => {
                let split = self.split.ok_or(RefundApplyError::Inconsistent(
                    "a succeeded refund without its split",
                ))?;
                after.reserved_minor = add(before.reserved_minor, -r)?;
                after.refunded_minor = add(before.refunded_minor, -r)?;
                after.fee_refunded_minor = add(before.fee_refunded_minor, -split.fee.minor())?;
            }
        }
        if after.reserved_minor < 0
            || after.refunded_minor < 0
            || after.refunded_minor > after.reserved_minor
            || after.reserved_minor > self.order_amount.minor()
        {
            return Err(RefundApplyError::Inconsistent(
                "the order's refund counters would leave their bounds",
            ));
        }
        self.status = next;
        self.updated_at = now;
        Ok((moved, after))
    }
}

fn add(a: i64, b: i64) -> Result<i64, RefundApplyError> {
    a.checked_add(b)
        .ok_or(RefundApplyError::Money(MoneyError::Overflow))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundApplyError {
    #[error(transparent)]
    Illegal(#[from] IllegalRefundTransition),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error("{0}")]
    Inconsistent(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{BuyerId, OrderId};
    use crate::domain::pay_in::OrderRefunds;

    fn order(minor: i64, status: PaymentStatus) -> PaymentOrder {
        let usd = Currency::parse("USD").unwrap();
        PaymentOrder {
            id: PaymentOrderId::generate(),
            checkout_id: CheckoutId::generate(),
            account_id: AccountId::parse("acct_a").unwrap(),
            order_id: OrderId::parse("o").unwrap(),
            sub_order_id: None,
            buyer_id: BuyerId::parse("b").unwrap(),
            seller_id: SellerId::parse("s").unwrap(),
            amount: Money::from_minor(minor, usd),
            status,
            psp_session: None,
            payment_intent: Some(PaymentIntentId::parse("pi_1").unwrap()),
            fee: Some(Money::from_minor(minor / 40, usd)),
            refunds: OrderRefunds::default(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn request(o: &PaymentOrder, amount: Option<&str>) -> RefundRequest {
        RefundRequest {
            payment_order_id: o.id.clone(),
            amount: amount.map(|a| a.parse().unwrap()),
            currency: None,
            reason: None,
            metadata: Metadata::default(),
        }
    }

    fn open(o: &PaymentOrder, amount: Option<&str>) -> Result<Refund, RefundRefusal> {
        let target = Refundable {
            order: o,
            payment_intent: o.payment_intent.clone().unwrap(),
            fee: o.fee.unwrap(),
        };
        Refund::open(
            RefundId::generate(),
            &target,
            &request(o, amount),
            FeePolicy::Proportional,
            Utc::now(),
        )
    }

    #[test]
    fn only_a_successful_order_is_refundable_and_never_beyond_its_amount() {
        let mut o = order(10_000, PaymentStatus::Executing);
        assert_eq!(open(&o, None).unwrap_err().code(), "payment_not_refundable");
        o.status = PaymentStatus::Success;
        let full = open(&o, None).unwrap();
        assert_eq!((full.amount.minor(), full.seller_held.minor()), (10_000, 9_750));
        o.refunds.reserved_minor = 9_000;
        assert_eq!(
            open(&o, None).unwrap().amount.minor(),
            1_000,
            "defaults to what is left"
        );
        let e = open(&o, Some("10.01")).unwrap_err();
        assert_eq!(e.code(), "amount_exceeds_refundable");
        assert!(e.to_string().contains("10.00 USD"), "{e}");
        assert_eq!(open(&o, Some("0")).unwrap_err().code(), "amount_not_positive");
        assert_eq!(open(&o, Some("1.001")).unwrap_err().code(), "amount_too_precise");
        o.refunds.reserved_minor = 10_000;
        assert_eq!(open(&o, None).unwrap_err().code(), "amount_exceeds_refundable");
    }

    #[test]
    fn a_wrong_currency_is_refused() {
        let o = order(1000, PaymentStatus::Success);
        let target = Refundable {
            order: &o,
            payment_intent: o.payment_intent.clone().unwrap(),
            fee: o.fee.unwrap(),
        };
        let mut r = request(&o, Some("1"));
        r.currency = Some(Currency::parse("EUR").unwrap());
        let e = Refund::open(
            RefundId::generate(),
            &target,
            &r,
            FeePolicy::Proportional,
            Utc::now(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "currency_mismatch");
    }

    #[test]
    fn counters_move_with_the_machine() {
        let o = order(10_000, PaymentStatus::Success);
        let mut r = open(&o, Some("40")).unwrap();
        let reserved = OrderRefunds {
            reserved_minor: 4_000,
            ..OrderRefunds::default()
        };
        let (m, after) = r.apply(RefundEvent::PspSucceeded, reserved, Utc::now()).unwrap();
        assert_eq!(m, RefundMove::Succeeded);
        assert_eq!(after.refunded_minor, 4_000);
        assert_eq!(after.fee_refunded_minor, 100);
        assert_eq!(r.split.unwrap().seller.minor(), 3_900);
        let (m, back) = r.apply(RefundEvent::PspFailed, after, Utc::now()).unwrap();
        assert_eq!(m, RefundMove::Reversed);
        assert_eq!(back, OrderRefunds::default());
        assert!(
            r.apply(RefundEvent::PspSucceeded, back, Utc::now()).is_err(),
            "FAILED is final"
        );

        let mut p = open(&o, Some("10")).unwrap();
        let reserved = OrderRefunds {
            reserved_minor: 1_000,
            ..OrderRefunds::default()
        };
        let (m, after) = p.apply(RefundEvent::PspFailed, reserved, Utc::now()).unwrap();
        assert_eq!((m, after), (RefundMove::Failed, OrderRefunds::default()));
        assert!(p.split.is_none());
    }

    #[test]
    fn counters_that_do_not_cover_the_refund_are_refused() {
        let o = order(10_000, PaymentStatus::Success);
        let mut r = open(&o, Some("40")).unwrap();
        let e = r
            .apply(RefundEvent::PspFailed, OrderRefunds::default(), Utc::now())
            .unwrap_err();
        assert!(matches!(e, RefundApplyError::Inconsistent(_)));
        assert_eq!(r.status, RefundStatus::Pending, "nothing changed");
    }
}
