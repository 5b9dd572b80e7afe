//! `Authorization: Bearer <api key>` → the caller's account, counting the request against the
//! key's rate limit in the same conditional write.
//!
//! A POST on a warm instance does not wait for that write before it reads: the instance
//! remembers which account a key hash belongs to (that never changes), so the command reads
//! while the key is checked ([`Authority::Checking`]), and writes only once it passed. The
//! key's status and limit are still checked in DynamoDB on every request, across instances.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;

use sha2::{Digest, Sha256};

use super::{Caller, Reply};
use crate::api::ApiError;
use crate::domain::rate_limit::{RateDecision, RateLimit};
use crate::ports::{ApiKeyRecord, ApiKeys, Consume};

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

/// `clock`: the time now in epoch microseconds. A request may be counted at any moment of its
/// flight: the first attempt at the clock's time; after a refusal that showed `tat`, at
/// `min(clock, tat)`. That refusal proves `tat` is no earlier than the refused attempt, so
/// it is a moment of this request's flight, and at it the key is busy, never idle: the next
/// write (`tat += interval` if `now <= tat <= limit`) cannot lose to a racing request the way
/// an idle one (`tat = now + interval` if `tat < now`) can. And a request whose first write
/// was slow (a cold start) is judged by a late moment, not by when it began: others that
/// came meanwhile may have pushed `tat` past its start by more than the key's tolerance.
pub async fn authenticate<K: ApiKeys>(
    keys: &K,
    authorization: Option<&[u8]>,
    default_limit: RateLimit,
    clock: impl Fn() -> i64 + Sync,
) -> Result<Caller, ApiError> {
    let key_hash = hash_api_key(bearer_token(authorization)?);
    authenticate_hash(keys, &key_hash, default_limit, &clock).await
}

