//! Refunds and the charges they refund: the model, Stripe's JSON shapes (`refund`, `charge`),
//! and every move a refund makes, each with its balance transactions and events.
//!
//! The card the buyer paid with decides how refunds of its charge behave (`RefundFlow`), as
//! Stripe's test cards do. Delayed moves are scheduled `refund_settle_ms` after creation and
//! applied by `settle_due_refunds` (a background tick in `main.rs`, and every refund read), or
//! at once by the admin API (`settle_refund`). The amount a charge still has to refund counts
//! pending and succeeded refunds: a failed one gives its amount back.

use crate::store::{
    new_id, now, now_ms, BalanceTxn, Cause, PaymentIntent, State, RECORDS_MAX, TXN_REFUND, TXN_REFUND_FAILURE,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// How refunds of a charge behave: decided by the test card that paid it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundFlow {
    /// Every other successful card (and the admin's async payments): `succeeded` at once.
    Immediate,
    /// `4000000000007726` ("pending refund"): `pending`, then `succeeded` when the settle time
    /// passes or the admin API settles it, whichever comes first.
    PendingThenSucceeded,
    /// `4000000000005126` ("asynchronous refund failure"): `succeeded`, then `failed` with
    /// `expired_or_canceled_card` when the settle time passes.
    SucceededThenFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

impl RefundStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }
}

/// Stripe's documented `failure_reason` values.
pub const FAILURE_REASONS: &[&str] = &[
    "charge_for_pending_refund_disputed",
    "declined",
    "expired_or_canceled_card",
    "insufficient_funds",
    "lost_or_stolen_card",
    "merchant_request",
    "unknown",
];

/// The reason 4000000000005126 refunds fail with (Stripe's documented behaviour).
pub const CARD_FAILURE_REASON: &str = "expired_or_canceled_card";

/// A successful charge: what refunds draw on.
#[derive(Debug, Clone)]
pub struct Charge {
    pub id: String,
    pub created: i64,
    /// The PaymentIntent's `amount_received`.
    pub amount: i64,
    pub currency: String,
    pub payment_intent_id: String,
    pub payment_method: String,
    pub balance_transaction: String,
    /// Pending plus succeeded refunds: never above `amount`.
    pub amount_refunded: i64,
    /// Refund ids, oldest first.
    pub refunds: Vec<String>,
    pub flow: RefundFlow,
    /// The session's API version: the version of every event about this charge.
    pub api_version: String,
    // What the charge paid for, copied onto its refunds' balance transactions.
    pub session_id: String,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub charge_id: String,
    pub payment_intent_id: String,
    pub status: RefundStatus,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub balance_transaction: Option<String>,
    pub failure_balance_transaction: Option<String>,
    pub failure_reason: Option<String>,
    /// The delayed move still to come: (due at, ms; the status it moves to).
    pub scheduled: Option<(i64, RefundStatus)>,
    pub api_version: String,
}

/// Why the admin API could not settle a refund.
#[derive(Debug, PartialEq, Eq)]
pub enum SettleError {
    NotFound,
    /// The refund's status does not allow the move (the message says why).
    Conflict(String),
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

impl State {
    // --- rendering -------------------------------------------------------------------------------

    /// Stripe's refund object.
    pub fn refund_json(r: &Refund) -> Value {
        json!({
            "id": r.id, "object": "refund", "amount": r.amount,
            "balance_transaction": opt(r.balance_transaction.clone()), "charge": r.charge_id,
            "created": r.created, "currency": r.currency, "destination_details": null,
            "failure_balance_transaction": opt(r.failure_balance_transaction.clone()),
            "failure_reason": opt(r.failure_reason.clone()), "metadata": r.metadata,
            "payment_intent": r.payment_intent_id, "reason": opt(r.reason.clone()),
            "receipt_number": null, "source_transfer_reversal": null, "status": r.status.as_str(),
            "transfer_reversal": null,
        })
    }

    /// The refunds of a charge as Stripe embeds them in the charge: newest first, all of them.
    fn charge_refunds_json(&self, c: &Charge) -> Value {
        let data: Vec<Value> = c
            .refunds
            .iter()
            .rev()
            .filter_map(|id| self.refunds.get(id))
            .map(State::refund_json)
            .collect();
        json!({"object": "list", "data": data, "has_more": false,
               "url": format!("/v1/charges/{}/refunds", c.id)})
    }

    /// Stripe's charge object (the part of it this sandbox knows).
    pub fn charge_json(&self, c: &Charge) -> Value {
        json!({
            "id": c.id, "object": "charge", "amount": c.amount, "amount_captured": c.amount,
            "amount_refunded": c.amount_refunded, "balance_transaction": c.balance_transaction,
            "captured": true, "created": c.created, "currency": c.currency,
            "description": opt(c.description.clone()), "livemode": false, "paid": true,
            "payment_intent": c.payment_intent_id, "payment_method": c.payment_method,
            "refunded": c.amount_refunded >= c.amount, "refunds": self.charge_refunds_json(c),
            "status": "succeeded",
        })
    }

