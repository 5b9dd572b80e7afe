//! Idempotency records (pk `<api key id>#<Idempotency-Key>`, TTL on `expires_at`) and the claim
//! every POST writes in the same transaction as the resource it creates.
//!
//! The conditions that back `domain::idempotency::IdempotencyRecord::decide`:
//! - claim: `attribute_not_exists(pk) OR expires_at < :now_s` — absent, or past its TTL but
//!   not yet swept (TTL deletion lags by up to days);
//! - take over: `record_state = IN_PROGRESS AND lease_token = :stale AND lease_until_ms <= :now`
//!   — only a lapsed lease, and only once;
//! - release / complete: `record_state = IN_PROGRESS AND lease_token = :token` — only the
//!   holder.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::codec::{built, get_n, get_s, n, opt_n, opt_s, s, unavailable, Item};
use super::tx::{conditional, transact, Cancelled};
use super::DynamoStore;
use crate::domain::idempotency::{IdempotencyRecord, RecordState, ResourceKind, ResourceRef};
use crate::ports::{Begin, Claims, Completion, Refusal, StoreError};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

pub fn record_item(r: &IdempotencyRecord) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(&r.record_id)),
        ("request_hash".into(), s(&r.request_hash)),
        ("resource_kind".into(), s(r.resource.kind.as_str())),
        ("resource_id".into(), s(&r.resource.id)),
        ("created_at_ms".into(), n(r.created_at_ms)),
        ("expires_at".into(), n(r.expires_at_s)),
    ]);
    match &r.state {
        RecordState::InProgress {
            lease_until_ms,
            lease_token,
        } => {
            item.insert("record_state".into(), s(IN_PROGRESS));
            item.insert("lease_until_ms".into(), n(lease_until_ms));
            item.insert("lease_token".into(), s(lease_token));
        }
        RecordState::Completed { status, body } => {
            item.insert("record_state".into(), s(COMPLETED));
            item.insert("response_status".into(), n(status));
            item.insert("response_body".into(), s(body));
        }
    }
    item
}

pub fn record_from(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let state = match get_s(item, "record_state")? {
        IN_PROGRESS => RecordState::InProgress {
            lease_until_ms: get_n(item, "lease_until_ms")?,
            lease_token: get_s(item, "lease_token")?.to_owned(),
        },
        COMPLETED => RecordState::Completed {
            status: get_n(item, "response_status")?,
            body: get_s(item, "response_body")?.to_owned(),
        },
        other => return Err(StoreError::Corrupt(format!("unknown record_state {other}"))),
    };
    // Records written before resources had kinds named their checkout (`checkout_id`).
    let resource = match (opt_s(item, "resource_kind")?, opt_s(item, "resource_id")?) {
        (Some(kind), Some(id)) => ResourceRef {
            kind: ResourceKind::parse(kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown resource_kind {kind}")))?,
            id: id.to_owned(),
        },
        _ => ResourceRef {
            kind: ResourceKind::Checkout,
            id: get_s(item, "checkout_id")?.to_owned(),
        },
    };
    Ok(IdempotencyRecord {
        record_id: get_s(item, "pk")?.to_owned(),
        request_hash: get_s(item, "request_hash")?.to_owned(),
        resource,
        state,
        created_at_ms: opt_n(item, "created_at_ms")?.unwrap_or_default(),
        expires_at_s: get_n(item, "expires_at")?,
    })
}

/// The update that stores the final reply, on condition that the lease is still ours.
pub fn completion_update(table: &str, c: &Completion<'_>) -> Result<TransactWriteItem, StoreError> {
    let update = built(
        Update::builder()
            .table_name(table)
            .key("pk", s(c.record_id))
            .update_expression(
                "SET record_state = :completed, response_status = :status, response_body = :body REMOVE lease_token, lease_until_ms",
            )
            .condition_expression("record_state = :in_progress AND lease_token = :token")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":status", n(c.status))
            .expression_attribute_values(":body", s(c.body))
            .expression_attribute_values(":token", s(c.lease_token))
            .build(),
    )?;
    Ok(TransactWriteItem::builder().update(update).build())
}

