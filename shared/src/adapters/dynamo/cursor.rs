//! List cursors: the one mechanism every cursor-paged list uses.
//!
//! A cursor carries DynamoDB's `LastEvaluatedKey`, which names the account and the table's key
//! schema, so it is sealed: encrypted and authenticated with ChaCha20-Poly1305 under a key
//! derived from `CURSOR_SECRET`, with the list's scope (which query, for which account, with
//! which parameters) as associated data. A cursor edited, made up, or taken from another
//! query or account does not open, and the caller gets `400 parameter_invalid`.

use std::collections::BTreeMap;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

use super::codec::{s, Item};
use crate::ports::StoreError;

/// Longer text is not a cursor we made (our keys are a few hundred bytes at most).
const CURSOR_CHARS_MAX: usize = 2048;
const NONCE_BYTES: usize = 12;

/// Seals and opens cursors.
#[derive(Clone)]
pub struct Cursors {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors(***)")
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl Cursors {
    /// The key is SHA-256 of the configured secret.
    pub fn new(secret: &str) -> Self {
        let key = Sha256::digest(secret.as_bytes());
        Cursors {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// The cursor for the page after `last_key` in `scope`; `None` when there is none.
    pub fn seal(&self, scope: &str, last_key: Option<&Item>) -> Option<String> {
        let key = last_key.filter(|k| !k.is_empty())?;
        let plain: BTreeMap<&String, &str> = key
            .iter()
            .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.as_str())))
            .collect();
        let plaintext = serde_json::to_vec(&plain).ok()?;
        let nonce_bytes: [u8; NONCE_BYTES] =
            uuid::Uuid::new_v4().as_bytes()[..NONCE_BYTES].try_into().ok()?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: &plaintext,
                    aad: scope.as_bytes(),
                },
            )
            .ok()?;
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        Some(b64().encode(out))
    }

    /// The key a cursor of `scope` carries; `InvalidCursor` for anything else.
    pub fn open(&self, scope: &str, cursor: Option<&str>) -> Result<Option<Item>, StoreError> {
        let Some(cursor) = cursor else { return Ok(None) };
        let invalid = |why: &str| StoreError::InvalidCursor(format!("{why} ({} characters)", cursor.len()));
        if cursor.len() > CURSOR_CHARS_MAX {
            return Err(invalid("too long"));
        }
        let bytes = b64().decode(cursor).map_err(|_| invalid("not base64url"))?;
        if bytes.len() <= NONCE_BYTES {
            return Err(invalid("too short"));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: scope.as_bytes(),
                },
            )
            .map_err(|_| invalid("does not open for this list"))?;
        let plain: BTreeMap<String, String> =
            serde_json::from_slice(&plaintext).map_err(|_| invalid("holds no key"))?;
        if plain.is_empty() {
            return Err(invalid("holds an empty key"));
        }
        Ok(Some(plain.into_iter().map(|(k, v)| (k, s(v))).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Item {
        Item::from([
            ("pk".into(), s("ACCT#acct_a#psp_receivable")),
            ("sk".into(), s("2026#ltx_1#0")),
        ])
    }

    #[test]
    fn a_cursor_opens_only_for_its_own_list() {
        let c = Cursors::new("a secret of thirty-two characters!!");
        let scope = "ledger_entries|acct_a|psp_receivable";
        let cursor = c.seal(scope, Some(&key())).unwrap();
        // Opaque: none of the key's text shows (two letters such as "pk" may, by chance, in
        // the random ciphertext's base64).
        assert!(
            !cursor.contains("acct_a") && !cursor.contains("psp_receivable") && !cursor.contains("ltx_1"),
            "opaque: {cursor}"
        );
        assert_eq!(c.open(scope, Some(&cursor)).unwrap(), Some(key()));
        assert_eq!(c.open(scope, None).unwrap(), None);
        assert!(c.seal(scope, None).is_none());
        let refused = |scope: &str, cursor: &str| {
            matches!(c.open(scope, Some(cursor)), Err(StoreError::InvalidCursor(_)))
        };
        // Another account's or another query's list.
        assert!(refused("ledger_entries|acct_b|psp_receivable", &cursor));
        assert!(refused("ledger_transactions|acct_a|po_1", &cursor));
        // Edited, made up, empty, the old hex-JSON form, `{}`.
        let mut edited = cursor.clone().into_bytes();
        let last = edited.len() - 3;
        edited[last] = if edited[last] == b'A' { b'B' } else { b'A' };
        assert!(refused(scope, std::str::from_utf8(&edited).unwrap()));
        for made_up in [
            "",
            "{}",
            "7b7d",
            "x",
            &"A".repeat(5000),
            &hex::encode(br#"{"pk":"ACCT#acct_a#x"}"#),
        ] {
            assert!(refused(scope, made_up), "{made_up}");
        }
        // Another deployment's secret.
        assert!(matches!(
            Cursors::new("another secret").open(scope, Some(&cursor)),
            Err(StoreError::InvalidCursor(_))
        ));
    }
}
