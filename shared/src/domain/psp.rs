//! The PSP in our terms: its object ids as types, what can go wrong talking to it, and its
//! webhook signatures (Stripe's scheme: HMAC-SHA256 over `"<t>.<body>"`), verified here because
//! they are pure. The Stripe wire format lives in `adapters::stripe`.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How old a webhook's signed timestamp may be (Stripe's default tolerance).
pub const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Stripe documents object ids up to 255 characters; anything longer is not one.
pub const PSP_ID_LEN_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("is not a PSP {kind} id ({prefix}… of letters, digits and _, at most {PSP_ID_LEN_MAX} characters)")]
pub struct PspIdError {
    pub kind: &'static str,
    pub prefix: &'static str,
}

/// Declares the id of a PSP object: `<prefix><letters, digits, _>`, as Stripe makes them.
macro_rules! psp_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(s: &str) -> Result<Self, PspIdError> {
                let ok = s.len() <= PSP_ID_LEN_MAX
                    && s.strip_prefix($prefix).is_some_and(|rest| {
                        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    });
                if ok {
                    Ok($name(s.to_owned()))
                } else {
                    Err(PspIdError { kind: $kind, prefix: $prefix })
                }
            }

        }

        $crate::string_id_impls!($name, PspIdError);
    };
}

psp_id!(
    /// An event the PSP sends us (`evt_…`): its id is the key of its marker (dedup).
    PspEventId, "evt_", "event"
);
psp_id!(
    /// A hosted-page session (`cs_…`): the PSP token a checkout is paid through.
    PspSessionId, "cs_", "checkout session"
);
psp_id!(
    /// The charge behind a paid session (`pi_…`); refunds name it.
    PaymentIntentId, "pi_", "payment intent"
);
psp_id!(
    /// A refund at the PSP (`re_…`).
    PspRefundId, "re_", "refund"
);
psp_id!(
    /// A transfer from the platform to a seller's connected account (`tr_…`).
    PspTransferId, "tr_", "transfer"
);
psp_id!(
    /// A payout from a connected account to its bank (`po_…`).
    PspPayoutId, "po_", "payout"
);
psp_id!(
    /// The reversal of a transfer (`trr_…`): a payout that failed brings its money back.
    PspTransferReversalId, "trr_", "transfer reversal"
);
psp_id!(
    /// A seller's connected account (`acct_…`): their balance at the PSP, and their bank.
    PspAccountId, "acct_", "connected account"
);

/// Any PSP object we keep a record of: the key of the `psp_ref` index, which leads from a
/// PSP id back to our entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PspRef {
    Session(PspSessionId),
    PaymentIntent(PaymentIntentId),
    Refund(PspRefundId),
    Transfer(PspTransferId),
    Payout(PspPayoutId),
}

impl PspRef {
    pub fn as_str(&self) -> &str {
        match self {
            PspRef::Session(id) => id.as_str(),
            PspRef::PaymentIntent(id) => id.as_str(),
            PspRef::Refund(id) => id.as_str(),
            PspRef::Transfer(id) => id.as_str(),
            PspRef::Payout(id) => id.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PspError {
    /// Connect error, timeout, 5xx or 429 until the retry budget ran out. Nothing is known
    /// about the outcome: retry later with the same idempotency key.
    #[error("PSP unavailable: {0}")]
    Unavailable(String),
    /// The PSP refused the request (a 4xx other than 429); retrying will not help.
    #[error("PSP rejected the request ({status} {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header")]
    Malformed,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("no signature matches the payload")]
    Mismatch,
}

/// Verifies `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over the raw body
/// against any of `secrets` (several, so a secret can be rotated). Constant-time compare.
pub fn verify_signature(
    header: Option<&str>,
    raw_body: &[u8],
    secrets: &[String],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(SignatureError::Stale);
    }
    let signed = |secret: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(raw_body);
        Some(mac)
    };
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for sig in &signatures {
            // `verify_slice` compares in constant time.
            if signed(secret).is_some_and(|mac| mac.verify_slice(sig).is_ok()) {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// Signs like the PSP does (for tests and the sandbox's own checks).
pub fn sign(raw_body: &[u8], secret: &str, timestamp_s: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(raw_body);
    format!("t={timestamp_s},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const PAYLOAD: &str = r#"{"id":"evt_test_webhook","object":"event"}"#;
    const T: i64 = 1_492_774_577;
    /// Computed independently (Python's hmac module) per Stripe's documented scheme.
    const V1: &str = "88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn psp_ids_are_checked() {
        assert!(PspSessionId::parse("cs_test_a1B2_c3").is_ok());
        assert!(PspSessionId::parse("cs_").is_err());
        assert!(PspSessionId::parse("pi_123").is_err());
        assert!(PspSessionId::parse("cs_a b").is_err());
        assert!(PspSessionId::parse(&format!("cs_{}", "x".repeat(253))).is_err());
        assert!(PaymentIntentId::parse("pi_3Nx").is_ok());
        assert!(PspPayoutId::parse("po_1").is_ok());
        let id: PspSessionId = serde_json::from_str("\"cs_test_1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"cs_test_1\"");
        assert!(serde_json::from_str::<PspSessionId>("\"\"").is_err());
        assert_eq!(PspRef::Session(id).as_str(), "cs_test_1");
    }

    #[test]
    fn documented_scheme() {
        assert_eq!(sign(PAYLOAD.as_bytes(), SECRET, T), format!("t={T},v1={V1}"));
        let header =
            format!("t={T},v1={V1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39");
        assert_eq!(
            verify_signature(
                Some(&header),
                PAYLOAD.as_bytes(),
                &secrets(&[SECRET]),
                T + 10,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn rejections() {
        let good = format!("t={T},v1={V1}");
        let s = secrets(&[SECRET]);
        let body = PAYLOAD.as_bytes();
        assert_eq!(
            verify_signature(None, body, &s, T, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(Some("garbage"), body, &s, T, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some(&format!("t={T}")), body, &s, T, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature(Some(&good), body, &s, T + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(Some(&good), b"{\"id\":\"evt_other\"}", &s, T, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(Some(&good), body, &secrets(&["whsec_wrong"]), T, 300),
            Err(SignatureError::Mismatch)
        );
        let forged = format!("t={T},v1={}", "0".repeat(64));
        assert_eq!(
            verify_signature(Some(&forged), body, &s, T, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_any_listed_secret_and_any_v1() {
        let header = format!("t={T},v1={},v1={V1}", "ab".repeat(32));
        assert_eq!(
            verify_signature(
                Some(&header),
                PAYLOAD.as_bytes(),
                &secrets(&["whsec_new", SECRET]),
                T,
                300
            ),
            Ok(())
        );
    }
}
