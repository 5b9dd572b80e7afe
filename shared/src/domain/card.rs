//! Card numbers (PANs) we must never hold: PCI scope stays SAQ-A only if no card number is
//! accepted, stored, logged or sent on. Every free-text value a client gives us is checked.
//!
//! A value holds a card number if, anywhere in it, digit groups joined by single separators
//! (space, `-`, `.`, `:`, `_`, `/`) make 13 to 19 digits that pass the Luhn check:
//! `4242424242424242`, `4242 4242 4242 4242`, `4242.4242.4242.4242`, `pan:4242424242424242`,
//! `4242424242424242-1`. A long numeric id can be refused by this (about one run in ten of
//! 13–19 digits passes Luhn by chance); that is the price of never holding a card.

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

/// True if `s` holds a card number anywhere (see the module's rule).
pub fn contains_pan(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A span: digit groups, each separated from the next by exactly one separator.
        let mut groups: Vec<&[u8]> = Vec::new();
        let mut j = i;
        loop {
            let start = j;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            groups.push(&bytes[start..j]);
            let joins =
                j + 1 < bytes.len() && SEPARATORS.contains(&bytes[j]) && bytes[j + 1].is_ascii_digit();
            if !joins {
                break;
            }
            j += 1;
        }
        if span_holds_pan(&groups) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

/// Any run of whole groups, or any window inside one group, of 13–19 digits passing Luhn.
fn span_holds_pan(groups: &[&[u8]]) -> bool {
    for first in 0..groups.len() {
        let mut digits: Vec<u8> = Vec::new();
        for g in &groups[first..] {
            digits.extend_from_slice(g);
            if digits.len() > PAN_DIGITS_MAX {
                break;
            }
            if digits.len() >= PAN_DIGITS_MIN && luhn(&digits) {
                return true;
            }
        }
    }
    // A card number written inside a longer run of digits, with no separator to mark it.
    groups.iter().any(|g| {
        g.len() > PAN_DIGITS_MAX && (PAN_DIGITS_MIN..=PAN_DIGITS_MAX).any(|n| g.windows(n).any(luhn))
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
            "x4242424242424242y",
            "99994242424242424242",
            "378282246310005",
        ] {
            assert!(contains_pan(s), "{s}");
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
        ] {
            assert!(!contains_pan(s), "{s}");
        }
    }
}
