//! The invariants, checked over everything we hold: every ledger transaction balanced, debits
//! equal credits per currency, each account's running totals equal the sum of its entries,
//! wallets equal the ledger, one ledger transaction per successful payment order (none for
//! others), no checkout charged twice; and for refunds: each order's counters equal its
//! refunds (succeeded ones sum to `amount_refunded`, never above the amount), each wallet holds
//! exactly its pending refunds' seller parts, and one reversal per succeeded refund (none for a
//! failed one, a correction for each that failed after succeeding).
//!
//! The store is read page by page and fed to a [`Checker`], which keeps only aggregates (per
//! currency, per account, per payment order), never the items themselves. Arithmetic is
//! checked: an overflow is a violation, never a wrapped number.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::currency::Currency;
use super::ids::{AccountId, CheckoutId, PaymentOrderId, PayoutId, RefundId, SellerId};
use super::ledger::balances::Totals;
use super::ledger::{Direction, LedgerAccount, LedgerTransaction};
use super::outbox::{OutboxBody, OutboxEvent};
use super::pay_in::{OrderRefunds, PaymentStatus};
use super::payouts::PayoutStatus;
use super::refunds::RefundStatus;

/// Violations listed in a report; more are counted, not listed.
pub const VIOLATIONS_LISTED_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    pub ledger_transactions: u64,
    pub wallets: u64,
    pub payment_orders: u64,
    pub refunds: u64,
    pub payouts: u64,
    pub balance_items: u64,
    pub outbox_events: u64,
    /// Per currency: (total debits, total credits), in minor units.
    pub totals_minor: BTreeMap<String, (i64, i64)>,
    pub violations: Vec<String>,
    /// All violations, including those not listed.
    pub violations_total: u64,
}

/// A wallet as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletBalance {
    pub account_id: AccountId,
    pub seller_id: SellerId,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
    /// Kept by every write as `balance − held` (what a payout may take).
    pub available_minor: i64,
}

/// A payment order as the check needs it: its status, amount and refund counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub id: PaymentOrderId,
    pub status: PaymentStatus,
    pub amount_minor: i64,
    pub refunds: OrderRefunds,
}

/// A refund as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFacts {
    pub id: RefundId,
    pub account_id: AccountId,
    pub payment_order_id: PaymentOrderId,
    pub seller_id: SellerId,
    pub currency: Currency,
    pub status: RefundStatus,
    pub amount_minor: i64,
    pub seller_held_minor: i64,
    /// Set once it succeeded (kept if it failed afterwards).
    pub fee_refunded_minor: Option<i64>,
}

/// A payout as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutFacts {
    pub id: PayoutId,
    pub account_id: AccountId,
    pub seller_id: SellerId,
    pub currency: Currency,
    pub status: PayoutStatus,
    pub amount_minor: i64,
    /// Its transfer was made (it went out: `IN_TRANSIT`, `PAID`, or `FAILED` after that).
    pub transferred: bool,
    /// Its transfer was reversed (it bounced and the money came back).
    pub reversed: bool,
}

/// Per payout: its facts once seen, and the ledger transactions booking it.
#[derive(Debug, Default)]
struct PayoutSeen {
    facts: Option<PayoutFacts>,
    transfers: u32,
    reversals: u32,
}

/// Per refund: its facts once seen, and the ledger transactions booking it
/// (reversals, corrections).
#[derive(Debug, Default)]
struct RefundSeen {
    facts: Option<RefundFacts>,
    reversals: u32,
    corrections: u32,
}

/// Per payment order, from its refunds: (reserved, refunded, fee refunded).
type RefundSums = (i64, i64, i64);

/// One shard of an account's running totals, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceShard {
    pub account_id: AccountId,
    pub account: LedgerAccount,
    pub currency: Currency,
    pub totals: Totals,
}

type AccountKey = (AccountId, LedgerAccount, Currency);

