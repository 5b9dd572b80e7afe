//! `Authorization: Bearer <api key>` → the caller's account, counting the request against the
//! key's rate limit in the same conditional write.

use sha2::{Digest, Sha256};

use super::Caller;
use crate::domain::rate_limit::{RateDecision, RateLimit};
use crate::domain::ApiError;
use crate::ports::{ApiKeyRecord, ApiKeys, Consume};

/// Bounded: under heavy contention on one key a request gives up with 429 rather than spin.
const ATTEMPTS_MAX: usize = 4;
const KEY_LEN_MAX: usize = 256;

/// The stored form of an API key: its SHA-256, hex. The key itself is never stored or logged.
pub fn hash_api_key(raw_key: &str) -> String {
    hex::encode(Sha256::digest(raw_key.as_bytes()))
}

pub fn bearer_token(authorization: Option<&str>) -> Result<&str, ApiError> {
    let header = authorization.ok_or_else(|| {
        ApiError::unauthenticated("No API key provided: send 'Authorization: Bearer <api key>'")
    })?;
    let (scheme, token) = header
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("Authorization must be 'Bearer <api key>'"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > KEY_LEN_MAX {
        return Err(ApiError::unauthenticated(
            "Authorization must be 'Bearer <api key>'",
        ));
    }
    Ok(token)
}

pub async fn authenticate<K: ApiKeys>(
    keys: &K,
    authorization: Option<&str>,
    default_limit: RateLimit,
    now_us: i64,
) -> Result<Caller, ApiError> {
    let key_hash = hash_api_key(bearer_token(authorization)?);
    let interval = default_limit.interval_us();
    let mut next = RateDecision::Idle;
    for _ in 0..ATTEMPTS_MAX {
        let outcome = match next {
            RateDecision::Idle => keys.consume_idle(&key_hash, now_us, interval).await,
            RateDecision::Busy { limit_us } => keys.consume_busy(&key_hash, now_us, limit_us, interval).await,
            RateDecision::Limited { retry_after_s } => return Err(ApiError::rate_limited(retry_after_s)),
        }
        .map_err(|e| {
            tracing::error!(error = %e, "api key store failed");
            ApiError::unavailable(1, "Authentication is temporarily unavailable; retry shortly")
        })?;
        match outcome {
            Consume::Allowed(record) => return Ok(caller(record)),
            Consume::Refused(Some(record)) if record.active => {
                next = record
                    .limit
                    .unwrap_or(default_limit)
                    .decide(record.tat_us, now_us);
            }
            Consume::Refused(_) => return Err(ApiError::unauthenticated("Invalid API key provided")),
        }
    }
    Err(ApiError::rate_limited(1))
}

fn caller(record: ApiKeyRecord) -> Caller {
    Caller {
        account_id: record.account_id,
        key_id: record.key_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::Memory;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(Some("bearer abc")).unwrap(), "abc");
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic abc"),
            Some("abc"),
        ] {
            assert_eq!(bearer_token(bad).unwrap_err().status, 401, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn authenticates_and_limits() {
        let store = Memory::default();
        let acct = store.add_key("secret-1", Some(RateLimit::new(1, 3).unwrap()));
        let dflt = RateLimit::new(50, 100).unwrap();
        let now = 1_000_000_000;
        for _ in 0..3 {
            let c = authenticate(&store, Some("Bearer secret-1"), dflt, now)
                .await
                .unwrap();
            assert_eq!(c.account_id, acct);
        }
        let e = authenticate(&store, Some("Bearer secret-1"), dflt, now)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.retry_after_s), (429, Some(1)));
        // A second later one more token has been earned.
        assert!(
            authenticate(&store, Some("Bearer secret-1"), dflt, now + 1_000_000)
                .await
                .is_ok()
        );
        let e = authenticate(&store, Some("Bearer wrong"), dflt, now)
            .await
            .unwrap_err();
        assert_eq!(e.status, 401);
    }
}
