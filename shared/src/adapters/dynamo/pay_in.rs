//! Checkouts (`CO#<id>`/`CO`) and payment orders (`PO#<id>`/`PO`) in the payments table.
//!
//! A checkout carries its PSP session as `psp_ref`, the key of the sparse `by_psp_ref` index
//! (any PSP object id → our entity); its payment orders carry the same session as
//! `psp_session_id`, which no index reads.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};

use super::codec::{
    built, get_n, get_s, get_time, n, opt_n, opt_parse, opt_s, parse, s, time, unavailable, Item,
};
use super::idempotency::completion_update;
use super::tx::{put_if_absent, transact};
use super::DynamoStore;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, BuyerId, CheckoutId, OrderId, PaymentOrderId, SellerId, SubOrderId};
use crate::domain::pay_in::{CheckoutForm, OrderRefunds};
use crate::domain::psp::{PaymentIntentId, PspSessionId};
use crate::domain::{Checkout, Currency, Money, PaymentOrder, PaymentStatus};
use crate::ports::{Begin, Checkouts, Completion, StoreError};

/// BatchGetItem may leave keys unprocessed under load; retry them a bounded number of times.
const BATCH_GET_ROUNDS_MAX: usize = 5;

pub fn checkout_key(id: &CheckoutId) -> Item {
    HashMap::from([("pk".into(), s(format!("CO#{id}"))), ("sk".into(), s("CO"))])
}

pub fn payment_order_key(id: &PaymentOrderId) -> Item {
    HashMap::from([("pk".into(), s(format!("PO#{id}"))), ("sk".into(), s("PO"))])
}

pub fn checkout_item(c: &Checkout) -> Item {
    let mut item = checkout_key(&c.id);
    item.extend([
        ("entity".into(), s("checkout")),
        ("checkout_id".into(), s(c.id.as_str())),
        ("account_id".into(), s(c.account_id.as_str())),
        (
            "form".into(),
            s(if c.form == CheckoutForm::Single {
                "single"
            } else {
                "multi"
            }),
        ),
        ("order_id".into(), s(c.order_id.as_str())),
        ("buyer_id".into(), s(c.buyer_id.as_str())),
        ("currency".into(), s(c.total.currency().code())),
        ("total_minor".into(), n(c.total.minor())),
        ("payment_status".into(), s(c.status.as_str())),
        (
            "payment_order_ids".into(),
            AttributeValue::L(c.payment_order_ids.iter().map(|id| s(id.as_str())).collect()),
        ),
        ("created_at".into(), time(c.created_at)),
        ("updated_at".into(), time(c.updated_at)),
    ]);
    if let Some(session) = &c.psp_session {
        item.insert("psp_ref".into(), s(session.as_str()));
        if c.status == PaymentStatus::Executing {
            item.extend(super::open::open_attrs("checkout", c.id.as_str(), c.updated_at));
        }
    }
    if let Some(intent) = &c.payment_intent {
        item.insert("payment_intent".into(), s(intent.as_str()));
    }
    if let Some(url) = &c.psp_url {
        item.insert("psp_url".into(), s(url));
    }
    if let Some(reason) = &c.failure_reason {
        item.insert("failure_reason".into(), s(reason));
    }
    item
}

