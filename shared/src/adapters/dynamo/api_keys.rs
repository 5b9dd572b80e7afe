//! API keys by hash, with the GCRA rate-limit state (`tat_us`) on the same item, so one
//! conditional `UpdateItem` both authenticates and counts a request.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;

use super::codec::{get_s, n, opt_n, opt_s, parse, s, unavailable, Item};
use super::DynamoStore;
use crate::app::auth::hash_api_key;
use crate::domain::ids::{AccountId, ApiKeyId};
use crate::domain::rate_limit::RateLimit;
use crate::ports::{ApiKeyRecord, ApiKeys, Consume, StoreError};

const ACTIVE: &str = "ACTIVE";
/// An idle key's charge: one request counted (`tat = now + interval`), only if the key is
/// active and idle.
const IDLE_UPDATE: &str = "SET tat_us = if_not_exists(rl_interval_us, :dflt) + :now";
const IDLE_CONDITION: &str = "key_status = :active AND (attribute_not_exists(tat_us) OR tat_us < :now)";

/// Within the burst: one more request counted on top of the others.
const BUSY_UPDATE: &str = "SET tat_us = tat_us + if_not_exists(rl_interval_us, :dflt)";
const BUSY_CONDITION: &str = "key_status = :active AND tat_us BETWEEN :now AND :limit";

impl ApiKeys for DynamoStore {
    async fn consume_idle(
        &self,
        key_hash: &str,
        now_us: i64,
        default_interval_us: i64,
    ) -> Result<Consume, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.api_keys)
            .key("key_hash", s(key_hash))
            .update_expression(IDLE_UPDATE)
            .condition_expression(IDLE_CONDITION)
            .expression_attribute_values(":dflt", n(default_interval_us))
            .expression_attribute_values(":now", n(now_us))
            .expression_attribute_values(":active", s(ACTIVE))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        consume_outcome(result.map(|o| o.attributes))
    }

    async fn consume_busy(
        &self,
        key_hash: &str,
        now_us: i64,
        limit_us: i64,
        default_interval_us: i64,
    ) -> Result<Consume, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.api_keys)
            .key("key_hash", s(key_hash))
            .update_expression(BUSY_UPDATE)
            .condition_expression(BUSY_CONDITION)
            .expression_attribute_values(":dflt", n(default_interval_us))
            .expression_attribute_values(":now", n(now_us))
            .expression_attribute_values(":limit", n(limit_us))
            .expression_attribute_values(":active", s(ACTIVE))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        consume_outcome(result.map(|o| o.attributes))
    }
}

fn consume_outcome(result: Result<Option<Item>, SdkError<UpdateItemError>>) -> Result<Consume, StoreError> {
    match result {
        Ok(Some(item)) => Ok(Consume::Allowed(record(&item)?)),
        Ok(None) => Err(StoreError::Corrupt("UpdateItem returned no attributes".into())),
        Err(e) => match e.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(ccf)) => match ccf.item() {
                Some(old) => Ok(Consume::Refused(Some(record(old)?))),
                None => Ok(Consume::Refused(None)),
            },
            _ => Err(unavailable("UpdateItem api key", e)),
        },
    }
}

fn record(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let limit = match (
        opt_n::<i64>(item, "rl_interval_us")?,
        opt_n::<u32>(item, "rl_burst")?,
    ) {
        (Some(interval), Some(burst)) => RateLimit::from_parts(interval, burst),
        _ => None,
    };
    Ok(ApiKeyRecord {
        key_id: parse(item, "key_id", ApiKeyId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        active: get_s(item, "key_status")? == ACTIVE,
        tat_us: opt_n(item, "tat_us")?,
        limit,
    })
}

/// Stores a new API key for `account_id` (by hash only). Idempotent: an existing key is left
/// as it is, so restarting the local twin keeps its key id and its idempotency records.
/// Returns the key's public id.
pub async fn seed_api_key(
    client: &Client,
    table: &str,
    raw_key: &str,
    account_id: &AccountId,
    limit: Option<RateLimit>,
) -> Result<ApiKeyId, StoreError> {
    let key_hash = hash_api_key(raw_key);
    let key_id = ApiKeyId::generate();
    let mut put = client
        .put_item()
        .table_name(table)
        .item("key_hash", s(&key_hash))
        .item("key_id", s(key_id.as_str()))
        .item("account_id", s(account_id.as_str()))
        .item("key_status", s(ACTIVE))
        .item(
            "created_at",
            s(crate::domain::time::format_time(chrono::Utc::now())),
        )
        .condition_expression("attribute_not_exists(key_hash)");
    if let Some(limit) = limit {
        put = put
            .item("rl_interval_us", n(limit.interval_us()))
            .item("rl_burst", n(limit.burst()));
    }
    match put.send().await {
        Ok(_) => Ok(key_id),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            let existing = client
                .get_item()
                .table_name(table)
                .key("key_hash", s(&key_hash))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| unavailable("GetItem api key", e))?;
            let item = existing
                .item
                .ok_or_else(|| StoreError::Corrupt("api key vanished".into()))?;
            match opt_s(&item, "account_id")? {
                Some(a) if a == account_id.as_str() => parse(&item, "key_id", ApiKeyId::parse),
                _ => Err(StoreError::Corrupt(
                    "this API key already belongs to another account".into(),
                )),
            }
        }
        Err(e) => Err(unavailable("PutItem api key", e)),
    }
}
