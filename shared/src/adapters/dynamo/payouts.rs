//! Payouts (`PAYOUT#<payout_id>`/`PAYOUT`) and the sellers' payout accounts
//! (`SELLER#<account_id>#<seller_id>`/`SELLER`) in the payments table, next to the outbox
//! records a payout's moves write, so each move is one transaction. A payout's hold is an
//! update of the seller's wallet in the wallets table, in the same transaction, conditional on
//! the wallet's `available_minor`.
//!
//! A payout names its seller as `parent_id` = `SELLER#<account_id>#<seller_id>` with
//! `child_id` = `PAYOUT#<payout_id>` (the `by_parent` index: a seller's payouts, oldest first),
//! and its transfer id as `psp_ref` once it has one (the `by_psp_ref` index).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use chrono::{DateTime, NaiveDate, Utc};

use super::codec::{built, get_n, get_time, n, opt_n, opt_parse, opt_s, parse, s, time, unavailable, Item};
use super::tx::{put_if_absent, Cancelled};
use super::wallets::wallet_key;
use super::webhooks::{marker_item, outbox_item};
use super::DynamoStore;
use crate::domain::currency::Currency;
use crate::domain::idempotency::IdempotencyRecord;
use crate::domain::ids::{AccountId, PayoutId, SellerId};
use crate::domain::money::Money;
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::schedule::WalletCandidate;
use crate::domain::payouts::{Available, Payout, PayoutRefusal, PayoutStatus};
use crate::domain::psp::{PspAccountId, PspPayoutId, PspTransferId, PspTransferReversalId};
use crate::ports::{Applied, Begin, Page, PayoutReader, PayoutScan, Payouts, Refusal, StoreError};

pub fn payout_key(id: &PayoutId) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("PAYOUT#{id}"))),
        ("sk".into(), s("PAYOUT")),
    ])
}

pub fn seller_key(account_id: &AccountId, seller: &SellerId) -> Item {
    HashMap::from([
        ("pk".into(), s(format!("SELLER#{account_id}#{seller}"))),
        ("sk".into(), s("SELLER")),
    ])
}

pub fn payout_item(p: &Payout) -> Item {
    let mut item = payout_key(&p.id);
    item.extend([
        ("entity".into(), s("payout")),
        ("payout_id".into(), s(p.id.as_str())),
        ("account_id".into(), s(p.account_id.as_str())),
        ("seller_id".into(), s(p.seller_id.as_str())),
        ("currency".into(), s(p.amount.currency().code())),
        ("amount_minor".into(), n(p.amount.minor())),
        ("payout_status".into(), s(p.status.as_str())),
        (
            "automatic".into(),
            aws_sdk_dynamodb::types::AttributeValue::Bool(p.automatic),
        ),
        ("destination".into(), s(p.destination.as_str())),
        (
            "parent_id".into(),
            s(format!("SELLER#{}#{}", p.account_id, p.seller_id)),
        ),
        ("child_id".into(), s(format!("PAYOUT#{}", p.id))),
        ("created_at".into(), time(p.created_at)),
        ("updated_at".into(), time(p.updated_at)),
    ]);
    let optional = [
        ("psp_ref", p.psp_transfer.as_ref().map(|x| s(x.as_str()))),
        ("psp_payout_id", p.psp_payout.as_ref().map(|x| s(x.as_str()))),
        ("psp_reversal_id", p.psp_reversal.as_ref().map(|x| s(x.as_str()))),
        (
            "arrival_date",
            p.arrival_date.map(|d| s(d.format("%Y-%m-%d").to_string())),
        ),
        ("failure_code", p.failure_code.as_ref().map(s)),
        ("failure_message", p.failure_message.as_ref().map(s)),
    ];
    item.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v))),
    );
    // Sent, and waiting for the bank's answer: repair_stuck asks after it if it waits too long.
    if p.status == PayoutStatus::InTransit && p.psp_payout.is_some() {
        item.extend(super::open::open_attrs("payout", p.id.as_str(), p.updated_at));
    }
    item
}

