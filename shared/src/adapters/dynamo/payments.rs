//! Checkouts, payment orders and idempotency records.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::codec::{get_n, get_s, get_time, n, opt_n, opt_s, parse, s, time, unavailable, Item};
use super::DynamoStore;
use crate::domain::checkout::CheckoutForm;
use crate::domain::idempotency::{IdempotencyRecord, RecordState};
use crate::domain::ids::{AccountId, BuyerId, CheckoutId, OrderId, PaymentOrderId, SellerId, SubOrderId};
use crate::domain::{Checkout, Currency, Money, PaymentOrder, PaymentStatus};
use crate::ports::{Begin, Checkouts, Completion, Idempotency, StoreError};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";
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
    if let Some(token) = &c.psp_token {
        item.insert("psp_token".into(), s(token));
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
    // A payment order carries the token as `psp_ref`, not `psp_token`: only checkouts are in
    // the sparse `by_psp_token` index.
    if let Some(token) = &o.psp_token {
        item.insert("psp_ref".into(), s(token));
    }
    item
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
        psp_token: opt_s(item, "psp_token")?.map(str::to_owned),
        psp_url: opt_s(item, "psp_url")?.map(str::to_owned),
        failure_reason: opt_s(item, "failure_reason")?.map(str::to_owned),
        payment_order_ids: ids,
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

pub fn payment_order_from(item: &Item) -> Result<PaymentOrder, StoreError> {
    Ok(PaymentOrder {
        id: parse(item, "payment_order_id", PaymentOrderId::parse)?,
        checkout_id: parse(item, "checkout_id", CheckoutId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        order_id: parse(item, "order_id", OrderId::parse)?,
        sub_order_id: opt_s(item, "sub_order_id")?
            .map(SubOrderId::parse)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        buyer_id: parse(item, "buyer_id", BuyerId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        amount: Money::from_minor(get_n(item, "amount_minor")?, currency(item)?),
        status: status(item)?,
        psp_token: opt_s(item, "psp_ref")?.map(str::to_owned),
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

pub fn record_item(r: &IdempotencyRecord) -> Item {
    let mut item: Item = HashMap::from([
        ("pk".into(), s(&r.record_id)),
        ("request_hash".into(), s(&r.request_hash)),
        ("checkout_id".into(), s(r.checkout_id.as_str())),
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
    Ok(IdempotencyRecord {
        record_id: get_s(item, "pk")?.to_owned(),
        request_hash: get_s(item, "request_hash")?.to_owned(),
        checkout_id: parse(item, "checkout_id", CheckoutId::parse)?,
        state,
        created_at_ms: opt_n(item, "created_at_ms")?.unwrap_or_default(),
        expires_at_s: get_n(item, "expires_at")?,
    })
}

fn put(table: &str, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .build()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

impl Checkouts for DynamoStore {
    async fn begin_checkout(
        &self,
        record: &IdempotencyRecord,
        checkout: &Checkout,
        orders: &[PaymentOrder],
    ) -> Result<Begin, StoreError> {
        let claim = Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(record_item(record)))
            // Absent, or past its TTL but not yet swept (TTL deletion lags by up to days).
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now_s")
            .expression_attribute_values(":now_s", n(record.created_at_ms / 1000))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(claim).build()];
        items.push(put(
            &self.tables.payments,
            checkout_item(checkout),
            "attribute_not_exists(pk)",
        )?);
        for order in orders {
            items.push(put(
                &self.tables.payments,
                payment_order_item(order),
                "attribute_not_exists(pk)",
            )?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            // Makes the SDK's own retries of this call idempotent (the lease token is unique).
            .client_request_token(record.lease_token().unwrap_or_default())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Begin::Created),
            Err(e) => e,
        };
        match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                let reasons = cancel.cancellation_reasons();
                let claim_reason = reasons.first();
                if reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                    return Ok(Begin::Contended);
                }
                match claim_reason.and_then(|r| r.code()) {
                    Some("ConditionalCheckFailed") => match claim_reason.and_then(|r| r.item()) {
                        Some(old) => Ok(Begin::Exists(record_from(old)?)),
                        None => match self.get_record(&record.record_id).await? {
                            Some(existing) => Ok(Begin::Exists(existing)),
                            None => Ok(Begin::Contended),
                        },
                    },
                    _ => Err(StoreError::Unavailable(format!(
                        "transaction cancelled: {:?}",
                        reasons
                            .iter()
                            .map(|r| r.code().unwrap_or("None"))
                            .collect::<Vec<_>>()
                    ))),
                }
            }
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => Ok(Begin::Contended),
            _ => Err(unavailable("TransactWriteItems checkout", err)),
        }
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
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
        let complete = Update::builder()
            .table_name(&self.tables.idempotency)
            .key("pk", s(completion.record_id))
            .update_expression(
                "SET record_state = :completed, response_status = :status, response_body = :body REMOVE lease_token, lease_until_ms",
            )
            .condition_expression("record_state = :in_progress AND lease_token = :token")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":status", n(completion.status))
            .expression_attribute_values(":body", s(completion.body))
            .expression_attribute_values(":token", s(completion.lease_token))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        items.push(TransactWriteItem::builder().update(complete).build());
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c))
                    if c.cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Ok(false)
                }
                _ => Err(unavailable("TransactWriteItems transition", e)),
            },
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
            let put = Put::builder()
                .table_name(&self.tables.payments)
                .set_item(Some(item))
                .condition_expression("payment_status = :from")
                .expression_attribute_values(":from", s(from.as_str()))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(TransactWriteItem::builder().put(put).build())
        };
        let mut items = vec![guarded(checkout_item(checkout))?];
        for order in orders {
            items.push(guarded(payment_order_item(order))?);
        }
        Ok(items)
    }
}

impl Idempotency for DynamoStore {
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
        conditional(result.map(|_| ()), "UpdateItem idempotency take over")
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
        conditional(result.map(|_| ()), "UpdateItem idempotency release")
    }

    async fn complete(
        &self,
        record_id: &str,
        lease_token: &str,
        status: u16,
        body: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(record_id))
            .update_expression(
                "SET record_state = :completed, response_status = :status, response_body = :body REMOVE lease_token, lease_until_ms",
            )
            .condition_expression("record_state = :in_progress AND lease_token = :token")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":status", n(status))
            .expression_attribute_values(":body", s(body))
            .expression_attribute_values(":token", s(lease_token))
            .send()
            .await;
        conditional(result.map(|_| ()), "UpdateItem idempotency complete")
    }
}

fn conditional(
    result: Result<(), aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
    op: &str,
) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(unavailable(op, e)),
    }
}
