//! The ledger and wallet tables. Ledger items are only ever `Put` on condition of absence:
//! the ledger writer's IAM policy has no `UpdateItem`/`DeleteItem` on the ledger table.
//!
//! Ledger table (`pk`, `sk`): transaction `LTX#<id>`/`LTX` (all entries inline; GSI
//! `by_payment_order` on `payment_order_id`), and one entry per account line
//! `ACCT#<account_id>#<account>`/`<created_at>#<tx id>#<n>` for account statements.
//! Wallets table (`pk`, `sk`): `WALLET#<account_id>#<seller_id>`/`<currency>` with
//! `balance_minor`; applied-event markers `APPLIED#<event_id>`/`APPLIED`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::codec::{get_n, get_s, n, put_if_absent, s, transact_once, unavailable, Item};
use crate::domain::ids::SellerId;
use crate::domain::ledger::{Direction, Entry, LedgerAccount, LedgerTransaction};
use crate::domain::{Currency, Money};
use crate::ports::StoreError;

#[derive(Debug, Clone)]
pub struct LedgerStore {
    pub client: Client,
    pub ledger_table: String,
    pub wallets_table: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Written,
    /// Already there (a redelivered event): nothing new was written.
    AlreadyApplied,
}

fn entry_map(e: &Entry) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("account".into(), s(e.account.to_string())),
        ("direction".into(), s(e.direction.as_str())),
        ("amount_minor".into(), n(e.amount.minor())),
        ("currency".into(), s(e.amount.currency().code())),
    ]))
}

fn entry_from(v: &AttributeValue) -> Result<Entry, StoreError> {
    let AttributeValue::M(m) = v else {
        return Err(StoreError::Corrupt("ledger entry is not a map".into()));
    };
    let currency = Currency::parse(get_s(m, "currency")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Entry {
        account: LedgerAccount::parse(get_s(m, "account")?).map_err(StoreError::Corrupt)?,
        direction: Direction::parse(get_s(m, "direction")?).map_err(StoreError::Corrupt)?,
        amount: Money::from_minor(get_n(m, "amount_minor")?, currency),
    })
}