#[derive(Debug, Default)]
pub struct Checker {
    transactions: u64,
    wallets_seen: u64,
    orders_seen: u64,
    balance_items: u64,
    outbox_events: u64,
    /// Per currency: (debits, credits).
    totals: BTreeMap<Currency, (i64, i64)>,
    /// Per account and currency: what its entries add up to.
    from_entries: BTreeMap<AccountKey, Totals>,
    /// Per account and currency: the running totals, summed over shards.
    running: BTreeMap<AccountKey, Totals>,
    wallets: BTreeMap<(AccountId, SellerId, Currency), i64>,
    /// Per wallet: what it holds.
    held: BTreeMap<(AccountId, SellerId, Currency), i64>,
    /// Per payment order: payment transactions naming it, and its facts once seen.
    orders: HashMap<PaymentOrderId, (u32, Option<OrderFacts>)>,
    refunds: HashMap<RefundId, RefundSeen>,
    refunds_seen: u64,
    payouts_seen: u64,
    /// Per wallet: what its pending payouts hold.
    payouts_held: BTreeMap<(AccountId, SellerId, Currency), i64>,
    payouts: HashMap<PayoutId, PayoutSeen>,
    /// `PAYMENT_SUCCEEDED` events per checkout.
    charged: HashMap<CheckoutId, u32>,
    violations: Vec<String>,
    violations_total: u64,
}

