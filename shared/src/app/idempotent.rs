//! One idempotency mechanism for every POST (design §14, key A; IETF draft "The
//! Idempotency-Key HTTP Header Field"): claim → decide → take over → complete.
//!
//! - **Claim.** The first request with a key writes an `IN_PROGRESS` record naming the resource
//!   it creates, in the same DynamoDB transaction as the resource itself (the [`Command`]'s
//!   `begin`), so there is never a record without its resource or a resource without its
//!   record. The record holds a lease that ends with the invocation's deadline.
//! - **Decide.** Any later request with the key is decided from the stored record alone:
//!   replay the stored answer (byte for byte), `422` for another body, `409` while the lease is
//!   live.
//! - **Take over.** A lapsed lease (a crash, a timeout) is taken by the next request, which
//!   finishes the same resource instead of creating another.
//! - **Complete.** The holder stores the final answer under its lease: with the resource's own
//!   last write in one transaction ([`Completion`](crate::ports::Completion)), or alone
//!   ([`complete`]). A retryable failure releases the lease at once ([`release`]).

use std::future::Future;

use super::auth::Authority;
use super::Reply;
use crate::api::ApiError;
use crate::domain::idempotency::{
    Decision, IdempotencyKey, IdempotencyRecord, KeyError, RecordState, ResourceRef,
};
use crate::ports::{Begin, Claims, StoreError};

/// Our hold on a claimed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub record_id: String,
    pub token: String,
}

/// What one POST needs, besides its command: the key as sent, the request's canonical
/// fingerprint, and the clock.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: IdempotencyKey,
    pub request_hash: String,
    pub now_ms: i64,
    /// The invocation's deadline: our lease on the key ends there.
    pub deadline_ms: i64,
}

impl Claim {
    /// A POST's `Idempotency-Key` header (its raw bytes) and body, parsed, and the claim they
    /// make: what every POST does first. A refusal is not stored (the request never started,
    /// as at Stripe).
    pub fn parse<R>(
        raw_key: Option<&[u8]>,
        body: &[u8],
        parse_body: impl FnOnce(&[u8]) -> Result<R, ApiError>,
        fingerprint: impl FnOnce(&R) -> String,
        now_ms: i64,
        deadline_ms: i64,
    ) -> Result<(Claim, R), ApiError> {
        let key = parse_key(raw_key)?;
        let request = parse_body(body)?;
        let claim = Claim {
            key,
            request_hash: fingerprint(&request),
            now_ms,
            deadline_ms,
        };
        Ok((claim, request))
    }
}

/// A POST that creates one resource.
pub trait Command: Sync {
    type Resource: Send + Sync;

    fn reference(&self, resource: &Self::Resource) -> ResourceRef;

    /// Writes `record` and the new resource in one transaction, the claim first.
    fn begin(
        &self,
        record: &IdempotencyRecord,
        resource: &Self::Resource,
    ) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// The resource a lapsed lease had created, to finish it.
    fn load(
        &self,
        reference: &ResourceRef,
    ) -> impl Future<Output = Result<Option<Self::Resource>, StoreError>> + Send;

    /// The final answer when it is known before anything is written (a refund's `201` is the
    /// refund as created; the PSP is asked later, from a queue): stored with the claim itself,
    /// so there is nothing to complete and no lease to take over.
    fn answer_with_claim(&self, _resource: &Self::Resource) -> Option<Reply> {
        None
    }

    /// Carries the resource to its final answer and stores it under `lease`.
    fn execute(
        &self,
        lease: &Lease,
        resource: Self::Resource,
    ) -> impl Future<Output = Result<Reply, ApiError>> + Send;
}

/// The `Idempotency-Key` header (its bytes as sent), which every POST requires.
pub fn parse_key(raw: Option<&[u8]>) -> Result<IdempotencyKey, ApiError> {
    match raw {
        None => Err(ApiError::invalid_param(
            "Idempotency-Key",
            "idempotency_key_missing",
            "The Idempotency-Key header is required: send a unique value (e.g. a UUID) per request and reuse it on retries",
        )),
        Some(raw) => IdempotencyKey::parse(raw).map_err(|e| {
            let code = match e {
                KeyError::CardNumber => "card_data_rejected",
                KeyError::Length | KeyError::NotPrintableAscii | KeyError::Several => "idempotency_key_invalid",
            };
            ApiError::invalid_param("Idempotency-Key", code, e.to_string())
        }),
    }
}

