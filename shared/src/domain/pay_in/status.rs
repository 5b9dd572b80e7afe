//! The payment-order state machine (design §11). Checkouts and their orders share it: all
//! orders of a checkout move together because one PSP charge pays for all of them.
//!
//! ```text
//! CREATED ──submitted──▶ EXECUTING ──psp_succeeded──▶ SUCCESS
//!    │                      │
//!    │            psp_failed│
//!    │                      ▼
//!    └───psp_rejected────▶ FAILED
//! ```
//! Both ends are final. SUCCESS: money moved; refunds and payouts are their own records with
//! their own machines and never rewrite a successful payment. FAILED: the session is over (the
//! PSP refused it, or it failed or expired); a buyer who tries again makes a new checkout with a
//! new Idempotency-Key, so one checkout is never charged twice.

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
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, PaymentStatus::Success | PaymentStatus::Failed)
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
    const ALL_E: [E; 4] = [E::Submitted, E::PspRejected, E::PspSucceeded, E::PspFailed];

    #[test]
    fn legal_paths() {
        assert_eq!(S::Created.apply(E::Submitted), Ok(S::Executing));
        assert_eq!(S::Executing.apply(E::PspSucceeded), Ok(S::Success));
        assert_eq!(S::Executing.apply(E::PspFailed), Ok(S::Failed));
        assert_eq!(S::Created.apply(E::PspRejected), Ok(S::Failed));
    }

    #[test]
    fn exactly_four_transitions_are_legal() {
        let legal = ALL_S
            .iter()
            .flat_map(|s| ALL_E.iter().map(move |e| s.apply(*e)))
            .filter(Result::is_ok)
            .count();
        assert_eq!(legal, 4);
        for s in ALL_S {
            let moves = ALL_E.iter().filter(|e| s.apply(**e).is_ok()).count();
            assert_eq!(s.is_final(), moves == 0, "{s}");
        }
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
        for e in ALL_E {
            assert!(S::Failed.apply(e).is_err(), "FAILED is final: {e:?}");
        }
    }

    #[test]
    fn names_roundtrip() {
        for s in ALL_S {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
        }
        assert!("PAID".parse::<S>().is_err());
    }
}
