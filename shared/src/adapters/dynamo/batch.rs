//! Bounded batch reads and writes: `BatchGetItem` (100 keys a call, any tables) and
//! `BatchWriteItem` (25 puts a call), their calls at once, and what the store leaves
//! unprocessed sent again with a growing pause; whatever is still left is the store's failure.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{KeysAndAttributes, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;

use super::codec::{built, unavailable, Item};
use crate::ports::StoreError;

pub const GET_KEYS_MAX: usize = 100;
pub const WRITE_ITEMS_MAX: usize = 25;
const ROUNDS: u32 = 6;

/// The items at `keys` (table, key), in no particular order; absent keys are simply not there.
pub async fn batch_get(
    client: &Client,
    keys: &[(String, Item)],
    consistent: bool,
) -> Result<Vec<Item>, StoreError> {
    let calls = keys.chunks(GET_KEYS_MAX).map(|chunk| async move {
        let mut pending: HashMap<String, Vec<Item>> = HashMap::new();
        for (table, key) in chunk {
            let keys = pending.entry(table.clone()).or_default();
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let mut found = Vec::new();
        for round in 0..ROUNDS {
            if pending.is_empty() {
                return Ok(found);
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
            let mut request = client.batch_get_item();
            for (table, keys) in pending.drain() {
                request = request.request_items(
                    table,
                    built(
                        KeysAndAttributes::builder()
                            .set_keys(Some(keys))
                            .consistent_read(consistent)
                            .build(),
                    )?,
                );
            }
            let out = request.send().await.map_err(|e| unavailable("BatchGetItem", e))?;
            for (_, items) in out.responses.unwrap_or_default() {
                found.extend(items);
            }
            for (table, left) in out.unprocessed_keys.unwrap_or_default() {
                if !left.keys.is_empty() {
                    pending.insert(table, left.keys);
                }
            }
        }
        if pending.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Unavailable(format!(
                "BatchGetItem: {} key(s) left unprocessed after {ROUNDS} rounds",
                pending.values().map(Vec::len).sum::<usize>()
            )))
        }
    });
    let mut all = Vec::with_capacity(keys.len());
    for items in futures_util::future::try_join_all(calls).await? {
        all.extend(items);
    }
    Ok(all)
}

/// Puts every item of `items` into `table` (unconditionally: each is its own idempotent
/// content, rewritten the same by a retry).
pub async fn batch_put(client: &Client, table: &str, items: Vec<Item>) -> Result<(), StoreError> {
    let requests: Vec<WriteRequest> = items
        .into_iter()
        .map(|item| {
            built(PutRequest::builder().set_item(Some(item)).build())
                .map(|put| WriteRequest::builder().put_request(put).build())
        })
        .collect::<Result<_, _>>()?;
    let calls = requests.chunks(WRITE_ITEMS_MAX).map(|chunk| async move {
        let mut pending = chunk.to_vec();
        for round in 0..ROUNDS {
            if pending.is_empty() {
                return Ok(());
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(20 << round)).await;
            }
            let out = client
                .batch_write_item()
                .request_items(table, std::mem::take(&mut pending))
                .send()
                .await
                .map_err(|e| unavailable("BatchWriteItem", e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(table))
                .unwrap_or_default();
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unavailable(format!(
                "BatchWriteItem {table}: {} item(s) left unprocessed after {ROUNDS} rounds",
                pending.len()
            )))
        }
    });
    futures_util::future::try_join_all(calls).await?;
    Ok(())
}
