//! Use cases, each written against the ports it needs and never against an adapter.
//!
//! - request side: [`auth`], [`idempotent`] (one mechanism for every POST), [`pay_in`],
//!   [`refunds`], [`ledger`] (the read APIs);
//! - event side: [`relay`] (outbox routing), [`consumers`] (ledger and wallet),
//!   [`invariants`];
//! - [`errors`]: the one map from a store's or the PSP's failure to what the caller sees.

pub mod auth;
pub mod consumers;
pub mod errors;
pub mod idempotent;
pub mod invariants;
pub mod ledger;
#[cfg(test)]
pub(crate) mod memory;
pub mod pay_in;
pub mod payouts;
pub mod reconciliation;
pub mod refunds;
pub mod relay;

/// A response the HTTP adapter sends as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Sent again from the idempotency record (`Idempotent-Replayed: true`).
    pub replayed: bool,
    pub content_type: &'static str,
    /// More headers (a page's security headers).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Reply::stored(status, value.to_string(), false)
    }

    /// A JSON body as stored for replay.
    pub fn stored(status: u16, body: String, replayed: bool) -> Self {
        Reply {
            status,
            body,
            replayed,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// A page a buyer's browser lands on, with the headers such a page should carry: no
    /// script (the one inline style allowed by its hash), no framing, no sniffing, no caching,
    /// no referrer; a 503 says when to ask again.
    pub fn page(status: u16, html: &str) -> Self {
        use sha2::Digest;
        let style = base64_std(&sha2::Sha256::digest(pay_in::queries::PAGE_STYLE.as_bytes()));
        let mut headers = vec![
            (
                "content-security-policy",
                format!(
                    "default-src 'none'; style-src 'sha256-{style}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
                ),
            ),
            ("x-frame-options", "DENY".to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
            ("cache-control", "no-store".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
        ];
        if status == 503 {
            headers.push(("retry-after", "2".to_owned()));
        }
        Reply {
            status,
            body: html.to_owned(),
            replayed: false,
            content_type: "text/html; charset=utf-8",
            headers,
        }
    }
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Who is calling: the account an authenticated API key acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account_id: crate::domain::ids::AccountId,
    pub key_id: crate::domain::ids::ApiKeyId,
}
