//! Posting rules: from an outbox event to the balanced ledger transactions it books, and the
//! wallet credits those imply. Pure.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::{Direction, Entry, LedgerAccount, LedgerTransaction, PostingError};
use crate::domain::currency::Currency;
use crate::domain::ids::SellerId;
use crate::domain::money::Money;
use crate::domain::outbox::{
    OutboxBody, OutboxEvent, OutboxHeader, PayoutNotice, RefundNotice, SettledPayment,
};

/// The platform fee on one payment order: `rate` of the amount, half-even to the minor unit.
pub fn platform_fee(amount: Money, rate: Decimal) -> Result<Money, PostingError> {
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return Err(PostingError::Invalid(format!("fee rate {rate} outside 0..=1")));
    }
    Ok(amount.percentage_half_even(rate)?)
}

/// Posting rules: one balanced transaction per payment order of a succeeded payment; one per
/// succeeded refund (its reversal) and one per refund that failed after it succeeded (the
/// correction); one per payout sent (its transfer) and one per payout that failed after it
/// was sent (the transfer's reversal); nothing for the rest, where no money moved.
pub fn postings(event: &OutboxEvent, fee_rate: Decimal) -> Result<Vec<LedgerTransaction>, PostingError> {
    match &event.body {
        OutboxBody::PaymentSucceeded(payment) => payment_postings(&event.header, payment, fee_rate),
        OutboxBody::RefundSucceeded(refund) => Ok(vec![refund_posting(&event.header, refund, false)?]),
        OutboxBody::RefundReversed(refund) => Ok(vec![refund_posting(&event.header, refund, true)?]),
        OutboxBody::PayoutSent(payout) => Ok(vec![payout_posting(&event.header, payout, false)?]),
        OutboxBody::PayoutReturned(payout) => Ok(vec![payout_posting(&event.header, payout, true)?]),
        // Nothing was charged, refunded or sent: nothing to book.
        OutboxBody::PaymentFailed(_)
        | OutboxBody::RefundRequested(_)
        | OutboxBody::RefundFailed(_)
        | OutboxBody::PayoutRequested(_)
        | OutboxBody::PayoutCanceled(_)
        | OutboxBody::PayoutRefused(_)
        | OutboxBody::PayoutPaid(_)
        | OutboxBody::PayoutFailed(_) => Ok(Vec::new()),
    }
}

/// A succeeded refund of R: the seller's payable down by the seller's part, the fee revenue
/// by the fee part, `psp_receivable` by R. Its correction (the refund failed after it
/// succeeded) is the mirror image. Ids derive from the refund: `ltx_<refund_id>` and
/// `ltx_<refund_id>_reversed`.
fn refund_posting(
    header: &OutboxHeader,
    r: &RefundNotice,
    correction: bool,
) -> Result<LedgerTransaction, PostingError> {
    let amount = Money::from_minor(r.amount_minor, r.currency);
    amount.check_charge()?;
    let (Some(fee), Some(seller)) = (r.fee_refunded_minor, r.seller_debited_minor) else {
        return Err(PostingError::Invalid(format!(
            "refund {} has no split: only a succeeded refund posts",
            r.refund_id
        )));
    };
    if fee < 0 || seller < 0 || fee.checked_add(seller) != Some(r.amount_minor) {
        return Err(PostingError::Invalid(format!(
            "refund {}: fee {fee} and seller {seller} do not make up {}",
            r.refund_id, r.amount_minor
        )));
    }
    let (out, back) = if correction {
        (Direction::Credit, Direction::Debit)
    } else {
        (Direction::Debit, Direction::Credit)
    };
    let mut entries = Vec::with_capacity(3);
    if seller > 0 {
        entries.push(Entry {
            account: LedgerAccount::SellerPayable(r.seller_id.clone()),
            direction: out,
            amount: Money::from_minor(seller, r.currency),
        });
    }
    if fee > 0 {
        entries.push(Entry {
            account: LedgerAccount::PlatformFeeRevenue,
            direction: out,
            amount: Money::from_minor(fee, r.currency),
        });
    }
    entries.push(Entry {
        account: LedgerAccount::PspReceivable,
        direction: back,
        amount,
    });
    let id = if correction {
        format!("ltx_{}_reversed", r.refund_id)
    } else {
        format!("ltx_{}", r.refund_id)
    };
    Ok(LedgerTransaction::new(
        id,
        header.event_id.clone(),
        header.account_id.clone(),
        Some(r.payment_order_id.clone()),
        header.occurred_at.clone(),
        entries,
    )?
    .for_refund(r.refund_id.clone()))
}

