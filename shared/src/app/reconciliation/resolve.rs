//! `POST /v1/reconciliation/breaks/{break_id}/resolve`: a person's resolution of an open break,
//! through the one idempotency mechanism. The answer (the break, resolved) is known before
//! anything is written, so it is stored with the claim, in the same transaction that moves the
//! break `open → resolved` and appends the resolution entry (who, when, how, why).
//!
//! A break that is not open is `409 break_not_open`, unless this very key resolved it: then its
//! stored answer is replayed (or `422` for another body).

use chrono::{DateTime, Utc};

use crate::api::reconciliation::{break_view, parse_resolve_request, resolved};
use crate::api::ApiError;
use crate::app::auth::Authority;
use crate::app::idempotent::{self, Claim, Command, Lease};
use crate::app::Reply;
use crate::domain::idempotency::{IdempotencyRecord, ResourceKind, ResourceRef};
use crate::domain::ids::BreakId;
use crate::domain::reconciliation::BreakStatus;
use crate::ports::reconciliation_api::{BreakRecord, BreakResolutions, ReconReader, ResolutionEntry};
use crate::ports::{Begin, Claims, StoreError};

pub struct ResolveBreak<'a> {
    /// The path's `{break_id}`, as sent.
    pub break_id: &'a str,
    /// The raw `Idempotency-Key` header's bytes, if any.
    pub idempotency_key: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The invocation's deadline.
    pub deadline_ms: i64,
}

pub async fn resolve_break<S: ReconReader + BreakResolutions, C: Claims>(
    store: &S,
    claims: &C,
    authority: Authority,
    input: ResolveBreak<'_>,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("reconciliation break", input.break_id);
    // An id that cannot exist is a 404 whatever the body says, as a stored one of another
    // account is.
    let id = BreakId::parse(input.break_id).map_err(|_| missing())?;
    let (claim, request) = Claim::parse(
        input.idempotency_key,
        input.body,
        parse_resolve_request,
        |r| r.fingerprint(&id),
        input.now.timestamp_millis(),
        input.deadline_ms,
    )?;
    let caller = authority.caller().clone();
    let Some(found) = store.get_break(&caller.account_id, &id).await? else {
        return Err(missing());
    };
    if found.brk.status != BreakStatus::Open {
        // Perhaps resolved by this key's own earlier request: its answer is stored.
        let refusal = not_open(&id, found.brk.status);
        return idempotent::stored_answer_or(claims, &authority, &claim, refusal).await;
    }
    let entry = ResolutionEntry {
        resolution: request.resolution,
        note: request.note,
        resolved_by: caller.key_id.clone(),
        resolved_at: input.now,
    };
    let command = Resolve { store };
    let outcome = idempotent::run(claims, &command, &authority, claim.clone(), (found, entry)).await;
    match outcome {
        // Resolved meanwhile by another request (the write's condition found it not open):
        // this key's own answer if it has one, else the conflict.
        Err(e) if e.code == "break_not_open" => {
            idempotent::stored_answer_or(claims, &authority, &claim, e).await
        }
        other => other,
    }
}

fn not_open(id: &BreakId, status: BreakStatus) -> ApiError {
    ApiError::state_conflict(
        "break_not_open",
        format!("break {id} is {status}: only an open break can be resolved"),
    )
}

/// The break and the entry that resolves it.
type Resolving = (BreakRecord, ResolutionEntry);

struct Resolve<'a, S> {
    store: &'a S,
}

impl<S: ReconReader + BreakResolutions> Command for Resolve<'_, S> {
    type Resource = Resolving;

    fn reference(&self, (b, _): &Resolving) -> ResourceRef {
        ResourceRef::reconciliation_break(&b.brk.id)
    }

    fn answer_with_claim(&self, (b, entry): &Resolving) -> Option<Reply> {
        Some(Reply::json(200, &break_view(&resolved(b, entry.clone()))))
    }

    async fn begin(&self, record: &IdempotencyRecord, (b, entry): &Resolving) -> Result<Begin, StoreError> {
        let begun = self.store.resolve_break(record, &b.brk, entry).await?;
        if begun == Begin::Created {
            tracing::info!(
                break_id = %b.brk.id,
                run_id = %b.brk.run_id,
                resolution = %entry.resolution,
                resolved_by = %entry.resolved_by,
                "reconciliation break resolved"
            );
        }
        Ok(begun)
    }

    /// Only reached by a takeover, which a record written completed never needs.
    async fn load(&self, reference: &ResourceRef) -> Result<Option<Resolving>, StoreError> {
        Err(StoreError::Corrupt(match reference.kind {
            ResourceKind::ReconciliationBreak => {
                format!("a resolution's idempotency record for {reference} is not completed")
            }
            _ => format!("a resolution's idempotency record names {reference}"),
        }))
    }

    async fn execute(&self, _lease: &Lease, (b, entry): Resolving) -> Result<Reply, ApiError> {
        // Unreachable in practice (see `load`): answer what the claim stored.
        Ok(Reply::json(200, &break_view(&resolved(&b, entry))))
    }
}
