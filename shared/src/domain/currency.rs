//! ISO 4217 currencies with their minor units (the number of decimals an amount may carry).

use std::fmt;

/// An ISO 4217 currency we accept. Only constructible through [`Currency::parse`], so a
/// `Currency` in hand always has a known minor unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

/// Zero-decimal currencies (ISO 4217 minor unit 0).
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
    "XOF", "XPF",
];

/// Three-decimal currencies (ISO 4217 minor unit 3).
const THREE_DECIMAL: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];

/// Two-decimal currencies (ISO 4217 minor unit 2). Funds codes, precious metals and
/// four-decimal units of account (CLF, UYW) are deliberately absent.
const TWO_DECIMAL: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD",
    "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP",
    "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
    "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP",
    "MRU", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
    "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD",
    "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR", "ZMW", "ZWG",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency {0:?}: expected an ISO 4217 code such as USD, EUR, JPY or KWD")]
pub struct UnknownCurrency(pub String);

impl Currency {
    /// Parses a three-letter ISO 4217 code, in either case (Stripe sends lower case).
    pub fn parse(code: &str) -> Result<Self, UnknownCurrency> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(UnknownCurrency(truncate(code)));
        }
        let upper = code.to_ascii_uppercase();
        let find = |table: &[&'static str], minor_units| {
            table
                .iter()
                .find(|c| **c == upper)
                .map(|code| Currency { code, minor_units })
        };
        find(ZERO_DECIMAL, 0)
            .or_else(|| find(TWO_DECIMAL, 2))
            .or_else(|| find(THREE_DECIMAL, 3))
            .ok_or(UnknownCurrency(truncate(code)))
    }

    /// The upper-case ISO 4217 code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// How many decimals an amount in this currency may carry (0, 2 or 3).
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

/// As its code (`"USD"`); read back only if known.
impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.code, self.minor_units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_per_class() {
        assert_eq!(Currency::parse("USD").unwrap().minor_units(), 2);
        assert_eq!(Currency::parse("eur").unwrap().code(), "EUR");
        assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(Currency::parse("KRW").unwrap().minor_units(), 0);
        for c in ["KWD", "BHD", "JOD", "OMR", "TND"] {
            assert_eq!(Currency::parse(c).unwrap().minor_units(), 3, "{c}");
        }
    }

    #[test]
    fn rejects_unknown_and_malformed() {
        for c in ["", "US", "USDD", "XXX", "U$D", "ZZZ", "usd "] {
            assert!(Currency::parse(c).is_err(), "{c:?}");
        }
    }

    #[test]
    fn tables_are_disjoint() {
        for c in ZERO_DECIMAL.iter().chain(THREE_DECIMAL) {
            assert!(!TWO_DECIMAL.contains(c), "{c}");
        }
    }
}
