//! Posting rules: from an outbox event to the balanced ledger transactions it books, and the
//! wallet credits those imply. Pure.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{Direction, Entry, LedgerAccount, LedgerTransaction, PostingError};
use crate::domain::ids::SellerId;
use crate::domain::money::Money;
use crate::domain::outbox::{OutboxBody, OutboxEvent, OutboxHeader, SettledPayment};

/// The platform fee on one payment order: `rate` of the amount, half-even to the minor unit.
pub fn platform_fee(amount: Money, rate: Decimal) -> Result<Money, PostingError> {
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return Err(PostingError::Invalid(format!("fee rate {rate} outside 0..=1")));
    }
    Ok(amount.percentage_half_even(rate)?)
}

/// Posting rule: one balanced transaction per payment order of a succeeded payment; nothing
/// for a failed one.
pub fn postings(event: &OutboxEvent, fee_rate: Decimal) -> Result<Vec<LedgerTransaction>, PostingError> {
    match &event.body {
        OutboxBody::PaymentSucceeded(payment) => payment_postings(&event.header, payment, fee_rate),
        // Nothing was charged: nothing to book.
        OutboxBody::PaymentFailed(_) => Ok(Vec::new()),
    }
}

fn payment_postings(
    header: &OutboxHeader,
    payment: &SettledPayment,
    fee_rate: Decimal,
) -> Result<Vec<LedgerTransaction>, PostingError> {
    payment
        .payment_orders
        .iter()
        .map(|o| {
            let amount = Money::from_minor(o.amount_minor, o.currency);
            amount.check_charge()?;
            let seller = o.seller_id.clone();
            let fee = platform_fee(amount, fee_rate)?;
            let net = amount.checked_sub(fee)?;
            let mut entries = vec![Entry {
                account: LedgerAccount::PspReceivable,
                direction: Direction::Debit,
                amount,
            }];
            if net.minor() > 0 {
                entries.push(Entry {
                    account: LedgerAccount::SellerPayable(seller),
                    direction: Direction::Credit,
                    amount: net,
                });
            }
            if fee.minor() > 0 {
                entries.push(Entry {
                    account: LedgerAccount::PlatformFeeRevenue,
                    direction: Direction::Credit,
                    amount: fee,
                });
            }
            LedgerTransaction::new(
                format!("ltx_{}_{}", header.event_id, o.payment_order_id),
                header.event_id.clone(),
                header.account_id.clone(),
                Some(o.payment_order_id.clone()),
                header.occurred_at.clone(),
                entries,
            )
        })
        .collect()
}

