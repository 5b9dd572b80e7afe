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

    /// A pending payout holds its amount: the hold is expected while the payout is pending,
    /// and a hold that no pending payout (or refund) explains is reported.
    #[tokio::test]
    async fn a_pending_payout_explains_its_hold_and_nothing_else_does() {
        use crate::app::auth::Authority;
        use crate::app::payouts::create::{create_payout, CreatePayout};
        use crate::app::Caller;
        use crate::domain::ids::ApiKeyId;
        use crate::domain::psp::PspAccountId;
        use crate::ports::Payouts;
        let (store, _) = settled().await;
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
            &store,
            Authority::Checked(Caller {
                account_id: account,
                key_id: ApiKeyId::generate(),
            }),
            CreatePayout {
                idempotency_key: Some(b"k1"),
                body: br#"{"seller_id":"seller_A","amount":"5.00","currency":"USD"}"#,
                now,
                deadline_ms: now.timestamp_millis() + 10_000,
            },
        )
        .await
        .unwrap();
        assert_eq!(made.status, 201);
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

    #[tokio::test]
    async fn a_wallet_whose_available_is_not_balance_less_held_is_reported() {
        let (store, _) = settled().await;
        store.wallets.lock().unwrap()[0].available_minor += 1;
        let v = violations(&store).await;
        assert!(v.iter().any(|v| v.contains("is not balance")), "{v:?}");
    }
}