pub fn payout_from(item: &Item) -> Result<Payout, StoreError> {
    let currency = parse(item, "currency", Currency::parse)?;
    let corrupt = |e: String| StoreError::Corrupt(format!("payout item: {e}"));
    let automatic = match item.get("automatic") {
        Some(aws_sdk_dynamodb::types::AttributeValue::Bool(b)) => *b,
        _ => return Err(corrupt("automatic is not a boolean".into())),
    };
    Ok(Payout {
        id: parse(item, "payout_id", PayoutId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        amount: Money::from_minor(get_n(item, "amount_minor")?, currency),
        status: parse(item, "payout_status", str::parse::<PayoutStatus>)?,
        automatic,
        destination: parse(item, "destination", PspAccountId::parse)?,
        psp_transfer: opt_parse(item, "psp_ref", PspTransferId::parse)?,
        psp_payout: opt_parse(item, "psp_payout_id", PspPayoutId::parse)?,
        psp_reversal: opt_parse(item, "psp_reversal_id", PspTransferReversalId::parse)?,
        arrival_date: opt_parse(item, "arrival_date", |d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))?,
        failure_code: opt_s(item, "failure_code")?.map(str::to_owned),
        failure_message: opt_s(item, "failure_message")?.map(str::to_owned),
        created_at: get_time(item, "created_at")?,
        updated_at: get_time(item, "updated_at")?,
    })
}

/// Where the creation transaction's wallet hold sits (after the claim and the payout).
const HOLD_AT: usize = 2;

impl DynamoStore {
    /// `amount` from the wallet's available to held, on condition that it is available.
    fn payout_hold(&self, p: &Payout) -> Result<TransactWriteItem, StoreError> {
        let a = p.amount.minor();
        let update = built(
            Update::builder()
                .table_name(&self.tables.wallets)
                .key("pk", s(wallet_key(&p.account_id, &p.seller_id)))
                .key("sk", s(p.amount.currency().code()))
                .update_expression("ADD held_minor :amount, available_minor :minus SET updated_at = :now")
                .condition_expression("available_minor >= :amount")
                .expression_attribute_values(":amount", n(a))
                .expression_attribute_values(":minus", n(-a))
                .expression_attribute_values(":now", time(p.created_at))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

/// The refusal a cancelled creation means: the wallet did not have the amount available (or
/// there is no wallet in that currency: no old item).
fn refusal(p: &Payout, cancelled: &Cancelled) -> Option<Refusal> {
    if !cancelled.condition_failed(HOLD_AT) {
        return None;
    }
    let available = cancelled
        .old_item(HOLD_AT)
        .map(|old| opt_n::<i64>(old, "available_minor").ok().flatten().unwrap_or(0));
    Some(PayoutRefusal::short(&p.seller_id, p.amount, available).into())
}

impl Payouts for DynamoStore {
    async fn payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
    ) -> Result<Option<PspAccountId>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(seller_key(account_id, seller)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem seller", e))?;
        out.item
            .as_ref()
            .map(|i| parse(i, "psp_account_id", PspAccountId::parse))
            .transpose()
    }

    async fn put_payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        psp_account: &PspAccountId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut item = seller_key(account_id, seller);
        item.extend([
            ("entity".into(), s("seller")),
            ("account_id".into(), s(account_id.as_str())),
            ("seller_id".into(), s(seller.as_str())),
            ("psp_account_id".into(), s(psp_account.as_str())),
            ("updated_at".into(), time(now)),
        ]);
        self.client
            .put_item()
            .table_name(&self.tables.payments)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable("PutItem seller", e))?;
        Ok(())
    }

