//! Connect: the sellers' connected accounts (Stripe's `account` object, `type=custom`), each
//! with one external bank account. The bank account numbers are the ones Stripe documents for
//! testing Connect payouts (`docs/connect/testing`): one pays out, the others fail with their
//! codes. The platform moves money to an account with a **transfer** (from its available
//! balance, a `transfer` balance transaction) and can take it back with a **reversal** (a
//! `transfer_reversal` one). A connected account pays its balance out to its bank with a
//! **payout** (`Stripe-Account` header): `pending`, then `in_transit`, then `paid` or `failed`
//! as its bank account's test number decides, on a clock (`SANDBOX_PAYOUT_SETTLE_MS`) that the
//! admin API can overtake, including Stripe's "paid, then failed".
//!
//! Each connected account has its own ledger of balance transactions (`State::account_txns`,
//! read with `GET /v1/balance_transactions` and the `Stripe-Account` header), as Stripe records
//! them on the account: a transfer arrives as a `payment` (its source the transfer's
//! `destination_payment`, `py_…`), a reversal leaves as a `payment_refund` (source the
//! reversal's `destination_payment_refund`, `pyr_…`), a payout is a `payout` (minus the amount,
//! source the `po_…`, named by the payout's `balance_transaction`) and a failed payout's money
//! comes back as a `payout_failure` (named by its `failure_balance_transaction`).

