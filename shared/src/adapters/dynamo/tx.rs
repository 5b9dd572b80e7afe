//! `TransactWriteItems` and how a cancelled one is read: the one place that decodes
//! cancellation reasons, item by item.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{CancellationReason, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

use super::codec::{unavailable, Item};
use crate::ports::StoreError;

/// A transaction that was not written, and why, per item (in the order they were sent).
#[derive(Debug, Clone, Default)]
pub struct Cancelled {
    reasons: Vec<CancellationReason>,
    /// Another transaction held one of the items (`TransactionInProgressException`, or a
    /// `TransactionConflict` reason).
    in_progress: bool,
}

impl Cancelled {
    fn code(&self, i: usize) -> Option<&str> {
        self.reasons.get(i).and_then(|r| r.code())
    }

    /// The item at `i` failed its condition.
    pub fn condition_failed(&self, i: usize) -> bool {
        self.code(i) == Some("ConditionalCheckFailed")
    }

    pub fn any_condition_failed(&self) -> bool {
        self.reasons
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"))
    }

    /// Another writer was busy with one of the items: trying again may work.
    pub fn conflict(&self) -> bool {
        self.in_progress
            || self
                .reasons
                .iter()
                .any(|r| r.code() == Some("TransactionConflict"))
    }

    /// The item at `i` as it was, when the condition asked for it
    /// (`ReturnValuesOnConditionCheckFailure::AllOld`).
    pub fn old_item(&self, i: usize) -> Option<&Item> {
        self.reasons.get(i).and_then(|r| r.item())
    }

    /// The store's own failure, naming each reason (`None` where an item was fine).
    pub fn unavailable(&self, op: &str) -> StoreError {
        let codes: Vec<&str> = self.reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
        StoreError::Unavailable(format!("{op}: transaction cancelled: {codes:?}"))
    }
}

/// Writes `items` in one transaction: `Ok(Ok(()))` written, `Ok(Err(cancelled))` not written
/// (for a reason the caller reads), `Err` the store failed. `token` makes the SDK's own retries
/// of this call idempotent.
pub async fn transact(
    client: &Client,
    items: Vec<TransactWriteItem>,
    token: Option<&str>,
    op: &str,
) -> Result<Result<(), Cancelled>, StoreError> {
    let err = match client
        .transact_write_items()
        .set_transact_items(Some(items))
        .set_client_request_token(token.map(str::to_owned))
        .send()
        .await
    {
        Ok(_) => return Ok(Ok(())),
        Err(e) => e,
    };
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => Ok(Err(Cancelled {
            reasons: c.cancellation_reasons().to_vec(),
            in_progress: false,
        })),
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => Ok(Err(Cancelled {
            reasons: Vec::new(),
            in_progress: true,
        })),
        _ => Err(unavailable(op, err)),
    }
}

/// Runs a transaction whose first item is an idempotency marker: `Ok(true)` if written,
/// `Ok(false)` if the marker was already there (nothing written).
pub async fn transact_once(
    client: &Client,
    items: Vec<TransactWriteItem>,
    op: &str,
) -> Result<bool, StoreError> {
    match transact(client, items, None, op).await? {
        Ok(()) => Ok(true),
        Err(c) if c.condition_failed(0) => Ok(false),
        Err(c) => Err(c.unavailable(op)),
    }
}

/// A transaction item that creates `item` only if its key is new.
/// A single-item write's error that can say its condition failed.
pub trait ConditionFailed {
    fn condition_failed(&self) -> bool;
}

impl ConditionFailed for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

impl ConditionFailed for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn condition_failed(&self) -> bool {
        self.is_conditional_check_failed_exception()
    }
}

/// A conditional single-item write: `Ok(false)` when its condition failed (nothing written),
/// `Unavailable` for any other failure. The one place that reading is done.
pub fn conditional<T, E>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>>,
    op: &str,
) -> Result<bool, StoreError>
where
    E: ConditionFailed + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(ConditionFailed::condition_failed) =>
        {
            Ok(false)
        }
        Err(e) => Err(unavailable(op, e)),
    }
}

pub fn put_if_absent(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}
