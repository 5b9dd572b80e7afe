//! What waits on the PSP, from the payments table's sparse `by_open` index (see
//! [`super::open`]): the index's keys, then the records' PSP ids in one batch read.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::batch::batch_get;
use super::codec::{get_s, s, time, unavailable, Item};
use super::open::{buckets, OPEN_INDEX};
use super::payouts::payout_from;
use super::refunds::refund_from;
use super::DynamoStore;
use crate::domain::ids::CheckoutId;
use crate::domain::payouts::PayoutStatus;
use crate::domain::refunds::RefundStatus;
use crate::ports::reconciliation::{Stuck, StuckRecords};
use crate::ports::StoreError;

impl DynamoStore {
    /// The keys (`pk`, `sk`) of `kind`'s open records older than `before`, oldest first.
    async fn open_keys(
        &self,
        kind: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let calls = buckets(kind).map(|bucket| async move {
            let out = self
                .client
                .query()
                .table_name(&self.tables.payments)
                .index_name(OPEN_INDEX)
                .key_condition_expression("open_bucket = :b AND open_since < :t")
                .expression_attribute_values(":b", s(bucket))
                .expression_attribute_values(":t", time(before))
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| unavailable("Query by_open", e))?;
            Ok::<_, StoreError>(out.items.unwrap_or_default())
        });
        let mut keys: Vec<Item> = futures_util::future::try_join_all(calls)
            .await?
            .into_iter()
            .flatten()
            .map(|i| {
                i.into_iter()
                    .filter(|(k, _)| k == "pk" || k == "sk")
                    .collect::<HashMap<String, AttributeValue>>()
            })
            .collect();
        keys.truncate(limit);
        Ok(keys)
    }
}

impl StuckRecords for DynamoStore {
    async fn stuck(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<Stuck>, StoreError> {
        let mut out = Vec::new();
        for key in self.open_keys("checkout", before, limit).await? {
            let pk = get_s(&key, "pk")?;
            if let Some(id) = pk.strip_prefix("CO#").and_then(|id| CheckoutId::parse(id).ok()) {
                out.push(Stuck::Checkout(id));
            }
        }
        let mut keys: Vec<(String, Item)> = Vec::new();
        for kind in ["refund", "payout"] {
            keys.extend(
                self.open_keys(kind, before, limit)
                    .await?
                    .into_iter()
                    .map(|k| (self.tables.payments.clone(), k)),
            );
        }
        // The index is eventually consistent: what it lists is read again, and kept only if
        // it still waits.
        for item in batch_get(&self.client, &keys, true).await? {
            match get_s(&item, "entity")? {
                "refund" => {
                    let r = refund_from(&item)?;
                    if let (RefundStatus::Pending, Some(psp)) = (r.status, r.psp_refund) {
                        out.push(Stuck::Refund {
                            id: r.id,
                            psp,
                            since: r.created_at,
                        });
                    }
                }
                "payout" => {
                    let p = payout_from(&item)?;
                    if let (PayoutStatus::InTransit, Some(psp)) = (p.status, p.psp_payout) {
                        out.push(Stuck::Payout {
                            id: p.id,
                            psp,
                            account: p.destination,
                            since: p.created_at,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}