use crate::store::{
    new_id, now, now_ms, AccountTxn, Cause, State, RECORDS_MAX, TXN_PAYOUT, TXN_PAYOUT_FAILURE,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The platform's own bank account, where its payouts (`POST /v1/payouts` without
/// `Stripe-Account`) go; they always succeed unless the admin API fails them.
pub const PLATFORM_BANK_ACCOUNT: &str = "ba_sandboxplatformbank00001";

/// The US test routing number Stripe documents for Connect payouts.
pub const TEST_ROUTING_NUMBER: &str = "110000000";

/// What a payout to a test bank account does (Stripe's documented test account numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutOutcome {
    Succeeds,
    /// Fails with this `failure_code`.
    Fails(&'static str),
}

/// Stripe's US test bank account numbers for Connect payouts, and what each does.
pub const TEST_ACCOUNT_NUMBERS: &[(&str, PayoutOutcome)] = &[
    ("000123456789", PayoutOutcome::Succeeds),
    ("000111111116", PayoutOutcome::Fails("no_account")),
    ("000111111113", PayoutOutcome::Fails("account_closed")),
    ("000222222227", PayoutOutcome::Fails("insufficient_funds")),
    ("000333333335", PayoutOutcome::Fails("debit_not_authorized")),
    ("000444444440", PayoutOutcome::Fails("invalid_currency")),
];

pub fn outcome_of(account_number: &str) -> Option<PayoutOutcome> {
    TEST_ACCOUNT_NUMBERS
        .iter()
        .find(|(n, _)| *n == account_number)
        .map(|(_, o)| *o)
}

#[derive(Debug, Clone)]
pub struct BankAccount {
    pub id: String,
    pub country: String,
    pub currency: String,
    pub routing_number: String,
    pub last4: String,
    pub outcome: PayoutOutcome,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub created: i64,
    pub country: String,
    pub default_currency: String,
    pub email: Option<String>,
    pub bank: BankAccount,
    pub metadata: BTreeMap<String, String>,
    /// The account's own available balance by currency: transfers in, reversals out.
    pub balance: BTreeMap<String, i64>,
}

impl Account {
    /// Stripe's `account` object (the parts a platform reads), with its one bank account under
    /// `external_accounts`.
    pub fn json(&self) -> Value {
        let bank = json!({
            "id": self.bank.id, "object": "bank_account", "account": self.id,
            "account_holder_type": "individual", "bank_name": "STRIPE TEST BANK",
            "country": self.bank.country, "currency": self.bank.currency,
            "default_for_currency": true, "last4": self.bank.last4,
            "routing_number": self.bank.routing_number, "status": "new",
        });
        json!({
            "id": self.id, "object": "account", "type": "custom",
            "business_type": "individual", "charges_enabled": true, "payouts_enabled": true,
            "details_submitted": true, "country": self.country, "created": self.created,
            "default_currency": self.default_currency, "email": self.email,
            "metadata": self.metadata,
            "external_accounts": {"object": "list", "data": [bank], "has_more": false,
                                  "total_count": 1,
                                  "url": format!("/v1/accounts/{}/external_accounts", self.id)},
            "settings": {"payouts": {"schedule": {"interval": "manual"}}},
        })
    }
}

#[derive(Debug, Clone)]
pub struct Reversal {
    pub id: String,
    pub amount: i64,
    pub created: i64,
    pub balance_transaction: String,
    /// The refund of the transfer's destination payment on the connected account (`pyr_…`):
    /// the source of the account's `payment_refund` balance transaction.
    pub destination_payment_refund: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    pub transfer_group: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub balance_transaction: String,
    /// The payment the destination account received (`py_…`): the source of its `payment`
    /// balance transaction.
    pub destination_payment: String,
    pub reversals: Vec<Reversal>,
}

impl Transfer {
    pub fn amount_reversed(&self) -> i64 {
        self.reversals.iter().map(|r| r.amount).sum()
    }

    pub fn reversal_json(&self, r: &Reversal) -> Value {
        json!({
            "id": r.id, "object": "transfer_reversal", "amount": r.amount,
            "currency": self.currency, "created": r.created, "transfer": self.id,
            "balance_transaction": r.balance_transaction, "metadata": r.metadata,
            "destination_payment_refund": r.destination_payment_refund, "source_refund": null,
        })
    }

    /// Stripe's `transfer` object, its reversals newest first.
    pub fn json(&self) -> Value {
        let reversals: Vec<Value> = self
            .reversals
            .iter()
            .rev()
            .map(|r| self.reversal_json(r))
            .collect();
        json!({
            "id": self.id, "object": "transfer", "amount": self.amount,
            "amount_reversed": self.amount_reversed(), "currency": self.currency,
            "created": self.created, "destination": self.destination,
            "destination_payment": self.destination_payment,
            "balance_transaction": self.balance_transaction,
            "description": self.description, "metadata": self.metadata,
            "reversed": self.amount_reversed() == self.amount,
            "transfer_group": self.transfer_group, "livemode": false,
            "reversals": {"object": "list", "data": reversals, "has_more": false,
                          "total_count": self.reversals.len(),
                          "url": format!("/v1/transfers/{}/reversals", self.id)},
        })
    }
}

/// Stripe's `failure_message` for the codes the test bank accounts produce.
pub fn failure_message(code: &str) -> &'static str {
    match code {
        "no_account" => "The bank account details on file are probably incorrect. No bank account could be located with those details.",
        "account_closed" => "The bank account has been closed.",
        "insufficient_funds" => "Your Stripe account has insufficient funds to cover the payout.",
        "debit_not_authorized" => "Debit transactions are not approved on the bank account.",
        "invalid_currency" => "The bank was unable to process this payout because of its currency.",
        _ => "The payout could not be processed.",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
}

impl PayoutStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "pending",
            PayoutStatus::InTransit => "in_transit",
            PayoutStatus::Paid => "paid",
            PayoutStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Payout {
    pub id: String,
    /// The connected account it pays out of; empty for the platform's own payouts.
    pub account: String,
    pub created: i64,
    pub amount: i64,
    pub currency: String,
    pub arrival_date: i64,
    /// The account's bank account.
    pub destination: String,
    pub status: PayoutStatus,
    pub failure_code: Option<&'static str>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    /// The next scheduled move: (due at, ms; to), if any.
    pub scheduled: Option<(i64, PayoutStatus)>,
    /// The account's `payout` balance transaction (minus the amount), written at creation.
    pub balance_transaction: String,
    /// The account's `payout_failure` one (the amount back), once the payout has failed.
    pub failure_balance_transaction: Option<String>,
}

impl Payout {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "payout", "amount": self.amount,
            "arrival_date": self.arrival_date, "automatic": false,
            "balance_transaction": self.balance_transaction, "created": self.created,
            "currency": self.currency, "description": self.description,
            "destination": self.destination,
            "failure_balance_transaction": self.failure_balance_transaction,
            "failure_code": self.failure_code,
            "failure_message": self.failure_code.map(failure_message),
            "livemode": false, "metadata": self.metadata, "method": "standard",
            "source_type": "card", "status": self.status.as_str(), "type": "bank_account",
        })
    }
}