/// Reads a transaction item and checks it is balanced (an unbalanced one is corruption).
pub fn transaction_from(item: &Item) -> Result<LedgerTransaction, StoreError> {
    let entries = match item.get("entries") {
        Some(AttributeValue::L(list)) => list.iter().map(entry_from).collect::<Result<Vec<_>, _>>()?,
        _ => return Err(StoreError::Corrupt("ledger transaction without entries".into())),
    };
    LedgerTransaction::new(
        get_s(item, "transaction_id")?.to_owned(),
        get_s(item, "event_id")?.to_owned(),
        get_s(item, "account_id")?.to_owned(),
        super::codec::opt_s(item, "payment_order_id")?.map(str::to_owned),
        get_s(item, "created_at")?.to_owned(),
        entries,
    )
    .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl LedgerStore {
    /// Appends one transaction with all its entries, atomically, if its id is new.
    pub async fn append(&self, tx: &LedgerTransaction) -> Result<Written, StoreError> {
        // Asserted before the write; an unbalanced transaction never reaches the table.
        tx.check_balanced()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut header: Item = HashMap::from([
            ("pk".into(), s(format!("LTX#{}", tx.id))),
            ("sk".into(), s("LTX")),
            ("entity".into(), s("ledger_transaction")),
            ("transaction_id".into(), s(&tx.id)),
            ("event_id".into(), s(&tx.event_id)),
            ("account_id".into(), s(&tx.account_id)),
            ("created_at".into(), s(&tx.created_at)),
            (
                "entries".into(),
                AttributeValue::L(tx.entries.iter().map(entry_map).collect()),
            ),
        ]);
        if let Some(po) = &tx.payment_order_id {
            header.insert("payment_order_id".into(), s(po));
        }
        let mut items = vec![put_if_absent(&self.ledger_table, header)?];
        for (i, e) in tx.entries.iter().enumerate() {
            let mut line = match entry_map(e) {
                AttributeValue::M(m) => m,
                _ => HashMap::new(),
            };
            line.extend([
                ("pk".into(), s(format!("ACCT#{}#{}", tx.account_id, e.account))),
                ("sk".into(), s(format!("{}#{}#{i}", tx.created_at, tx.id))),
                ("entity".into(), s("ledger_entry")),
                ("transaction_id".into(), s(&tx.id)),
                ("created_at".into(), s(&tx.created_at)),
            ]);
            items.push(put_if_absent(&self.ledger_table, line)?);
        }
        Ok(
            if transact_once(&self.client, items, "TransactWriteItems ledger").await? {
                Written::Written
            } else {
                Written::AlreadyApplied
            },
        )
    }

    /// Adds each seller's net to their wallet, once per event (the marker is in the same
    /// transaction, conditional on its absence).
    pub async fn credit_wallets(
        &self,
        event_id: &str,
        account_id: &str,
        credits: &[(SellerId, Money)],
        now: &str,
    ) -> Result<Written, StoreError> {
        let marker: Item = HashMap::from([
            ("pk".into(), s(format!("APPLIED#{event_id}"))),
            ("sk".into(), s("APPLIED")),
            ("entity".into(), s("applied_event")),
            ("applied_at".into(), s(now)),
        ]);
        let mut items = vec![put_if_absent(&self.wallets_table, marker)?];
        for (seller, amount) in credits {
            let update = Update::builder()
                .table_name(&self.wallets_table)
                .key("pk", s(format!("WALLET#{account_id}#{seller}")))
                .key("sk", s(amount.currency().code()))
                .update_expression(
                    "ADD balance_minor :amount SET entity = :wallet, seller_id = :seller, account_id = :account, updated_at = :now",
                )
                .expression_attribute_values(":amount", n(amount.minor()))
                .expression_attribute_values(":wallet", s("wallet"))
                .expression_attribute_values(":seller", s(seller.as_str()))
                .expression_attribute_values(":account", s(account_id))
                .expression_attribute_values(":now", s(now))
                .build()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(
            if transact_once(&self.client, items, "TransactWriteItems wallet").await? {
                Written::Written
            } else {
                Written::AlreadyApplied
            },
        )
    }

    /// Every item of a table (for the invariant checker), page by page.
    pub async fn scan_all(&self, table: &str) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable("Scan", e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }
}

/// Reads everything the invariant checker needs (scans; an ops tool, not a request path).
pub async fn snapshot(
    store: &LedgerStore,
    payments_table: &str,
) -> Result<crate::domain::invariants::Snapshot, StoreError> {
    use crate::domain::invariants::{OrderState, Snapshot, WalletBalance};
    let mut snap = Snapshot::default();
    for item in store.scan_all(&store.ledger_table).await? {
        if super::codec::opt_s(&item, "entity")? == Some("ledger_transaction") {
            match transaction_from(&item) {
                Ok(tx) => snap.transactions.push(tx),
                Err(e) => snap
                    .corrupt_transactions
                    .push(format!("{:?}: {e}", item.get("pk"))),
            }
        }
    }
    for item in store.scan_all(&store.wallets_table).await? {
        if super::codec::opt_s(&item, "entity")? == Some("wallet") {
            snap.wallets.push(WalletBalance {
                account_id: get_s(&item, "account_id")?.to_owned(),
                seller_id: get_s(&item, "seller_id")?.to_owned(),
                currency: get_s(&item, "sk")?.to_owned(),
                balance_minor: get_n(&item, "balance_minor")?,
            });
        }
    }
    for item in store.scan_all(payments_table).await? {
        match super::codec::opt_s(&item, "entity")? {
            Some("payment_order") => snap.orders.push(OrderState {
                payment_order_id: get_s(&item, "payment_order_id")?.to_owned(),
                checkout_id: get_s(&item, "checkout_id")?.to_owned(),
                status: get_s(&item, "payment_status")?.to_owned(),
            }),
            Some("outbox") => snap.outbox.push((
                get_s(&item, "checkout_id")?.to_owned(),
                get_s(&item, "event_type")?.to_owned(),
            )),
            _ => {}
        }
    }
    Ok(snap)
}

/// A page of items and the opaque cursor for the next one.
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Cursors are the hex of the last evaluated key's string attributes: opaque to clients.
fn encode_cursor(key: Option<&Item>) -> Option<String> {
    let key = key.filter(|k| !k.is_empty())?;
    let plain: std::collections::BTreeMap<&String, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|s| (k, s.as_str())))
        .collect();
    Some(hex::encode(serde_json::to_vec(&plain).ok()?))
}

pub fn decode_cursor(cursor: &str) -> Option<Item> {
    let bytes = hex::decode(cursor).ok()?;
    let plain: std::collections::BTreeMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    Some(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl LedgerStore {
    /// A seller's wallet: balance per currency (empty: no wallet yet).
    pub async fn wallet_balances(
        &self,
        account_id: &str,
        seller_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.wallets_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("WALLET#{account_id}#{seller_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("Query wallet", e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|i| Ok((get_s(i, "sk")?.to_owned(), get_n(i, "balance_minor")?)))
            .collect()
    }

    pub async fn transactions_for_order(
        &self,
        payment_order_id: &str,
        limit: i32,
        cursor: Option<Item>,
    ) -> Result<Page<LedgerTransaction>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.ledger_table)
            .index_name("by_payment_order")
            .key_condition_expression("payment_order_id = :po")
            .expression_attribute_values(":po", s(payment_order_id))
            .limit(limit)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(|e| unavailable("Query ledger by payment order", e))?;
        Ok(Page {
            data: out
                .items
                .unwrap_or_default()
                .iter()
                .map(transaction_from)
                .collect::<Result<_, _>>()?,
            next_cursor: encode_cursor(out.last_evaluated_key.as_ref()),
        })
    }

    /// One page of an account's entries, oldest first, as (transaction id, created_at, entry).
    pub async fn account_entries(
        &self,
        account_id: &str,
        account: &LedgerAccount,
        limit: Option<i32>,
        cursor: Option<Item>,
    ) -> Result<Page<(String, String, Entry)>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.ledger_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("ACCT#{account_id}#{account}")))
            .consistent_read(true)
            .set_limit(limit)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(|e| unavailable("Query ledger account", e))?;
        let data = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|i| {
                Ok((
                    get_s(i, "transaction_id")?.to_owned(),
                    get_s(i, "created_at")?.to_owned(),
                    entry_from(&AttributeValue::M(i.clone()))?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page {
            data,
            next_cursor: encode_cursor(out.last_evaluated_key.as_ref()),
        })
    }
}
