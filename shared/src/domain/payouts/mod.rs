//! Payouts (design §4, §5 `POST /v1/payouts`, §13, §14): a seller's available balance sent to
//! their bank. At the PSP (Stripe Connect) that is two objects: a **transfer** from the
//! platform's balance to the seller's connected account, then a **payout** from that account to
//! its bank. A payout is its own record with its own machine; its money moves as a hold in the
//! wallet while it waits, and as ledger entries once it is sent.
//!
//! What each step does to the seller's wallet and the ledger:
//!
//! | step | event | wallet | ledger |
//! |---|---|---|---|
//! | created (`PENDING`) | `PAYOUT_REQUESTED` | `held += A` (on condition `available ≥ A`) | nothing: the money is still owed |
//! | canceled (`→ CANCELED`) | `PAYOUT_CANCELED` | `held −= A` | nothing |
//! | refused before anything was sent (`PENDING → FAILED`) | `PAYOUT_REFUSED` | `held −= A` | nothing |
//! | transfer made (`→ IN_TRANSIT`) | `PAYOUT_SENT` | `held −= A`, `balance −= A` | `ltx_<payout>_transfer`: debit `seller_payable:<s>` A, credit `psp_receivable` A |
//! | paid (`→ PAID`) | `PAYOUT_PAID` | nothing | nothing |
//! | failed after the transfer (`IN_TRANSIT/PAID → FAILED`) | `PAYOUT_FAILED` | nothing yet: the money is in the seller's connected account | nothing yet; the executor reverses the transfer |
//! | the transfer reversed (status stays `FAILED`) | `PAYOUT_RETURNED` | `balance += A` | `ltx_<payout>_returned`: debit `psp_receivable` A, credit `seller_payable:<s>` A |
//!
//! So `balance` always equals `seller_payable:<s>`, `held` is pending refunds' parts plus
//! pending payouts, and `psp_receivable` follows the platform's balance at the PSP step by step
//! (the transfer and its reversal are rows of the settlement file). `seller_payout_clearing` is
//! not needed: a Stripe transfer leaves the platform's balance at once, and nothing of ours is
//! in flight between the calls.

pub mod psp;
pub mod schedule;
pub mod status;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

pub use psp::{
    PspAccount, PspPayout, PspPayoutNotice, PspPayoutRequest, PspPayoutStatus, PspReversal,
    PspReversalRequest, PspTransfer, PspTransferRequest,
};
pub use status::{IllegalPayoutTransition, PayoutEvent, PayoutMove, PayoutStatus};

use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, PayoutId, SellerId};
use crate::domain::money::{Money, MoneyError};
use crate::domain::psp::{PspAccountId, PspPayoutId, PspTransferId, PspTransferReversalId};

/// A validated `POST /v1/payouts` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    pub seller_id: SellerId,
    pub amount: Money,
}

impl PayoutRequest {
    /// `amount` exact in `currency` (no more decimals than it has), and positive.
    pub fn new(seller_id: SellerId, amount: Decimal, currency: Currency) -> Result<Self, PayoutRefusal> {
        let amount = Money::from_decimal(amount, currency).map_err(PayoutRefusal::Amount)?;
        amount.check_charge().map_err(PayoutRefusal::Amount)?;
        Ok(PayoutRequest { seller_id, amount })
    }

    /// SHA-256 of the request's canonical form (`10`, `"10.00"` and `10.0` are one amount).
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "payout\n{}\n{}\n{}",
            self.seller_id,
            self.amount.currency().code(),
            self.amount.minor()
        );
        hex::encode(Sha256::digest(text.as_bytes()))
    }
}

/// Only a payout that failed after its transfer was made can have the transfer reversed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payout {id} is {status} without a transfer to reverse")]
pub struct NotReversible {
    pub id: PayoutId,
    pub status: PayoutStatus,
}

