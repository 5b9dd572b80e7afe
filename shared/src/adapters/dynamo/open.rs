//! The sparse `by_open` index of the payments table: the records that wait on the PSP — a
//! checkout `EXECUTING` on its session, a refund `PENDING` at the PSP, a payout `IN_TRANSIT` —
//! under `open_bucket` = `<kind>#<shard>` and `open_since` = when it last moved. A record
//! leaves the index by itself when it reaches a final state (every write is a whole item).
//! `repair_stuck` reads the ones waiting longer than it should, shard by shard.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::codec::{s, time};

pub const OPEN_INDEX: &str = "by_open";
/// Shards per kind, so that no one index partition takes every open record's writes.
pub const OPEN_SHARDS: u32 = 16;

/// The index attributes of an open record of `kind` with id `id`.
pub fn open_attrs(kind: &str, id: &str, since: DateTime<Utc>) -> [(String, AttributeValue); 2] {
    let shard = id.chars().last().and_then(|c| c.to_digit(16)).unwrap_or(0) % OPEN_SHARDS;
    [
        ("open_bucket".into(), s(format!("{kind}#{shard:02}"))),
        ("open_since".into(), time(since)),
    ]
}

/// Every bucket of `kind`.
pub fn buckets(kind: &str) -> impl Iterator<Item = String> + '_ {
    (0..OPEN_SHARDS).map(move |shard| format!("{kind}#{shard:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spread_over_the_shards_of_their_kind() {
        let t = Utc::now();
        let [(k, b), _] = open_attrs("checkout", "chk_0190000000007000800000000000000a", t);
        assert_eq!(
            (k.as_str(), b.as_s().unwrap().as_str()),
            ("open_bucket", "checkout#10")
        );
        let [(_, b), _] = open_attrs("refund", "rf_01900000000070008000000000000003", t);
        assert_eq!(b.as_s().unwrap(), "refund#03");
        assert_eq!(buckets("payout").count(), OPEN_SHARDS as usize);
        assert!(buckets("payout").all(|b| b.starts_with("payout#")));
    }
}
