//! A checkout: one buyer paying one PSP charge for an order, split into one payment order
//! per seller line. The request arrives parsed (`api::pay_in`), in types that cannot be wrong.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::status::PaymentStatus;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, BuyerId, CheckoutId, OrderId, PaymentOrderId, SellerId, SubOrderId};
use crate::domain::money::Money;
use crate::domain::psp::{PaymentIntentId, PspSessionId};

/// At most this many seller lines per checkout: one DynamoDB transaction (100 items) holds the
/// checkout, its orders, the idempotency record and, later, outbox records.
pub const LINE_ITEMS_MAX: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutForm {
    /// `{buyer_id, seller_id, amount, currency, order_id}`
    Single,
    /// `{buyer_id, order_id, currency, total_amount, line_items: [...]}`
    Multi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub seller_id: SellerId,
    pub amount: Money,
    pub sub_order_id: Option<SubOrderId>,
}

/// A validated `POST /v1/payments` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    pub form: CheckoutForm,
    pub buyer_id: BuyerId,
    pub order_id: OrderId,
    pub currency: Currency,
    pub total: Money,
    pub lines: Vec<LineItem>,
}

impl CheckoutRequest {
    /// SHA-256 of the request's canonical form: two bodies that mean the same request
    /// (`99.99` or `"99.990"`, fields in any order) have the same fingerprint.
    pub fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Canon<'a> {
            form: CheckoutForm,
            buyer_id: &'a str,
            order_id: &'a str,
            currency: &'a str,
            total_minor: i64,
            lines: Vec<(&'a str, i64, Option<&'a str>)>,
        }
        let canon = Canon {
            form: self.form,
            buyer_id: self.buyer_id.as_str(),
            order_id: self.order_id.as_str(),
            currency: self.currency.code(),
            total_minor: self.total.minor(),
            lines: self
                .lines
                .iter()
                .map(|l| {
                    (
                        l.seller_id.as_str(),
                        l.amount.minor(),
                        l.sub_order_id.as_ref().map(|s| s.as_str()),
                    )
                })
                .collect(),
        };
        let text = serde_json::to_string(&canon).unwrap_or_default();
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// One buyer checkout (one PSP charge for `total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub id: CheckoutId,
    pub account_id: AccountId,
    pub form: CheckoutForm,
    pub order_id: OrderId,
    pub buyer_id: BuyerId,
    pub total: Money,
    pub status: PaymentStatus,
    /// The PSP's session (its token): the hosted page the buyer pays on.
    pub psp_session: Option<PspSessionId>,
    /// The charge behind the session, once the PSP says it was paid (refunds name it).
    pub payment_intent: Option<PaymentIntentId>,
    /// The PSP's hosted page for this checkout (the response's `psp_redirect_url`).
    pub psp_url: Option<String>,
    /// Why the checkout failed, in the PSP's words, when it did.
    pub failure_reason: Option<String>,
    pub payment_order_ids: Vec<PaymentOrderId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One seller's share of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentOrder {
    pub id: PaymentOrderId,
    pub checkout_id: CheckoutId,
    pub account_id: AccountId,
    pub order_id: OrderId,
    pub sub_order_id: Option<SubOrderId>,
    pub buyer_id: BuyerId,
    pub seller_id: SellerId,
    pub amount: Money,
    pub status: PaymentStatus,
    /// The checkout's PSP session (copied when the checkout moves).
    pub psp_session: Option<PspSessionId>,
    /// The checkout's charge (copied when the checkout moves): what its refunds name.
    pub payment_intent: Option<PaymentIntentId>,
    /// The platform's fee on this order, fixed when it succeeded (refunds return part of it).
    pub fee: Option<Money>,
    /// Its refunds so far.
    pub refunds: OrderRefunds,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A payment order's refunds, as counters kept on the order and moved only by conditional
/// writes: what is reserved (pending and succeeded refunds), what has succeeded, and the part
/// of the platform fee those returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderRefunds {
    pub reserved_minor: i64,
    pub refunded_minor: i64,
    pub fee_refunded_minor: i64,
}

impl PaymentOrder {
    /// What can still be refunded: the amount less every pending and succeeded refund.
    pub fn refundable(&self) -> Money {
        Money::from_minor(
            self.amount
                .minor()
                .saturating_sub(self.refunds.reserved_minor)
                .max(0),
            self.amount.currency(),
        )
    }

    /// The sum of succeeded refunds.
    pub fn amount_refunded(&self) -> Money {
        Money::from_minor(self.refunds.refunded_minor, self.amount.currency())
    }
}