/// Why a payout cannot be made. Each is a `400` with its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutRefusal {
    #[error(
        "seller {seller} has no payout account: record one with PUT /v1/sellers/{seller}/payout_account"
    )]
    AccountMissing { seller: SellerId },
    #[error("seller {seller} has no {currency} balance")]
    NoWallet { seller: SellerId, currency: Currency },
    #[error("amount {requested} {currency} exceeds the available balance of {available} {currency}", currency = .available.currency())]
    BalanceInsufficient { requested: Money, available: Money },
    #[error("amount {0}")]
    Amount(MoneyError),
}

impl PayoutRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            PayoutRefusal::AccountMissing { .. } => "payout_account_missing",
            PayoutRefusal::NoWallet { .. } | PayoutRefusal::BalanceInsufficient { .. } => {
                "balance_insufficient"
            }
            PayoutRefusal::Amount(MoneyError::TooPrecise { .. }) => "amount_too_precise",
            PayoutRefusal::Amount(MoneyError::NotPositive) => "amount_not_positive",
            PayoutRefusal::Amount(MoneyError::TooLarge { .. } | MoneyError::Overflow) => "amount_too_large",
            PayoutRefusal::Amount(_) => "amount_invalid",
        }
    }

    /// The request parameter it is about.
    pub fn param(&self) -> Option<&'static str> {
        match self {
            PayoutRefusal::AccountMissing { .. } => Some("seller_id"),
            PayoutRefusal::NoWallet { .. } => Some("currency"),
            _ => Some("amount"),
        }
    }
}

/// A seller's wallet in one currency as read: what a payout may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    pub balance: Money,
    pub held: Money,
}

impl Available {
    /// `balance − held`: never negative in a consistent wallet.
    pub fn amount(&self) -> Result<Money, MoneyError> {
        self.balance.checked_sub(self.held)
    }

    /// Whether this wallet, as read, can pay `request` out.
    pub fn covers(&self, request: &PayoutRequest) -> Result<(), PayoutRefusal> {
        let available = self.amount().map_err(PayoutRefusal::Amount)?;
        if available.currency() != request.amount.currency() {
            return Err(PayoutRefusal::Amount(MoneyError::CurrencyMismatch(
                available.currency(),
                request.amount.currency(),
            )));
        }
        if request.amount.minor() > available.minor() {
            return Err(PayoutRefusal::BalanceInsufficient {
                requested: request.amount,
                available,
            });
        }
        Ok(())
    }
}

impl PayoutRefusal {
    /// The refusal of a hold whose condition failed: the wallet as the store found it
    /// (`None`: the seller has no balance in that currency).
    pub fn short(seller: &SellerId, requested: Money, available_minor: Option<i64>) -> Self {
        match available_minor {
            None => PayoutRefusal::NoWallet {
                seller: seller.clone(),
                currency: requested.currency(),
            },
            Some(a) => PayoutRefusal::BalanceInsufficient {
                requested,
                available: Money::from_minor(a, requested.currency()),
            },
        }
    }
}