/// Why a payout cannot be made or moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutError {
    NoAccount,
    /// The account's available balance in the currency.
    Insufficient(i64),
    NoPayout,
    /// The move is not one a payout makes.
    Illegal(PayoutStatus),
}

/// What `POST /v1/payouts` asks, as a connected account.
#[derive(Debug, Clone)]
pub struct NewPayout<'a> {
    pub account: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
}

impl State {
    /// A payout of `amount` out of `account`'s balance, `pending`, scheduled to move on.
    pub fn create_payout(
        &mut self,
        new: NewPayout<'_>,
        cause: &Cause,
        api_version: &str,
    ) -> Result<Value, PayoutError> {
        let NewPayout {
            account,
            amount,
            currency,
            metadata,
            description,
        } = new;
        // `account` empty: the platform pays out of its available balance to its own bank.
        let platform = account.is_empty();
        let (held, bank) = if platform {
            (
                self.platform_available(currency),
                PLATFORM_BANK_ACCOUNT.to_string(),
            )
        } else {
            let a = self.accounts.get(account).ok_or(PayoutError::NoAccount)?;
            (a.balance.get(currency).copied().unwrap_or(0), a.bank.id.clone())
        };
        if amount > held {
            return Err(PayoutError::Insufficient(held));
        }
        if let Some(a) = self.accounts.get_mut(account) {
            *a.balance.entry(currency.to_string()).or_default() -= amount;
        }
        let created = now();
        let due = now_ms() + self.payout_settle_ms / 2;
        let id = new_id("po_", 24);
        let balance_transaction = if platform {
            self.transfer_txn(TXN_PAYOUT, &id, -amount, currency, &metadata)
        } else {
            self.account_txn(AccountTxn {
                account,
                kind: TXN_PAYOUT,
                source: &id,
                amount: -amount,
                currency,
                metadata: &metadata,
                transfer: None,
                transfer_reversal: None,
            })
        };
        let p = Payout {
            id,
            account: account.to_string(),
            created,
            amount,
            currency: currency.to_string(),
            arrival_date: crate::store::available_on(created),
            destination: bank,
            status: PayoutStatus::Pending,
            failure_code: None,
            metadata,
            description,
            scheduled: Some((due, PayoutStatus::InTransit)),
            balance_transaction,
            failure_balance_transaction: None,
        };
        let body = p.json();
        self.payout_timers.insert((due, p.id.clone()));
        if self.payout_order.len() >= RECORDS_MAX {
            if let Some(old) = self.payout_order.pop_front() {
                self.payouts.remove(&old);
            }
        }
        self.payout_order.push_back(p.id.clone());
        self.payouts.insert(p.id.clone(), p);
        let on = Some(account).filter(|a| !a.is_empty());
        self.emit_for(on, "payout.created", body.clone(), api_version, cause);
        Ok(body)
    }

    /// Moves a payout: `in_transit` from `pending`; `paid` or `failed` from `in_transit`;
    /// `failed` from `paid` (Stripe: a payout can fail after it showed paid). A failure puts
    /// the amount back in the account's balance. Returns the payout.
    pub fn move_payout(
        &mut self,
        id: &str,
        to: PayoutStatus,
        failure_code: Option<&'static str>,
        cause: &Cause,
    ) -> Result<Value, PayoutError> {
        self.move_payout_at(id, to, failure_code, cause, now_ms())
    }

