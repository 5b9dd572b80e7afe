//! What the invariant check reads: each table scanned page by page (strongly consistent, only
//! the attributes it needs), every page handed to the checker and dropped.

use aws_sdk_dynamodb::Client;

use super::codec::{from_item, get_n, get_s, opt_n, opt_s, parse, unavailable, Item};
use super::ledger::{transaction_from, BalanceItem, LedgerStore};
use super::pay_in::order_refunds_from;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, PaymentOrderId, PayoutId, RefundId, SellerId};
use crate::domain::invariants::{Checker, OrderFacts, PayoutFacts, RefundFacts, WalletBalance};
use crate::domain::outbox::OutboxEvent;
use crate::domain::pay_in::PaymentStatus;
use crate::domain::payouts::PayoutStatus;
use crate::domain::refunds::RefundStatus;
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
        #[serde(default)]
        balance_minor: i64,
        #[serde(default)]
        held_minor: i64,
        #[serde(default)]
        available_minor: i64,
    }
    let w: WalletItem = from_item(item, "wallet item")?;
    let corrupt = |e: String| StoreError::Corrupt(format!("wallet item: {e}"));
    Ok(WalletBalance {
        account_id: AccountId::parse(&w.account_id).map_err(|e| corrupt(e.to_string()))?,
        seller_id: SellerId::parse(&w.seller_id).map_err(|e| corrupt(e.to_string()))?,
        currency: Currency::parse(&w.sk).map_err(|e| corrupt(e.to_string()))?,
        balance_minor: w.balance_minor,
        held_minor: w.held_minor,
        available_minor: w.available_minor,
    })
}

fn order_facts(item: &Item) -> Result<OrderFacts, StoreError> {
    Ok(OrderFacts {
        id: parse(item, "payment_order_id", PaymentOrderId::parse)?,
        status: parse(item, "payment_status", str::parse::<PaymentStatus>)?,
        amount_minor: get_n(item, "amount_minor")?,
        refunds: order_refunds_from(item)?,
    })
}

fn refund_facts(item: &Item) -> Result<RefundFacts, StoreError> {
    Ok(RefundFacts {
        id: parse(item, "refund_id", RefundId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        payment_order_id: parse(item, "payment_order_id", PaymentOrderId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        currency: parse(item, "currency", Currency::parse)?,
        status: parse(item, "refund_status", str::parse::<RefundStatus>)?,
        amount_minor: get_n(item, "amount_minor")?,
        seller_held_minor: get_n(item, "seller_held_minor")?,
        fee_refunded_minor: opt_n(item, "split_fee_minor")?,
    })
}

fn payout_facts(item: &Item) -> Result<PayoutFacts, StoreError> {
    Ok(PayoutFacts {
        id: parse(item, "payout_id", PayoutId::parse)?,
        account_id: parse(item, "account_id", AccountId::parse)?,
        seller_id: parse(item, "seller_id", SellerId::parse)?,
        currency: parse(item, "currency", Currency::parse)?,
        status: parse(item, "payout_status", str::parse::<PayoutStatus>)?,
        amount_minor: get_n(item, "amount_minor")?,
        transferred: item.contains_key("psp_ref"),
        reversed: item.contains_key("psp_reversal_id"),
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
        let projection = "entity, pk, payload, payment_order_id, payment_status, amount_minor, refund_reserved_minor, amount_refunded_minor, fee_refunded_minor, refund_id, account_id, seller_id, currency, refund_status, seller_held_minor, split_fee_minor, payout_id, payout_status, psp_ref, psp_reversal_id";
        scan_pages(
            client,
            &self.payments_table,
            Some(projection),
            checker,
            |c, items| {
                for item in items {
                    match opt_s(&item, "entity").ok().flatten() {
                        Some("payment_order") => match order_facts(&item) {
                            Ok(o) => c.payment_order(&o),
                            Err(e) => {
                                c.violation(format!("unreadable payment order {:?}: {e}", item.get("pk")))
                            }
                        },
                        Some("refund") => match refund_facts(&item) {
                            Ok(r) => c.refund(&r),
                            Err(e) => c.violation(format!("unreadable refund {:?}: {e}", item.get("pk"))),
                        },
                        Some("payout") => match payout_facts(&item) {
                            Ok(p) => c.payout(&p),
                            Err(e) => c.violation(format!("unreadable payout {:?}: {e}", item.get("pk"))),
                        },
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
