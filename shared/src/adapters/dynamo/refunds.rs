//! Refunds (`RF#<refund_id>`/`RF`) in the payments table, next to the payment orders whose
//! counters they move and the outbox records they write, so each move is one transaction.
//!
//! A refund carries its PSP refund id as `psp_ref` (the `by_psp_ref` index: a webhook's
//! `re_…` → its refund) and its order as `parent_id` = `PO#<payment_order_id>` with
//! `child_id` = `RF#<refund_id>` (the `by_parent` index: an order's refunds, oldest first).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::codec::{built, get_n, get_time, n, opt_n, opt_parse, opt_s, parse, s, time, unavailable, Item};
use super::cursor::Cursors;
use super::pay_in::{order_refunds_from, payment_order_key, AMOUNT_REFUNDED, FEE_REFUNDED, REFUND_RESERVED};
use super::tx::{put_if_absent, transact, Cancelled};
use super::wallets::wallet_update;
use super::webhooks::{marker_item, outbox_item};
use super::DynamoStore;
use crate::domain::currency::Currency;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, CheckoutId, PaymentOrderId, RefundId, SellerId};
use crate::domain::metadata::Metadata;
use crate::domain::money::Money;
use crate::domain::outbox::OutboxEvent;
use crate::domain::pay_in::{OrderRefunds, PaymentStatus};
use crate::domain::psp::{PaymentIntentId, PspRefundId};
use crate::domain::refunds::{FeePolicy, Refund, RefundReason, RefundRefusal, RefundStatus, Split};
use crate::domain::time::format_time;
use crate::ports::{Applied, Begin, Page, RefundReader, RefundWrite, Refunds, Refusal, StoreError};

/// The sparse index from a parent (`PO#<id>`) to its children (`RF#<id>`), oldest first.
pub const PARENT_INDEX: &str = "by_parent";

pub fn refund_key(id: &RefundId) -> Item {
    HashMap::from([("pk".into(), s(format!("RF#{id}"))), ("sk".into(), s("RF"))])
}

pub fn refund_item(r: &Refund) -> Item {
    let mut item = refund_key(&r.id);
    item.extend([
        ("entity".into(), s("refund")),
        ("refund_id".into(), s(r.id.as_str())),
        ("account_id".into(), s(r.account_id.as_str())),
        ("payment_order_id".into(), s(r.payment_order_id.as_str())),
        ("checkout_id".into(), s(r.checkout_id.as_str())),
        ("seller_id".into(), s(r.seller_id.as_str())),
        ("payment_intent".into(), s(r.payment_intent.as_str())),
        ("currency".into(), s(r.amount.currency().code())),
        ("amount_minor".into(), n(r.amount.minor())),
        ("refund_status".into(), s(r.status.as_str())),
        ("fee_policy".into(), s(r.fee_policy.as_str())),
        ("order_amount_minor".into(), n(r.order_amount.minor())),
        ("order_fee_minor".into(), n(r.order_fee.minor())),
        ("seller_held_minor".into(), n(r.seller_held.minor())),
        ("parent_id".into(), s(format!("PO#{}", r.payment_order_id))),
        ("child_id".into(), s(format!("RF#{}", r.id))),
        ("created_at".into(), time(r.created_at)),
        ("updated_at".into(), time(r.updated_at)),
    ]);
    if !r.metadata.is_empty() {
        item.insert(
            "metadata".into(),
            AttributeValue::M(
                r.metadata
                    .pairs()
                    .iter()
                    .map(|(k, v)| (k.clone(), s(v)))
                    .collect(),
            ),
        );
    }
    let optional = [
        ("reason", r.reason.map(|x| s(x.as_str()))),
        ("split_fee_minor", r.split.map(|x| n(x.fee.minor()))),
        ("split_seller_minor", r.split.map(|x| n(x.seller.minor()))),
        ("psp_ref", r.psp_refund.as_ref().map(|x| s(x.as_str()))),
        ("failure_code", r.failure_code.as_ref().map(s)),
        ("failure_message", r.failure_message.as_ref().map(s)),
    ];
    item.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
    );
    // At the PSP and not yet final: repair_stuck asks after it if it waits too long.
    if r.status == RefundStatus::Pending && r.psp_refund.is_some() {
        item.extend(super::open::open_attrs("refund", r.id.as_str(), r.updated_at));
    }
    item
}

