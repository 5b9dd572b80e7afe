//! Free-form key–value pairs a client attaches to an object (Stripe's `metadata`): stored and
//! returned as given, bounded, and never holding a card number.

use std::collections::BTreeMap;

use serde::Serialize;

pub const METADATA_KEYS_MAX: usize = 20;
pub const METADATA_KEY_CHARS_MAX: usize = 40;
pub const METADATA_VALUE_CHARS_MAX: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("at most {METADATA_KEYS_MAX} keys are allowed")]
    TooManyKeys,
    #[error("keys must be 1 to {METADATA_KEY_CHARS_MAX} characters")]
    KeyLength { key: String },
    #[error("values must be at most {METADATA_VALUE_CHARS_MAX} characters")]
    ValueLength { key: String },
    #[error("card numbers are never accepted")]
    CardNumber { key: String },
}

impl MetadataError {
    /// The key it is about, cut for an error message.
    pub fn key(&self) -> Option<&str> {
        match self {
            MetadataError::TooManyKeys => None,
            MetadataError::KeyLength { key }
            | MetadataError::ValueLength { key }
            | MetadataError::CardNumber { key } => Some(key),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn new(pairs: BTreeMap<String, String>) -> Result<Self, MetadataError> {
        if pairs.len() > METADATA_KEYS_MAX {
            return Err(MetadataError::TooManyKeys);
        }
        for (k, v) in &pairs {
            let shown = || k.chars().take(METADATA_KEY_CHARS_MAX).collect::<String>();
            let chars = k.chars().count();
            if chars == 0 || chars > METADATA_KEY_CHARS_MAX {
                return Err(MetadataError::KeyLength { key: shown() });
            }
            if v.chars().count() > METADATA_VALUE_CHARS_MAX {
                return Err(MetadataError::ValueLength { key: shown() });
            }
            if super::card::contains_pan(k) || super::card::contains_pan(v) {
                return Err(MetadataError::CardNumber {
                    key: "(redacted)".into(),
                });
            }
        }
        Ok(Metadata(pairs))
    }

    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Result<Metadata, MetadataError> {
        Metadata::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn bounds_and_card_numbers() {
        assert!(m(&[("ticket", "T-1"), ("note", "")]).is_ok());
        let many: Vec<(String, String)> = (0..21).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(
            Metadata::new(many.into_iter().collect()),
            Err(MetadataError::TooManyKeys)
        );
        assert!(matches!(m(&[("", "v")]), Err(MetadataError::KeyLength { .. })));
        assert!(matches!(
            m(&[(&"k".repeat(41), "v")]),
            Err(MetadataError::KeyLength { .. })
        ));
        assert!(m(&[(&"k".repeat(40), &"v".repeat(500))]).is_ok());
        assert!(matches!(
            m(&[("k", &"v".repeat(501))]),
            Err(MetadataError::ValueLength { .. })
        ));
        assert!(matches!(
            m(&[("card", "4242 4242 4242 4242")]),
            Err(MetadataError::CardNumber { .. })
        ));
    }
}
