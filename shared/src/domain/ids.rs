//! Identifiers. Ours are prefixed, time-ordered UUIDv7s (`chk_…`, `po_…`); the client's are
//! validated strings. Each is its own type, so a seller id can never be passed as an order id.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be a string of 1 to {max} characters")]
    Length { max: usize },
    #[error("may contain only letters, digits and - _ . :")]
    Charset,
    #[error("looks like a card number; card data is never accepted")]
    CardNumber,
    #[error("is not a valid {kind} id")]
    Format { kind: &'static str },
}

/// What every string id shares, whatever checks its text: serde through its checked parse
/// (`parse`), `as_str`, and Display/Debug as the bare text. `$error` is the parse's error.
#[macro_export]
macro_rules! string_id_impls {
    ($name:ident, $error:ty) => {
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(s: String) -> Result<Self, $error> {
                $name::parse(&s)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Declares an id minted by us: `<prefix><32 lower-case hex digits of a UUIDv7>`.
macro_rules! minted_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        string_id_impls!($name, IdError);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique, time-ordered id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// The id that `seed` always gives (SHA-256, its first 128 bits): the same input,
            /// the same id, so a retried write finds what its first attempt wrote.
            pub fn derived(seed: &str) -> Self {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(seed.as_bytes());
                $name(format!("{}{}", $prefix, hex::encode(&digest[..16])))
            }

            /// Parses an id received from outside (a path parameter, a stored item).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let hex = s.strip_prefix($prefix).ok_or(IdError::Format { kind: $kind })?;
                if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(IdError::Format { kind: $kind })
                }
            }
        }
    };
}

/// Declares an id chosen by a client or operator: 1–64 of `[A-Za-z0-9_.:-]`.
macro_rules! client_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        string_id_impls!($name, IdError);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                validate_client_id(s).map(|()| $name(s.to_owned()))
            }
        }
    };
}

minted_id!(
    /// One buyer checkout: one PSP charge for the total.
    CheckoutId, "chk_", "checkout"
);
minted_id!(
    /// One seller's share of a checkout.
    PaymentOrderId, "po_", "payment order"
);
minted_id!(
    /// One refund of one payment order (one seller's line): also the PSP's idempotency key.
    RefundId, "rf_", "refund"
);
minted_id!(
    /// One payout of a seller's balance to their bank; the PSP's idempotency keys derive from it.
    PayoutId, "pout_", "payout"
);
minted_id!(
    /// One reconciliation run: derived from its file's SHA-256, so the same content is one run.
    ReconRunId, "recon_", "reconciliation run"
);
minted_id!(
    /// One break of a run: derived from the run and what broke, so a retried run rewrites it.
    BreakId, "brk_", "break"
);
minted_id!(
    /// An API key's public id (the key itself is never stored).
    ApiKeyId, "key_", "API key"
);

client_id!(
    /// The merchant account an API key acts for; everything it creates belongs to it.
    AccountId
);
client_id!(BuyerId);
client_id!(
    /// Also names ledger accounts (`seller_payable:<seller_id>`), hence the strict charset.
    SellerId
);
client_id!(OrderId);
client_id!(SubOrderId);

pub const CLIENT_ID_LEN_MAX: usize = 64;

fn validate_client_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > CLIENT_ID_LEN_MAX {
        return Err(IdError::Length {
            max: CLIENT_ID_LEN_MAX,
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(IdError::Charset);
    }
    if super::card::contains_pan(s) {
        return Err(IdError::CardNumber);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_roundtrip_and_order() {
        let a = CheckoutId::generate();
        let b = CheckoutId::generate();
        assert!(a.as_str().starts_with("chk_") && a.as_str().len() == 36);
        assert_eq!(CheckoutId::parse(a.as_str()).unwrap(), a);
        assert!(a < b, "UUIDv7 ids sort by creation time");
        assert!(PaymentOrderId::parse(a.as_str()).is_err(), "prefix is checked");
        assert!(CheckoutId::parse("chk_XYZ").is_err());
        assert!(CheckoutId::parse("chk_0192f5e0c8a37c4e9b1f2a3b4c5d6e7F").is_err());
    }

    #[test]
    fn client_ids_are_validated() {
        assert!(SellerId::parse("seller_456").is_ok());
        assert!(SellerId::parse("acme:store-1.eu").is_ok());
        assert_eq!(SellerId::parse(""), Err(IdError::Length { max: 64 }));
        assert_eq!(SellerId::parse(&"a".repeat(65)), Err(IdError::Length { max: 64 }));
        assert_eq!(SellerId::parse("a b"), Err(IdError::Charset));
        assert_eq!(SellerId::parse("sellér"), Err(IdError::Charset));
        assert_eq!(BuyerId::parse("4242424242424242"), Err(IdError::CardNumber));
        assert!(BuyerId::parse("4242424242424241").is_ok(), "fails Luhn");
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let id = CheckoutId::generate();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CheckoutId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<CheckoutId>("\"po_1\"").is_err());
        assert_eq!(
            serde_json::from_str::<SellerId>("\"seller_A\"").unwrap().as_str(),
            "seller_A"
        );
        assert!(serde_json::from_str::<SellerId>("\"a b\"").is_err());
    }

    #[test]
    fn card_numbers_are_refused_in_any_id() {
        assert_eq!(OrderId::parse("pan:4242424242424242"), Err(IdError::CardNumber));
        assert_eq!(SubOrderId::parse("4242.4242.4242.4242"), Err(IdError::CardNumber));
        assert!(OrderId::parse("order-1234").is_ok());
    }
}
