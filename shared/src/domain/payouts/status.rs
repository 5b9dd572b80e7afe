//! The payout state machine (design §4; Stripe's Connect transfers and payouts).
//!
//! ```text
//!            cancel                         sent (transfer + payout made)
//! CANCELED ◀──────── PENDING ─────────────────────────▶ IN_TRANSIT ──psp_paid──▶ PAID
//!                       │                                    │                     │
//!                       │ refused (the PSP said no for good) │ psp_failed          │ psp_failed
//!                       ▼                                    ▼                     │ (Stripe: a paid
//!                     FAILED ◀───────────────────────────────┴─────────────────────┘  payout can fail)
//! ```
//! CANCELED and FAILED are final. A payout that fails after it was sent keeps its history: the
//! executor then reverses the transfer at the PSP, and only when that reversal is made does
//! the money come back on our books (a correcting transaction, never an edit).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayoutStatus {
    Pending,
    InTransit,
    Paid,
    Failed,
    Canceled,
}

/// What happens to a payout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutEvent {
    /// The seller's platform asked to stop it before it was sent.
    Cancel,
    /// The executor made the transfer and the connected account's payout.
    Sent,
    /// The PSP refused the transfer or the payout for good (not a retryable failure).
    Refused,
    /// `payout.paid`.
    PspPaid,
    /// `payout.failed`.
    PspFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal payout transition: {event:?} in status {from}")]
pub struct IllegalPayoutTransition {
    pub from: PayoutStatus,
    pub event: PayoutEvent,
}

/// What a legal transition does to the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutMove {
    /// PENDING → CANCELED or FAILED: nothing left the platform; the hold is released.
    Released,
    /// PENDING → IN_TRANSIT: the transfer left the platform's balance; the hold becomes a debit
    /// of the seller's balance, and the transfer posts.
    Transferred,
    /// IN_TRANSIT → PAID: the seller's bank has it; no money moves on our books.
    Paid,
    /// IN_TRANSIT or PAID → FAILED: the bank sent it back to the seller's connected account;
    /// the executor reverses the transfer, and its reversal (not this move) brings the money
    /// back onto our books.
    Bounced,
}

impl PayoutStatus {
    pub fn apply(self, event: PayoutEvent) -> Result<(PayoutStatus, PayoutMove), IllegalPayoutTransition> {
        use PayoutEvent as E;
        use PayoutStatus as S;
        match (self, event) {
            (S::Pending, E::Cancel) => Ok((S::Canceled, PayoutMove::Released)),
            (S::Pending, E::Refused) => Ok((S::Failed, PayoutMove::Released)),
            (S::Pending, E::Sent) => Ok((S::InTransit, PayoutMove::Transferred)),
            (S::InTransit, E::PspPaid) => Ok((S::Paid, PayoutMove::Paid)),
            (S::InTransit | S::Paid, E::PspFailed) => Ok((S::Failed, PayoutMove::Bounced)),
            (from, event) => Err(IllegalPayoutTransition { from, event }),
        }
    }

    /// Money is held for it in the seller's wallet (not yet sent).
    pub fn holds(self) -> bool {
        self == PayoutStatus::Pending
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStatus::Pending => "PENDING",
            PayoutStatus::InTransit => "IN_TRANSIT",
            PayoutStatus::Paid => "PAID",
            PayoutStatus::Failed => "FAILED",
            PayoutStatus::Canceled => "CANCELED",
        }
    }
}

impl fmt::Display for PayoutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayoutStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PENDING" => PayoutStatus::Pending,
            "IN_TRANSIT" => PayoutStatus::InTransit,
            "PAID" => PayoutStatus::Paid,
            "FAILED" => PayoutStatus::Failed,
            "CANCELED" => PayoutStatus::Canceled,
            other => return Err(format!("unknown payout status {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PayoutEvent as E;
    use PayoutStatus as S;

    const ALL_S: [S; 5] = [S::Pending, S::InTransit, S::Paid, S::Failed, S::Canceled];
    const ALL_E: [E; 5] = [E::Cancel, E::Sent, E::Refused, E::PspPaid, E::PspFailed];

    #[test]
    fn exactly_six_transitions_are_legal() {
        let legal: Vec<(S, E, S, PayoutMove)> = ALL_S
            .iter()
            .flat_map(|s| ALL_E.iter().map(move |e| (*s, *e)))
            .filter_map(|(s, e)| s.apply(e).ok().map(|(to, m)| (s, e, to, m)))
            .collect();
        assert_eq!(
            legal,
            vec![
                (S::Pending, E::Cancel, S::Canceled, PayoutMove::Released),
                (S::Pending, E::Sent, S::InTransit, PayoutMove::Transferred),
                (S::Pending, E::Refused, S::Failed, PayoutMove::Released),
                (S::InTransit, E::PspPaid, S::Paid, PayoutMove::Paid),
                (S::InTransit, E::PspFailed, S::Failed, PayoutMove::Bounced),
                (S::Paid, E::PspFailed, S::Failed, PayoutMove::Bounced),
            ]
        );
    }

    #[test]
    fn final_states_stay_final_and_nothing_is_sent_twice() {
        for from in [S::Failed, S::Canceled] {
            for e in ALL_E {
                assert_eq!(from.apply(e), Err(IllegalPayoutTransition { from, event: e }));
            }
        }
        for from in [S::InTransit, S::Paid] {
            assert!(from.apply(E::Sent).is_err(), "{from}");
            assert!(
                from.apply(E::Cancel).is_err(),
                "{from}: only a pending payout can be canceled"
            );
        }
        assert!(S::Paid.apply(E::PspPaid).is_err());
    }

    #[test]
    fn only_a_pending_payout_holds_money_and_names_roundtrip() {
        for s in ALL_S {
            assert_eq!(s.holds(), s == S::Pending);
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        assert!("SENT".parse::<S>().is_err());
    }
}