/// One payout of one seller's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub id: PayoutId,
    pub account_id: AccountId,
    pub seller_id: SellerId,
    pub amount: Money,
    pub status: PayoutStatus,
    /// Made by the schedule (the whole available balance), not by a request.
    pub automatic: bool,
    /// The seller's connected account when it was created: where the transfer goes.
    pub destination: PspAccountId,
    pub psp_transfer: Option<PspTransferId>,
    pub psp_payout: Option<PspPayoutId>,
    /// Once a payout that failed after it was sent has had its transfer reversed.
    pub psp_reversal: Option<PspTransferReversalId>,
    /// When the PSP expects the bank to have it.
    pub arrival_date: Option<NaiveDate>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Payout {
    /// A new `PENDING` payout of `request` to the seller's connected account. Whether the
    /// wallet has the amount available is the store's to decide, in the write that holds it
    /// (a read before it would only be a guess); a caller that has read the wallet may ask
    /// [`Available::covers`] first.
    pub fn open(
        id: PayoutId,
        account_id: AccountId,
        request: &PayoutRequest,
        destination: Option<PspAccountId>,
        automatic: bool,
        now: DateTime<Utc>,
    ) -> Result<Payout, PayoutRefusal> {
        let destination = destination.ok_or_else(|| PayoutRefusal::AccountMissing {
            seller: request.seller_id.clone(),
        })?;
        Ok(Payout {
            id,
            account_id,
            seller_id: request.seller_id.clone(),
            amount: request.amount,
            status: PayoutStatus::Pending,
            automatic,
            destination,
            psp_transfer: None,
            psp_payout: None,
            psp_reversal: None,
            arrival_date: None,
            failure_code: None,
            failure_message: None,
            created_at: now,
            updated_at: now,
        })
    }

    /// Moves it by `event`; an illegal move changes nothing.
    pub fn apply(
        &mut self,
        event: PayoutEvent,
        now: DateTime<Utc>,
    ) -> Result<PayoutMove, IllegalPayoutTransition> {
        let (to, moved) = self.status.apply(event)?;
        self.status = to;
        self.updated_at = now;
        Ok(moved)
    }

    /// Records the reversal of a bounced payout's transfer: the money is the platform's again
    /// and the seller's available. `Ok(false)` if it was recorded before (nothing to do).
    pub fn reversed(
        &mut self,
        reversal: PspTransferReversalId,
        now: DateTime<Utc>,
    ) -> Result<bool, NotReversible> {
        if self.status != PayoutStatus::Failed || self.psp_transfer.is_none() {
            return Err(NotReversible {
                id: self.id.clone(),
                status: self.status,
            });
        }
        if self.psp_reversal.is_some() {
            return Ok(false);
        }
        self.psp_reversal = Some(reversal);
        self.updated_at = now;
        Ok(true)
    }

    /// What this payout has moved from the seller's available balance into held, now.
    pub fn held_minor(&self) -> i64 {
        if self.status.holds() {
            self.amount.minor()
        } else {
            0
        }
    }

    /// What a move does to the seller's wallet: `(balance, held)` deltas in minor units. (The
    /// transfer's reversal, after a bounce, is `(A, 0)`.)
    pub fn wallet_delta(&self, moved: PayoutMove) -> (i64, i64) {
        let a = self.amount.minor();
        match moved {
            PayoutMove::Released => (0, -a),
            PayoutMove::Transferred => (-a, -a),
            PayoutMove::Paid | PayoutMove::Bounced => (0, 0),
        }
    }

    /// The PSP's idempotency keys, derived from the payout id: however often the executor
    /// comes back (a retry, a redrive, a crash between the calls), one transfer, one payout and
    /// one reversal.
    pub fn transfer_key(&self) -> String {
        format!("{}-transfer", self.id)
    }

    pub fn psp_payout_key(&self) -> String {
        format!("{}-payout", self.id)
    }

    pub fn reversal_key(&self) -> String {
        format!("{}-reversal", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::parse("USD").unwrap())
    }

    fn request(amount: &str) -> Result<PayoutRequest, PayoutRefusal> {
        PayoutRequest::new(
            SellerId::parse("s1").unwrap(),
            amount.parse().unwrap(),
            Currency::parse("USD").unwrap(),
        )
    }

    /// A payout of `amount` from a wallet read as `balance` with `held` of it held.
    fn open(amount: &str, balance: i64, held: i64) -> Result<Payout, PayoutRefusal> {
        let request = request(amount)?;
        Available {
            balance: usd(balance),
            held: usd(held),
        }
        .covers(&request)?;
        Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_a").unwrap(),
            &request,
            Some(PspAccountId::parse("acct_1Seller").unwrap()),
            false,
            Utc::now(),
        )
    }

    #[test]
    fn held_money_is_never_available() {
        // 100.00 of which 30.00 is held by a pending refund: 70.00 can go, 70.01 cannot.
        assert_eq!(open("70.00", 10_000, 3_000).unwrap().amount, usd(7_000));
        match open("70.01", 10_000, 3_000) {
            Err(e @ PayoutRefusal::BalanceInsufficient { .. }) => {
                assert_eq!(e.code(), "balance_insufficient");
                assert!(e.to_string().contains("available balance of 70.00 USD"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_amounts_and_missing_accounts_are_refused_with_their_codes() {
        for (amount, code) in [
            ("0", "amount_not_positive"),
            ("-1", "amount_not_positive"),
            ("1.001", "amount_too_precise"),
        ] {
            assert_eq!(request(amount).unwrap_err().code(), code, "{amount}");
        }
        let req = request("1.00").unwrap();
        let no_account = Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_a").unwrap(),
            &req,
            None,
            false,
            Utc::now(),
        );
        assert_eq!(no_account.unwrap_err().code(), "payout_account_missing");
        let no_wallet = PayoutRefusal::short(&req.seller_id, req.amount, None);
        assert_eq!(
            (no_wallet.code(), no_wallet.param()),
            ("balance_insufficient", Some("currency"))
        );
        let short = PayoutRefusal::short(&req.seller_id, req.amount, Some(99));
        assert!(
            short.to_string().contains("available balance of 0.99 USD"),
            "{short}"
        );
    }

    #[test]
    fn one_amount_one_fingerprint() {
        assert_eq!(
            request("10").unwrap().fingerprint(),
            request("10.00").unwrap().fingerprint()
        );
        assert_ne!(
            request("10").unwrap().fingerprint(),
            request("10.01").unwrap().fingerprint()
        );
    }

    /// Every path through the machine leaves the wallet where the table in the module's
    /// documentation says: the hold always released, the balance down only while sent.
    #[test]
    fn every_path_releases_the_hold_and_the_balance_follows_the_transfer() {
        use PayoutEvent as E;
        // The last figure: the balance once a bounced payout's transfer is reversed.
        let paths: [(&[E], i64, i64); 5] = [
            (&[E::Cancel], 0, 0),
            (&[E::Refused], 0, 0),
            (&[E::Sent, E::PspPaid], -10_000, -10_000),
            (&[E::Sent, E::PspFailed], -10_000, 0),
            (&[E::Sent, E::PspPaid, E::PspFailed], -10_000, 0),
        ];
        for (events, balance_after, balance_reversed) in paths {
            let mut p = open("100.00", 10_000, 0).unwrap();
            // Creating it held the amount.
            let (mut balance, mut held) = (0i64, p.held_minor());
            assert_eq!(held, 10_000);
            for e in events {
                let moved = p.apply(*e, Utc::now()).unwrap();
                if moved == PayoutMove::Transferred {
                    p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
                }
                let (b, h) = p.wallet_delta(moved);
                balance += b;
                held += h;
                assert_eq!(held, p.held_minor(), "{events:?}: held follows the status");
            }
            assert_eq!((balance, held), (balance_after, 0), "{events:?}");
            let reversal = PspTransferReversalId::parse("trr_1").unwrap();
            match p.reversed(reversal.clone(), Utc::now()) {
                Ok(true) => {
                    balance += p.amount.minor();
                    assert_eq!(p.reversed(reversal, Utc::now()), Ok(false), "once");
                }
                Ok(false) => panic!("{events:?}: reversed before"),
                // Nothing to reverse: not failed, or failed before any transfer was made.
                Err(e) => assert!(
                    p.status != PayoutStatus::Failed || p.psp_transfer.is_none(),
                    "{e}"
                ),
            }
            assert_eq!(balance, balance_reversed, "{events:?}");
        }
    }

    #[test]
    fn an_illegal_move_changes_nothing() {
        let mut p = open("1.00", 100, 0).unwrap();
        p.apply(PayoutEvent::Cancel, Utc::now()).unwrap();
        let before = p.clone();
        assert!(p.apply(PayoutEvent::Sent, Utc::now()).is_err());
        assert_eq!(p, before);
    }
}