async fn authenticate_hash<K: ApiKeys>(
    keys: &K,
    key_hash: &str,
    default_limit: RateLimit,
    clock: &(dyn Fn() -> i64 + Sync),
) -> Result<Caller, ApiError> {
    let interval = default_limit.interval_us();
    // What the key's last refusal showed: its `tat` and its limit.
    let mut refused: Option<(Option<i64>, RateLimit)> = None;
    for _ in 0..ATTEMPTS_MAX {
        // The moment this attempt counts the request at: decided and written with it.
        let clock_us = clock();
        let (now_us, next) = match refused {
            None => (clock_us, RateDecision::Idle),
            Some((tat_us, limit)) => {
                let at = tat_us.map_or(clock_us, |tat| tat.min(clock_us));
                (at, limit.decide(tat_us, at))
            }
        };
        let outcome = match next {
            RateDecision::Idle => keys.consume_idle(key_hash, now_us, interval).await,
            RateDecision::Busy { limit_us } => keys.consume_busy(key_hash, now_us, limit_us, interval).await,
            RateDecision::Limited { retry_after_s } => return Err(ApiError::rate_limited(retry_after_s)),
        }?;
        match outcome {
            Consume::Allowed(record) => return Ok(caller(record)),
            Consume::Refused(Some(record)) if record.active => {
                refused = Some((record.tat_us, record.limit.unwrap_or(default_limit)));
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
#[derive(Debug, Clone)]
pub enum Authority {
    /// Authenticated, and the request counted, before the command ran.
    Checked(Caller),
    /// Remembered by this instance (whom a key belongs to never changes); the key's status
    /// and its rate limit are checked in DynamoDB at the same time as the command reads. The
    /// command writes nothing before [`Authority::confirmed`], and its answer is given only
    /// if the check passed.
    Checking {
        caller: Caller,
        check: watch::Receiver<Option<bool>>,
    },
}

impl Authority {
    pub fn caller(&self) -> &Caller {
        match self {
            Authority::Checked(c) | Authority::Checking { caller: c, .. } => c,
        }
    }

    /// Waits for the key's check: true if the key is active and within its limit. The one
    /// gate before a POST's first write (`idempotent::run`).
    pub async fn confirmed(&self) -> bool {
        match self {
            Authority::Checked(_) => true,
            Authority::Checking { check, .. } => {
                let mut check = check.clone();
                // The checker gone without a word: not confirmed.
                let passed = match check.wait_for(Option::is_some).await {
                    Ok(verdict) => verdict.unwrap_or(false),
                    Err(_) => false,
                };
                passed
            }
        }
    }
}

/// Runs an authenticated POST. A key this instance knows is checked and counted at the same
/// time as the command reads (one conditional `UpdateItem` on the key, never inside the
/// command's own transaction, so a key's requests do not contend in their transactions);
/// an unknown key is authenticated first. Either way the answer is the command's only if the
/// key passed: else 401 (and the key is forgotten) or 429.
pub async fn authenticated_post<K, F, Fut>(
    keys: &K,
    callers: &CallerCache,
    authorization: Option<&[u8]>,
    default_limit: RateLimit,
    clock: impl Fn() -> i64 + Sync,
    run: F,
) -> Result<Reply, ApiError>
where
    K: ApiKeys,
    F: FnOnce(Authority) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    let key_hash = hash_api_key(bearer_token(authorization)?);
    let Some(caller) = callers.get(&key_hash) else {
        let caller = authenticate_hash(keys, &key_hash, default_limit, &clock).await?;
        callers.remember(&key_hash, &caller);
        return run(Authority::Checked(caller)).await;
    };
    let (verdict, check) = watch::channel(None);
    let checking = async {
        let checked = authenticate_hash(keys, &key_hash, default_limit, &clock).await;
        let passed = matches!(&checked, Ok(c) if *c == caller);
        verdict.send_replace(Some(passed));
        checked
    };
    let authority = Authority::Checking {
        caller: caller.clone(),
        check,
    };
    let (checked, answer) = tokio::join!(checking, run(authority));
    match checked {
        Ok(c) if c == caller => answer,
        Ok(_) => {
            tracing::error!("a remembered key now names another caller");
            callers.forget(&key_hash);
            Err(ApiError::internal())
        }
        Err(e) => {
            if e.status == 401 {
                callers.forget(&key_hash);
            }
            Err(e)
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
            let c = authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, || now)
                .await
                .unwrap();
            assert_eq!(c.account_id, acct);
        }
        let e = authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, || now)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.retry_after_s), (429, Some(1)));
        // A second later one more token has been earned.
        assert!(
            authenticate(&store, Some(b"Bearer secret-1".as_slice()), dflt, || now
                + 1_000_000)
            .await
            .is_ok()
        );
        let e = authenticate(&store, Some(b"Bearer wrong".as_slice()), dflt, || now)
            .await
            .unwrap_err();
        assert_eq!(e.status, 401);
    }

    /// A request whose first write reached the key late (a cold start, a slow store) is
    /// judged by a moment of its flight after that write, not by when it began: others that
    /// came meanwhile pushed `tat` past its start by more than the burst tolerance.
    #[tokio::test]
    async fn a_slow_request_is_judged_by_a_late_moment_of_its_flight() {
        let store = Memory::default();
        // 1,000 a second, a burst of 1,000: a tolerance of 0.999 s.
        store.add_key("secret-3", Some(RateLimit::new(1000, 1000).unwrap()));
        let dflt = RateLimit::new(50, 100).unwrap();
        let key = Some(b"Bearer secret-3".as_slice());
        // Another request, 1.2 s after ours began: tat = its now + one interval.
        authenticate(&store, key, dflt, || 2_200_000).await.unwrap();
        // Ours began at 1.0 s; its first write reached the key at 2.2 s, its second later.
        let ticks = Mutex::new(vec![2_200_500, 1_000_000]);
        let clock = || ticks.lock().unwrap().pop().unwrap_or(2_200_500);
        let c = authenticate(&store, key, dflt, clock).await;
        assert!(c.is_ok(), "refused within the limit: {c:?}");
        // The key's limit still holds: at 2.3 s the key is idle again (tat 2.202 s), so its
        // whole burst of 1,000 fits at that moment, and no more.
        let mut refused = 0;
        for _ in 0..1200 {
            if authenticate(&store, key, dflt, || 2_300_000).await.is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 200, "the burst, exactly");
    }

    /// Requests racing for an idle key: each loses its idle write to one that counted itself a
    /// little later, then is counted as busy at the moment the winner showed, and none is
    /// refused while the key is far within its limit.
    #[tokio::test]
    async fn requests_racing_for_an_idle_key_are_all_counted() {
        /// Before each idle write, a racing request (5 µs later) writes first.
        struct Raced(Memory, std::sync::atomic::AtomicU32);
        impl ApiKeys for Raced {
            async fn consume_idle(
                &self,
                key: &str,
                now_us: i64,
                dflt: i64,
            ) -> Result<Consume, crate::ports::StoreError> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.consume_idle(key, now_us + 5, dflt).await?;
                self.0.consume_idle(key, now_us, dflt).await
            }
            async fn consume_busy(
                &self,
                key: &str,
                now_us: i64,
                limit_us: i64,
                dflt: i64,
            ) -> Result<Consume, crate::ports::StoreError> {
                self.0.consume_busy(key, now_us, limit_us, dflt).await
            }
        }
        let store = Raced(Memory::default(), Default::default());
        store
            .0
            .add_key("secret-4", Some(RateLimit::new(1_000_000, 1_000_000).unwrap()));
        let dflt = RateLimit::new(50, 100).unwrap();
        // Each round trip to the store takes a millisecond: by the next attempt the winner's
        // `tat` is in the past.
        let t = std::sync::atomic::AtomicI64::new(1_000_000_000);
        let clock = || t.fetch_add(1_000, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..50 {
            let c = authenticate(&store, Some(b"Bearer secret-4".as_slice()), dflt, &clock).await;
            assert!(c.is_ok(), "refused far within the limit: {c:?}");
        }
        assert_eq!(
            store.1.load(std::sync::atomic::Ordering::Relaxed),
            50,
            "one idle try each"
        );
    }

    #[tokio::test]
    async fn a_known_key_is_checked_while_the_command_reads_and_its_answer_waits_for_the_check() {
        let store = Memory::default();
        store.add_key("secret-2", Some(RateLimit::new(1, 2).unwrap()));
        let dflt = RateLimit::new(50, 100).unwrap();
        let callers = CallerCache::default();
        let seen = Mutex::new(Vec::new());
        let post = |now_us: i64| {
            let (store, callers, seen) = (&store, &callers, &seen);
            authenticated_post(
                store,
                callers,
                Some(b"Bearer secret-2".as_slice()),
                dflt,
                move || now_us,
                move |auth: Authority| async move {
                    let checking = matches!(auth, Authority::Checking { .. });
                    let passed = auth.confirmed().await;
                    seen.lock().unwrap().push((checking, passed));
                    Ok(Reply::json(201, &serde_json::json!({})))
                },
            )
        };
        // Unknown to this instance: authenticated first, then remembered.
        assert_eq!(post(1_000_000).await.unwrap().status, 201);
        // Known: checked alongside the command, and counted once.
        assert_eq!(post(1_000_001).await.unwrap().status, 201);
        assert_eq!(*seen.lock().unwrap(), [(false, true), (true, true)]);
        assert_eq!(
            store.key("secret-2").unwrap().tat_us,
            Some(3_000_000),
            "two requests counted at one per second"
        );
        // Over its burst: the command is told, and the answer is 429, not the command's.
        let e = post(1_000_002).await.unwrap_err();
        assert_eq!((e.status, e.retry_after_s), (429, Some(1)));
        assert_eq!(seen.lock().unwrap().last(), Some(&(true, false)));
        assert!(
            callers.get(&hash_api_key("secret-2")).is_some(),
            "a limited key is still known"
        );
        // Revoked: 401 even though remembered, and forgotten.
        store.revoke_key("secret-2");
        let e = post(9_000_000).await.unwrap_err();
        assert_eq!(e.status, 401);
        assert_eq!(seen.lock().unwrap().last(), Some(&(true, false)));
        assert!(callers.get(&hash_api_key("secret-2")).is_none());
        // Forgotten: checked first, and the command never runs.
        let before = seen.lock().unwrap().len();
        assert_eq!(post(9_500_000).await.unwrap_err().status, 401);
        assert_eq!(seen.lock().unwrap().len(), before);
    }
}
