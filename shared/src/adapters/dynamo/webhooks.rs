//! Webhook storage: the PSP token index, per-event markers (dedup), outbox records and
//! anomalies, all in the payments table so a transition and its outbox record commit together.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use super::codec::{n, parse, put_if_absent, s, time, transact_once, unavailable, Item};
use super::DynamoStore;
use crate::domain::ids::CheckoutId;
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::{Checkout, PaymentOrder, PaymentStatus};
use crate::ports::{Applied, StoreError, Webhooks};

pub const PSP_TOKEN_INDEX: &str = "by_psp_token";

fn marker_item(psp_event_id: &str, note: &str) -> Item {
    Item::from([
        ("pk".into(), s(format!("PSPEVT#{psp_event_id}"))),
        ("sk".into(), s("PSPEVT")),
        ("entity".into(), s("psp_event")),
        ("psp_event_id".into(), s(psp_event_id)),
        ("note".into(), s(note)),
        ("received_at".into(), time(chrono::Utc::now())),
    ])
}

/// The outbox record: the stream carries it to the relay (entity `outbox`).
pub fn outbox_item(event: &OutboxEvent) -> Item {
    Item::from([
        ("pk".into(), s(format!("OUTBOX#{}", event.event_id))),
        ("sk".into(), s("OUTBOX")),
        ("entity".into(), s("outbox")),
        ("event_id".into(), s(&event.event_id)),
        ("event_type".into(), s(event.event_type.as_str())),
        ("checkout_id".into(), s(&event.checkout_id)),
        ("payload".into(), s(event.to_json())),
        ("created_at".into(), s(&event.occurred_at)),
    ])
}

impl Webhooks for DynamoStore {
    async fn checkout_id_by_psp_token(&self, psp_token: &str) -> Result<Option<CheckoutId>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.payments)
            .index_name(PSP_TOKEN_INDEX)
            .key_condition_expression("psp_token = :t")
            .expression_attribute_values(":t", s(psp_token))
            .limit(2)
            .send()
            .await
            .map_err(|e| unavailable("Query by_psp_token", e))?;
        let items = out.items.unwrap_or_default();
        match items.as_slice() {
            [] => Ok(None),
            [item] => {
                let pk = parse(item, "pk", |pk| {
                    pk.strip_prefix("CO#")
                        .ok_or("not a checkout key")
                        .map(str::to_owned)
                })?;
                CheckoutId::parse(&pk)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            _ => Err(StoreError::Corrupt(format!(
                "psp_token {psp_token} names more than one checkout"
            ))),
        }
    }

    async fn apply_event(
        &self,
        psp_event_id: &str,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        outbox: &OutboxEvent,
    ) -> Result<Applied, StoreError> {
        let mut items = vec![put_if_absent(
            &self.tables.payments,
            marker_item(psp_event_id, "applied"),
        )?];
        items.extend(self.transition_items(checkout, orders, from)?);
        items.push(put_if_absent(&self.tables.payments, outbox_item(outbox))?);
        let err = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => return Ok(Applied::Applied),
            Err(e) => e,
        };
        match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                let reasons = c.cancellation_reasons();
                if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
                    Ok(Applied::Duplicate)
                } else if reasons
                    .iter()
                    .any(|r| matches!(r.code(), Some("ConditionalCheckFailed" | "TransactionConflict")))
                {
                    Ok(Applied::Conflict)
                } else {
                    Err(unavailable("TransactWriteItems webhook", err))
                }
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => Ok(Applied::Conflict),
            _ => Err(unavailable("TransactWriteItems webhook", err)),
        }
    }

    async fn mark_event(&self, psp_event_id: &str, note: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.payments)
            .set_item(Some(marker_item(psp_event_id, note)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("PutItem psp event marker", e)),
        }
    }

    async fn record_anomaly(&self, a: &Anomaly) -> Result<bool, StoreError> {
        let mut item = Item::from([
            ("pk".into(), s(format!("ANOMALY#{}", a.at.format("%Y-%m-%d")))),
            ("sk".into(), s(format!("{}#{}", a.psp_event_id, a.kind))),
            ("entity".into(), s("anomaly")),
            ("kind".into(), s(a.kind)),
            ("psp_event_id".into(), s(&a.psp_event_id)),
            ("detail".into(), s(&a.detail)),
            ("at".into(), time(a.at)),
            ("at_ms".into(), n(a.at.timestamp_millis())),
        ]);
        if let Some(c) = &a.checkout_id {
            item.insert("checkout_id".into(), s(c));
        }
        let items = vec![
            put_if_absent(&self.tables.payments, marker_item(&a.psp_event_id, a.kind))?,
            put_if_absent(&self.tables.payments, item)?,
        ];
        transact_once(&self.client, items, "TransactWriteItems anomaly").await
    }
}