    async fn wallet_available(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        currency: Currency,
    ) -> Result<Option<Available>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.wallets)
            .key("pk", s(wallet_key(account_id, seller)))
            .key("sk", s(currency.code()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem wallet", e))?;
        out.item
            .as_ref()
            .map(|i| {
                let minor = |name: &str| -> Result<Money, StoreError> {
                    Ok(Money::from_minor(opt_n(i, name)?.unwrap_or(0), currency))
                };
                Ok(Available {
                    balance: minor("balance_minor")?,
                    held: minor("held_minor")?,
                })
            })
            .transpose()
    }

    async fn begin_payout(
        &self,
        record: &IdempotencyRecord,
        payout: &Payout,
        outbox: &OutboxEvent,
    ) -> Result<Begin, StoreError> {
        let items = vec![
            put_if_absent(&self.tables.payments, payout_item(payout))?,
            self.payout_hold(payout)?,
            put_if_absent(&self.tables.payments, outbox_item(outbox))?,
        ];
        self.begin_with_claim(record, items, |c| refusal(payout, c)).await
    }

    async fn mark_payout_sending(&self, id: &PayoutId) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.payments)
            .set_key(Some(payout_key(id)))
            .update_expression("SET sending = :yes")
            .condition_expression("payout_status = :pending")
            .expression_attribute_values(":yes", aws_sdk_dynamodb::types::AttributeValue::Bool(true))
            .expression_attribute_values(":pending", s(PayoutStatus::Pending.as_str()))
            .send()
            .await;
        super::tx::conditional(result, "UpdateItem payout sending")
    }

    async fn cancel_payout(&self, payout: &Payout, outbox: &OutboxEvent) -> Result<bool, StoreError> {
        let put = built(
            aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.tables.payments)
                .set_item(Some(payout_item(payout)))
                .condition_expression("payout_status = :pending AND attribute_not_exists(sending)")
                .expression_attribute_values(":pending", s(PayoutStatus::Pending.as_str()))
                .build(),
        )?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            put_if_absent(&self.tables.payments, outbox_item(outbox))?,
        ];
        let op = "TransactWriteItems payout cancel";
        match super::tx::transact(&self.client, items, None, op).await? {
            Ok(()) => Ok(true),
            Err(c) if c.any_condition_failed() => Ok(false),
            Err(c) => Err(c.unavailable(op)),
        }
    }

    async fn save_payout_move(
        &self,
        payout: &Payout,
        from: PayoutStatus,
        outbox: &OutboxEvent,
        psp_event_id: Option<&str>,
    ) -> Result<Applied, StoreError> {
        let mut item = payout_item(payout);
        item.insert(
            "sending".into(),
            aws_sdk_dynamodb::types::AttributeValue::Bool(true),
        );
        let put = built(
            aws_sdk_dynamodb::types::Put::builder()
                .table_name(&self.tables.payments)
                .set_item(Some(item))
                .condition_expression("payout_status = :from")
                .expression_attribute_values(":from", s(from.as_str()))
                .build(),
        )?;
        let mut items = Vec::with_capacity(3);
        if let Some(event) = psp_event_id {
            items.push(put_if_absent(
                &self.tables.payments,
                marker_item(event, "applied"),
            )?);
        }
        items.push(TransactWriteItem::builder().put(put).build());
        items.push(put_if_absent(&self.tables.payments, outbox_item(outbox))?);
        let op = "TransactWriteItems payout move";
        match super::tx::transact(&self.client, items, None, op).await? {
            Ok(()) => Ok(Applied::Applied),
            Err(c) if psp_event_id.is_some() && c.condition_failed(0) => Ok(Applied::Duplicate),
            Err(c) if c.any_condition_failed() || c.conflict() => Ok(Applied::Conflict),
            Err(c) => Err(c.unavailable(op)),
        }
    }

    async fn get_payout(&self, id: &PayoutId) -> Result<Option<Payout>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.payments)
            .set_key(Some(payout_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem payout", e))?;
        out.item.as_ref().map(payout_from).transpose()
    }
}