impl Checker {
    pub fn violation(&mut self, v: String) {
        self.violations_total += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(v);
        }
    }

    /// A ledger transaction as read back (unbalanced ones are reported, not summed).
    pub fn ledger_transaction(&mut self, tx: &LedgerTransaction) {
        self.transactions += 1;
        if let Err(e) = tx.check_balanced() {
            self.violation(e.to_string());
            return;
        }
        if let Some(payout) = &tx.payout_id {
            // The transfer debits the seller's payable; its reversal credits it back.
            let transfer = tx.entries.iter().any(|e| {
                matches!(e.account, LedgerAccount::SellerPayable(_)) && e.direction == Direction::Debit
            });
            let slot = self.payouts.entry(payout.clone()).or_default();
            if transfer {
                slot.transfers = slot.transfers.saturating_add(1);
            } else {
                slot.reversals = slot.reversals.saturating_add(1);
            }
        }
        match (&tx.refund_id, &tx.payment_order_id) {
            (Some(refund), _) => {
                // A refund's reversal credits psp_receivable; its correction debits it.
                let reversal = tx
                    .entries
                    .iter()
                    .any(|e| e.account == LedgerAccount::PspReceivable && e.direction == Direction::Credit);
                let slot = self.refunds.entry(refund.clone()).or_default();
                if reversal {
                    slot.reversals = slot.reversals.saturating_add(1);
                } else {
                    slot.corrections = slot.corrections.saturating_add(1);
                }
            }
            (None, Some(po)) => {
                let slot = self.orders.entry(po.clone()).or_default();
                slot.0 = slot.0.saturating_add(1);
            }
            (None, None) => {}
        }
        for e in &tx.entries {
            let minor = e.amount.minor();
            let t = self.totals.entry(e.amount.currency()).or_default();
            let (side, add) = match e.direction {
                Direction::Debit => (
                    &mut t.0,
                    Totals {
                        debits_minor: minor,
                        credits_minor: 0,
                        entries: 1,
                    },
                ),
                Direction::Credit => (
                    &mut t.1,
                    Totals {
                        debits_minor: 0,
                        credits_minor: minor,
                        entries: 1,
                    },
                ),
            };
            match side.checked_add(minor) {
                Some(v) => *side = v,
                None => {
                    let what = format!("{}: total overflows i64", e.amount.currency());
                    self.violation(what);
                }
            }
            let key = (tx.account_id.clone(), e.account.clone(), e.amount.currency());
            let slot = self.from_entries.entry(key).or_default();
            match slot.checked_add(add) {
                Some(v) => *slot = v,
                None => {
                    let what = format!(
                        "account {} {}: entries overflow i64",
                        e.account,
                        e.amount.currency()
                    );
                    self.violation(what);
                }
            }
        }
    }

    /// An item that should be a ledger transaction but does not read back as a balanced one.
    pub fn unreadable_transaction(&mut self, what: String) {
        self.transactions += 1;
        self.violation(format!("unbalanced or unreadable ledger transaction: {what}"));
    }

    pub fn balance_shard(&mut self, b: &BalanceShard) {
        self.balance_items += 1;
        let key = (b.account_id.clone(), b.account.clone(), b.currency);
        let slot = self.running.entry(key).or_default();
        match slot.checked_add(b.totals) {
            Some(v) => *slot = v,
            None => {
                let what = format!("running totals of {} {} overflow i64", b.account, b.currency);
                self.violation(what);
            }
        }
    }

    pub fn wallet(&mut self, w: &WalletBalance) {
        self.wallets_seen += 1;
        if w.balance_minor.checked_sub(w.held_minor) != Some(w.available_minor) {
            let what = format!(
                "wallet {}/{} {}: available {} is not balance {} − held {}",
                w.account_id, w.seller_id, w.currency, w.available_minor, w.balance_minor, w.held_minor
            );
            self.violation(what);
        }
        self.wallets.insert(
            (w.account_id.clone(), w.seller_id.clone(), w.currency),
            w.balance_minor,
        );
        if w.held_minor != 0 {
            self.held.insert(
                (w.account_id.clone(), w.seller_id.clone(), w.currency),
                w.held_minor,
            );
        }
    }

    pub fn payment_order(&mut self, o: &OrderFacts) {
        self.orders_seen += 1;
        self.orders.entry(o.id.clone()).or_default().1 = Some(o.clone());
    }

    /// A payout: while `PENDING` its amount is held in its seller's wallet.
    pub fn payout(&mut self, p: &PayoutFacts) {
        self.payouts_seen += 1;
        self.payouts.entry(p.id.clone()).or_default().facts = Some(p.clone());
        if p.status.holds() {
            let slot = self
                .payouts_held
                .entry((p.account_id.clone(), p.seller_id.clone(), p.currency))
                .or_default();
            *slot = slot.saturating_add(p.amount_minor);
        }
    }

    pub fn refund(&mut self, r: &RefundFacts) {
        self.refunds_seen += 1;
        self.refunds.entry(r.id.clone()).or_default().facts = Some(r.clone());
    }

    pub fn outbox_event(&mut self, e: &OutboxEvent) {
        self.outbox_events += 1;
        match &e.body {
            OutboxBody::PaymentSucceeded(p) => {
                let n = self.charged.entry(p.checkout_id.clone()).or_default();
                *n = n.saturating_add(1);
            }
            OutboxBody::PaymentFailed(_)
            | OutboxBody::RefundRequested(_)
            | OutboxBody::RefundSucceeded(_)
            | OutboxBody::RefundFailed(_)
            | OutboxBody::RefundReversed(_)
            | OutboxBody::PayoutRequested(_)
            | OutboxBody::PayoutCanceled(_)
            | OutboxBody::PayoutRefused(_)
            | OutboxBody::PayoutFailed(_)
            | OutboxBody::PayoutSent(_)
            | OutboxBody::PayoutPaid(_)
            | OutboxBody::PayoutReturned(_) => {}
        }
    }

    /// Refunds against their orders, holds against wallets, reversals against refunds.
    fn check_refunds(&mut self) {
        let mut violations = Vec::new();
        let mut per_order: HashMap<PaymentOrderId, RefundSums> = HashMap::new();
        let mut held: BTreeMap<(AccountId, SellerId, Currency), i64> = BTreeMap::new();
        for (id, seen) in &self.refunds {
            let Some(r) = &seen.facts else {
                violations.push(format!(
                    "{} ledger transactions book unknown refund {id}",
                    seen.reversals + seen.corrections
                ));
                continue;
            };
            let sums = per_order.entry(r.payment_order_id.clone()).or_default();
            let late_failure = r.status == RefundStatus::Failed && r.fee_refunded_minor.is_some();
            let expected = match r.status {
                RefundStatus::Pending => {
                    sums.0 = sums.0.saturating_add(r.amount_minor);
                    let slot = held
                        .entry((r.account_id.clone(), r.seller_id.clone(), r.currency))
                        .or_default();
                    *slot = slot.saturating_add(r.seller_held_minor);
                    (0, 0)
                }
                RefundStatus::Succeeded => {
                    sums.0 = sums.0.saturating_add(r.amount_minor);
                    sums.1 = sums.1.saturating_add(r.amount_minor);
                    sums.2 = sums.2.saturating_add(r.fee_refunded_minor.unwrap_or(0));
                    if r.fee_refunded_minor.is_none() {
                        violations.push(format!("refund {id} SUCCEEDED without its split"));
                    }
                    (1, 0)
                }
                RefundStatus::Failed if late_failure => (1, 1),
                RefundStatus::Failed => (0, 0),
            };
            if (seen.reversals, seen.corrections) != expected {
                violations.push(format!(
                    "refund {id} is {}{} with {} reversal and {} correcting ledger transactions (expected {} and {})",
                    r.status,
                    if late_failure { " after succeeding" } else { "" },
                    seen.reversals,
                    seen.corrections,
                    expected.0,
                    expected.1
                ));
            }
        }
        for (po, (_, facts)) in &self.orders {
            let Some(o) = facts else { continue };
            let (reserved, refunded, fee) = per_order.remove(po).unwrap_or_default();
            let c = o.refunds;
            if (c.reserved_minor, c.refunded_minor, c.fee_refunded_minor) != (reserved, refunded, fee) {
                violations.push(format!(
                    "payment order {po}: reserved {} / refunded {} / fee refunded {}, but its refunds add up to {reserved} / {refunded} / {fee}",
                    c.reserved_minor, c.refunded_minor, c.fee_refunded_minor
                ));
            }
            if !(0 <= c.refunded_minor
                && c.refunded_minor <= c.reserved_minor
                && c.reserved_minor <= o.amount_minor)
            {
                violations.push(format!(
                    "payment order {po}: refunded {} and reserved {} must satisfy 0 <= refunded <= reserved <= amount {}",
                    c.refunded_minor, c.reserved_minor, o.amount_minor
                ));
            }
            if c.reserved_minor > 0 && o.status != PaymentStatus::Success {
                violations.push(format!("payment order {po} is {} but has refunds", o.status));
            }
        }
        for po in per_order.keys() {
            violations.push(format!("refunds name unknown payment order {po}"));
        }
        // One transfer posting per payout that went out, one reversal per bounced one.
        for (id, seen) in &self.payouts {
            let Some(p) = &seen.facts else {
                violations.push(format!(
                    "{} ledger transactions book unknown payout {id}",
                    seen.transfers + seen.reversals
                ));
                continue;
            };
            let expected = (u32::from(p.transferred), u32::from(p.reversed));
            if (seen.transfers, seen.reversals) != expected {
                violations.push(format!(
                    "payout {id} is {}{}{} with {} transfer and {} reversal ledger transactions (expected {} and {})",
                    p.status,
                    if p.transferred { ", transferred" } else { "" },
                    if p.reversed { ", reversed" } else { "" },
                    seen.transfers,
                    seen.reversals,
                    expected.0,
                    expected.1
                ));
            }
            if p.reversed && (!p.transferred || p.status != PayoutStatus::Failed) {
                violations.push(format!("payout {id} is {} with its transfer reversed", p.status));
            }
        }
        // Pending payouts hold their whole amount too.
        for (key, amount) in &self.payouts_held {
            let slot = held.entry(key.clone()).or_default();
            *slot = slot.saturating_add(*amount);
        }
        let keys: Vec<_> = held.keys().chain(self.held.keys()).cloned().collect();
        for key in keys {
            let (want, got) = (
                held.get(&key).copied().unwrap_or(0),
                self.held.get(&key).copied().unwrap_or(0),
            );
            if want != got {
                let (acct, seller, currency) = &key;
                violations.push(format!(
                    "wallet {acct}/{seller} {currency} holds {got} but its pending refunds and payouts hold {want}"
                ));
            }
        }
        violations.sort();
        violations.dedup();
        for v in violations {
            self.violation(v);
        }
    }

    pub fn report(mut self) -> Report {
        for (currency, (debits, credits)) in &self.totals.clone() {
            if debits != credits {
                self.violation(format!(
                    "{currency}: total debits {debits} != total credits {credits}"
                ));
            }
        }
        // Running totals against the entries, both ways.
        let keys: Vec<AccountKey> = self
            .from_entries
            .keys()
            .chain(self.running.keys())
            .cloned()
            .collect();
        for key in keys {
            let (entries, running) = (
                self.from_entries.get(&key).copied().unwrap_or_default(),
                self.running.get(&key).copied().unwrap_or_default(),
            );
            if entries != running {
                let (acct, account, currency) = &key;
                self.violation(format!(
                    "ledger account {account} of {acct} in {currency}: running totals {running:?} but its entries add up to {entries:?}"
                ));
            }
        }
        // Wallets against seller_payable in the ledger, both ways.
        let mut payable: BTreeMap<(AccountId, SellerId, Currency), i64> = BTreeMap::new();
        let mut overflowed = Vec::new();
        for ((acct, account, currency), t) in &self.from_entries {
            if let LedgerAccount::SellerPayable(seller) = account {
                match t.balance_minor(Direction::Credit) {
                    Some(b) => {
                        payable.insert((acct.clone(), seller.clone(), *currency), b);
                    }
                    None => overflowed.push(format!(
                        "seller_payable:{seller} of {acct} in {currency} overflows i64"
                    )),
                }
            }
        }
        for v in overflowed {
            self.violation(v);
        }
        let wallet_keys: Vec<_> = payable.keys().chain(self.wallets.keys()).cloned().collect();
        for key in wallet_keys {
            let (l, w) = (
                payable.get(&key).copied().unwrap_or(0),
                self.wallets.get(&key).copied().unwrap_or(0),
            );
            if l != w {
                let (acct, seller, currency) = &key;
                self.violation(format!(
                    "wallet {acct}/{seller} {currency} is {w} but seller_payable in the ledger is {l}"
                ));
            }
        }
        self.check_refunds();
        let mut order_violations = Vec::new();
        for (po, (n, facts)) in &self.orders {
            match (facts.as_ref().map(|o| o.status), n) {
                (Some(PaymentStatus::Success), 1)
                | (Some(PaymentStatus::Created | PaymentStatus::Executing | PaymentStatus::Failed), 0) => {}
                (Some(status), n) => order_violations.push(format!(
                    "payment order {po} is {status} with {n} ledger transactions"
                )),
                (None, n) => {
                    order_violations.push(format!("{n} ledger transactions name unknown payment order {po}"))
                }
            }
        }
        order_violations.sort();
        for v in order_violations {
            self.violation(v);
        }
        let mut twice: Vec<_> = self.charged.iter().filter(|(_, n)| **n > 1).collect();
        twice.sort();
        let twice: Vec<String> = twice
            .iter()
            .map(|(c, n)| format!("checkout {c} charged {n} times"))
            .collect();
        for v in twice {
            self.violation(v);
        }
        Report {
            ok: self.violations_total == 0,
            ledger_transactions: self.transactions,
            wallets: self.wallets_seen,
            payment_orders: self.orders_seen,
            refunds: self.refunds_seen,
            payouts: self.payouts_seen,
            balance_items: self.balance_items,
            outbox_events: self.outbox_events,
            totals_minor: self
                .totals
                .iter()
                .map(|(c, t)| (c.code().to_owned(), *t))
                .collect(),
            violations: self.violations,
            violations_total: self.violations_total,
        }
    }
}
