//! The payment-order state machine (design §11). Checkouts and their orders share it: all
//! orders of a checkout move together because one PSP charge pays for all of them.
//!
//! ```text
//! CREATED ──submit──▶ EXECUTING ──psp_succeeded──▶ SUCCESS
//!    │                 │    ▲
//!    │       psp_failed│    │retry
//!    │                 ▼    │
//!    └──psp_rejected──▶ FAILED
//! ```
//! SUCCESS is final: money moved. Refunds and payouts are their own records with their own
//! machines; they never rewrite a successful payment.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Created,
    Executing,
    Success,
    Failed,
}

/// What happened to a payment; the machine decides the next status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEvent {
    /// We created the PSP session and stored its token.
    Submitted,
    /// The PSP refused to create the session (a non-retryable 4xx).
    PspRejected,
    /// The signed webhook says the charge succeeded.
    PspSucceeded,
    /// The signed webhook says the charge failed or the session expired.
    PspFailed,
    /// The buyer tries again after a failure.
    Retried,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event:?} in status {from}")]
pub struct IllegalTransition {
    pub from: PaymentStatus,
    pub event: PaymentEvent,
}

impl PaymentStatus {
    pub fn apply(self, event: PaymentEvent) -> Result<PaymentStatus, IllegalTransition> {
        use PaymentEvent as E;
        use PaymentStatus as S;
        match (self, event) {
            (S::Created, E::Submitted) => Ok(S::Executing),
            (S::Created, E::PspRejected) => Ok(S::Failed),
            (S::Executing, E::PspSucceeded) => Ok(S::Success),
            (S::Executing, E::PspFailed) => Ok(S::Failed),
            (S::Failed, E::Retried) => Ok(S::Executing),
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, PaymentStatus::Success)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "CREATED",
            PaymentStatus::Executing => "EXECUTING",
            PaymentStatus::Success => "SUCCESS",
            PaymentStatus::Failed => "FAILED",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "CREATED" => PaymentStatus::Created,
            "EXECUTING" => PaymentStatus::Executing,
            "SUCCESS" => PaymentStatus::Success,
            "FAILED" => PaymentStatus::Failed,
            other => return Err(format!("unknown payment status {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentEvent as E;
    use PaymentStatus as S;

    const ALL_S: [S; 4] = [S::Created, S::Executing, S::Success, S::Failed];
    const ALL_E: [E; 5] = [
        E::Submitted,
        E::PspRejected,
        E::PspSucceeded,
        E::PspFailed,
        E::Retried,
    ];

    #[test]
    fn legal_paths() {
        assert_eq!(S::Created.apply(E::Submitted), Ok(S::Executing));
        assert_eq!(S::Executing.apply(E::PspSucceeded), Ok(S::Success));
        assert_eq!(S::Executing.apply(E::PspFailed), Ok(S::Failed));
        assert_eq!(S::Failed.apply(E::Retried), Ok(S::Executing));
        assert_eq!(S::Created.apply(E::PspRejected), Ok(S::Failed));
    }

    #[test]
    fn exactly_five_transitions_are_legal() {
        let legal = ALL_S
            .iter()
            .flat_map(|s| ALL_E.iter().map(move |e| s.apply(*e)))
            .filter(Result::is_ok)
            .count();
        assert_eq!(legal, 5);
    }

    #[test]
    fn success_is_final_and_late_failure_is_illegal() {
        for e in ALL_E {
            assert!(S::Success.apply(e).is_err(), "{e:?}");
        }
        assert_eq!(
            S::Success.apply(E::PspFailed),
            Err(IllegalTransition {
                from: S::Success,
                event: E::PspFailed
            })
        );
        assert!(
            S::Failed.apply(E::PspSucceeded).is_err(),
            "a failed order must be retried first"
        );
    }

    #[test]
    fn names_roundtrip() {
        for s in ALL_S {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        assert!("PAID".parse::<S>().is_err());
    }
}