pub fn refund_from(item: &Item) -> Result<Refund, StoreError> {
    let currency = parse(item, "currency", Currency::parse)?;
    let money =
        |name: &str| -> Result<Money, StoreError> { Ok(Money::from_minor(get_n(item, name)?, currency)) };
    let corrupt = |e: String| StoreError::Corrupt(format!("refund item: {e}"));
    let metadata = match item.get("metadata") {
        None => Metadata::default(),
        Some(AttributeValue::M(m)) => Metadata::new(
            m.iter()
                .map(|(k, v)| match v {
                    AttributeValue::S(v) => Ok((k.clone(), v.clone())),
                    _ => Err(corrupt("metadata holds a non-string".into())),
                })
                .collect::<Result<_, _>>()?,
        )
        .map_err(|e| corrupt(e.to_string()))?,
        Some(_) => return Err(corrupt("metadata is not a map".into())),
    };
    let split = match (
        opt_n::<i64>(item, "split_fee_minor")?,
        opt_n::<i64>(item, "split_seller_minor")?,
    ) {
        (Some(fee), Some(seller)) => Some(Split {
            fee: Money::from_minor(fee, currency),
            seller: Money::from_minor(seller, currency),
        }),
        (None, None) => None,
        _ => return Err(corrupt("half a split".into())),
    };
    Ok(Refund {
        id: parse(item, "refund_id", RefundId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        payment_order_id: parse(item, "payment_order_id", PaymentOrderId::parse)?,
        checkout_id: parse(item, "checkout_id", CheckoutId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        payment_intent: parse(item, "payment_intent", PaymentIntentId::parse)?,
        amount: money("amount_minor")?,
        reason: opt_s(item, "reason")?
            .map(|r| RefundReason::parse(r).ok_or_else(|| corrupt(format!("reason {r:?}"))))
            .transpose()?,
        metadata,
        status: parse(item, "refund_status", str::parse::<RefundStatus>)?,
        fee_policy: parse(item, "fee_policy", str::parse::<FeePolicy>)?,
        order_amount: money("order_amount_minor")?,
        order_fee: money("order_fee_minor")?,
        seller_held: money("seller_held_minor")?,
        split,
        psp_refund: opt_parse(item, "psp_ref", PspRefundId::parse)?,
        failure_code: opt_s(item, "failure_code")?.map(str::to_owned),
        failure_message: opt_s(item, "failure_message")?.map(str::to_owned),
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

/// Where the creation transaction's order reservation sits (after the claim and the refund).
const RESERVATION_AT: usize = 2;

impl DynamoStore {
    /// `amount` more reserved on the order, on condition that it is the caller's, `SUCCESS`,
    /// and that the reservation stays within its amount: the one conditional write that
    /// checks and reserves.
    fn reservation(&self, r: &Refund) -> Result<TransactWriteItem, StoreError> {
        let max_before = r.order_amount.minor() - r.amount.minor();
        let update = built(
            Update::builder()
                .table_name(&self.tables.payments)
                .set_key(Some(payment_order_key(&r.payment_order_id)))
                .update_expression("ADD #reserved :amount SET updated_at = :now")
                .condition_expression(
                    "payment_status = :success AND account_id = :account AND (attribute_not_exists(#reserved) OR #reserved <= :max_before)",
                )
                .expression_attribute_names("#reserved", REFUND_RESERVED)
                .expression_attribute_values(":amount", n(r.amount.minor()))
                .expression_attribute_values(":now", time(r.created_at))
                .expression_attribute_values(":success", s(PaymentStatus::Success.as_str()))
                .expression_attribute_values(":account", s(r.account_id.as_str()))
                .expression_attribute_values(":max_before", n(max_before))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The order's counters from `before` to `after`: the reservation by an `ADD` (so refunds
    /// being created meanwhile do not conflict with it), the succeeded totals on condition
    /// that they are still `before`.
    fn counters(
        &self,
        r: &Refund,
        before: OrderRefunds,
        after: OrderRefunds,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut b = Update::builder()
            .table_name(&self.tables.payments)
            .set_key(Some(payment_order_key(&r.payment_order_id)))
            .expression_attribute_names("#reserved", REFUND_RESERVED)
            .expression_attribute_names("#refunded", AMOUNT_REFUNDED)
            .expression_attribute_names("#fee", FEE_REFUNDED)
            .expression_attribute_values(":now", time(r.updated_at))
            .expression_attribute_values(":reserved_delta", n(after.reserved_minor - before.reserved_minor))
            .expression_attribute_values(":release", n(before.reserved_minor - after.reserved_minor))
            .expression_attribute_values(":refunded", n(after.refunded_minor))
            .expression_attribute_values(":fee", n(after.fee_refunded_minor));
        let was = |attr: &str, value: i64, placeholder: &str| {
            if value == 0 {
                format!("(attribute_not_exists({attr}) OR {attr} = {placeholder})")
            } else {
                format!("{attr} = {placeholder}")
            }
        };
        b = b
            .expression_attribute_values(":refunded_before", n(before.refunded_minor))
            .expression_attribute_values(":fee_before", n(before.fee_refunded_minor));
        let condition = format!(
            "{} AND {} AND #reserved >= :release",
            was("#refunded", before.refunded_minor, ":refunded_before"),
            was("#fee", before.fee_refunded_minor, ":fee_before"),
        );
        let update = built(
            b.update_expression(
                "ADD #reserved :reserved_delta SET #refunded = :refunded, #fee = :fee, updated_at = :now",
            )
            .condition_expression(condition)
            .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn refund_put_from(&self, r: &Refund, from: RefundStatus) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.tables.payments)
                .set_item(Some(refund_item(r)))
                .condition_expression("refund_status = :from")
                .expression_attribute_values(":from", s(from.as_str()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// Why the reservation failed, from the order as it was.
fn refusal(refund: &Refund, cancelled: &Cancelled) -> Option<Refusal> {
    if !cancelled.condition_failed(RESERVATION_AT) {
        return None;
    }
    let old = cancelled.old_item(RESERVATION_AT)?;
    let status = opt_s(old, "payment_status")
        .ok()
        .flatten()?
        .parse::<PaymentStatus>()
        .ok()?;
    let refusal = if status != PaymentStatus::Success {
        RefundRefusal::NotRefundable {
            id: refund.payment_order_id.clone(),
            status,
        }
    } else {
        let reserved = order_refunds_from(old).ok()?.reserved_minor;
        let left = (refund.order_amount.minor() - reserved).max(0);
        if left == 0 {
            RefundRefusal::NothingLeft {
                id: refund.payment_order_id.clone(),
            }
        } else {
            RefundRefusal::ExceedsRefundable {
                requested: refund.amount,
                left: Money::from_minor(left, refund.amount.currency()),
            }
        }
    };
    Some(refusal.into())
}

impl Refunds for DynamoStore {
    async fn begin_refund(
        &self,
        record: &IdempotencyRecord,
        refund: &Refund,
        outbox: &OutboxEvent,
    ) -> Result<Begin, StoreError> {
        let items = vec![
            put_if_absent(&self.tables.payments, refund_item(refund))?,
            self.reservation(refund)?,
            wallet_update(
                &self.tables.wallets,
                &refund.account_id,
                &refund.seller_id,
                refund.amount.currency(),
                0,
                refund.seller_held.minor(),
                &format_time(refund.created_at),
            )?,
            put_if_absent(&self.tables.payments, outbox_item(outbox))?,
        ];
        self.begin_with_claim(record, items, |c| refusal(refund, c)).await
    }

    async fn get_refund(&self, id: &RefundId) -> Result<Option<Refund>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(refund_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem refund", e))?;
        out.item.as_ref().map(refund_from).transpose()
    }

    async fn order_refunds(&self, id: &PaymentOrderId) -> Result<Option<OrderRefunds>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(payment_order_key(id)))
            .projection_expression("#r, #a, #f")
            .expression_attribute_names("#r", REFUND_RESERVED)
            .expression_attribute_names("#a", AMOUNT_REFUNDED)
            .expression_attribute_names("#f", FEE_REFUNDED)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem order refunds", e))?;
        out.item.as_ref().map(order_refunds_from).transpose()
    }

    async fn save_refund_move(&self, w: RefundWrite<'_>) -> Result<Applied, StoreError> {
        let mut items = Vec::with_capacity(4);
        if let Some(event) = w.psp_event_id {
            items.push(put_if_absent(
                &self.tables.payments,
                marker_item(event, "applied"),
            )?);
        }
        items.push(self.refund_put_from(w.refund, w.from)?);
        items.push(self.counters(w.refund, w.before, w.after)?);
        items.push(put_if_absent(&self.tables.payments, outbox_item(w.outbox))?);
        let op = "TransactWriteItems refund move";
        match transact(&self.client, items, None, op).await? {
            Ok(()) => Ok(Applied::Applied),
            Err(c) if w.psp_event_id.is_some() && c.condition_failed(0) => Ok(Applied::Duplicate),
            Err(c) if c.any_condition_failed() || c.conflict() => Ok(Applied::Conflict),
            Err(c) => Err(c.unavailable(op)),
        }
    }

    async fn note_refund(&self, refund: &Refund, status: RefundStatus) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.payments)
            .set_item(Some(refund_item(refund)))
            .condition_expression("refund_status = :status")
            .expression_attribute_values(":status", s(status.as_str()))
            .send()
            .await;
        super::tx::conditional(result, "PutItem refund note")
    }

    async fn refund_by_psp_id(&self, psp_refund: &PspRefundId) -> Result<Option<RefundId>, StoreError> {
        let keys = self
            .find_psp_ref(&crate::domain::psp::PspRef::Refund(psp_refund.clone()))
            .await?;
        let ids: Vec<RefundId> = keys
            .iter()
            .filter_map(|pk| RefundId::parse(pk.strip_prefix("RF#")?).ok())
            .collect();
        match ids.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Err(StoreError::Corrupt(format!(
                "PSP refund {psp_refund} names more than one refund"
            ))),
        }
    }
}

/// The refunds list's store: the table and the seal on its cursors.
#[derive(Debug, Clone)]
pub struct RefundReads {
    pub store: DynamoStore,
    pub cursors: Cursors,
}

/// One page of a parent's children through `by_parent`: an order's refunds, a seller's
/// payouts.
pub struct Children<'a> {
    /// `parent_id`, such as `PO#<payment_order_id>`.
    pub parent: String,
    /// What the children's `child_id` starts with, such as `RF#`.
    pub prefix: &'static str,
    /// Only children whose attribute is this value. Applied after the limit: a page may hold
    /// fewer, and the cursor goes on.
    pub only: Option<(&'static str, &'a str)>,
    /// What the cursors are sealed to (the query and its caller).
    pub scope: &'a str,
    pub limit: i32,
    pub cursor: Option<&'a str>,
    /// Names the query in errors.
    pub op: &'static str,
}

/// Reads one page of `q`'s children with `read`; the cursor of the next page, if any.
pub async fn children_page<T>(
    store: &DynamoStore,
    cursors: &Cursors,
    q: Children<'_>,
    read: impl Fn(&Item) -> Result<T, StoreError>,
) -> Result<(Vec<T>, Option<String>), StoreError> {
    let mut query = store
        .client
        .query()
        .table_name(&store.tables.payments)
        .index_name(PARENT_INDEX)
        .key_condition_expression("parent_id = :parent AND begins_with(child_id, :prefix)")
        .expression_attribute_values(":parent", s(q.parent))
        .expression_attribute_values(":prefix", s(q.prefix))
        .limit(q.limit)
        .set_exclusive_start_key(cursors.open(q.scope, q.cursor)?);
    if let Some((attribute, value)) = q.only {
        query = query
            .filter_expression("#only = :only")
            .expression_attribute_names("#only", attribute)
            .expression_attribute_values(":only", s(value));
    }
    let out = query.send().await.map_err(|e| unavailable(q.op, e))?;
    let data = out
        .items
        .unwrap_or_default()
        .iter()
        .map(read)
        .collect::<Result<Vec<T>, _>>()?;
    Ok((data, cursors.seal(q.scope, out.last_evaluated_key.as_ref())))
}

impl RefundReader for RefundReads {
    async fn list_refunds(
        &self,
        account_id: &AccountId,
        payment_order_id: &PaymentOrderId,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<Refund>, StoreError> {
        let scope = format!("refunds|{account_id}|{payment_order_id}");
        let q = Children {
            parent: format!("PO#{payment_order_id}"),
            prefix: "RF#",
            only: None,
            scope: &scope,
            limit,
            cursor,
            op: "Query refunds by order",
        };
        let (data, next_cursor) = children_page(&self.store, &self.cursors, q, refund_from).await?;
        Ok(Page {
            data: data.into_iter().filter(|r| &r.account_id == account_id).collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::get_s;
    use super::*;
    use chrono::Utc;

    #[test]
    fn a_refund_item_reads_back_as_written() {
        let usd = Currency::parse("USD").unwrap();
        let r = Refund {
            id: RefundId::generate(),
            account_id: AccountId::parse("acct_a").unwrap(),
            payment_order_id: PaymentOrderId::generate(),
            checkout_id: CheckoutId::generate(),
            seller_id: SellerId::parse("s").unwrap(),
            payment_intent: PaymentIntentId::parse("pi_1").unwrap(),
            amount: Money::from_minor(1234, usd),
            reason: Some(RefundReason::Duplicate),
            metadata: Metadata::new([("k".to_owned(), "v".to_owned())].into_iter().collect()).unwrap(),
            status: RefundStatus::Succeeded,
            fee_policy: FeePolicy::Proportional,
            order_amount: Money::from_minor(5000, usd),
            order_fee: Money::from_minor(125, usd),
            seller_held: Money::from_minor(1203, usd),
            split: Some(Split {
                fee: Money::from_minor(31, usd),
                seller: Money::from_minor(1203, usd),
            }),
            psp_refund: Some(PspRefundId::parse("re_1").unwrap()),
            failure_code: None,
            failure_message: Some("m".into()),
            created_at: crate::domain::time::parse_time("2026-11-30T00:00:00.000Z").unwrap(),
            updated_at: Utc::now(),
        };
        let item = refund_item(&r);
        assert_eq!(
            get_s(&item, "parent_id").unwrap(),
            format!("PO#{}", r.payment_order_id)
        );
        let mut back = refund_from(&item).unwrap();
        back.updated_at = r.updated_at;
        assert_eq!(back, r);
    }
}
