//! Card numbers (PANs) we must never hold: PCI scope stays SAQ-A only if no card number is
//! accepted, stored, logged or sent on. Every free-text value a client gives us is checked.
//!
//! A value holds a card number if, anywhere in it, digit groups joined by single separators
//! (space, `-`, `.`, `:`, `_`, `/`) make 13 to 19 digits that pass the Luhn check:
//! `4242424242424242`, `4242 4242 4242 4242`, `4242.4242.4242.4242`, `pan:4242424242424242`,
//! `4242424242424242-1`. A long numeric id can be refused by this (about one run in ten of
//! 13–19 digits passes Luhn by chance); that is the price of never holding a card.
//!
//! Only digits standing as their own token count (bounded by the value's ends or by anything but
//! a letter or digit): digits glued to letters are part of a word. Without this, random ids
//! looked like cards all the time: one UUID in about 365 (partial digit runs joined across its
//! dashes), one 32-hex-digit id in about 375 (a chance run of 13 digits). A canonical UUID
//! (8-4-4-4-12 hex) is not checked at all: it is the shape we ask Idempotency-Keys to have and
//! many clients give their ids, and its all-digit groups alone would still make about one in
//! 7,000 look like a card. A card number can only hide in either by being reshaped on purpose.

/// Characters people write between the digit groups of a card number.
const SEPARATORS: &[u8] = b" -.:_/";
const PAN_DIGITS_MIN: usize = 13;
const PAN_DIGITS_MAX: usize = 19;

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            match (i % 2, d * 2) {
                (1, x) if x > 9 => x - 9,
                (1, x) => x,
                _ => d,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits, either case.
fn is_canonical_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// True if `s` holds a card number anywhere (see the module's rule).
pub fn contains_pan(s: &str) -> bool {
    if is_canonical_uuid(s) {
        return false;
    }
    let b = s.as_bytes();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            runs.push((start, i));
        } else {
            i += 1;
        }
    }
    // Only digits standing as their own token count: digits glued to letters are part of a
    // word (`a3f21234567890123b…` in a hex id), not a card group.
    runs.retain(|&(a, z)| {
        (a == 0 || !b[a - 1].is_ascii_alphanumeric()) && (z == b.len() || !b[z].is_ascii_alphanumeric())
    });
    // A card number inside a longer run of digits, with nothing to mark it.
    if runs.iter().any(|&(a, z)| {
        z - a > PAN_DIGITS_MAX && (PAN_DIGITS_MIN..=PAN_DIGITS_MAX).any(|n| b[a..z].windows(n).any(luhn))
    }) {
        return true;
    }
    // Runs joined by single separators (`4242.4242.4242.4242`), or one alone.
    let mut k = 0;
    while k < runs.len() {
        let mut m = k;
        while m + 1 < runs.len() && runs[m + 1].0 == runs[m].1 + 1 && SEPARATORS.contains(&b[runs[m].1]) {
            m += 1;
        }
        if chain_holds_pan(b, &runs[k..=m]) {
            return true;
        }
        k = m + 1;
    }
    false
}

/// Consecutive runs of a chain making 13–19 digits that pass Luhn.
fn chain_holds_pan(b: &[u8], chain: &[(usize, usize)]) -> bool {
    (0..chain.len()).any(|first| {
        let mut digits: Vec<u8> = Vec::new();
        for &(a, z) in &chain[first..] {
            digits.extend_from_slice(&b[a..z]);
            if digits.len() > PAN_DIGITS_MAX {
                return false;
            }
            if digits.len() >= PAN_DIGITS_MIN && luhn(&digits) {
                return true;
            }
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_in_every_disguise() {
        for s in [
            "4242424242424242",
            "4000 0000 0000 9995",
            "4242-4242-4242-4242",
            "4242.4242.4242.4242",
            "4242:4242:4242:4242",
            "4242_4242_4242_4242",
            "4242/4242/4242/4242",
            "pan:4242424242424242",
            "4242424242424242-1",
            "order-4000000000000002",
            "99994242424242424242",
            "378282246310005",
            // Not a UUID once reshaped: checked.
            "42424242-4242-4242-4242",
        ] {
            assert!(contains_pan(s), "{s}");
        }
    }

    #[test]
    fn random_ids_do_not_look_like_cards() {
        for _ in 0..20_000 {
            let u = uuid::Uuid::new_v4();
            assert!(!contains_pan(&u.to_string()), "{u}");
            assert!(!contains_pan(&u.simple().to_string()), "{}", u.simple());
        }
    }

    #[test]
    fn ordinary_values_pass() {
        for s in [
            "",
            "order-1234",
            "123456789012",
            "4242424242424241",
            "seller_456",
            "d7e8f9a0-1b2c-3d4e-5f6a-7b8c9d0e1f2a",
            "4242--4242-4242-4242",
            "2026-11-30",
            // UUIDs whose all-digit groups would pass Luhn joined together.
            "42424242-4242-4242-8242-abcdefabcdef",
            "00000000-0000-4000-8000-000000000000",
            // Digits glued to letters are a word's part: a hex id, not a card.
            "x4242424242424242y",
            "a3f24242424242424242e",
            "ab4242-4242-4242-4242cd",
            "key_9a42424242-4242424242b",
        ] {
            assert!(!contains_pan(s), "{s}");
        }
    }
}
