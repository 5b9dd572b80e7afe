//! Exact money: an integer count of the currency's minor unit. Never a float, anywhere.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};

use super::currency::Currency;

/// The largest amount one charge may carry, in minor units (Stripe's limit: 99,999,999).
pub const CHARGE_MINOR_MAX: i64 = 99_999_999;

/// The longest decimal text we accept for an amount. Trailing zeros beyond the currency's
/// decimals are fine (`10.500` USD is 10.50) up to this length; longer text is refused as
/// such, whatever its value.
pub const AMOUNT_TEXT_LEN_MAX: usize = 32;
/// More integer digits than this can never be an amount (i64 minor units hold 18).
const INTEGER_DIGITS_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("must be a decimal number such as 10 or 99.99")]
    NotADecimal,
    #[error("exponent notation is not accepted; write the amount out, such as 1500.00")]
    Exponent,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("has more decimals than {currency} allows ({allowed})")]
    TooPrecise { currency: Currency, allowed: u32 },
    #[error("exceeds the maximum of {max} in {currency}")]
    TooLarge { currency: Currency, max: String },
    #[error("is longer than {max} characters (trailing zeros are fine up to that length)")]
    TooLong { max: usize },
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflow")]
    Overflow,
}

/// An amount of money in one currency, held as minor units (cents, yen, fils).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub fn from_minor(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { minor: 0, currency }
    }

    /// Parses the text of an amount (a JSON number's literal text, or a decimal string):
    /// digits with an optional fraction, nothing else — no sign, exponent, spaces or hex.
    /// Trailing zeros beyond the currency's decimals are fine (`10.50` JPY is not; `10.500` USD is)
    /// up to [`AMOUNT_TEXT_LEN_MAX`] characters. Each failure names one problem: a value too
    /// large is `TooLarge` however it is written, text too long for a sensible value `TooLong`.
    pub fn parse(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let too_large = || MoneyError::TooLarge {
            currency,
            max: Money::from_minor(CHARGE_MINOR_MAX, currency).to_string(),
        };
        let value = Money::parse_decimal(text).map_err(|e| match e {
            MoneyError::Overflow => too_large(),
            other => other,
        })?;
        Money::from_decimal(value, currency).map_err(|e| match e {
            MoneyError::Overflow => too_large(),
            other => other,
        })
    }

    /// The exact decimal an amount's text says, before its currency is known (a refund's
    /// amount is in its order's currency): the same syntax as [`Money::parse`]; far too many
    /// integer digits is `Overflow`.
    pub fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
        if text.starts_with('-') {
            return Err(MoneyError::NotPositive);
        }
        if text.contains(['e', 'E']) {
            return Err(MoneyError::Exponent);
        }
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(MoneyError::NotADecimal);
        }
        if int.trim_start_matches('0').len() > INTEGER_DIGITS_MAX {
            return Err(MoneyError::Overflow);
        }
        if text.len() > AMOUNT_TEXT_LEN_MAX {
            return Err(MoneyError::TooLong {
                max: AMOUNT_TEXT_LEN_MAX,
            });
        }
        text.parse().map_err(|_| MoneyError::NotADecimal)
    }

    /// Converts an exact decimal to money, refusing to round.
    pub fn from_decimal(value: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let normalized = value.normalize();
        if normalized.scale() > currency.minor_units() {
            return Err(MoneyError::TooPrecise {
                currency,
                allowed: currency.minor_units(),
            });
        }
        let scaled = normalized
            .checked_mul(Decimal::from(10i64.pow(currency.minor_units())))
            .ok_or(MoneyError::Overflow)?;
        let minor = i64::try_from(scaled).map_err(|_| MoneyError::Overflow)?;
        Ok(Money { minor, currency })
    }

    /// A positive amount that one PSP charge can carry.
    pub fn parse_charge(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        let money = Money::parse(text, currency)?;
        money.check_charge()?;
        Ok(money)
    }

    pub fn check_charge(&self) -> Result<(), MoneyError> {
        if self.minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if self.minor > CHARGE_MINOR_MAX {
            return Err(MoneyError::TooLarge {
                currency: self.currency,
                max: Money::from_minor(CHARGE_MINOR_MAX, self.currency).to_string(),
            });
        }
        Ok(())
    }

    pub fn minor(&self) -> i64 {
        self.minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn to_decimal(&self) -> Decimal {
        Decimal::new(self.minor, self.currency.minor_units())
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_add(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, ..self })
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self.minor.checked_sub(other.minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { minor, ..self })
    }

    /// Sums amounts of one currency; an empty iterator sums to zero of `currency`.
    pub fn sum<I: IntoIterator<Item = Money>>(currency: Currency, items: I) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// `rate` of this amount (e.g. a 2.5 % platform fee is `0.025`), rounded half-even to the
    /// currency's minor unit, so `fee + (amount - fee) == amount` exactly.
    pub fn percentage_half_even(&self, rate: Decimal) -> Result<Money, MoneyError> {
        let raw = self.to_decimal().checked_mul(rate).ok_or(MoneyError::Overflow)?;
        let rounded =
            raw.round_dp_with_strategy(self.currency.minor_units(), RoundingStrategy::MidpointNearestEven);
        Money::from_decimal(rounded, self.currency)
    }

    /// Splits this amount across `weights` proportionally without losing a minor unit
    /// (largest remainder; ties go to the earlier share). The shares always sum to `self`.
    pub fn allocate(&self, weights: &[u64]) -> Option<Vec<Money>> {
        let total: u128 = weights.iter().map(|w| u128::from(*w)).sum();
        if total == 0 || self.minor < 0 {
            return None;
        }
        let amount = self.minor as u128;
        let mut shares: Vec<(usize, u128, u128)> = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let exact = amount * u128::from(*w);
                (i, exact / total, exact % total)
            })
            .collect();
        let assigned: u128 = shares.iter().map(|s| s.1).sum();
        let mut leftover = amount - assigned;
        let mut order: Vec<usize> = (0..shares.len()).collect();
        order.sort_by(|a, b| shares[*b].2.cmp(&shares[*a].2).then(a.cmp(b)));
        for i in order {
            if leftover == 0 {
                break;
            }
            shares[i].1 += 1;
            leftover -= 1;
        }
        shares
            .into_iter()
            .map(|(_, minor, _)| {
                i64::try_from(minor)
                    .ok()
                    .map(|m| Money::from_minor(m, self.currency))
            })
            .collect()
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Ok(())
    }
}

