//! `Authorization: Bearer <api key>` → the caller's account, counting the request against the
//! key's rate limit in the same conditional write.
//!
//! A POST on a warm instance saves that write: the instance remembers which account a key hash
//! belongs to (that never changes), and the key's conditional rate-limit update goes into the
//! POST's own claim transaction ([`Authority::InClaim`]). The key's status and limit are still
//! checked in DynamoDB on every request, across instances; whenever that transaction is
//! cancelled for any reason, the request falls back to the ordinary path, which answers 401,
//! 429 or carries on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{Caller, Reply};
use crate::api::ApiError;
use crate::domain::rate_limit::{RateDecision, RateLimit};
use crate::ports::{ApiKeyRecord, ApiKeys, Consume, KeyCharge};

/// Bounded: under heavy contention on one key a request gives up with 429 rather than spin.
const ATTEMPTS_MAX: usize = 4;
const KEY_LEN_MAX: usize = 256;
/// Key hashes a warm instance remembers; past this it forgets them all and starts again.
pub const CALLERS_REMEMBERED_MAX: usize = 10_000;

/// The stored form of an API key: its SHA-256, hex. The key itself is never stored or logged.
pub fn hash_api_key(raw_key: &str) -> String {
    hex::encode(Sha256::digest(raw_key.as_bytes()))
}

pub fn bearer_token(authorization: Option<&[u8]>) -> Result<&str, ApiError> {
    let bytes = authorization.ok_or_else(|| {
        ApiError::unauthenticated("No API key provided: send 'Authorization: Bearer <api key>'")
    })?;
    let header = std::str::from_utf8(bytes)
        .ok()
        .filter(|h| h.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "Malformed API key: the Authorization header must be 'Bearer <api key>' in printable ASCII",
            )
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
    authorization: Option<&[u8]>,
    default_limit: RateLimit,
    now_us: i64,
) -> Result<Caller, ApiError> {
    let key_hash = hash_api_key(bearer_token(authorization)?);
    authenticate_hash(keys, &key_hash, default_limit, now_us).await
}

