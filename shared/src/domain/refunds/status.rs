//! The refund state machine (design §8, §11).
//!
//! ```text
//! PENDING ──psp_succeeded──▶ SUCCEEDED
//!    │                          │
//!    │ psp_failed               │ psp_failed (Stripe: a refund can fail after it succeeded)
//!    ▼                          ▼
//!  FAILED ◀─────────────────────┘
//! ```
//! FAILED is final. A refund that fails after it succeeded keeps its history: the ledger gets a
//! correcting transaction, never an edit.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

/// What the PSP says happened to a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundEvent {
    PspSucceeded,
    PspFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal refund transition: {event:?} in status {from}")]
pub struct IllegalRefundTransition {
    pub from: RefundStatus,
    pub event: RefundEvent,
}

/// What a legal transition does to the money.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundMove {
    /// PENDING → SUCCEEDED: the money went back to the buyer; the reversal posts.
    Succeeded,
    /// PENDING → FAILED: nothing moved; the reservation and the hold are released.
    Failed,
    /// SUCCEEDED → FAILED: the money came back to us; the correcting transaction posts.
    Reversed,
}

impl RefundStatus {
    pub fn apply(self, event: RefundEvent) -> Result<(RefundStatus, RefundMove), IllegalRefundTransition> {
        use RefundEvent as E;
        use RefundStatus as S;
        match (self, event) {
            (S::Pending, E::PspSucceeded) => Ok((S::Succeeded, RefundMove::Succeeded)),
            (S::Pending, E::PspFailed) => Ok((S::Failed, RefundMove::Failed)),
            (S::Succeeded, E::PspFailed) => Ok((S::Failed, RefundMove::Reversed)),
            (from, event) => Err(IllegalRefundTransition { from, event }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "PENDING",
            RefundStatus::Succeeded => "SUCCEEDED",
            RefundStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RefundStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PENDING" => RefundStatus::Pending,
            "SUCCEEDED" => RefundStatus::Succeeded,
            "FAILED" => RefundStatus::Failed,
            other => return Err(format!("unknown refund status {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefundEvent as E;
    use RefundStatus as S;

    const ALL_S: [S; 3] = [S::Pending, S::Succeeded, S::Failed];
    const ALL_E: [E; 2] = [E::PspSucceeded, E::PspFailed];

    #[test]
    fn exactly_three_transitions_are_legal() {
        assert_eq!(
            S::Pending.apply(E::PspSucceeded),
            Ok((S::Succeeded, RefundMove::Succeeded))
        );
        assert_eq!(
            S::Pending.apply(E::PspFailed),
            Ok((S::Failed, RefundMove::Failed))
        );
        assert_eq!(
            S::Succeeded.apply(E::PspFailed),
            Ok((S::Failed, RefundMove::Reversed))
        );
        let legal = ALL_S
            .iter()
            .flat_map(|s| ALL_E.iter().map(move |e| s.apply(*e)))
            .filter(Result::is_ok)
            .count();
        assert_eq!(legal, 3);
    }

    #[test]
    fn failed_is_final_and_success_does_not_repeat() {
        for e in ALL_E {
            assert_eq!(
                S::Failed.apply(e),
                Err(IllegalRefundTransition {
                    from: S::Failed,
                    event: e
                })
            );
        }
        assert!(S::Succeeded.apply(E::PspSucceeded).is_err());
    }

    #[test]
    fn names_roundtrip() {
        for s in ALL_S {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        assert!("REFUNDED".parse::<S>().is_err());
    }
}
