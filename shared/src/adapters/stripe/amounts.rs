//! Amounts in Stripe's integers: the currency's smallest unit by Stripe's own table, which
//! differs from ISO 4217 for a few currencies.

use crate::domain::{Currency, Money};

/// Currencies Stripe treats as zero-decimal (its table differs from ISO 4217 for MGA).
const STRIPE_ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
/// Currencies Stripe sends as two decimals although ISO gives them none.
const STRIPE_TWO_DECIMAL_SPECIAL: &[&str] = &["ISK"];

/// Stripe's exponent for a currency.
fn stripe_exponent(c: Currency) -> u32 {
    if STRIPE_ZERO_DECIMAL.contains(&c.code()) {
        0
    } else if STRIPE_TWO_DECIMAL_SPECIAL.contains(&c.code()) {
        2
    } else {
        c.minor_units()
    }
}

/// Our exact amount as Stripe's integer, refusing anything Stripe cannot carry exactly
/// (an MGA amount with ariary cents; a three-decimal amount whose last digit is not 0, which
/// Stripe rejects for BHD, JOD, KWD, OMR, TND).
pub fn to_stripe_amount(m: Money) -> Result<i64, String> {
    let (ours, theirs) = (m.currency().minor_units(), stripe_exponent(m.currency()));
    let amount = if theirs >= ours {
        m.minor()
            .checked_mul(10i64.pow(theirs - ours))
            .ok_or_else(|| "amount overflows".to_owned())?
    } else {
        let div = 10i64.pow(ours - theirs);
        if m.minor() % div != 0 {
            return Err(format!(
                "{m:?} has more precision than the PSP accepts for {}",
                m.currency()
            ));
        }
        m.minor() / div
    };
    if m.currency().minor_units() == 3 && amount % 10 != 0 {
        return Err(format!("{m:?}: the PSP needs three-decimal amounts to end in 0"));
    }
    Ok(amount)
}

/// Stripe's integer back to our exact amount.
pub fn from_stripe_amount(amount: i64, currency: Currency) -> Result<Money, String> {
    let (ours, theirs) = (currency.minor_units(), stripe_exponent(currency));
    let minor = if ours >= theirs {
        amount
            .checked_mul(10i64.pow(ours - theirs))
            .ok_or("amount overflows")?
    } else {
        let div = 10i64.pow(theirs - ours);
        if amount % div != 0 {
            return Err(format!(
                "{amount} {currency} is not a whole number of {currency} units"
            ));
        }
        amount / div
    };
    Ok(Money::from_minor(minor, currency))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str, code: &str) -> Money {
        Money::parse(text, Currency::parse(code).unwrap()).unwrap()
    }

    #[test]
    fn minor_units_in_every_class() {
        let cases = [
            ("99.99", "USD", 9999),
            ("0.10", "EUR", 10),
            ("1500", "JPY", 1500),
            ("1500", "KRW", 1500),
            ("12.340", "KWD", 12340),
            ("0.010", "BHD", 10),
            ("1500", "ISK", 150_000),
            ("1500", "MGA", 1500),
        ];
        for (text, code, want) in cases {
            let m = money(text, code);
            assert_eq!(to_stripe_amount(m), Ok(want), "{text} {code}");
            assert_eq!(
                from_stripe_amount(want, m.currency()),
                Ok(m),
                "{text} {code} back"
            );
        }
        assert!(
            to_stripe_amount(money("12.345", "KWD")).is_err(),
            "Stripe needs a trailing 0"
        );
        assert!(
            to_stripe_amount(money("10.50", "MGA")).is_err(),
            "Stripe's MGA has no cents"
        );
        assert!(from_stripe_amount(150_050, Currency::parse("ISK").unwrap()).is_err());
    }
}