async fn authenticate_hash<K: ApiKeys>(
    keys: &K,
    key_hash: &str,
    default_limit: RateLimit,
    now_us: i64,
) -> Result<Caller, ApiError> {
    let interval = default_limit.interval_us();
    let mut next = RateDecision::Idle;
    for _ in 0..ATTEMPTS_MAX {
        let outcome = match next {
            RateDecision::Idle => keys.consume_idle(key_hash, now_us, interval).await,
            RateDecision::Busy { limit_us } => keys.consume_busy(key_hash, now_us, limit_us, interval).await,
            RateDecision::Limited { retry_after_s } => return Err(ApiError::rate_limited(retry_after_s)),
        }?;
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

/// Who a warm instance knows, by key hash. Only the key's owner is remembered, never its status
/// or its limit: those are read in DynamoDB on every request.
#[derive(Debug, Default)]
pub struct CallerCache {
    known: Mutex<HashMap<String, Caller>>,
}

impl CallerCache {
    pub fn get(&self, key_hash: &str) -> Option<Caller> {
        self.known.lock().ok()?.get(key_hash).cloned()
    }

    pub fn forget(&self, key_hash: &str) {
        if let Ok(mut known) = self.known.lock() {
            known.remove(key_hash);
        }
    }

    pub fn remember(&self, key_hash: &str, caller: &Caller) {
        if let Ok(mut known) = self.known.lock() {
            if known.len() >= CALLERS_REMEMBERED_MAX {
                known.clear();
            }
            known.insert(key_hash.to_owned(), caller.clone());
        }
    }
}

/// How a POST's caller was established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Authenticated, and the request counted, by its own write.
    Checked(Caller),
    /// Remembered by this instance; the key is checked and the request counted inside the
    /// POST's claim transaction, by `charge`.
    InClaim { caller: Caller, charge: KeyCharge },
}

/// What a POST run under an [`Authority`] came to.
#[derive(Debug)]
pub enum Outcome {
    Answered(Result<Reply, ApiError>),
    /// The key's charge in the claim was refused; nothing was written. The key as it was
    /// (`None`: no such key), to decide on as authentication does.
    KeyRefused(Option<ApiKeyRecord>),
    /// Nothing was written: authenticate the ordinary way, then run again.
    Authenticate,
}

impl Authority {
    pub fn caller(&self) -> &Caller {
        match self {
            Authority::Checked(c) | Authority::InClaim { caller: c, .. } => c,
        }
    }

    pub fn charge(&self) -> Option<&KeyCharge> {
        match self {
            Authority::Checked(_) => None,
            Authority::InClaim { charge, .. } => Some(charge),
        }
    }

    /// A request refused before anything was written (a bad body, a bad key): the answer for a
    /// checked caller; an unchecked one is authenticated first, so a revoked or limited key
    /// gets 401 or 429, never a hint about its body.
    pub fn refuse(&self, e: ApiError) -> Outcome {
        match self {
            Authority::Checked(_) => Outcome::Answered(Err(e)),
            Authority::InClaim { .. } => Outcome::Authenticate,
        }
    }
}

/// Runs an authenticated POST: with the key charged inside its claim when this instance knows
/// the key, else (and whenever that does not go through) after authenticating the ordinary way.
pub async fn authenticated_post<K, F, Fut>(
    keys: &K,
    callers: &CallerCache,
    authorization: Option<&[u8]>,
    default_limit: RateLimit,
    now_us: i64,
    run: F,
) -> Result<Reply, ApiError>
where
    K: ApiKeys,
    F: Fn(Authority) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let key_hash = hash_api_key(bearer_token(authorization)?);
    if let Some(caller) = callers.get(&key_hash) {
        // The same decisions as `authenticate_hash`, on the key each refused claim hands back:
        // idle, then within the burst, until it goes through, is refused for good, or the
        // attempts run out (then the ordinary path decides).
        let mut busy_limit_us = None;
        for _ in 0..ATTEMPTS_MAX {
            let charge = KeyCharge {
                key_hash: key_hash.clone(),
                now_us,
                default_interval_us: default_limit.interval_us(),
                busy_limit_us,
            };
            let key = match run(Authority::InClaim {
                caller: caller.clone(),
                charge,
            })
            .await
            {
                Outcome::Answered(answer) => return answer,
                Outcome::Authenticate => break,
                Outcome::KeyRefused(key) => {
                    tracing::debug!(busy = busy_limit_us.is_some(), "key charge refused in the claim");
                    key
                }
            };
            match key {
                Some(record) if record.active => {
                    match record
                        .limit
                        .unwrap_or(default_limit)
                        .decide(record.tat_us, now_us)
                    {
                        RateDecision::Idle => busy_limit_us = None,
                        RateDecision::Busy { limit_us } => busy_limit_us = Some(limit_us),
                        RateDecision::Limited { retry_after_s } => {
                            return Err(ApiError::rate_limited(retry_after_s))
                        }
                    }
                }
                _ => {
                    callers.forget(&key_hash);
                    return Err(ApiError::unauthenticated("Invalid API key provided"));
                }
            }
        }
    }
    let caller = authenticate_hash(keys, &key_hash, default_limit, now_us).await?;
    callers.remember(&key_hash, &caller);
    match run(Authority::Checked(caller)).await {
        Outcome::Answered(answer) => answer,
        Outcome::Authenticate | Outcome::KeyRefused(_) => {
            tracing::error!("a checked caller was sent to authenticate again");
            Err(ApiError::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::Memory;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(Some(b"Bearer abc".as_slice())).unwrap(), "abc");
        assert_eq!(bearer_token(Some(b"bearer abc".as_slice())).unwrap(), "abc");
        for bad in ["", "Bearer", "Bearer ", "Basic abc", "abc"] {
            assert_eq!(
                bearer_token(Some(bad.as_bytes())).unwrap_err().status,
                401,
                "{bad:?}"
            );
        }
        let none = bearer_token(None).unwrap_err();
        assert!(none.message.contains("No API key provided"), "{}", none.message);
        let e = bearer_token(Some("Bearer clé".as_bytes())).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.message.contains("Malformed"), "{}", e.message);
    }

    #[tokio::test]
    async fn authenticates_and_limits() {
        let store = Memory::default();
        let acct = store.add_key("secret-1", Some(RateLimit::new(1, 3).unwrap()));
        let dflt = RateLimit::new(50, 100).unwrap();
        let now = 1_000_000_000;
        for _ in 0..3 {
            let c = authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, now)
                .await
                .unwrap();
            assert_eq!(c.account_id, acct);
        }
        let e = authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, now)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.retry_after_s), (429, Some(1)));
        // A second later one more token has been earned.
        assert!(
            authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, now + 1_000_000)
                .await
                .is_ok()
        );
        let e = authenticate(&store, Some(b"Bearer wrong".as_slice()), dflt, now)
            .await
            .unwrap_err();
        assert_eq!(e.status, 401);
    }

    #[tokio::test]
    async fn a_known_key_is_charged_in_the_claim_and_any_refusal_falls_back() {
        let store = Memory::default();
        store.add_key("secret-2", None);
        let dflt = RateLimit::new(50, 100).unwrap();
        let callers = CallerCache::default();
        let calls = Mutex::new(Vec::new());
        let run = |fast: bool| {
            let calls = &calls;
            move |auth: Authority| async move {
                let in_claim = auth.charge().is_some();
                calls.lock().unwrap().push(in_claim);
                if in_claim && !fast {
                    return Outcome::Authenticate;
                }
                Outcome::Answered(Ok(Reply::json(201, &serde_json::json!({}))))
            }
        };
        // Unknown to this instance: authenticated the ordinary way, then remembered.
        authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            1,
            run(true),
        )
        .await
        .unwrap();
        assert_eq!(*calls.lock().unwrap(), [false]);
        // Known: charged in the claim.
        authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            2,
            run(true),
        )
        .await
        .unwrap();
        assert_eq!(*calls.lock().unwrap(), [false, true]);
        // The claim refused: the ordinary path answers.
        authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            3_000_000,
            run(false),
        )
        .await
        .unwrap();
        assert_eq!(*calls.lock().unwrap(), [false, true, true, false]);
        // The claim refused the key as busy: charged again within its burst, in the claim.
        let refusals = Mutex::new(1);
        let busy_then_ok = |auth: Authority| {
            let (calls, refusals, store) = (&calls, &refusals, &store);
            async move {
                calls.lock().unwrap().push(auth.charge().is_some());
                let mut left = refusals.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Outcome::KeyRefused(store.key("secret-2"));
                }
                assert!(auth.charge().unwrap().busy_limit_us.is_some(), "{auth:?}");
                Outcome::Answered(Ok(Reply::json(201, &serde_json::json!({}))))
            }
        };
        calls.lock().unwrap().clear();
        authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            3_000_001,
            busy_then_ok,
        )
        .await
        .unwrap();
        assert_eq!(
            *calls.lock().unwrap(),
            [true, true],
            "two claims, no separate authentication"
        );
        // A revoked key is 401 even when remembered.
        store.revoke_key("secret-2");
        let e = authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            9_000_000,
            run(false),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, 401);
        // And refused in the claim, a revoked key is 401 and forgotten.
        let refused = |_auth: Authority| async { Outcome::KeyRefused(store.key("secret-2")) };
        callers.remember(&hash_api_key("secret-2"), &callers_caller(&store));
        let e = authenticated_post(
            &store,
            &callers,
            Some(b"Bearer secret-2".as_slice()),
            dflt,
            9_500_000,
            refused,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, 401);
        assert!(callers.get(&hash_api_key("secret-2")).is_none());
    }

    fn callers_caller(store: &Memory) -> Caller {
        let k = store.key("secret-2").unwrap();
        Caller {
            account_id: k.account_id,
            key_id: k.key_id,
        }
    }
}