/// The decimal text with exactly the currency's decimals: `99.99`, `100`, `1.500`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = self.currency.minor_units() as usize;
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if units == 0 {
            return write!(f, "{sign}{abs}");
        }
        let base = 10u64.pow(units as u32);
        write!(f, "{sign}{}.{:0units$}", abs / base, abs % base)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self, self.currency.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }
    fn jpy() -> Currency {
        Currency::parse("JPY").unwrap()
    }
    fn kwd() -> Currency {
        Currency::parse("KWD").unwrap()
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Money::parse("0.1", usd()).unwrap().minor(), 10);
        assert_eq!(Money::parse("99.99", usd()).unwrap().minor(), 9999);
        assert_eq!(Money::parse("10.500", usd()).unwrap().minor(), 1050);
        assert_eq!(Money::parse("100", jpy()).unwrap().minor(), 100);
        assert_eq!(Money::parse("1.234", kwd()).unwrap().minor(), 1234);
        assert_eq!(Money::parse("0.10", usd()).unwrap().to_string(), "0.10");
    }

    #[test]
    fn rejects_bad_text() {
        let cases = [
            ("1e2", MoneyError::Exponent),
            ("1E-2", MoneyError::Exponent),
            ("-1", MoneyError::NotPositive),
            ("", MoneyError::NotADecimal),
            (".5", MoneyError::NotADecimal),
            ("5.", MoneyError::NotADecimal),
            ("+5", MoneyError::NotADecimal),
            (" 5", MoneyError::NotADecimal),
            ("0x10", MoneyError::NotADecimal),
            ("NaN", MoneyError::NotADecimal),
            ("Infinity", MoneyError::NotADecimal),
            ("1,5", MoneyError::NotADecimal),
        ];
        for (text, want) in cases {
            assert_eq!(Money::parse(text, usd()).unwrap_err(), want, "{text:?}");
        }
        assert!(matches!(
            Money::parse("1.001", usd()),
            Err(MoneyError::TooPrecise { allowed: 2, .. })
        ));
        assert!(matches!(
            Money::parse("1.5", jpy()),
            Err(MoneyError::TooPrecise { allowed: 0, .. })
        ));
        assert!(matches!(
            Money::parse("1.0001", kwd()),
            Err(MoneyError::TooPrecise { allowed: 3, .. })
        ));
    }

    #[test]
    fn charge_limits() {
        assert_eq!(
            Money::parse_charge("0", usd()).unwrap_err(),
            MoneyError::NotPositive
        );
        assert_eq!(
            Money::parse_charge("0.00", usd()).unwrap_err(),
            MoneyError::NotPositive
        );
        assert!(Money::parse_charge("999999.99", usd()).is_ok());
        assert!(matches!(
            Money::parse_charge("1000000.00", usd()),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(Money::parse_charge("99999999", jpy()).is_ok());
        assert!(Money::parse_charge("100000000", jpy()).is_err());
        assert!(Money::parse_charge("99999.999", kwd()).is_ok());
        assert!(matches!(
            Money::parse_charge("99999999999999999999999999999999999", usd()),
            Err(MoneyError::TooLarge { .. })
        ));
        assert!(matches!(
            Money::parse_charge("12345678901234567890", usd()),
            Err(MoneyError::TooLarge { .. })
        ));
        // Trailing zeros: fine up to the length limit, refused as such beyond it.
        let zeros = |n: usize| format!("10.{}", "0".repeat(n));
        assert_eq!(Money::parse_charge(&zeros(25), usd()).unwrap().minor(), 1000);
        assert_eq!(Money::parse_charge(&zeros(29), usd()).unwrap().minor(), 1000);
        assert_eq!(
            Money::parse_charge(&zeros(30), usd()),
            Err(MoneyError::TooLong {
                max: AMOUNT_TEXT_LEN_MAX
            })
        );
    }

    #[test]
    fn formats_per_currency() {
        assert_eq!(Money::from_minor(9999, usd()).to_string(), "99.99");
        assert_eq!(Money::from_minor(5, usd()).to_string(), "0.05");
        assert_eq!(Money::from_minor(-5, usd()).to_string(), "-0.05");
        assert_eq!(Money::from_minor(100, jpy()).to_string(), "100");
        assert_eq!(Money::from_minor(1500, kwd()).to_string(), "1.500");
    }

    #[test]
    fn arithmetic_is_exact_and_checked() {
        let a = Money::parse("0.10", usd()).unwrap();
        let b = Money::parse("0.20", usd()).unwrap();
        assert_eq!(a.checked_add(b).unwrap(), Money::parse("0.30", usd()).unwrap());
        assert!(matches!(
            a.checked_add(Money::from_minor(1, jpy())),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::from_minor(i64::MAX, usd()).checked_add(Money::from_minor(1, usd())),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn fee_rounds_half_even() {
        let rate: Decimal = "0.025".parse().unwrap();
        // 1.00 * 0.025 = 0.025 -> 0.02 (half to even); 3.00 * 0.025 = 0.075 -> 0.08
        assert_eq!(
            Money::parse("1.00", usd())
                .unwrap()
                .percentage_half_even(rate)
                .unwrap()
                .minor(),
            2
        );
        assert_eq!(
            Money::parse("3.00", usd())
                .unwrap()
                .percentage_half_even(rate)
                .unwrap()
                .minor(),
            8
        );
        assert_eq!(
            Money::parse("100", jpy())
                .unwrap()
                .percentage_half_even(rate)
                .unwrap()
                .minor(),
            2
        );
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(minor in 1i64..=CHARGE_MINOR_MAX, which in 0usize..3) {
            let c = [usd(), jpy(), kwd()][which];
            let m = Money::from_minor(minor, c);
            prop_assert_eq!(Money::parse(&m.to_string(), c).unwrap(), m);
            prop_assert_eq!(Money::from_decimal(m.to_decimal(), c).unwrap(), m);
        }

        #[test]
        fn addition_commutes_and_subtraction_inverts(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let (x, y) = (Money::from_minor(a, usd()), Money::from_minor(b, usd()));
            prop_assert_eq!(x.checked_add(y).unwrap(), y.checked_add(x).unwrap());
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }

        #[test]
        fn allocation_never_loses_a_cent(minor in 0i64..=CHARGE_MINOR_MAX, weights in prop::collection::vec(0u64..1_000, 1..50)) {
            let m = Money::from_minor(minor, usd());
            match m.allocate(&weights) {
                None => prop_assert!(weights.iter().all(|w| *w == 0)),
                Some(shares) => {
                    prop_assert_eq!(shares.len(), weights.len());
                    prop_assert_eq!(Money::sum(usd(), shares.iter().copied()).unwrap(), m);
                    for (s, w) in shares.iter().zip(&weights) {
                        if *w == 0 { prop_assert_eq!(s.minor(), 0); }
                        prop_assert!(s.minor() >= 0);
                    }
                }
            }
        }

        #[test]
        fn fee_and_net_sum_to_amount(minor in 1i64..=CHARGE_MINOR_MAX, bps in 0u32..=10_000, which in 0usize..3) {
            let c = [usd(), jpy(), kwd()][which];
            let m = Money::from_minor(minor, c);
            let rate = Decimal::new(i64::from(bps), 4);
            let fee = m.percentage_half_even(rate).unwrap();
            let net = m.checked_sub(fee).unwrap();
            prop_assert_eq!(fee.checked_add(net).unwrap(), m);
            prop_assert!(fee.minor() >= 0 && fee.minor() <= m.minor());
        }
    }
}
