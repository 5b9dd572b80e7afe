//! The ledger: transactions and their entry lines (append-only), and each account's running
//! totals (sharded counters), written together in one transaction.
//!
//! Ledger table (`pk`, `sk`), only ever `Put` on condition of absence (the ledger writer's IAM
//! policy has no `UpdateItem`/`DeleteItem` on it):
//! - transaction `LTX#<id>`/`LTX`, all entries inline; GSI `by_payment_order`;
//! - one entry line per account `ACCT#<account_id>#<account>`/`<created_at>#<tx id>#<n>`, for
//!   account statements.
//!
//! Balances table (`pk`, `sk`): `BAL#<account_id>#<account>`/`<currency>#<shard>` with
//! `debits_minor`, `credits_minor` and `entries`, only ever added to. A write adds to one
//! shard, chosen at random; a read sums the account's shards (one Query).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::codec::{built, from_item, get_n, get_s, n, opt_n, opt_s, s, unavailable, Item};
use super::cursor::Cursors;
use super::tx::{put_if_absent, transact};
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, PaymentOrderId, PayoutId, RefundId, SellerId};
use crate::domain::ledger::balances::{deltas, shard_count, sum_shards, Totals};
use crate::domain::ledger::{Direction, Entry, LedgerAccount, LedgerTransaction, WalletFigures};
use crate::domain::money::Money;
use crate::ports::{LedgerReader, LedgerWriter, Page, StoreError, Written};

/// A transaction whose running totals met another writer's is sent again, to other shards, this
/// many times before the message backs off through its queue.
const APPEND_ATTEMPTS_MAX: u32 = 6;

#[derive(Debug, Clone)]
pub struct LedgerStore {
    pub client: Client,
    pub ledger_table: String,
    pub wallets_table: String,
    pub balances_table: String,
}

/// The read APIs' view of the ledger: the store, and the seal on their list cursors.
#[derive(Debug, Clone)]
pub struct LedgerReads {
    pub store: LedgerStore,
    pub cursors: Cursors,
}

fn entry_map(e: &Entry) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("account".into(), s(e.account.to_string())),
        ("direction".into(), s(e.direction.as_str())),
        ("amount_minor".into(), n(e.amount.minor())),
        ("currency".into(), s(e.amount.currency().code())),
    ])
}