    /// As `move_payout`, the move happening at `at_ms` (a timer's due time): the next move is
    /// scheduled from there.
    fn move_payout_at(
        &mut self,
        id: &str,
        to: PayoutStatus,
        failure_code: Option<&'static str>,
        cause: &Cause,
        at_ms: i64,
    ) -> Result<Value, PayoutError> {
        let p = self.payouts.get_mut(id).ok_or(PayoutError::NoPayout)?;
        let legal = matches!(
            (p.status, to),
            (PayoutStatus::Pending, PayoutStatus::InTransit)
                | (PayoutStatus::InTransit, PayoutStatus::Paid | PayoutStatus::Failed)
                | (PayoutStatus::Paid, PayoutStatus::Failed)
        );
        if !legal {
            return Err(PayoutError::Illegal(p.status));
        }
        p.status = to;
        p.scheduled = None;
        let outcome = self
            .accounts
            .get(&p.account)
            .map(|a| a.bank.outcome)
            .unwrap_or(PayoutOutcome::Succeeds);
        if to == PayoutStatus::InTransit {
            let due = at_ms.saturating_add(self.payout_settle_ms / 2);
            let next = match outcome {
                PayoutOutcome::Succeeds => PayoutStatus::Paid,
                PayoutOutcome::Fails(_) => PayoutStatus::Failed,
            };
            p.scheduled = Some((due, next));
            self.payout_timers.insert((due, id.to_string()));
        }
        if to == PayoutStatus::Failed {
            p.failure_code = Some(failure_code.unwrap_or(match outcome {
                PayoutOutcome::Fails(code) => code,
                PayoutOutcome::Succeeds => "could_not_process",
            }));
            let (account, currency, amount) = (p.account.clone(), p.currency.clone(), p.amount);
            let metadata = p.metadata.clone();
            if let Some(a) = self.accounts.get_mut(&account) {
                *a.balance.entry(currency.clone()).or_default() += amount;
            }
            let txn = if account.is_empty() {
                self.transfer_txn(TXN_PAYOUT_FAILURE, id, amount, &currency, &metadata)
            } else {
                self.account_txn(AccountTxn {
                    account: &account,
                    kind: TXN_PAYOUT_FAILURE,
                    source: id,
                    amount,
                    currency: &currency,
                    metadata: &metadata,
                    transfer: None,
                    transfer_reversal: None,
                })
            };
            if let Some(p) = self.payouts.get_mut(id) {
                p.failure_balance_transaction = Some(txn);
            }
        }
        let p = &self.payouts[id];
        let (body, account) = (p.json(), p.account.clone());
        let event = match to {
            PayoutStatus::Paid => "payout.paid",
            PayoutStatus::Failed => "payout.failed",
            _ => "payout.updated",
        };
        self.emit_for(
            Some(account.as_str()).filter(|a| !a.is_empty()),
            event,
            body.clone(),
            crate::store::DEFAULT_API_VERSION,
            cause,
        );
        Ok(body)
    }

    /// Applies the payout moves that are due by `now_ms`; how many moved.
    pub fn settle_due_payouts(&mut self, now_ms: i64) -> usize {
        let mut moved = 0;
        while let Some((at, id)) = self.payout_timers.first().cloned() {
            if at > now_ms {
                break;
            }
            self.payout_timers.pop_first();
            // Stale if the payout was moved (or evicted) meanwhile.
            let Some((_, to)) = self
                .payouts
                .get(&id)
                .and_then(|p| p.scheduled)
                .filter(|(due, _)| *due == at)
            else {
                continue;
            };
            if self.move_payout_at(&id, to, None, &Cause::default(), at).is_ok() {
                moved += 1;
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_documented_number_has_its_outcome_and_others_have_none() {
        assert_eq!(outcome_of("000123456789"), Some(PayoutOutcome::Succeeds));
        assert_eq!(
            outcome_of("000111111113"),
            Some(PayoutOutcome::Fails("account_closed"))
        );
        assert_eq!(outcome_of("123456789"), None);
        let failing = TEST_ACCOUNT_NUMBERS
            .iter()
            .filter(|(_, o)| matches!(o, PayoutOutcome::Fails(_)))
            .count();
        assert_eq!(failing, 5);
    }
}