    /// The PaymentIntent's `latest_charge` expanded: the stored charge, or (for a declined
    /// attempt, which is not stored) a failed charge that captured nothing; null if none.
    pub fn latest_charge_json(&self, pi: &PaymentIntent) -> Value {
        let Some(id) = &pi.latest_charge else {
            return Value::Null;
        };
        if let Some(c) = self.charges.get(id) {
            return self.charge_json(c);
        }
        json!({
            "id": id, "object": "charge", "amount": pi.amount, "amount_captured": 0,
            "amount_refunded": 0, "balance_transaction": null, "captured": false,
            "currency": pi.currency, "livemode": false, "paid": false, "payment_intent": pi.id,
            "refunded": false, "status": "failed",
            "refunds": {"object": "list", "data": [], "has_more": false,
                        "url": format!("/v1/charges/{id}/refunds")},
        })
    }

    // --- moves -----------------------------------------------------------------------------------

    /// Refund `amount` (already checked against what is left) of a charge: `refund.created`,
    /// and, if it succeeded at once, its balance transaction and `charge.refunded`. Returns the
    /// refund as created (the API's answer and the event's object), None for an unknown charge.
    pub fn create_refund(
        &mut self,
        charge_id: &str,
        amount: i64,
        reason: Option<&str>,
        metadata: BTreeMap<String, String>,
        cause: &Cause,
    ) -> Option<Value> {
        let settle_ms = self.refund_settle_ms;
        let c = self.charges.get_mut(charge_id)?;
        let due = now_ms().saturating_add(settle_ms);
        let (status, scheduled) = match c.flow {
            RefundFlow::Immediate => (RefundStatus::Succeeded, None),
            RefundFlow::PendingThenSucceeded => (RefundStatus::Pending, Some((due, RefundStatus::Succeeded))),
            RefundFlow::SucceededThenFailed => (RefundStatus::Succeeded, Some((due, RefundStatus::Failed))),
        };
        let refund = Refund {
            id: new_id("re_", 24),
            created: now(),
            amount,
            currency: c.currency.clone(),
            charge_id: c.id.clone(),
            payment_intent_id: c.payment_intent_id.clone(),
            status,
            reason: reason.map(str::to_string),
            metadata,
            balance_transaction: None,
            failure_balance_transaction: None,
            failure_reason: None,
            scheduled,
            api_version: c.api_version.clone(),
        };
        c.amount_refunded += amount;
        c.refunds.push(refund.id.clone());
        let id = refund.id.clone();
        self.insert_refund(refund);
        if status == RefundStatus::Succeeded {
            let txn = self.refund_txn(&id, TXN_REFUND);
            if let Some(r) = self.refunds.get_mut(&id) {
                r.balance_transaction = txn;
            }
        }
        let created = self.refunds.get(&id).map(State::refund_json)?;
        self.refund_event("refund.created", &id, cause);
        if status == RefundStatus::Succeeded {
            self.charge_refunded_event(charge_id, cause);
        }
        Some(created)
    }

    /// Store a refund and its timer; the oldest refund goes at the cap.
    fn insert_refund(&mut self, r: Refund) {
        if self.refund_order.len() >= RECORDS_MAX {
            if let Some(old) = self.refund_order.pop_front() {
                self.refunds.remove(&old);
            }
        }
        if let Some((at, _)) = r.scheduled {
            self.refund_timers.insert((at, r.id.clone()));
        }
        self.refund_order.push_back(r.id.clone());
        self.refunds.insert(r.id.clone(), r);
    }

    /// The balance transaction of a refund (`refund`: minus its amount) or of its failure
    /// (`refund_failure`: the amount back). No fee either way, so net = amount. Returns its id.
    fn refund_txn(&mut self, refund_id: &str, kind: &'static str) -> Option<String> {
        let r = self.refunds.get(refund_id)?;
        let c = self.charges.get(&r.charge_id)?;
        let amount = if kind == TXN_REFUND { -r.amount } else { r.amount };
        let created = now();
        let txn = BalanceTxn {
            id: new_id("txn_", 24),
            kind,
            source: r.id.clone(),
            account: None,
            transfer: None,
            transfer_reversal: None,
            amount,
            fee: 0,
            net: amount,
            currency: r.currency.clone(),
            created,
            // The balance moves at once (no rolling delay as for incoming charges).
            available_on: created,
            charge_id: c.id.clone(),
            payment_intent_id: c.payment_intent_id.clone(),
            session_id: c.session_id.clone(),
            client_reference_id: c.client_reference_id.clone(),
            metadata: c.metadata.clone(),
            description: None,
        };
        let id = txn.id.clone();
        crate::store::push_bounded(&mut self.balance_txns, txn);
        Some(id)
    }