fn entry_from(m: &Item) -> Result<Entry, StoreError> {
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
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| match v {
                AttributeValue::M(m) => entry_from(m),
                _ => Err(StoreError::Corrupt("ledger entry is not a map".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(StoreError::Corrupt("ledger transaction without entries".into())),
    };
    let corrupt = |e: crate::domain::ids::IdError| StoreError::Corrupt(e.to_string());
    LedgerTransaction::new(
        get_s(item, "transaction_id")?.to_owned(),
        get_s(item, "event_id")?.to_owned(),
        AccountId::parse(get_s(item, "account_id")?).map_err(corrupt)?,
        opt_s(item, "payment_order_id")?
            .map(PaymentOrderId::parse)
            .transpose()
            .map_err(corrupt)?,
        get_s(item, "created_at")?.to_owned(),
        entries,
    )
    .map_err(|e| StoreError::Corrupt(e.to_string()))
    .and_then(|tx| {
        let tx = match opt_s(item, "refund_id")? {
            Some(id) => tx.for_refund(RefundId::parse(id).map_err(corrupt)?),
            None => tx,
        };
        Ok(match opt_s(item, "payout_id")? {
            Some(id) => tx.for_payout(PayoutId::parse(id).map_err(corrupt)?),
            None => tx,
        })
    })
}

pub fn balance_key(account_id: &AccountId, account: &LedgerAccount) -> String {
    format!("BAL#{account_id}#{account}")
}

/// A uniformly drawn shard of `account`.
fn pick_shard(account: &LedgerAccount) -> u32 {
    let n = shard_count(account).max(1);
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u32
}

/// A transaction's items in the ledger table: its header, then one line per entry.
pub fn ledger_items(tx: &LedgerTransaction) -> Vec<Item> {
    let mut header: Item = HashMap::from([
        ("pk".into(), s(format!("LTX#{}", tx.id))),
        ("sk".into(), s("LTX")),
        ("entity".into(), s("ledger_transaction")),
        ("transaction_id".into(), s(&tx.id)),
        ("event_id".into(), s(&tx.event_id)),
        ("account_id".into(), s(tx.account_id.as_str())),
        ("created_at".into(), s(&tx.created_at)),
        (
            "entries".into(),
            AttributeValue::L(
                tx.entries
                    .iter()
                    .map(|e| AttributeValue::M(entry_map(e)))
                    .collect(),
            ),
        ),
    ]);
    if let Some(po) = &tx.payment_order_id {
        header.insert("payment_order_id".into(), s(po.as_str()));
    }
    if let Some(rf) = &tx.refund_id {
        header.insert("refund_id".into(), s(rf.as_str()));
    }
    if let Some(p) = &tx.payout_id {
        header.insert("payout_id".into(), s(p.as_str()));
    }
    let mut items = vec![header];
    for (i, e) in tx.entries.iter().enumerate() {
        let mut line = entry_map(e);
        line.extend([
            ("pk".into(), s(format!("ACCT#{}#{}", tx.account_id, e.account))),
            ("sk".into(), s(format!("{}#{}#{i}", tx.created_at, tx.id))),
            ("entity".into(), s("ledger_entry")),
            ("transaction_id".into(), s(&tx.id)),
            ("created_at".into(), s(&tx.created_at)),
        ]);
        items.push(line);
    }
    items
}

impl LedgerStore {
    /// The transaction's items, each put only if new (the header first: its condition says
    /// whether the transaction was written before), then one running-total update per
    /// (account, currency), each on a freshly drawn shard.
    fn append_items(&self, tx: &LedgerTransaction) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = ledger_items(tx)
            .into_iter()
            .map(|item| put_if_absent(&self.ledger_table, item))
            .collect::<Result<Vec<_>, _>>()?;
        let deltas =
            deltas(tx).ok_or_else(|| StoreError::Corrupt(format!("totals of {} overflow", tx.id)))?;
        for ((account, currency), add) in deltas {
            let shard = pick_shard(&account);
            let update = built(
                Update::builder()
                    .table_name(&self.balances_table)
                    .key("pk", s(balance_key(&tx.account_id, &account)))
                    .key("sk", s(format!("{}#{shard:02}", currency.code())))
                    // Every name through #placeholders: some (`shard`) are DynamoDB reserved words.
                    .update_expression(
                        "ADD #debits :d, #credits :c, #entries :n \
                         SET #entity = :entity, #acct = :acct, #account = :account, #cur = :cur, #shard = :shard",
                    )
                    .expression_attribute_names("#debits", "debits_minor")
                    .expression_attribute_names("#credits", "credits_minor")
                    .expression_attribute_names("#entries", "entries")
                    .expression_attribute_names("#entity", "entity")
                    .expression_attribute_names("#acct", "account_id")
                    .expression_attribute_names("#account", "ledger_account")
                    .expression_attribute_names("#cur", "currency")
                    .expression_attribute_names("#shard", "shard")
                    .expression_attribute_values(":d", n(add.debits_minor))
                    .expression_attribute_values(":c", n(add.credits_minor))
                    .expression_attribute_values(":n", n(add.entries))
                    .expression_attribute_values(":entity", s("ledger_balance"))
                    .expression_attribute_values(":acct", s(tx.account_id.as_str()))
                    .expression_attribute_values(":account", s(account.to_string()))
                    .expression_attribute_values(":cur", s(currency.code()))
                    .expression_attribute_values(":shard", n(shard))
                    .build(),
            )?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }
}

impl LedgerStore {
    /// An account's running totals per currency: its shards, read consistently and summed.
    pub async fn totals(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
    ) -> Result<BTreeMap<Currency, Totals>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.balances_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(balance_key(account_id, account)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("Query ledger balances", e))?;
        let mut shards = Vec::new();
        for item in out.items.unwrap_or_default() {
            let b = from_item::<BalanceItem>(item, "balance item")?.parse()?;
            shards.push((b.currency, b.totals));
        }
        if out.last_evaluated_key.is_some_and(|k| !k.is_empty()) {
            // A few dozen small items per account; more is not ours.
            return Err(StoreError::Corrupt(format!(
                "{account} has more balance shards than one page"
            )));
        }
        sum_shards(shards).ok_or_else(|| StoreError::Corrupt(format!("running totals of {account} overflow")))
    }
}

impl LedgerWriter for LedgerStore {
    async fn append(&self, tx: &LedgerTransaction) -> Result<Written, StoreError> {
        // Asserted before the write; an unbalanced transaction never reaches the table.
        tx.check_balanced()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let op = "TransactWriteItems ledger";
        for attempt in 1..=APPEND_ATTEMPTS_MAX {
            match transact(&self.client, self.append_items(tx)?, None, op).await? {
                Ok(()) => return Ok(Written::Written),
                // The header exists: this transaction was written before (a redelivery).
                Err(c) if c.condition_failed(0) => return Ok(Written::AlreadyApplied),
                Err(c) if c.conflict() && attempt < APPEND_ATTEMPTS_MAX => {
                    // Another transaction held one of the shards: other shards, after a pause.
                    let jitter = uuid::Uuid::new_v4().as_u128() % 10;
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt) + jitter as u64)).await;
                }
                Err(c) => return Err(c.unavailable(op)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{op}: still contended after {APPEND_ATTEMPTS_MAX} attempts"
        )))
    }
}

