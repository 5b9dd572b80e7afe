//! Timestamps as we write them everywhere: RFC 3339, UTC, milliseconds (`2026-11-30T12:00:00.000Z`).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses what [`format_time`] writes (any RFC 3339 time, normalized to UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