pub fn payment_order_item(o: &PaymentOrder) -> Item {
    let mut item = payment_order_key(&o.id);
    item.extend([
        ("entity".into(), s("payment_order")),
        ("payment_order_id".into(), s(o.id.as_str())),
        ("checkout_id".into(), s(o.checkout_id.as_str())),
        ("account_id".into(), s(o.account_id.as_str())),
        ("order_id".into(), s(o.order_id.as_str())),
        ("buyer_id".into(), s(o.buyer_id.as_str())),
        ("seller_id".into(), s(o.seller_id.as_str())),
        ("currency".into(), s(o.amount.currency().code())),
        ("amount_minor".into(), n(o.amount.minor())),
        ("payment_status".into(), s(o.status.as_str())),
        ("created_at".into(), time(o.created_at)),
        ("updated_at".into(), time(o.updated_at)),
    ]);
    if let Some(sub) = &o.sub_order_id {
        item.insert("sub_order_id".into(), s(sub.as_str()));
    }
    if let Some(session) = &o.psp_session {
        item.insert("psp_session_id".into(), s(session.as_str()));
    }
    if let Some(intent) = &o.payment_intent {
        item.insert("payment_intent".into(), s(intent.as_str()));
    }
    if let Some(fee) = &o.fee {
        item.insert("fee_minor".into(), n(fee.minor()));
    }
    // The refund counters are moved only by refunds' conditional updates; a put carries them
    // as they were read.
    item.extend([
        (REFUND_RESERVED.into(), n(o.refunds.reserved_minor)),
        (AMOUNT_REFUNDED.into(), n(o.refunds.refunded_minor)),
        (FEE_REFUNDED.into(), n(o.refunds.fee_refunded_minor)),
    ]);
    item
}

/// A payment order's refund counters (see [`OrderRefunds`]).
pub const REFUND_RESERVED: &str = "refund_reserved_minor";
pub const AMOUNT_REFUNDED: &str = "amount_refunded_minor";
pub const FEE_REFUNDED: &str = "fee_refunded_minor";

pub fn order_refunds_from(item: &Item) -> Result<OrderRefunds, StoreError> {
    Ok(OrderRefunds {
        reserved_minor: opt_n(item, REFUND_RESERVED)?.unwrap_or(0),
        refunded_minor: opt_n(item, AMOUNT_REFUNDED)?.unwrap_or(0),
        fee_refunded_minor: opt_n(item, FEE_REFUNDED)?.unwrap_or(0),
    })
}

fn currency(item: &Item) -> Result<Currency, StoreError> {
    parse(item, "currency", Currency::parse)
}

fn status(item: &Item) -> Result<PaymentStatus, StoreError> {
    parse(item, "payment_status", str::parse::<PaymentStatus>)
}