/// A balance shard as stored.
#[derive(serde::Deserialize)]
pub struct BalanceItem {
    pub account_id: String,
    pub ledger_account: String,
    pub currency: String,
    #[serde(default)]
    pub debits_minor: i64,
    #[serde(default)]
    pub credits_minor: i64,
    #[serde(default)]
    pub entries: i64,
}

impl BalanceItem {
    pub fn parse(self) -> Result<crate::domain::invariants::BalanceShard, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(format!("balance item: {e}"));
        Ok(crate::domain::invariants::BalanceShard {
            account_id: AccountId::parse(&self.account_id).map_err(|e| corrupt(e.to_string()))?,
            account: LedgerAccount::parse(&self.ledger_account).map_err(corrupt)?,
            currency: Currency::parse(&self.currency).map_err(|e| corrupt(e.to_string()))?,
            totals: Totals {
                debits_minor: self.debits_minor,
                credits_minor: self.credits_minor,
                entries: self.entries,
            },
        })
    }
}

impl LedgerReader for LedgerReads {
    async fn wallet_balances(
        &self,
        account_id: &AccountId,
        seller_id: &SellerId,
    ) -> Result<Vec<WalletFigures>, StoreError> {
        let out = self
            .store
            .client
            .query()
            .table_name(&self.store.wallets_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(super::wallets::wallet_key(account_id, seller_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("Query wallet", e))?;
        out.items
            .unwrap_or_default()
            .iter()
            .map(|i| {
                let currency =
                    Currency::parse(get_s(i, "sk")?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(WalletFigures {
                    currency,
                    balance_minor: opt_n(i, "balance_minor")?.unwrap_or(0),
                    held_minor: opt_n(i, "held_minor")?.unwrap_or(0),
                })
            })
            .collect()
    }

    async fn transactions_for_order(
        &self,
        account_id: &AccountId,
        payment_order_id: &PaymentOrderId,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<LedgerTransaction>, StoreError> {
        let scope = format!("ledger_transactions|{account_id}|{payment_order_id}");
        let out = self
            .store
            .client
            .query()
            .table_name(&self.store.ledger_table)
            .index_name("by_payment_order")
            .key_condition_expression("payment_order_id = :po")
            .expression_attribute_values(":po", s(payment_order_id.as_str()))
            .limit(limit)
            .set_exclusive_start_key(self.cursors.open(&scope, cursor)?)
            .send()
            .await
            .map_err(|e| unavailable("Query ledger by payment order", e))?;
        let data: Vec<LedgerTransaction> = out
            .items
            .unwrap_or_default()
            .iter()
            .map(transaction_from)
            .collect::<Result<_, _>>()?;
        Ok(Page {
            // The index holds every account's transactions of that order id: only the caller's.
            data: data.into_iter().filter(|t| &t.account_id == account_id).collect(),
            next_cursor: self.cursors.seal(&scope, out.last_evaluated_key.as_ref()),
        })
    }

    async fn account_totals(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
    ) -> Result<BTreeMap<Currency, Totals>, StoreError> {
        self.store.totals(account_id, account).await
    }

    async fn account_entries(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
        limit: i32,
        cursor: Option<&str>,
    ) -> Result<Page<(String, String, Entry)>, StoreError> {
        let scope = format!("ledger_entries|{account_id}|{account}");
        let out = self
            .store
            .client
            .query()
            .table_name(&self.store.ledger_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("ACCT#{account_id}#{account}")))
            .consistent_read(true)
            .limit(limit)
            .set_exclusive_start_key(self.cursors.open(&scope, cursor)?)
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
                    entry_from(i)?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page {
            data,
            next_cursor: self.cursors.seal(&scope, out.last_evaluated_key.as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;

    #[test]
    fn a_transaction_header_reads_back_with_its_refund_or_payout() {
        let usd = Currency::parse("USD").unwrap();
        let entries = vec![
            Entry {
                account: LedgerAccount::SellerPayable(SellerId::parse("s1").unwrap()),
                direction: Direction::Debit,
                amount: Money::from_minor(500, usd),
            },
            Entry {
                account: LedgerAccount::PspReceivable,
                direction: Direction::Credit,
                amount: Money::from_minor(500, usd),
            },
        ];
        let base = LedgerTransaction::new(
            "ltx_1".into(),
            "obx_1".into(),
            AccountId::parse("acct_a").unwrap(),
            None,
            "2026-12-01T00:00:00.000Z".into(),
            entries,
        )
        .unwrap();
        for tx in [
            base.clone(),
            base.clone().for_refund(RefundId::generate()),
            base.clone().for_payout(PayoutId::generate()),
        ] {
            let header = &ledger_items(&tx)[0];
            assert_eq!(transaction_from(header).unwrap(), tx);
        }
    }
}