/// Runs `command` for `claim`, creating `resource` at most once per key. Nothing is written
/// before the caller's API key passed its check ([`Authority::confirmed`]).
pub async fn run<S: Claims, C: Command>(
    claims: &S,
    command: &C,
    authority: &Authority,
    claim: Claim,
    resource: C::Resource,
) -> Result<Reply, ApiError> {
    let record_id = claim.key.record_id(&authority.caller().key_id);
    let immediate = command.answer_with_claim(&resource);
    let record = match &immediate {
        Some(reply) => IdempotencyRecord::new_completed(
            record_id,
            claim.request_hash.clone(),
            command.reference(&resource),
            claim.now_ms,
            reply.status,
            reply.body.clone(),
        ),
        None => IdempotencyRecord::new_in_progress(
            record_id,
            claim.request_hash.clone(),
            command.reference(&resource),
            claim.now_ms,
            claim.deadline_ms,
        ),
    };
    let lease = Lease {
        record_id: record.record_id.clone(),
        token: record.lease_token().unwrap_or_default().to_owned(),
    };
    if !authority.confirmed().await {
        // The key failed its check: `auth::authenticated_post` answers 401 or 429 instead.
        return Err(ApiError::unauthenticated("The API key did not pass its check"));
    }
    let existing = match command.begin(&record, &resource).await? {
        Begin::Created => {
            return match immediate {
                Some(reply) => Ok(reply),
                None => command.execute(&lease, resource).await,
            }
        }
        // Our own claim, seen again because the SDK retried a call that had been written.
        Begin::Exists(existing) if existing.lease_token() == Some(lease.token.as_str()) => {
            return command.execute(&lease, resource).await
        }
        Begin::Exists(existing) => existing,
        Begin::Contended => match claims.get_record(&lease.record_id).await? {
            Some(existing) => existing,
            None => return Err(ApiError::conflict_in_flight()),
        },
        // The caller's own mistake, found by the write: refused like any invalid request, and
        // not stored.
        Begin::Refused(r) => return Err(r.into()),
    };
    decide(claims, command, &claim, lease, existing).await
}

/// For a request refused on what it read before writing anything (the order has nothing
/// left to refund, the wallet nothing available), when the refusal may be the consequence of
/// this key's own earlier success: the stored answer for the key if it has one (replayed, or
/// `422` for another body, `409` while in flight); else `refusal`.
pub async fn stored_answer_or<S: Claims>(
    claims: &S,
    authority: &Authority,
    claim: &Claim,
    refusal: ApiError,
) -> Result<Reply, ApiError> {
    let record_id = claim.key.record_id(&authority.caller().key_id);
    match claims.get_record(&record_id).await? {
        Some(existing) => match existing.decide(&claim.request_hash, claim.now_ms) {
            Decision::Replay { status, body } => Ok(Reply::stored(status, body, true)),
            Decision::Mismatch => Err(ApiError::idempotency_mismatch()),
            Decision::InFlight | Decision::TakeOver { .. } => Err(ApiError::conflict_in_flight()),
        },
        None => Err(refusal),
    }
}

async fn decide<S: Claims, C: Command>(
    claims: &S,
    command: &C,
    claim: &Claim,
    lease: Lease,
    existing: IdempotencyRecord,
) -> Result<Reply, ApiError> {
    match existing.decide(&claim.request_hash, claim.now_ms) {
        Decision::Replay { status, body } => Ok(Reply::stored(status, body, true)),
        Decision::Mismatch => Err(ApiError::idempotency_mismatch()),
        Decision::InFlight => Err(ApiError::conflict_in_flight()),
        Decision::TakeOver {
            resource,
            stale_token,
        } => {
            if !claims
                .take_over(
                    &lease.record_id,
                    &stale_token,
                    &lease.token,
                    claim.deadline_ms,
                    claim.now_ms,
                )
                .await?
            {
                return Err(ApiError::conflict_in_flight());
            }
            tracing::warn!(resource = %resource, "took over a lapsed idempotency lease");
            let found = command.load(&resource).await?.ok_or_else(|| {
                tracing::error!(resource = %resource, "idempotency record names a missing resource");
                ApiError::internal()
            })?;
            command.execute(&lease, found).await
        }
    }
}

/// Stores `reply` as the key's final answer. Losing the lease first is logged, not an error:
/// whoever holds it now answers the same resource.
pub async fn complete<S: Claims>(claims: &S, lease: &Lease, reply: &Reply) -> Result<(), ApiError> {
    if !claims
        .complete(&lease.record_id, &lease.token, reply.status, &reply.body)
        .await?
    {
        tracing::warn!("lease lost before storing the response");
    }
    Ok(())
}

/// After a retryable failure: frees the key at once, so the client's retry takes over without
/// waiting for the lease to lapse.
pub async fn release<S: Claims>(claims: &S, lease: &Lease) {
    if let Err(e) = claims.release(&lease.record_id, &lease.token).await {
        tracing::error!(error = %e, "could not release the idempotency lease");
    }
}

/// The answer when our final write found the lease lost: another request took over the same
/// resource, and its stored answer is the one; still running, `409`.
pub async fn answer_after_lost_lease<S: Claims>(claims: &S, lease: &Lease) -> Result<Reply, ApiError> {
    match claims.get_record(&lease.record_id).await? {
        Some(IdempotencyRecord {
            state: RecordState::Completed { status, body },
            ..
        }) => Ok(Reply::stored(status, body, true)),
        _ => Err(ApiError::conflict_in_flight()),
    }
}