/// `BatchGetItem` takes at most this many keys.
const BATCH_GET_KEYS_MAX: usize = 100;
/// Unprocessed keys (throttling) are asked again this many times.
const BATCH_GET_ROUNDS: u32 = 6;

/// The scan's position: the wallet item it stopped after (its key), as JSON. It only travels
/// in the scheduler's own queue, never to a caller.
fn scan_cursor(key: &Item) -> Result<String, StoreError> {
    let part = |k: &str| -> Result<String, StoreError> {
        Ok(opt_s(key, k)?
            .ok_or_else(|| StoreError::Corrupt(format!("scan key without {k}")))?
            .to_owned())
    };
    Ok(serde_json::json!({"pk": part("pk")?, "sk": part("sk")?}).to_string())
}

fn scan_start(cursor: &str) -> Result<Item, StoreError> {
    let v: serde_json::Value =
        serde_json::from_str(cursor).map_err(|e| StoreError::InvalidCursor(format!("scan cursor: {e}")))?;
    let part = |k: &str| {
        v[k].as_str()
            .map(s)
            .ok_or_else(|| StoreError::InvalidCursor(format!("scan cursor without {k}")))
    };
    Ok(HashMap::from([
        ("pk".to_owned(), part("pk")?),
        ("sk".to_owned(), part("sk")?),
    ]))
}

impl PayoutScan for DynamoStore {
    /// A `Scan` of the wallets table's segment, keeping wallets with something available
    /// (the applied-event markers beside them are read and filtered out by DynamoDB).
    async fn wallet_page(
        &self,
        segment: u32,
        segments: u32,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page<WalletCandidate>, StoreError> {
        let start = cursor.map(scan_start).transpose()?;
        let out = self
            .client
            .scan()
            .table_name(&self.tables.wallets)
            .segment(segment as i32)
            .total_segments(segments as i32)
            .limit(limit)
            .set_exclusive_start_key(start)
            .filter_expression("entity = :wallet AND available_minor > :zero")
            .projection_expression("account_id, seller_id, sk, balance_minor, held_minor")
            .expression_attribute_values(":wallet", s("wallet"))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| unavailable("Scan wallets", e))?;
        let data = out
            .items()
            .iter()
            .map(|i| {
                Ok(WalletCandidate {
                    account_id: parse(i, "account_id", AccountId::parse)?,
                    seller_id: parse(i, "seller_id", SellerId::parse)?,
                    currency: parse(i, "sk", Currency::parse)?,
                    balance_minor: opt_n(i, "balance_minor")?.unwrap_or(0),
                    held_minor: opt_n(i, "held_minor")?.unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next_cursor = out.last_evaluated_key().map(scan_cursor).transpose()?;
        Ok(Page { data, next_cursor })
    }

    /// `BatchGetItem` of the sellers' `SELLER` items, a hundred keys a call, the calls at once;
    /// unprocessed keys are asked again with a short backoff.
    async fn payout_accounts(
        &self,
        sellers: &[(AccountId, SellerId)],
    ) -> Result<HashMap<(AccountId, SellerId), PspAccountId>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut unique: Vec<&(AccountId, SellerId)> = sellers.iter().collect();
        unique.sort();
        unique.dedup();
        let calls = unique.chunks(BATCH_GET_KEYS_MAX).map(|chunk| async move {
            let mut keys: Vec<Item> = chunk.iter().map(|(a, sl)| seller_key(a, sl)).collect();
            let mut found = Vec::new();
            for round in 0..BATCH_GET_ROUNDS {
                if keys.is_empty() {
                    break;
                }
                if round > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << round)).await;
                }
                let request = built(
                    KeysAndAttributes::builder()
                        .set_keys(Some(std::mem::take(&mut keys)))
                        .projection_expression("pk, psp_account_id")
                        .build(),
                )?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.payments, request)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem payout accounts", e))?;
                if let Some(items) = out.responses.and_then(|mut r| r.remove(&self.tables.payments)) {
                    found.extend(items);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.tables.payments))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
            if !keys.is_empty() {
                return Err(StoreError::Unavailable(format!(
                    "BatchGetItem payout accounts: {} keys left unprocessed",
                    keys.len()
                )));
            }
            Ok::<_, StoreError>(found)
        });
        let mut accounts = HashMap::new();
        for items in futures_util::future::try_join_all(calls).await? {
            for item in items {
                let pk = opt_s(&item, "pk")?.unwrap_or_default().to_owned();
                let Some(psp) = opt_s(&item, "psp_account_id")? else {
                    continue;
                };
                let psp = PspAccountId::parse(psp).map_err(|e| StoreError::Corrupt(format!("{pk}: {e}")))?;
                // pk = SELLER#<account_id>#<seller_id>
                let Some((account, seller)) =
                    pk.strip_prefix("SELLER#").and_then(|rest| rest.split_once('#'))
                else {
                    return Err(StoreError::Corrupt(format!("seller item {pk:?}")));
                };
                let key = (
                    AccountId::parse(account).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    SellerId::parse(seller).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                );
                accounts.insert(key, psp);
            }
        }
        Ok(accounts)
    }
}

