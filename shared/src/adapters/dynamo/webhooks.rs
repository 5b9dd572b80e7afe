//! Webhook storage: the `psp_ref` index lookup, per-event markers (dedup), outbox records and
//! anomalies, all in the payments table so a transition and its outbox record commit together.

use super::codec::{n, s, time, unavailable, Item};
use super::tx::{put_if_absent, transact, transact_once};
use super::DynamoStore;
use crate::domain::ids::{CheckoutId, PaymentOrderId};
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::pay_in::{Checkout, PaymentOrder, PaymentStatus};
use crate::domain::psp::{PspRef, PspSessionId};
use crate::ports::{Applied, Checkouts, StoreError, Webhooks};

/// The sparse index from any PSP object id we keep (`psp_ref`) to the item that owns it.
pub const PSP_REF_INDEX: &str = "by_psp_ref";
/// Items read for one PSP id: its owner, or an older checkout's payment orders (at most 50).
const PSP_REF_MATCHES_MAX: i32 = 64;

pub(crate) fn marker_item(psp_event_id: &str, note: &str) -> Item {
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
        ("pk".into(), s(format!("OUTBOX#{}", event.event_id()))),
        ("sk".into(), s("OUTBOX")),
        ("entity".into(), s("outbox")),
        ("event_id".into(), s(event.event_id())),
        ("event_type".into(), s(event.body.event_type())),
        ("payload".into(), s(event.to_json())),
        ("created_at".into(), s(&event.header.occurred_at)),
    ])
}

impl DynamoStore {
    /// The keys (`pk`) of the items that carry a PSP object's id, through the `psp_ref` index:
    /// one owner, or none (a few more only for data written before the index had its name).
    pub async fn find_psp_ref(&self, psp_ref: &PspRef) -> Result<Vec<String>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.payments)
            .index_name(PSP_REF_INDEX)
            .key_condition_expression("psp_ref = :r")
            .expression_attribute_values(":r", s(psp_ref.as_str()))
            .limit(PSP_REF_MATCHES_MAX)
            .send()
            .await
            .map_err(|e| unavailable("Query by_psp_ref", e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|item| super::codec::get_s(item, "pk").map(str::to_owned))
            .collect()
    }
}

impl Webhooks for DynamoStore {
    async fn checkout_by_session(&self, session: &PspSessionId) -> Result<Option<CheckoutId>, StoreError> {
        let keys = self.find_psp_ref(&PspRef::Session(session.clone())).await?;
        let checkouts: Vec<CheckoutId> = keys
            .iter()
            .filter_map(|pk| CheckoutId::parse(pk.strip_prefix("CO#")?).ok())
            .collect();
        match checkouts.as_slice() {
            [one] => return Ok(Some(one.clone())),
            [] => {}
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "session {session} names more than one checkout"
                )))
            }
        }
        // Payment orders written before the index became `by_psp_ref` carried their checkout's
        // session as `psp_ref`: such an order leads to its checkout.
        match keys
            .iter()
            .find_map(|pk| PaymentOrderId::parse(pk.strip_prefix("PO#")?).ok())
        {
            Some(order) => Ok(self.get_payment_order(&order).await?.map(|o| o.checkout_id)),
            None if keys.is_empty() => Ok(None),
            None => Err(StoreError::Corrupt(format!(
                "session {session} names {keys:?}, not a checkout"
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
        let op = "TransactWriteItems webhook";
        match transact(&self.client, items, None, op).await? {
            Ok(()) => Ok(Applied::Applied),
            Err(c) if c.condition_failed(0) => Ok(Applied::Duplicate),
            Err(c) if c.any_condition_failed() || c.conflict() => Ok(Applied::Conflict),
            Err(c) => Err(c.unavailable(op)),
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
        super::tx::conditional(result, "PutItem psp event marker")
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
            item.insert("checkout_id".into(), s(c.as_str()));
        }
        let items = vec![
            put_if_absent(&self.tables.payments, marker_item(&a.psp_event_id, a.kind))?,
            put_if_absent(&self.tables.payments, item)?,
        ];
        transact_once(&self.client, items, "TransactWriteItems anomaly").await
    }
}
