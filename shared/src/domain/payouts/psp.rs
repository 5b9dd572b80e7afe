//! What the payout executor asks the PSP, and what it answers, in our terms (the Stripe wire
//! format is in `adapters::stripe`). Each call carries its own idempotency key, derived from
//! the payout id, so a retry, a redrive or a crash between the calls never makes a second
//! transfer, payout or reversal.

use chrono::NaiveDate;

use super::{Payout, PayoutEvent};
use crate::domain::currency::Currency;
use crate::domain::ids::PayoutId;
use crate::domain::money::Money;
use crate::domain::psp::{PspAccountId, PspPayoutId, PspTransferId, PspTransferReversalId};

/// `POST /v1/transfers`: the payout's amount from the platform to the seller's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspTransferRequest {
    pub payout_id: PayoutId,
    pub amount: Money,
    pub destination: PspAccountId,
    pub idempotency_key: String,
}

impl PspTransferRequest {
    pub fn of(p: &Payout) -> Self {
        PspTransferRequest {
            payout_id: p.id.clone(),
            amount: p.amount,
            destination: p.destination.clone(),
            idempotency_key: p.transfer_key(),
        }
    }
}

/// `POST /v1/payouts` as the seller's account: the same amount to its bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspPayoutRequest {
    pub payout_id: PayoutId,
    pub amount: Money,
    pub account: PspAccountId,
    pub idempotency_key: String,
}

impl PspPayoutRequest {
    pub fn of(p: &Payout) -> Self {
        PspPayoutRequest {
            payout_id: p.id.clone(),
            amount: p.amount,
            account: p.destination.clone(),
            idempotency_key: p.psp_payout_key(),
        }
    }
}

/// `POST /v1/transfers/{id}/reversals`: the whole transfer of a payout that bounced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspReversalRequest {
    pub payout_id: PayoutId,
    pub transfer: PspTransferId,
    pub idempotency_key: String,
}

impl PspReversalRequest {
    /// `None` if nothing was transferred.
    pub fn of(p: &Payout) -> Option<Self> {
        Some(PspReversalRequest {
            payout_id: p.id.clone(),
            transfer: p.psp_transfer.clone()?,
            idempotency_key: p.reversal_key(),
        })
    }
}

/// A payout's status at the PSP (Stripe's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PspPayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
    Canceled,
}

impl PspPayoutStatus {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => PspPayoutStatus::Pending,
            "in_transit" => PspPayoutStatus::InTransit,
            "paid" => PspPayoutStatus::Paid,
            "failed" => PspPayoutStatus::Failed,
            "canceled" => PspPayoutStatus::Canceled,
            _ => return None,
        })
    }

    /// What it means for our machine once the transfer is made: `paid` and `failed` move it;
    /// `pending` and `in_transit` are the `IN_TRANSIT` we already are; a canceled payout never
    /// reached the bank, so its money comes back as a failure's does.
    pub fn event(self) -> Option<PayoutEvent> {
        match self {
            PspPayoutStatus::Paid => Some(PayoutEvent::PspPaid),
            PspPayoutStatus::Failed | PspPayoutStatus::Canceled => Some(PayoutEvent::PspFailed),
            PspPayoutStatus::Pending | PspPayoutStatus::InTransit => None,
        }
    }
}

/// The seller's connected account as the PSP shows it: enough to know it can be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspAccount {
    pub id: PspAccountId,
    pub payouts_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspTransfer {
    pub id: PspTransferId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspPayout {
    pub id: PspPayoutId,
    pub status: PspPayoutStatus,
    pub arrival_date: Option<NaiveDate>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

/// What a `payout.*` webhook says about one payout. Connect events carry the connected
/// account they happened on; the payout carries our id as we sent it (`metadata[payout_id]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspPayoutNotice {
    pub payout: PspPayout,
    pub payout_ref: Option<String>,
    pub account: Option<PspAccountId>,
    pub amount_minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PspReversal {
    pub id: PspTransferReversalId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{AccountId, SellerId};
    use crate::domain::payouts::PayoutRequest;
    use rust_decimal::Decimal;

    #[test]
    fn each_call_has_its_own_key_derived_from_the_payout() {
        let usd = Currency::parse("USD").unwrap();
        let mut p = Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_a").unwrap(),
            &PayoutRequest::new(SellerId::parse("s1").unwrap(), Decimal::new(5, 0), usd).unwrap(),
            Some(PspAccountId::parse("acct_1S").unwrap()),
            false,
            chrono::Utc::now(),
        )
        .unwrap();
        let (t, o) = (PspTransferRequest::of(&p), PspPayoutRequest::of(&p));
        assert_eq!(t.idempotency_key, format!("{}-transfer", p.id));
        assert_eq!(o.idempotency_key, format!("{}-payout", p.id));
        assert_eq!(
            (t.destination.as_str(), o.account.as_str()),
            ("acct_1S", "acct_1S")
        );
        assert!(PspReversalRequest::of(&p).is_none(), "nothing transferred yet");
        p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
        assert_eq!(
            PspReversalRequest::of(&p).unwrap().idempotency_key,
            format!("{}-reversal", p.id)
        );
        assert_eq!(PspPayoutStatus::parse("in_transit").unwrap().event(), None);
        assert_eq!(
            PspPayoutStatus::parse("failed").unwrap().event(),
            Some(PayoutEvent::PspFailed)
        );
        assert!(PspPayoutStatus::parse("sent").is_none());
    }
}