/// A seller's payouts through the `by_parent` index, with sealed cursors.
pub struct PayoutReads {
    pub store: DynamoStore,
    pub cursors: super::cursor::Cursors,
}

impl PayoutReader for PayoutReads {
    async fn list_payouts(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        status: Option<PayoutStatus>,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<Payout>, StoreError> {
        let scope = format!(
            "payouts|{account_id}|{seller}|{}",
            status.map_or("", PayoutStatus::as_str)
        );
        let q = super::refunds::Children {
            parent: format!("SELLER#{account_id}#{seller}"),
            prefix: "PAYOUT#",
            only: status.map(|st| ("payout_status", st.as_str())),
            scope: &scope,
            limit,
            cursor,
            op: "Query payouts by seller",
        };
        let (data, next_cursor) =
            super::refunds::children_page(&self.store, &self.cursors, q, payout_from).await?;
        Ok(Page {
            data: data.into_iter().filter(|p| &p.account_id == account_id).collect(),
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::payouts::{PayoutEvent, PayoutRequest};
    use rust_decimal::Decimal;

    #[test]
    fn a_payout_item_reads_back_as_written_at_each_step() {
        use chrono::SubsecRound;
        // Times are stored to the millisecond.
        let now = Utc::now().trunc_subsecs(3);
        let usd = Currency::parse("USD").unwrap();
        let mut p = Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_a").unwrap(),
            &PayoutRequest::new(SellerId::parse("s1").unwrap(), Decimal::new(1234, 2), usd).unwrap(),
            Some(PspAccountId::parse("acct_1S").unwrap()),
            true,
            now,
        )
        .unwrap();
        assert_eq!(payout_from(&payout_item(&p)).unwrap(), p);
        p.apply(PayoutEvent::Sent, now).unwrap();
        p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
        p.psp_payout = Some(PspPayoutId::parse("po_1").unwrap());
        p.arrival_date = NaiveDate::from_ymd_opt(2026, 12, 3);
        p.apply(PayoutEvent::PspFailed, now).unwrap();
        p.failure_code = Some("account_closed".into());
        p.failure_message = Some("The bank account has been closed.".into());
        p.reversed(PspTransferReversalId::parse("trr_1").unwrap(), now)
            .unwrap();
        let item = payout_item(&p);
        assert_eq!(payout_from(&item).unwrap(), p);
        assert_eq!(item["psp_ref"].as_s().unwrap(), "tr_1", "found by its transfer");
        assert_eq!(
            item["parent_id"].as_s().unwrap(),
            "SELLER#acct_a#s1",
            "listed under its seller"
        );
    }
}
