//! Who bears a refund: the platform fee policy and its cumulative rounding.
//!
//! Proportional: once refunds totalling `T` of an order (amount `A`, fee `F`) have succeeded,
//! the platform has returned exactly `round_half_even(F × T / A)`. Each refund's fee part is
//! what brings the running total there, so the parts of a full refund, in any number of
//! pieces, add up to exactly `F`, and the seller's parts to exactly `A − F`.

use std::fmt;
use std::str::FromStr;

use crate::domain::money::{Money, MoneyError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeePolicy {
    /// The platform returns its fee in proportion to what is refunded.
    Proportional,
    /// The platform keeps its fee: the seller bears the whole refund.
    None,
}

impl FeePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FeePolicy::Proportional => "proportional",
            FeePolicy::None => "none",
        }
    }
}

impl fmt::Display for FeePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FeePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "proportional" => Ok(FeePolicy::Proportional),
            "none" => Ok(FeePolicy::None),
            other => Err(format!(
                "unknown refund fee policy {other:?} (proportional or none)"
            )),
        }
    }
}

/// `round_half_even(fee × refunded / amount)` in minor units, exactly (integer arithmetic).
pub fn fee_returned(policy: FeePolicy, amount_minor: i64, fee_minor: i64, refunded_minor: i64) -> i64 {
    if policy == FeePolicy::None || amount_minor <= 0 || fee_minor <= 0 || refunded_minor <= 0 {
        return 0;
    }
    let x = i128::from(fee_minor) * i128::from(refunded_minor);
    let a = i128::from(amount_minor);
    let (q, r) = (x / a, x % a);
    let rounded = match (2 * r).cmp(&a) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal if q % 2 == 1 => q + 1,
        _ => q,
    };
    i64::try_from(rounded).unwrap_or(i64::MAX)
}

/// One refund's parts: what the platform returns of its fee, and what the seller gives back.
/// `fee + seller == amount` always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub fee: Money,
    pub seller: Money,
}

/// The parts of a refund of `refund` from an order of `amount` with fee `fee`, when refunds
/// totalling `refunded_before` have succeeded and returned `fee_returned_before` of the fee.
pub fn split(
    policy: FeePolicy,
    amount: Money,
    fee: Money,
    refunded_before: i64,
    fee_returned_before: i64,
    refund: Money,
) -> Result<Split, MoneyError> {
    let after = refunded_before
        .checked_add(refund.minor())
        .ok_or(MoneyError::Overflow)?;
    let target = fee_returned(policy, amount.minor(), fee.minor(), after);
    // Never negative, never more than the refund itself (both only reachable after a refund
    // that failed late left the running total off the curve; the next refund corrects it).
    let part = target
        .saturating_sub(fee_returned_before)
        .clamp(0, refund.minor());
    let fee_part = Money::from_minor(part, refund.currency());
    Ok(Split {
        fee: fee_part,
        seller: refund.checked_sub(fee_part)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;
    use proptest::prelude::*;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::parse("USD").unwrap())
    }

    #[test]
    fn rounding_is_half_even() {
        // F × T / A = 0.5 → 0; 1.5 → 2; 2.5 → 2.
        assert_eq!(fee_returned(FeePolicy::Proportional, 2, 1, 1), 0);
        assert_eq!(fee_returned(FeePolicy::Proportional, 2, 3, 1), 2);
        assert_eq!(fee_returned(FeePolicy::Proportional, 2, 5, 1), 2);
        assert_eq!(fee_returned(FeePolicy::Proportional, 3, 1, 2), 1);
        assert_eq!(fee_returned(FeePolicy::None, 100, 10, 100), 0);
    }

    #[test]
    fn three_thirds_return_the_whole_fee() {
        // 100.00 with a 2.50 fee, refunded 33.33 + 33.33 + 33.34.
        let (a, f) = (usd(10_000), usd(250));
        let mut refunded = 0;
        let mut returned = 0;
        let mut parts = Vec::new();
        for r in [3333, 3333, 3334] {
            let s = split(FeePolicy::Proportional, a, f, refunded, returned, usd(r)).unwrap();
            assert_eq!(s.fee.minor() + s.seller.minor(), r);
            refunded += r;
            returned += s.fee.minor();
            parts.push(s.fee.minor());
        }
        // 2.50 × 1/3 = 0.8333 → 0.83; × 2/3 = 1.6666 → 1.67 (0.84 more); all: 2.50 (0.83 more).
        assert_eq!(parts, vec![83, 84, 83]);
        assert_eq!(returned, 250);
    }

    #[test]
    fn none_leaves_the_fee_with_the_platform() {
        let s = split(FeePolicy::None, usd(1000), usd(25), 0, 0, usd(1000)).unwrap();
        assert_eq!((s.fee.minor(), s.seller.minor()), (0, 1000));
    }

    proptest! {
        /// A full refund in any number of parts returns exactly F and takes exactly A − F from
        /// the seller; after every part the platform has returned round(F × T / A).
        #[test]
        fn full_refund_in_parts_returns_exactly_the_fee(
            amount in 1i64..=99_999_999,
            fee_permille in 0i64..=1000,
            cuts in proptest::collection::vec(1u64..1000, 1..12),
        ) {
            let fee = amount * fee_permille / 1000;
            let weights: Vec<u64> = cuts;
            let parts = usd(amount).allocate(&weights).unwrap();
            let (mut refunded, mut returned, mut seller) = (0i64, 0i64, 0i64);
            for p in parts.into_iter().filter(|p| p.minor() > 0) {
                let s = split(FeePolicy::Proportional, usd(amount), usd(fee), refunded, returned, p).unwrap();
                prop_assert!(s.fee.minor() >= 0 && s.seller.minor() >= 0);
                prop_assert_eq!(s.fee.minor() + s.seller.minor(), p.minor());
                refunded += p.minor();
                returned += s.fee.minor();
                seller += s.seller.minor();
                prop_assert_eq!(returned, fee_returned(FeePolicy::Proportional, amount, fee, refunded));
            }
            prop_assert_eq!(refunded, amount);
            prop_assert_eq!(returned, fee);
            prop_assert_eq!(seller, amount - fee);
        }
    }
}
