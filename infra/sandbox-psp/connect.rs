//! Connect: the sellers' connected accounts (Stripe's `account` object, `type=custom`), each
//! with one external bank account. The bank account numbers are the ones Stripe documents for
//! testing Connect payouts (`docs/connect/testing`): one pays out, the others fail with their
//! codes. The platform moves money to an account with a **transfer** (from its available
//! balance, a `transfer` balance transaction) and can take it back with a **reversal** (a
//! `transfer_reversal` one). The accounts' payouts come next (issue 11).

use serde_json::{json, Value};
use std::collections::BTreeMap;

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
            "destination_payment_refund": null, "source_refund": null,
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