pub fn checkout_from(item: &Item) -> Result<Checkout, StoreError> {
    let ids = match item.get("payment_order_ids") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| match v {
                AttributeValue::S(id) => {
                    PaymentOrderId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))
                }
                _ => Err(StoreError::Corrupt("payment_order_ids holds a non-string".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(StoreError::Corrupt("checkout without payment_order_ids".into())),
    };
    Ok(Checkout {
        id: parse(item, "checkout_id", CheckoutId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        form: if get_s(item, "form")? == "single" {
            CheckoutForm::Single
        } else {
            CheckoutForm::Multi
        },
        order_id: parse(item, "order_id", OrderId::parse)?,
        buyer_id: parse(item, "buyer_id", BuyerId::parse)?,
        total: Money::from_minor(get_n(item, "total_minor")?, currency(item)?),
        status: status(item)?,
        psp_session: opt_parse(item, "psp_ref", PspSessionId::parse)?,
        payment_intent: opt_parse(item, "payment_intent", PaymentIntentId::parse)?,
        psp_url: opt_s(item, "psp_url")?.map(str::to_owned),
        failure_reason: opt_s(item, "failure_reason")?.map(str::to_owned),
        payment_order_ids: ids,
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

pub fn payment_order_from(item: &Item) -> Result<PaymentOrder, StoreError> {
    let order_currency = currency(item)?;
    Ok(PaymentOrder {
        id: parse(item, "payment_order_id", PaymentOrderId::parse)?,
        checkout_id: parse(item, "checkout_id", CheckoutId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        order_id: parse(item, "order_id", OrderId::parse)?,
        sub_order_id: opt_parse(item, "sub_order_id", SubOrderId::parse)?,
        buyer_id: parse(item, "buyer_id", BuyerId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        amount: Money::from_minor(get_n(item, "amount_minor")?, order_currency),
        status: status(item)?,
        psp_session: opt_parse(item, "psp_session_id", PspSessionId::parse)?,
        payment_intent: opt_parse(item, "payment_intent", PaymentIntentId::parse)?,
        fee: opt_n::<i64>(item, "fee_minor")?.map(|m| Money::from_minor(m, order_currency)),
        refunds: order_refunds_from(item)?,
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

impl Checkouts for DynamoStore {
    async fn begin_checkout(
        &self,
        record: &IdempotencyRecord,
        checkout: &Checkout,
        orders: &[PaymentOrder],
    ) -> Result<Begin, StoreError> {
        let mut items = vec![put_if_absent(&self.tables.payments, checkout_item(checkout))?];
        for order in orders {
            items.push(put_if_absent(&self.tables.payments, payment_order_item(order))?);
        }
        self.begin_with_claim(record, items, |_| None).await
    }

    async fn get_checkout(
        &self,
        id: &CheckoutId,
    ) -> Result<Option<(Checkout, Vec<PaymentOrder>)>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(checkout_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem checkout", e))?;
        let Some(item) = out.item else { return Ok(None) };
        let checkout = checkout_from(&item)?;
        let mut found: HashMap<PaymentOrderId, PaymentOrder> = HashMap::new();
        let mut pending: Vec<Item> = checkout.payment_order_ids.iter().map(payment_order_key).collect();
        for _ in 0..BATCH_GET_ROUNDS_MAX {
            if pending.is_empty() {
                break;
            }
            let keys = built(
                KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build(),
            )?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.tables.payments, keys)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem payment orders", e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&self.tables.payments))
                .unwrap_or_default()
            {
                let order = payment_order_from(&item)?;
                found.insert(order.id.clone(), order);
            }
            if let Some(left) = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.tables.payments))
            {
                pending = left.keys;
            }
        }
        if !pending.is_empty() {
            // Throttled, not missing: the store is busy, and a retry will read them.
            return Err(StoreError::Unavailable(format!(
                "BatchGetItem left {} payment order(s) of checkout {} unprocessed after {BATCH_GET_ROUNDS_MAX} rounds",
                pending.len(),
                checkout.id
            )));
        }
        let orders = checkout
            .payment_order_ids
            .iter()
            .map(|id| {
                found.remove(id).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "checkout {} lists missing payment order {id}",
                        checkout.id
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((checkout, orders)))
    }

    async fn get_payment_order(&self, id: &PaymentOrderId) -> Result<Option<PaymentOrder>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(payment_order_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem payment order", e))?;
        out.item.as_ref().map(payment_order_from).transpose()
    }

    async fn save_transition(
        &self,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        completion: Completion<'_>,
    ) -> Result<bool, StoreError> {
        let mut items = self.transition_items(checkout, orders, from)?;
        items.push(completion_update(&self.tables.idempotency, &completion)?);
        let op = "TransactWriteItems transition";
        match transact(&self.client, items, None, op).await? {
            Ok(()) => Ok(true),
            // The checkout moved or the lease was lost: nothing written.
            Err(c) if c.any_condition_failed() => Ok(false),
            Err(c) => Err(c.unavailable(op)),
        }
    }
}

impl DynamoStore {
    /// Puts the checkout and each order in their new state, each on condition that it is still
    /// in `from` (so two writers can never both move it).
    pub(crate) fn transition_items(
        &self,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let guarded = |item: Item| -> Result<TransactWriteItem, StoreError> {
            let put = built(
                Put::builder()
                    .table_name(&self.tables.payments)
                    .set_item(Some(item))
                    .condition_expression("payment_status = :from")
                    .expression_attribute_values(":from", s(from.as_str()))
                    .build(),
            )?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut items = vec![guarded(checkout_item(checkout))?];
        for order in orders {
            items.push(guarded(payment_order_item(order))?);
        }
        Ok(items)
    }
}