/// What the wallet consumer adds: each seller's net (amount minus fee) per currency. Derived
/// from the ledger's own postings, so wallets equal `seller_payable` by construction, for every
/// kind of event the posting rules know.
pub fn wallet_credits(
    event: &OutboxEvent,
    fee_rate: Decimal,
) -> Result<Vec<(SellerId, Money)>, PostingError> {
    let mut credits: BTreeMap<(SellerId, &'static str), Money> = BTreeMap::new();
    for tx in postings(event, fee_rate)? {
        for e in tx.entries {
            if let (LedgerAccount::SellerPayable(seller), Direction::Credit) = (e.account, e.direction) {
                let key = (seller, e.amount.currency().code());
                let sum = match credits.get(&key) {
                    Some(prev) => prev.checked_add(e.amount)?,
                    None => e.amount,
                };
                credits.insert(key, sum);
            }
        }
    }
    Ok(credits.into_iter().map(|((s, _), m)| (s, m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, BuyerId, CheckoutId, OrderId, PaymentOrderId};
    use crate::domain::outbox::OutboxOrder;
    use proptest::prelude::*;

    #[derive(Clone, Copy)]
    enum OutboxKind {
        PaymentSucceeded,
        PaymentFailed,
    }

    fn event(kind: OutboxKind, lines: &[(&str, i64, &str)]) -> OutboxEvent {
        let payment = SettledPayment {
            checkout_id: CheckoutId::generate(),
            order_id: OrderId::parse("o").unwrap(),
            buyer_id: BuyerId::parse("b").unwrap(),
            psp_session: None,
            payment_intent: None,
            total_minor: lines.iter().map(|l| l.1).sum(),
            currency: Currency::parse(lines[0].2).unwrap(),
            payment_orders: lines
                .iter()
                .map(|(seller, minor, currency)| OutboxOrder {
                    payment_order_id: PaymentOrderId::generate(),
                    seller_id: SellerId::parse(seller).unwrap(),
                    sub_order_id: None,
                    amount_minor: *minor,
                    amount: String::new(),
                    currency: Currency::parse(currency).unwrap(),
                })
                .collect(),
        };
        OutboxEvent {
            header: OutboxHeader {
                event_id: "obx_evt_1".into(),
                account_id: AccountId::parse("acct_1").unwrap(),
                occurred_at: "2026-11-25T00:00:00.000Z".into(),
                cause: "evt_1".into(),
            },
            body: match kind {
                OutboxKind::PaymentSucceeded => OutboxBody::PaymentSucceeded(payment),
                OutboxKind::PaymentFailed => OutboxBody::PaymentFailed(payment),
            },
        }
    }

    fn rate() -> Decimal {
        Decimal::new(25, 3)
    }

    #[test]
    fn one_balanced_transaction_per_order() {
        let e = event(
            OutboxKind::PaymentSucceeded,
            &[("A", 4000, "USD"), ("B", 3500, "USD"), ("C", 2500, "USD")],
        );
        let txs = postings(&e, rate()).unwrap();
        assert_eq!(txs.len(), 3);
        // 40.00 * 2.5% = 1.00 fee, 39.00 to A.
        let a = &txs[0];
        let OutboxBody::PaymentSucceeded(p) = &e.body else {
            unreachable!()
        };
        assert_eq!(
            a.id,
            format!("ltx_obx_evt_1_{}", p.payment_orders[0].payment_order_id)
        );
        assert_eq!(
            a.entries[0],
            Entry {
                account: LedgerAccount::PspReceivable,
                direction: Direction::Debit,
                amount: Money::from_minor(4000, Currency::parse("USD").unwrap())
            }
        );
        assert_eq!(a.entries[1].amount.minor(), 3900);
        assert_eq!(a.entries[2].amount.minor(), 100);
        // 35.00 * 2.5% = 0.875 -> 0.88 (half-even), seller gets 34.12.
        assert_eq!(txs[1].entries[2].amount.minor(), 88);
        assert_eq!(txs[1].entries[1].amount.minor(), 3412);
        let credits = wallet_credits(&e, rate()).unwrap();
        assert_eq!(
            credits.iter().map(|(_, m)| m.minor()).collect::<Vec<_>>(),
            vec![3900, 3412, 2438]
        );
    }

    #[test]
    fn failed_payments_post_nothing() {
        let e = event(OutboxKind::PaymentFailed, &[("A", 4000, "USD")]);
        assert!(postings(&e, rate()).unwrap().is_empty());
        assert!(wallet_credits(&e, rate()).unwrap().is_empty());
    }

    #[test]
    fn tiny_amounts_and_other_currencies_balance() {
        // 0.01 USD: fee 0.00025 -> 0.00; JPY 1: fee 0; KWD 1.000: fee 0.025.
        for (minor, c) in [(1, "USD"), (1, "JPY"), (1000, "KWD"), (10, "USD")] {
            let txs = postings(&event(OutboxKind::PaymentSucceeded, &[("A", minor, c)]), rate()).unwrap();
            assert!(txs[0].check_balanced().is_ok());
        }
    }

    proptest! {
        #[test]
        fn any_orders_and_fee_rates_balance_and_wallets_equal_payables(
            lines in prop::collection::vec((0usize..5, 1i64..=99_999_999), 1..20),
            bps in 0i64..=10_000,
            which in 0usize..3,
        ) {
            let c = ["USD", "JPY", "BHD"][which];
            let sellers = ["s0", "s1", "s2", "s3", "s4"];
            let lines: Vec<(&str, i64, &str)> = lines.iter().map(|(s, m)| (sellers[*s], *m, c)).collect();
            let e = event(OutboxKind::PaymentSucceeded, &lines);
            let rate = Decimal::new(bps, 4);
            let txs = postings(&e, rate).unwrap();
            prop_assert_eq!(txs.len(), lines.len());
            let mut payable: BTreeMap<String, i64> = BTreeMap::new();
            let (mut debits, mut credits) = (0i64, 0i64);
            for tx in &txs {
                prop_assert!(tx.check_balanced().is_ok());
                for en in &tx.entries {
                    match en.direction { Direction::Debit => debits += en.amount.minor(), Direction::Credit => credits += en.amount.minor() }
                    if let LedgerAccount::SellerPayable(s) = &en.account {
                        *payable.entry(s.to_string()).or_default() += en.amount.minor();
                    }
                }
            }
            prop_assert_eq!(debits, credits);
            prop_assert_eq!(debits, lines.iter().map(|l| l.1).sum::<i64>());
            let wallets: BTreeMap<String, i64> = wallet_credits(&e, rate).unwrap().into_iter().map(|(s, m)| (s.to_string(), m.minor())).collect();
            prop_assert_eq!(wallets, payable);
        }
    }
}
