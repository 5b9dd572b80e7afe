//! What the invariant check reads: each table scanned page by page (strongly consistent, only
//! the attributes it needs), every page handed to the checker and dropped.

use aws_sdk_dynamodb::Client;

use super::codec::{from_item, get_s, opt_s, unavailable, Item};
use super::ledger::{transaction_from, BalanceItem, LedgerStore};
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, PaymentOrderId, SellerId};
use crate::domain::invariants::{Checker, WalletBalance};
use crate::domain::outbox::OutboxEvent;
use crate::domain::pay_in::PaymentStatus;
use crate::ports::{InvariantSource, StoreError};

/// Items per Scan page.
const SCAN_PAGE_ITEMS: i32 = 1_000;
/// Pages per table before the check stops and says so (a bound on one run's work, far above
/// what an hourly check meets).
const SCAN_PAGES_MAX: u32 = 100_000;

/// Everything the check reads.
#[derive(Debug, Clone)]
pub struct InvariantStore {
    pub ledger: LedgerStore,
    pub payments_table: String,
}

/// Scans `table` page by page, handing each page to `each`.
async fn scan_pages(
    client: &Client,
    table: &str,
    projection: Option<&str>,
    checker: &mut Checker,
    mut each: impl FnMut(&mut Checker, Vec<Item>),
) -> Result<(), StoreError> {
    let mut start: Option<Item> = None;
    for _ in 0..SCAN_PAGES_MAX {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .limit(SCAN_PAGE_ITEMS)
            .set_projection_expression(projection.map(str::to_owned))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| unavailable("Scan", e))?;
        each(checker, page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return Ok(()),
        }
    }
    checker.violation(format!(
        "{table}: stopped after {SCAN_PAGES_MAX} pages; the rest was not checked"
    ));
    Ok(())
}

fn wallet_from(item: Item) -> Result<WalletBalance, StoreError> {
    #[derive(serde::Deserialize)]
    struct WalletItem {
        account_id: String,
        seller_id: String,
        sk: String,
        balance_minor: i64,
    }
    let w: WalletItem = from_item(item, "wallet item")?;
    let corrupt = |e: String| StoreError::Corrupt(format!("wallet item: {e}"));
    Ok(WalletBalance {
        account_id: AccountId::parse(&w.account_id).map_err(|e| corrupt(e.to_string()))?,
        seller_id: SellerId::parse(&w.seller_id).map_err(|e| corrupt(e.to_string()))?,
        currency: Currency::parse(&w.sk).map_err(|e| corrupt(e.to_string()))?,
        balance_minor: w.balance_minor,
    })
}

impl InvariantSource for InvariantStore {
    async fn feed(&self, checker: &mut Checker) -> Result<(), StoreError> {
        let client = &self.ledger.client;
        scan_pages(client, &self.ledger.ledger_table, None, checker, |c, items| {
            for item in items {
                if opt_s(&item, "entity").ok().flatten() != Some("ledger_transaction") {
                    continue;
                }
                match transaction_from(&item) {
                    Ok(tx) => c.ledger_transaction(&tx),
                    Err(e) => c.unreadable_transaction(format!("{:?}: {e}", item.get("pk"))),
                }
            }
        })
        .await?;
        scan_pages(client, &self.ledger.balances_table, None, checker, |c, items| {
            for item in items {
                match from_item::<BalanceItem>(item, "balance item").and_then(BalanceItem::parse) {
                    Ok(b) => c.balance_shard(&b),
                    Err(e) => c.violation(e.to_string()),
                }
            }
        })
        .await?;
        scan_pages(client, &self.ledger.wallets_table, None, checker, |c, items| {
            for item in items {
                if opt_s(&item, "entity").ok().flatten() != Some("wallet") {
                    continue;
                }
                match wallet_from(item) {
                    Ok(w) => c.wallet(&w),
                    Err(e) => c.violation(e.to_string()),
                }
            }
        })
        .await?;
        let projection = "entity, payment_order_id, payment_status, payload, pk";
        scan_pages(
            client,
            &self.payments_table,
            Some(projection),
            checker,
            |c, items| {
                for item in items {
                    match opt_s(&item, "entity").ok().flatten() {
                        Some("payment_order") => {
                            let order = get_s(&item, "payment_order_id")
                                .ok()
                                .and_then(|id| PaymentOrderId::parse(id).ok())
                                .zip(
                                    get_s(&item, "payment_status")
                                        .ok()
                                        .and_then(|s| s.parse::<PaymentStatus>().ok()),
                                );
                            match order {
                                Some((id, status)) => c.payment_order(&id, status),
                                None => c.violation(format!("unreadable payment order {:?}", item.get("pk"))),
                            }
                        }
                        Some("outbox") => match get_s(&item, "payload").map(OutboxEvent::from_json) {
                            Ok(Ok(e)) => c.outbox_event(&e),
                            _ => c.violation(format!("unreadable outbox record {:?}", item.get("pk"))),
                        },
                        _ => {}
                    }
                }
            },
        )
        .await
    }
}
