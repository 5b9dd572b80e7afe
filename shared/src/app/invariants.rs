//! `check_invariants`: reads everything through the port, page by page, and reports.

use crate::domain::invariants::{Checker, Report};
use crate::ports::{InvariantSource, StoreError};

pub async fn check_invariants<S: InvariantSource>(store: &S) -> Result<Report, StoreError> {
    let mut checker = Checker::default();
    store.feed(&mut checker).await?;
    Ok(checker.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{paid_event, Memory};
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, PaymentOrderId, SellerId};
    use crate::domain::invariants::{BalanceShard, WalletBalance};
    use crate::domain::ledger::balances::Totals;
    use crate::domain::ledger::LedgerAccount;
    use crate::domain::outbox::{OutboxBody, OutboxEvent};
    use crate::domain::pay_in::PaymentStatus;

    /// Two paid payments through both consumers: everything holds.
    async fn settled() -> (Memory, Vec<OutboxEvent>) {
        let store = Memory::default();
        let events = vec![paid_event("evt_1"), paid_event("evt_2")];
        for e in &events {
            store.add_outbox(e);
            let OutboxBody::PaymentSucceeded(p) = &e.body else {
                unreachable!()
            };
            for o in &p.payment_orders {
                store.set_order(&o.payment_order_id, PaymentStatus::Success);
            }
            store.consume(e).await;
        }
        (store, events)
    }

    async fn violations(store: &Memory) -> Vec<String> {
        let report = check_invariants(store).await.unwrap();
        assert_eq!(report.ok, report.violations.is_empty());
        report.violations
    }

    #[tokio::test]
    async fn a_settled_store_holds() {
        let (store, _) = settled().await;
        let report = check_invariants(&store).await.unwrap();
        assert!(report.ok, "{:?}", report.violations);
        assert_eq!(report.ledger_transactions, 2);
        assert_eq!(
            (report.wallets, report.payment_orders, report.outbox_events),
            (1, 2, 2)
        );
        assert!(report.balance_items >= 3);
    }

    #[tokio::test]
    async fn a_wallet_that_drifts_from_the_ledger_is_reported() {
        let (store, events) = settled().await;
        let w = store.wallets.lock().unwrap().first().cloned().unwrap();
        store.wallets.lock().unwrap().push(WalletBalance {
            balance_minor: w.balance_minor + 1,
            available_minor: w.available_minor + 1,
            ..w
        });
        let v = violations(&store).await;
        assert!(
            v.iter()
                .any(|v| v.contains("but seller_payable in the ledger is")),
            "{v:?}"
        );
        drop(events);
    }

    #[tokio::test]
    async fn running_totals_that_drift_from_their_entries_are_reported() {
        let (store, events) = settled().await;
        store.balances.lock().unwrap().push(BalanceShard {
            account_id: events[0].header.account_id.clone(),
            account: LedgerAccount::PlatformFeeRevenue,
            currency: Currency::parse("USD").unwrap(),
            totals: Totals {
                debits_minor: 0,
                credits_minor: 1,
                entries: 1,
            },
        });
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("running totals")), "{v:?}");
    }

    #[tokio::test]
    async fn a_successful_order_without_its_transaction_and_a_failed_one_with_one_are_reported() {
        let (store, events) = settled().await;
        let OutboxBody::PaymentSucceeded(p) = &events[0].body else {
            unreachable!()
        };
        let booked = p.payment_orders[0].payment_order_id.clone();
        store.set_order(&booked, PaymentStatus::Failed);
        store.set_order(&PaymentOrderId::generate(), PaymentStatus::Success);
        let v = violations(&store).await;
        assert!(
            v.iter()
                .any(|v| v.contains("is FAILED with 1 ledger transactions")),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|v| v.contains("is SUCCESS with 0 ledger transactions")),
            "{v:?}"
        );
    }

    #[tokio::test]
    async fn a_checkout_charged_twice_is_reported() {
        let (store, events) = settled().await;
        let mut again = events[0].clone();
        again.header.event_id = "obx_evt_again".into();
        store.add_outbox(&again);
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("charged 2 times")), "{v:?}");
    }

    #[tokio::test]
    async fn unbalanced_ledgers_are_reported() {
        let (store, _) = settled().await;
        store
            .unreadable
            .lock()
            .unwrap()
            .push("LTX#x: debits 100 != credits 99".into());
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("unbalanced or unreadable")), "{v:?}");
        // A ledger whose currency totals do not balance (an entry line without its twin).
        let (store, events) = settled().await;
        let mut tx = store.transactions.lock().unwrap()[0].clone();
        tx.entries.truncate(1);
        store.transactions.lock().unwrap().push(tx);
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("unbalanced")), "{v:?}");
        drop(events);
    }

    #[tokio::test]
    async fn a_wallet_with_no_ledger_behind_it_is_reported() {
        let (store, _) = settled().await;
        store.wallets.lock().unwrap().push(WalletBalance {
            account_id: AccountId::parse("acct_other").unwrap(),
            seller_id: SellerId::parse("ghost").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            balance_minor: 500,
            held_minor: 0,
            available_minor: 500,
        });
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("ghost")), "{v:?}");
    }

    /// A `PENDING` payout of 5.00 from seller_A's 97.50 USD, made through the use case.
    async fn pending_payout(store: &Memory) -> crate::domain::payouts::Payout {
        use crate::app::auth::Authority;
        use crate::app::payouts::create::{create_payout, CreatePayout};
        use crate::app::Caller;
        use crate::domain::ids::{ApiKeyId, PayoutId};
        use crate::domain::psp::PspAccountId;
        use crate::ports::Payouts;
        let (account, seller) = (
            AccountId::parse("acct_a").unwrap(),
            SellerId::parse("seller_A").unwrap(),
        );
        store
            .put_payout_account(
                &account,
                &seller,
                &PspAccountId::parse("acct_1S").unwrap(),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        let now = chrono::Utc::now();
        let made = create_payout(
            store,
            Authority::Checked(Caller {
                account_id: account,
                key_id: ApiKeyId::generate(),
            }),
            CreatePayout {
                idempotency_key: Some(uuid::Uuid::new_v4().to_string().as_bytes()),
                body: br#"{"seller_id":"seller_A","amount":"5.00","currency":"USD"}"#,
                now,
                deadline_ms: now.timestamp_millis() + 10_000,
            },
        )
        .await
        .unwrap();
        assert_eq!(made.status, 201);
        let body: serde_json::Value = serde_json::from_str(&made.body).unwrap();
        let id = PayoutId::parse(body["payout_id"].as_str().unwrap()).unwrap();
        store.get_payout(&id).await.unwrap().unwrap()
    }

    /// A pending payout holds its amount: the hold is expected while the payout is pending,
    /// and a hold that no pending payout (or refund) explains is reported.
    #[tokio::test]
    async fn a_pending_payout_explains_its_hold_and_nothing_else_does() {
        let (store, _) = settled().await;
        pending_payout(&store).await;
        let report = check_invariants(&store).await.unwrap();
        assert!(report.ok, "{:?}", report.violations);
        assert_eq!(report.payouts, 1);
        // The payout gone, its hold is unexplained.
        store.payouts.lock().unwrap().clear();
        let v = violations(&store).await;
        assert!(
            v.iter()
                .any(|v| v.contains("holds 500 but its pending refunds and payouts hold 0")),
            "{v:?}"
        );
    }

    /// Sent, bounced and reversed: each step's posting is expected once; a payout that went out
    /// without its transfer posting, or came back without its reversal, is reported.
    #[tokio::test]
    async fn each_payout_out_has_one_transfer_posting_and_each_bounce_one_reversal() {
        use crate::domain::payouts::{PayoutEvent, PayoutStatus};
        use crate::domain::psp::{PspTransferId, PspTransferReversalId};
        use crate::ports::{Applied, Payouts};
        let (store, _) = settled().await;
        let mut p = pending_payout(&store).await;
        let now = chrono::Utc::now();
        p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
        let moved = p.apply(PayoutEvent::Sent, now).unwrap();
        let sent = OutboxEvent::payout(&p, Some(moved), "test", now);
        let saved = store
            .save_payout_move(&p, PayoutStatus::Pending, &sent, None)
            .await;
        assert_eq!(saved.unwrap(), Applied::Applied);
        // Sent, not yet posted: the transfer posting is missing.
        let v = violations(&store).await;
        assert!(
            v.iter()
                .any(|v| v.contains("IN_TRANSIT, transferred with 0 transfer")),
            "{v:?}"
        );
        store.consume(&sent).await;
        store.consume(&sent).await;
        let report = check_invariants(&store).await.unwrap();
        assert!(report.ok, "posted once: {:?}", report.violations);

        let moved = p.apply(PayoutEvent::PspFailed, now).unwrap();
        let failed = OutboxEvent::payout(&p, Some(moved), "evt_f", now);
        store
            .save_payout_move(&p, PayoutStatus::InTransit, &failed, Some("evt_f"))
            .await
            .unwrap();
        store.consume(&failed).await;
        assert!(
            check_invariants(&store).await.unwrap().ok,
            "bounced, not yet reversed"
        );
        assert!(p
            .reversed(PspTransferReversalId::parse("trr_1").unwrap(), now)
            .unwrap());
        let returned = OutboxEvent::payout_returned(&p, "test", now);
        store
            .save_payout_move(&p, PayoutStatus::Failed, &returned, None)
            .await
            .unwrap();
        let v = violations(&store).await;
        assert!(
            v.iter()
                .any(|v| v.contains("1 transfer and 0 reversal ledger transactions (expected 1 and 1)")),
            "{v:?}"
        );
        store.consume(&returned).await;
        let report = check_invariants(&store).await.unwrap();
        assert!(report.ok, "reversed once: {:?}", report.violations);

        // A payout recorded as transferred that never posted.
        let mut ghost = pending_payout(&store).await;
        ghost.status = PayoutStatus::Paid;
        ghost.psp_transfer = Some(PspTransferId::parse("tr_2").unwrap());
        store
            .payouts
            .lock()
            .unwrap()
            .insert(ghost.id.clone(), ghost.clone());
        let v = violations(&store).await;
        assert!(
            v.iter().any(|v| v.contains(&format!(
                "payout {} is PAID, transferred with 0 transfer",
                ghost.id
            ))),
            "{v:?}"
        );
    }

    #[tokio::test]
    async fn a_wallet_whose_available_is_not_balance_less_held_is_reported() {
        let (store, _) = settled().await;
        store.wallets.lock().unwrap()[0].available_minor += 1;
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("is not balance")), "{v:?}");
    }
}