/// A payout of A sent (its transfer made): we owe the seller A less (`seller_payable` debited)
/// and our balance at the PSP is A less (`psp_receivable` credited). Its return (the payout
/// failed and its transfer was reversed) is the mirror image. Ids derive from the payout:
/// `ltx_<payout_id>_transfer` and `ltx_<payout_id>_returned`.
fn payout_posting(
    header: &OutboxHeader,
    p: &PayoutNotice,
    returned: bool,
) -> Result<LedgerTransaction, PostingError> {
    let amount = Money::from_minor(p.amount_minor, p.currency);
    amount.check_charge()?;
    let (seller, psp) = if returned {
        (Direction::Credit, Direction::Debit)
    } else {
        (Direction::Debit, Direction::Credit)
    };
    let entries = vec![
        Entry {
            account: LedgerAccount::SellerPayable(p.seller_id.clone()),
            direction: seller,
            amount,
        },
        Entry {
            account: LedgerAccount::PspReceivable,
            direction: psp,
            amount,
        },
    ];
    let suffix = if returned { "returned" } else { "transfer" };
    Ok(LedgerTransaction::new(
        format!("ltx_{}_{suffix}", p.payout_id),
        header.event_id.clone(),
        header.account_id.clone(),
        None,
        header.occurred_at.clone(),
        entries,
    )?
    .for_payout(p.payout_id.clone()))
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
            let fee = match o.fee_minor {
                Some(minor) if (0..=amount.minor()).contains(&minor) => Money::from_minor(minor, o.currency),
                Some(minor) => {
                    return Err(PostingError::Invalid(format!(
                        "payment order {}: fee {minor} outside 0..={}",
                        o.payment_order_id,
                        amount.minor()
                    )))
                }
                None => platform_fee(amount, fee_rate)?,
            };
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

/// One change to one seller's wallet in one currency: `balance` (what the platform owes the
/// seller: `seller_payable`) and `held` (the part of it set aside for refunds in flight).
/// `available = balance − held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletChange {
    pub seller_id: SellerId,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
}

/// One currency of a seller's wallet: `balance = available + held`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletFigures {
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
}

impl WalletFigures {
    pub fn available_minor(&self) -> i64 {
        self.balance_minor.saturating_sub(self.held_minor)
    }
}