impl Checkout {
    /// A new checkout in `CREATED` with one payment order per line.
    pub fn open(
        req: &CheckoutRequest,
        account_id: &AccountId,
        now: DateTime<Utc>,
    ) -> (Checkout, Vec<PaymentOrder>) {
        let id = CheckoutId::generate();
        let orders: Vec<PaymentOrder> = req
            .lines
            .iter()
            .map(|line| PaymentOrder {
                id: PaymentOrderId::generate(),
                checkout_id: id.clone(),
                account_id: account_id.clone(),
                order_id: req.order_id.clone(),
                sub_order_id: line.sub_order_id.clone(),
                buyer_id: req.buyer_id.clone(),
                seller_id: line.seller_id.clone(),
                amount: line.amount,
                status: PaymentStatus::Created,
                psp_session: None,
                payment_intent: None,
                fee: None,
                refunds: OrderRefunds::default(),
                created_at: now,
                updated_at: now,
            })
            .collect();
        let checkout = Checkout {
            id,
            account_id: account_id.clone(),
            form: req.form,
            order_id: req.order_id.clone(),
            buyer_id: req.buyer_id.clone(),
            total: req.total,
            status: PaymentStatus::Created,
            psp_session: None,
            payment_intent: None,
            psp_url: None,
            failure_reason: None,
            payment_order_ids: orders.iter().map(|o| o.id.clone()).collect(),
            created_at: now,
            updated_at: now,
        };
        debug_assert!(checkout.check(&orders).is_ok());
        (checkout, orders)
    }

    /// The invariants between a checkout and its orders: same currency, amounts sum to the
    /// total, every order belongs to it, one status for all.
    pub fn check(&self, orders: &[PaymentOrder]) -> Result<(), String> {
        let ids: Vec<&PaymentOrderId> = orders.iter().map(|o| &o.id).collect();
        if ids != self.payment_order_ids.iter().collect::<Vec<_>>() {
            return Err(format!(
                "checkout {} lists other payment orders than it has",
                self.id
            ));
        }
        let sum =
            Money::sum(self.total.currency(), orders.iter().map(|o| o.amount)).map_err(|e| e.to_string())?;
        if sum != self.total {
            return Err(format!(
                "checkout {}: orders sum to {sum:?}, total is {:?}",
                self.id, self.total
            ));
        }
        if let Some(o) = orders
            .iter()
            .find(|o| o.checkout_id != self.id || o.status != self.status || o.account_id != self.account_id)
        {
            return Err(format!(
                "payment order {} disagrees with checkout {}",
                o.id, self.id
            ));
        }
        Ok(())
    }
}

impl Checkout {
    /// Applies `event` to the checkout and all its orders (one charge pays for all, so they
    /// move together). Returns the status they left.
    pub fn apply(
        &mut self,
        orders: &mut [PaymentOrder],
        event: super::status::PaymentEvent,
        now: DateTime<Utc>,
    ) -> Result<PaymentStatus, super::status::IllegalTransition> {
        let from = self.status;
        let next = from.apply(event)?;
        self.status = next;
        self.updated_at = now;
        for o in orders.iter_mut() {
            o.status = next;
            o.psp_session.clone_from(&self.psp_session);
            o.payment_intent.clone_from(&self.payment_intent);
            o.updated_at = now;
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::SellerId;

    fn request() -> CheckoutRequest {
        let usd = Currency::parse("USD").unwrap();
        let line = |seller: &str, minor: i64, sub: &str| LineItem {
            seller_id: SellerId::parse(seller).unwrap(),
            amount: Money::from_minor(minor, usd),
            sub_order_id: Some(SubOrderId::parse(sub).unwrap()),
        };
        CheckoutRequest {
            form: CheckoutForm::Multi,
            buyer_id: BuyerId::parse("b").unwrap(),
            order_id: OrderId::parse("o").unwrap(),
            currency: usd,
            total: Money::from_minor(10_000, usd),
            lines: vec![line("A", 4000, "x"), line("B", 3500, "y"), line("C", 2500, "z")],
        }
    }

    #[test]
    fn open_builds_consistent_orders_and_check_catches_drift() {
        let r = request();
        let acct = AccountId::parse("acct_1").unwrap();
        let (c, orders) = Checkout::open(&r, &acct, Utc::now());
        assert_eq!(orders.len(), 3);
        assert_eq!(c.status, PaymentStatus::Created);
        assert!(c.check(&orders).is_ok());
        let mut bad = orders.clone();
        bad[0].amount = Money::from_minor(1, r.currency);
        assert!(c.check(&bad).is_err(), "amounts no longer sum to the total");
        let mut moved = orders.clone();
        moved[1].status = PaymentStatus::Success;
        assert!(c.check(&moved).is_err(), "one order moved without the others");
        assert!(c.check(&orders[..2]).is_err(), "an order is missing");
    }

    #[test]
    fn every_order_moves_with_the_checkout() {
        let acct = AccountId::parse("acct_1").unwrap();
        let (mut c, mut orders) = Checkout::open(&request(), &acct, Utc::now());
        c.psp_session = Some(PspSessionId::parse("cs_test_1").unwrap());
        let from = c
            .apply(
                &mut orders,
                super::super::status::PaymentEvent::Submitted,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(from, PaymentStatus::Created);
        assert!(orders
            .iter()
            .all(|o| o.status == PaymentStatus::Executing && o.psp_session == c.psp_session));
        assert!(c.check(&orders).is_ok());
    }
}