    /// pending → succeeded: its balance transaction, `refund.updated`, `charge.refunded`.
    fn succeed_refund(&mut self, id: &str, cause: &Cause) {
        let txn = self.refund_txn(id, TXN_REFUND);
        let Some(r) = self.refunds.get_mut(id) else {
            return;
        };
        r.status = RefundStatus::Succeeded;
        r.balance_transaction = txn;
        r.scheduled = None;
        let charge_id = r.charge_id.clone();
        self.refund_event("refund.updated", id, cause);
        self.charge_refunded_event(&charge_id, cause);
    }

    /// pending or succeeded → failed: the amount counts as unrefunded again; a succeeded refund
    /// (whose balance transaction exists) gets a `refund_failure` one; `refund.updated` and
    /// `refund.failed`.
    fn fail_refund(&mut self, id: &str, reason: &str, cause: &Cause) {
        let had_txn = self
            .refunds
            .get(id)
            .is_some_and(|r| r.balance_transaction.is_some());
        let failure_txn = if had_txn {
            self.refund_txn(id, TXN_REFUND_FAILURE)
        } else {
            None
        };
        let Some(r) = self.refunds.get_mut(id) else {
            return;
        };
        r.status = RefundStatus::Failed;
        r.failure_reason = Some(reason.to_string());
        r.failure_balance_transaction = failure_txn;
        r.scheduled = None;
        let (charge_id, amount) = (r.charge_id.clone(), r.amount);
        if let Some(c) = self.charges.get_mut(&charge_id) {
            c.amount_refunded -= amount;
        }
        self.refund_event("refund.updated", id, cause);
        self.refund_event("refund.failed", id, cause);
    }

    /// Apply the scheduled moves due at `now_ms` (nobody's request: `request` is null in their
    /// events). Returns how many refunds moved.
    pub fn settle_due_refunds(&mut self, now_ms: i64) -> usize {
        let mut moved = 0;
        while let Some((at, id)) = self.refund_timers.first().cloned() {
            if at > now_ms {
                break;
            }
            self.refund_timers.pop_first();
            // Stale if the refund was settled (or evicted) meanwhile.
            let Some((_, to)) = self
                .refunds
                .get(&id)
                .and_then(|r| r.scheduled)
                .filter(|(due, _)| *due == at)
            else {
                continue;
            };
            match to {
                RefundStatus::Succeeded => self.succeed_refund(&id, &Cause::default()),
                _ => self.fail_refund(&id, CARD_FAILURE_REASON, &Cause::default()),
            }
            moved += 1;
        }
        moved
    }

    /// The admin API's move, now: a pending refund to `succeeded` or `failed` (with
    /// `failure_reason`), or a succeeded one to `failed` (the asynchronous failure). Same
    /// balance transactions and events as the timer's; any scheduled move is dropped.
    pub fn settle_refund(
        &mut self,
        id: &str,
        to: RefundStatus,
        failure_reason: &str,
    ) -> Result<Value, SettleError> {
        let status = self.refunds.get(id).ok_or(SettleError::NotFound)?.status;
        let cause = Cause::default();
        match (status, to) {
            (RefundStatus::Pending, RefundStatus::Succeeded) => self.succeed_refund(id, &cause),
            (RefundStatus::Pending | RefundStatus::Succeeded, RefundStatus::Failed) => {
                self.fail_refund(id, failure_reason, &cause)
            }
            _ => {
                return Err(SettleError::Conflict(format!(
                    "refund {id} is {}: it cannot become {}",
                    status.as_str(),
                    to.as_str()
                )))
            }
        }
        self.refunds
            .get(id)
            .map(State::refund_json)
            .ok_or(SettleError::NotFound)
    }

    // --- events ----------------------------------------------------------------------------------

    fn refund_event(&mut self, event_type: &str, id: &str, cause: &Cause) {
        let Some(r) = self.refunds.get(id) else {
            return;
        };
        let object = State::refund_json(r);
        let version = r.api_version.clone();
        self.emit(event_type, object, &version, cause);
    }

    /// `charge.refunded`: the charge with every one of its refunds.
    fn charge_refunded_event(&mut self, charge_id: &str, cause: &Cause) {
        let Some(c) = self.charges.get(charge_id) else {
            return;
        };
        let object = self.charge_json(c);
        let version = c.api_version.clone();
        self.emit("charge.refunded", object, &version, cause);
    }
}
