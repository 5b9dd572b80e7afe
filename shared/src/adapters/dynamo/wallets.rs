//! Wallets table (`pk`, `sk`): one wallet per seller and currency
//! `WALLET#<account_id>#<seller_id>`/`<currency>` with `balance_minor`, and the applied-event
//! markers `APPLIED#<event_id>`/`APPLIED` that make every change happen once.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::codec::{built, n, s, Item};
use super::ledger::LedgerStore;
use super::tx::{put_if_absent, transact_once};
use crate::domain::ids::{AccountId, SellerId};
use crate::domain::money::Money;
use crate::ports::{StoreError, WalletWriter, Written};

pub fn wallet_key(account_id: &AccountId, seller_id: &SellerId) -> String {
    format!("WALLET#{account_id}#{seller_id}")
}

impl WalletWriter for LedgerStore {
    /// Adds each seller's net to their wallet, once per event (the marker is in the same
    /// transaction, conditional on its absence).
    async fn credit_wallets(
        &self,
        event_id: &str,
        account_id: &AccountId,
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
            let update = built(
                Update::builder()
                    .table_name(&self.wallets_table)
                    .key("pk", s(wallet_key(account_id, seller)))
                    .key("sk", s(amount.currency().code()))
                    .update_expression(
                        "ADD balance_minor :amount SET entity = :wallet, seller_id = :seller, account_id = :account, updated_at = :now",
                    )
                    .expression_attribute_values(":amount", n(amount.minor()))
                    .expression_attribute_values(":wallet", s("wallet"))
                    .expression_attribute_values(":seller", s(seller.as_str()))
                    .expression_attribute_values(":account", s(account_id.as_str()))
                    .expression_attribute_values(":now", s(now))
                    .build(),
            )?;
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
}