/// What the wallet consumer applies for an event. The balance moves are derived from the
/// ledger's own postings (every `seller_payable` entry), so wallets equal `seller_payable` by
/// construction for every kind of event; the held moves release what creating a refund or a
/// payout held.
pub fn wallet_changes(event: &OutboxEvent, fee_rate: Decimal) -> Result<Vec<WalletChange>, PostingError> {
    let mut changes: BTreeMap<(SellerId, Currency), (i64, i64)> = BTreeMap::new();
    let overflow = || PostingError::Invalid("wallet change overflows".into());
    for tx in postings(event, fee_rate)? {
        for e in tx.entries {
            if let LedgerAccount::SellerPayable(seller) = e.account {
                let signed = match e.direction {
                    Direction::Credit => e.amount.minor(),
                    Direction::Debit => -e.amount.minor(),
                };
                let slot = changes.entry((seller, e.amount.currency())).or_default();
                slot.0 = slot.0.checked_add(signed).ok_or_else(overflow)?;
            }
        }
    }
    let released = match &event.body {
        OutboxBody::RefundSucceeded(r) | OutboxBody::RefundFailed(r) => Some((
            &r.seller_id,
            r.currency,
            r.seller_held_minor,
            r.refund_id.as_str(),
        )),
        // The whole amount was held when the payout was created.
        OutboxBody::PayoutCanceled(p) | OutboxBody::PayoutRefused(p) | OutboxBody::PayoutSent(p) => {
            Some((&p.seller_id, p.currency, p.amount_minor, p.payout_id.as_str()))
        }
        OutboxBody::PaymentSucceeded(_)
        | OutboxBody::PaymentFailed(_)
        | OutboxBody::RefundRequested(_)
        | OutboxBody::RefundReversed(_)
        | OutboxBody::PayoutRequested(_)
        | OutboxBody::PayoutPaid(_)
        | OutboxBody::PayoutFailed(_)
        | OutboxBody::PayoutReturned(_) => None,
    };
    if let Some((seller, currency, held, what)) = released {
        if held < 0 {
            return Err(PostingError::Invalid(format!("{what}: negative hold")));
        }
        let slot = changes.entry((seller.clone(), currency)).or_default();
        slot.1 = slot.1.checked_sub(held).ok_or_else(overflow)?;
    }
    Ok(changes
        .into_iter()
        .filter(|(_, (b, h))| *b != 0 || *h != 0)
        .map(
            |((seller_id, currency), (balance_minor, held_minor))| WalletChange {
                seller_id,
                currency,
                balance_minor,
                held_minor,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
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
                    fee_minor: None,
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

    /// A payout of 100.00 USD moved through each step, and what each books and moves.
    #[test]
    fn a_payout_books_its_transfer_and_its_return_and_releases_its_hold_once() {
        use crate::domain::ids::PayoutId;
        use crate::domain::payouts::{Payout, PayoutEvent, PayoutRequest};
        use crate::domain::psp::{PspAccountId, PspTransferId};
        let usd = Currency::parse("USD").unwrap();
        let now = chrono::Utc::now();
        let request = PayoutRequest::new(SellerId::parse("s1").unwrap(), Decimal::new(100, 0), usd).unwrap();
        let mut p = Payout::open(
            PayoutId::generate(),
            AccountId::parse("acct_1").unwrap(),
            &request,
            Some(PspAccountId::parse("acct_1S").unwrap()),
            false,
            now,
        )
        .unwrap();
        let requested = OutboxEvent::payout(&p, None, "request", now);
        assert_eq!(requested.body.event_type(), "PAYOUT_REQUESTED");
        assert!(postings(&requested, rate()).unwrap().is_empty());
        assert!(
            wallet_changes(&requested, rate()).unwrap().is_empty(),
            "held at creation, by the API"
        );

        let sent_move = p.apply(PayoutEvent::Sent, now).unwrap();
        p.psp_transfer = Some(PspTransferId::parse("tr_1").unwrap());
        let sent = OutboxEvent::payout(&p, Some(sent_move), "psp_response", now);
        assert_eq!(sent.event_id(), format!("obx_{}_sent", p.id));
        let txs = postings(&sent, rate()).unwrap();
        assert_eq!(txs.len(), 1);
        assert_eq!(txs[0].id, format!("ltx_{}_transfer", p.id));
        assert_eq!(txs[0].payout_id.as_ref(), Some(&p.id));
        let lines: Vec<(String, Direction, i64)> = txs[0]
            .entries
            .iter()
            .map(|e| (e.account.to_string(), e.direction, e.amount.minor()))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("seller_payable:s1".to_owned(), Direction::Debit, 10_000),
                ("psp_receivable".to_owned(), Direction::Credit, 10_000),
            ]
        );
        let w = wallet_changes(&sent, rate()).unwrap();
        assert_eq!((w[0].balance_minor, w[0].held_minor), (-10_000, -10_000));

        let paid_move = p.apply(PayoutEvent::PspPaid, now).unwrap();
        let paid = OutboxEvent::payout(&p, Some(paid_move), "evt_paid", now);
        assert!(postings(&paid, rate()).unwrap().is_empty());
        assert!(wallet_changes(&paid, rate()).unwrap().is_empty());

        // The bank sends it back: nothing moves on our books until the transfer is reversed.
        let failed_move = p.apply(PayoutEvent::PspFailed, now).unwrap();
        let failed = OutboxEvent::payout(&p, Some(failed_move), "evt_failed", now);
        assert_eq!(failed.body.event_type(), "PAYOUT_FAILED");
        assert!(postings(&failed, rate()).unwrap().is_empty());
        assert!(wallet_changes(&failed, rate()).unwrap().is_empty());
        assert!(p
            .reversed(
                crate::domain::psp::PspTransferReversalId::parse("trr_1").unwrap(),
                now
            )
            .unwrap());
        let returned = OutboxEvent::payout_returned(&p, "psp_response", now);
        assert_eq!(returned.body.event_type(), "PAYOUT_RETURNED");
        let txs = postings(&returned, rate()).unwrap();
        assert_eq!(txs[0].id, format!("ltx_{}_returned", p.id));
        assert_eq!(
            txs[0].entries[0].direction,
            Direction::Credit,
            "seller_payable back up"
        );
        let w = wallet_changes(&returned, rate()).unwrap();
        assert_eq!((w[0].balance_minor, w[0].held_minor), (10_000, 0));
        let back = OutboxEvent::from_json(&returned.to_json()).unwrap();
        assert_eq!(back, returned);
    }

    #[test]
    fn a_canceled_or_refused_payout_releases_its_hold_and_books_nothing() {
        use crate::domain::ids::PayoutId;
        use crate::domain::payouts::{Payout, PayoutEvent, PayoutRequest};
        use crate::domain::psp::PspAccountId;
        let usd = Currency::parse("USD").unwrap();
        let now = chrono::Utc::now();
        for (event, kind) in [
            (PayoutEvent::Cancel, "PAYOUT_CANCELED"),
            (PayoutEvent::Refused, "PAYOUT_REFUSED"),
        ] {
            let request =
                PayoutRequest::new(SellerId::parse("s1").unwrap(), Decimal::new(2_5, 1), usd).unwrap();
            let mut p = Payout::open(
                PayoutId::generate(),
                AccountId::parse("acct_1").unwrap(),
                &request,
                Some(PspAccountId::parse("acct_1S").unwrap()),
                true,
                now,
            )
            .unwrap();
            let moved = p.apply(event, now).unwrap();
            let e = OutboxEvent::payout(&p, Some(moved), "request", now);
            assert_eq!(e.body.event_type(), kind);
            assert!(postings(&e, rate()).unwrap().is_empty());
            let w = wallet_changes(&e, rate()).unwrap();
            assert_eq!((w[0].balance_minor, w[0].held_minor), (0, -250), "{kind}");
        }
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
        let credits = wallet_changes(&e, rate()).unwrap();
        assert_eq!(
            credits
                .iter()
                .map(|c| (c.balance_minor, c.held_minor))
                .collect::<Vec<_>>(),
            vec![(3900, 0), (3412, 0), (2438, 0)]
        );
    }

    #[test]
    fn failed_payments_post_nothing() {
        let e = event(OutboxKind::PaymentFailed, &[("A", 4000, "USD")]);
        assert!(postings(&e, rate()).unwrap().is_empty());
        assert!(wallet_changes(&e, rate()).unwrap().is_empty());
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
            let wallets: BTreeMap<String, i64> = wallet_changes(&e, rate).unwrap().into_iter().map(|c| (c.seller_id.to_string(), c.balance_minor)).collect();
            prop_assert_eq!(wallets, payable);
        }
    }
}