impl DynamoStore {
    /// Writes the claim (first) and `resource` (the new resource's items) in one transaction.
    pub(crate) async fn begin_with_claim(
        &self,
        record: &IdempotencyRecord,
        resource: Vec<TransactWriteItem>,
        refuse: impl Fn(&Cancelled) -> Option<Refusal>,
    ) -> Result<Begin, StoreError> {
        let claim = built(
            Put::builder()
                .table_name(&self.tables.idempotency)
                .set_item(Some(record_item(record)))
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now_s")
                .expression_attribute_values(":now_s", n(record.created_at_ms / 1000))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        let mut items = vec![TransactWriteItem::builder().put(claim).build()];
        items.extend(resource);
        let op = "TransactWriteItems claim";
        // The lease token is unique: it makes the SDK's own retries of this call idempotent.
        let mut cancelled = match transact(&self.client, items.clone(), record.lease_token(), op).await? {
            Ok(()) => return Ok(Begin::Created),
            Err(c) => c,
        };
        // Another writer held one of the items (many refunds of one order at once): written
        // by nobody, so try again after a short jittered pause. Without the token: a retry
        // that finds our own claim written is told apart by its lease token (`run`).
        for attempt in 0..CLAIM_CONFLICT_RETRIES {
            if !cancelled.conflict() || cancelled.any_condition_failed() {
                break;
            }
            let jitter = uuid::Uuid::new_v4().as_u128() % 10;
            tokio::time::sleep(Duration::from_millis((5u64 << attempt) + jitter as u64)).await;
            cancelled = match transact(&self.client, items.clone(), None, op).await? {
                Ok(()) => return Ok(Begin::Created),
                Err(c) => c,
            };
        }
        if cancelled.conflict() {
            return Ok(Begin::Contended);
        }
        if !cancelled.condition_failed(0) {
            return match refuse(&cancelled) {
                Some(refusal) => Ok(Begin::Refused(refusal)),
                None => Err(cancelled.unavailable(op)),
            };
        }
        match cancelled.old_item(0) {
            Some(old) => Ok(Begin::Exists(record_from(old)?)),
            None => match self.get_record(&record.record_id).await? {
                Some(existing) => Ok(Begin::Exists(existing)),
                None => Ok(Begin::Contended),
            },
        }
    }
}

/// A claim that met another writer is sent again this many times.
const CLAIM_CONFLICT_RETRIES: u32 = 5;

impl Claims for DynamoStore {
    async fn get_record(&self, record_id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(record_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem idempotency", e))?;
        out.item.as_ref().map(record_from).transpose()
    }

    async fn take_over(
        &self,
        record_id: &str,
        stale: &str,
        new: &str,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(record_id))
            .update_expression("SET lease_token = :new, lease_until_ms = :until")
            .condition_expression(
                "record_state = :in_progress AND lease_token = :stale AND lease_until_ms <= :now",
            )
            .expression_attribute_values(":new", s(new))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":stale", s(stale))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        conditional(result, "UpdateItem idempotency take over")
    }

    async fn release(&self, record_id: &str, lease_token: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(record_id))
            .update_expression("SET lease_until_ms = :zero")
            .condition_expression("record_state = :in_progress AND lease_token = :token")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":token", s(lease_token))
            .send()
            .await;
        conditional(result, "UpdateItem idempotency release")
    }

    async fn complete(
        &self,
        record_id: &str,
        lease_token: &str,
        status: u16,
        body: &str,
    ) -> Result<bool, StoreError> {
        let completion = Completion {
            record_id,
            lease_token,
            status,
            body,
        };
        let Some(update) = completion_update(&self.tables.idempotency, &completion)?.update else {
            return Err(StoreError::Corrupt("completion is not an update".into()));
        };
        let mut call = self
            .client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_values(update.expression_attribute_values);
        if let Some(names) = update.expression_attribute_names {
            call = call.set_expression_attribute_names(Some(names));
        }
        conditional(call.send().await, "UpdateItem idempotency complete")
    }
}
