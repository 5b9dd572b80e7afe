//! The payout scheduler (design §4, issue 11 §4): on each scheduled run, an automatic payout
//! (`automatic: true`) of the whole available balance of every seller wallet that has a payout
//! account and at least the currency's minimum — once per seller, currency and period (the UTC
//! day), through the same creation transaction as `POST /v1/payouts` (claim, payout, hold on
//! condition, `PAYOUT_REQUESTED`), so the executor sends it like any other.
//!
//! Bounded work: the wallets are scanned in `segments` parallel segments, a page at a time. The
//! scheduled invocation hands segments 1.. to the scheduler's own queue and scans segment 0
//! itself; whoever scans stops when its time budget is spent and hands the rest of its segment
//! (the scan's position) to the queue, where the next invocation goes on. A task that fails
//! comes back with backoff and ends in the DLQ with its reason, like every queue's; running a
//! task twice is harmless, as each payout is claimed once per period.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::api::payouts::payout_view;
use crate::app::consumers::{Consumer, Failure};
use crate::domain::idempotency::{IdempotencyRecord, ResourceRef};
use crate::domain::ids::PayoutId;
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::schedule::{
    automatic_claim_id, automatic_fingerprint, PayoutMinimums, SchedulePeriod, WalletCandidate,
};
use crate::domain::payouts::{Payout, PayoutRequest};
use crate::domain::psp::PspAccountId;
use crate::ports::{Begin, Destination, Outgoing, PayoutScan, Payouts, Publisher, StoreError, Written};

/// Payouts of one page created at once.
const CREATES_AT_ONCE: usize = 16;

/// One segment of a period's scan, from a position: the scheduler queue's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanTask {
    pub period: String,
    pub segment: u32,
    pub segments: u32,
    pub cursor: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanSummary {
    pub period: String,
    /// Wallets read with something available.
    pub wallets: u64,
    /// Of those, at or above their currency's minimum.
    pub due: u64,
    pub created: u64,
    /// Paid out before in this period.
    pub already: u64,
    /// Due, but the seller has no payout account.
    pub no_account: u64,
    /// The wallet changed between the read and the hold (a refund held part of it): left for
    /// the next period.
    pub changed: u64,
    /// Tasks handed to the queue: other segments, or the rest of this one.
    pub handed_off: u64,
}

impl ScanSummary {
    fn add(&mut self, o: &ScanSummary) {
        self.wallets += o.wallets;
        self.due += o.due;
        self.created += o.created;
        self.already += o.already;
        self.no_account += o.no_account;
        self.changed += o.changed;
        self.handed_off += o.handed_off;
    }
}

enum Outcome {
    Created,
    Already,
    NoAccount,
    Changed,
}

pub struct PayoutScheduler<S, Q> {
    pub store: S,
    pub queue: Q,
    pub minimums: PayoutMinimums,
    /// Parallel scan segments (DynamoDB `TotalSegments`).
    pub segments: u32,
    /// How long one invocation scans before it hands the rest off.
    pub budget: Duration,
    /// Wallet items read per page.
    pub page_size: i32,
}

impl<S: Payouts + PayoutScan, Q: Publisher> PayoutScheduler<S, Q> {
    /// A scheduled run at `time`: segments 1.. to the queue, segment 0 here.
    pub async fn start(&self, time: DateTime<Utc>) -> Result<ScanSummary, Failure> {
        let period = SchedulePeriod::of(time).to_string();
        let task = |segment| ScanTask {
            period: period.clone(),
            segment,
            segments: self.segments,
            cursor: None,
        };
        let others: Vec<ScanTask> = (1..self.segments).map(task).collect();
        self.hand_off(&others).await?;
        let mut summary = self.scan(task(0)).await?;
        summary.handed_off += others.len() as u64;
        tracing::info!(?summary, "payout schedule started");
        Ok(summary)
    }

    /// Scans `task`'s segment until it ends or the budget is spent; then the rest goes to the
    /// queue.
    pub async fn scan(&self, task: ScanTask) -> Result<ScanSummary, Failure> {
        if task.segments == 0 || task.segment >= task.segments {
            return Err(Failure::Poison(format!(
                "segment {} of {}",
                task.segment, task.segments
            )));
        }
        let period = SchedulePeriod::parse(&task.period).map_err(Failure::Poison)?;
        let started = Instant::now();
        let mut summary = ScanSummary {
            period: task.period.clone(),
            ..ScanSummary::default()
        };
        let mut cursor = task.cursor.clone();
        loop {
            let page = self
                .store
                .wallet_page(task.segment, task.segments, cursor.as_deref(), self.page_size)
                .await?;
            summary.add(&self.pay_page(&page.data, period).await?);
            cursor = page.next_cursor;
            match &cursor {
                None => break,
                Some(_) if started.elapsed() >= self.budget => {
                    let rest = ScanTask {
                        cursor: cursor.clone(),
                        ..task.clone()
                    };
                    self.hand_off(std::slice::from_ref(&rest)).await?;
                    summary.handed_off += 1;
                    break;
                }
                Some(_) => {}
            }
        }
        Ok(summary)
    }

    async fn hand_off(&self, tasks: &[ScanTask]) -> Result<(), Failure> {
        let messages: Vec<Outgoing> = tasks
            .iter()
            .map(|t| {
                let body = serde_json::to_string(t).map_err(|e| Failure::Poison(e.to_string()))?;
                Ok(Outgoing {
                    event_id: format!("scan_{}_{}_of_{}", t.period, t.segment, t.segments),
                    event_type: "PAYOUT_SCAN",
                    body,
                })
            })
            .collect::<Result<_, Failure>>()?;
        match self.queue.publish(Destination::PayoutScan, &messages).await {
            None => Ok(()),
            Some(i) => Err(Failure::Retryable(format!(
                "could not hand {} scan task(s) to the queue",
                messages.len() - i
            ))),
        }
    }

    async fn pay_page(
        &self,
        page: &[WalletCandidate],
        period: SchedulePeriod,
    ) -> Result<ScanSummary, Failure> {
        let mut summary = ScanSummary {
            wallets: page.len() as u64,
            ..ScanSummary::default()
        };
        let due: Vec<(WalletCandidate, PayoutRequest)> = page
            .iter()
            .filter_map(|w| w.due(&self.minimums).map(|r| (w.clone(), r)))
            .collect();
        summary.due = due.len() as u64;
        if due.is_empty() {
            return Ok(summary);
        }
        let sellers: Vec<_> = due
            .iter()
            .map(|(w, _)| (w.account_id.clone(), w.seller_id.clone()))
            .collect();
        let accounts = self.store.payout_accounts(&sellers).await?;
        let now = Utc::now();
        let with_accounts: Vec<_> = due
            .into_iter()
            .map(|(w, request)| {
                let destination = accounts
                    .get(&(w.account_id.clone(), w.seller_id.clone()))
                    .cloned();
                (w, request, destination)
            })
            .collect();
        let outcomes: Vec<Result<Outcome, StoreError>> = stream::iter(with_accounts)
            .map(|(w, request, destination)| self.pay(w, request, destination, period, now))
            .buffer_unordered(CREATES_AT_ONCE)
            .collect()
            .await;
        for o in outcomes {
            match o? {
                Outcome::Created => summary.created += 1,
                Outcome::Already => summary.already += 1,
                Outcome::NoAccount => summary.no_account += 1,
                Outcome::Changed => summary.changed += 1,
            }
        }
        Ok(summary)
    }

    /// One wallet's automatic payout, claimed for the period in the creation transaction.
    /// One wallet's automatic payout, claimed for the period in the creation transaction. The
    /// scan's read may be stale: a hold refused (or contended) is tried once more with the
    /// wallet read consistently, for what is available then.
    async fn pay(
        &self,
        w: WalletCandidate,
        mut request: PayoutRequest,
        destination: Option<PspAccountId>,
        period: SchedulePeriod,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let Some(destination) = destination else {
            return Ok(Outcome::NoAccount);
        };
        let currency = request.amount.currency();
        let claim = automatic_claim_id(&w.account_id, &w.seller_id, currency, period);
        for attempt in 0..2 {
            let payout = Payout::open(
                PayoutId::generate(),
                w.account_id.clone(),
                &request,
                Some(destination.clone()),
                true,
                now,
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut record = IdempotencyRecord::new_completed(
                claim.clone(),
                automatic_fingerprint(&w.seller_id, currency, period),
                ResourceRef::payout(&payout.id),
                now.timestamp_millis(),
                201,
                payout_view(&payout).to_string(),
            );
            record.expires_at_s = period.claims_expire_at_s();
            let outbox = OutboxEvent::payout(&payout, None, "schedule", now);
            match self.store.begin_payout(&record, &payout, &outbox).await? {
                Begin::Created => {
                    tracing::info!(payout_id = %payout.id, seller_id = %payout.seller_id, amount = %payout.amount, "automatic payout created");
                    return Ok(Outcome::Created);
                }
                Begin::Exists(_) => return Ok(Outcome::Already),
                Begin::Contended | Begin::Refused(_) if attempt == 0 => {
                    let fresh = self
                        .store
                        .wallet_available(&w.account_id, &w.seller_id, currency)
                        .await?;
                    let due = fresh.and_then(|f| {
                        WalletCandidate {
                            balance_minor: f.balance.minor(),
                            held_minor: f.held.minor(),
                            ..w.clone()
                        }
                        .due(&self.minimums)
                    });
                    match due {
                        Some(r) => request = r,
                        None => return Ok(Outcome::Changed),
                    }
                }
                // Still refused: the next period pays what is available then.
                Begin::Contended | Begin::Refused(_) => return Ok(Outcome::Changed),
            }
        }
        Ok(Outcome::Changed)
    }
}

impl<S: Payouts + PayoutScan, Q: Publisher> Consumer for PayoutScheduler<S, Q> {
    const NAME: &'static str = "payout_scheduler";

    async fn apply(&self, body: &str) -> Result<Written, Failure> {
        let task: ScanTask =
            serde_json::from_str(body).map_err(|e| Failure::Poison(format!("not a scan task: {e}")))?;
        let summary = self.scan(task).await?;
        tracing::info!(?summary, "payout scan task done");
        Ok(Written::Written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::Memory;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, SellerId};
    use crate::domain::invariants::WalletBalance;
    use std::sync::Mutex;

    /// The scheduler's queue, kept in memory.
    #[derive(Default)]
    struct Queue(Mutex<Vec<String>>);

    impl Publisher for Queue {
        async fn publish(&self, d: Destination, messages: &[Outgoing]) -> Option<usize> {
            assert_eq!(d, Destination::PayoutScan);
            self.0
                .lock()
                .unwrap()
                .extend(messages.iter().map(|m| m.body.clone()));
            None
        }
    }

    fn scheduler(store: Memory, segments: u32, budget: Duration) -> PayoutScheduler<Memory, Queue> {
        PayoutScheduler {
            store,
            queue: Queue::default(),
            minimums: PayoutMinimums::parse("USD=25.00").unwrap(),
            segments,
            budget,
            page_size: 2,
        }
    }

    /// Sellers s0..s{n}: each 97.50 USD (s1 only 20.00, below the minimum); all but s2 with a
    /// payout account; s3 also has 50.00 EUR (no minimum: not automatic).
    async fn sellers(n: usize) -> Memory {
        let store = Memory::default();
        let account = AccountId::parse("acct_a").unwrap();
        for i in 0..n {
            let seller = SellerId::parse(&format!("s{i}")).unwrap();
            let balance = if i == 1 { 2_000 } else { 9_750 };
            let wallet = |currency: &str, balance: i64| WalletBalance {
                account_id: account.clone(),
                seller_id: seller.clone(),
                currency: Currency::parse(currency).unwrap(),
                balance_minor: balance,
                held_minor: 0,
                available_minor: balance,
            };
            store.wallets.lock().unwrap().push(wallet("USD", balance));
            if i == 3 {
                store.wallets.lock().unwrap().push(wallet("EUR", 5_000));
            }
            if i != 2 {
                store
                    .put_payout_account(
                        &account,
                        &seller,
                        &PspAccountId::parse(&format!("acct_1S{i}")).unwrap(),
                        Utc::now(),
                    )
                    .await
                    .unwrap();
            }
        }
        store
    }

    fn run_at() -> DateTime<Utc> {
        "2026-12-01T06:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn one_automatic_payout_per_seller_and_currency_in_a_period() {
        let s = scheduler(sellers(6).await, 1, Duration::from_secs(60));
        let first = s.start(run_at()).await.unwrap();
        assert_eq!(
            (
                first.wallets,
                first.due,
                first.created,
                first.no_account,
                first.already
            ),
            (7, 5, 4, 1, 0),
            "{first:?}"
        );
        let payouts: Vec<Payout> = s.store.payouts.lock().unwrap().values().cloned().collect();
        assert!(payouts.iter().all(|p| p.automatic && p.amount.minor() == 9_750));
        // Again in the same period (a retry, a manual fire): nothing new.
        let later: DateTime<Utc> = "2026-12-01T23:00:00Z".parse().unwrap();
        let again = s.start(later).await.unwrap();
        assert_eq!((again.created, again.already), (0, 0), "{again:?}");
        assert_eq!(s.store.payouts.lock().unwrap().len(), 4);
        // The wallets are held now; nothing is available to pay twice.
        let held: i64 = s.store.wallets.lock().unwrap().iter().map(|w| w.held_minor).sum();
        assert_eq!(held, 4 * 9_750);
        // The claim alone also stops a second payout, even if the money were there again.
        for w in s.store.wallets.lock().unwrap().iter_mut() {
            w.held_minor = 0;
            w.available_minor = w.balance_minor;
        }
        let claimed = s.start(later).await.unwrap();
        assert_eq!((claimed.created, claimed.already), (0, 4), "{claimed:?}");
        let kinds: Vec<_> = s
            .store
            .outbox
            .lock()
            .unwrap()
            .iter()
            .map(|o| o.body.event_type())
            .collect();
        assert_eq!(kinds, ["PAYOUT_REQUESTED"; 4]);
    }

    /// The scan read 97.50 available, but a refund has since held 30.00 of it: the refused
    /// hold is tried again with the wallet read consistently, and 67.50 goes out.
    #[tokio::test]
    async fn a_stale_read_is_read_again_before_giving_up() {
        let s = scheduler(sellers(1).await, 1, Duration::from_secs(60));
        let stale = s.store.wallets.lock().unwrap()[0].clone();
        {
            let mut wallets = s.store.wallets.lock().unwrap();
            wallets[0].held_minor = 3_000;
            wallets[0].available_minor = 6_750;
        }
        let candidate = WalletCandidate {
            account_id: stale.account_id.clone(),
            seller_id: stale.seller_id.clone(),
            currency: stale.currency,
            balance_minor: stale.balance_minor,
            held_minor: stale.held_minor,
        };
        let request = candidate.due(&s.minimums).unwrap();
        assert_eq!(request.amount.minor(), 9_750);
        let account = Some(PspAccountId::parse("acct_1S0").unwrap());
        let period = SchedulePeriod::of(run_at());
        let outcome = s
            .pay(candidate, request, account, period, run_at())
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Created));
        let paid: Vec<i64> = s
            .store
            .payouts
            .lock()
            .unwrap()
            .values()
            .map(|p| p.amount.minor())
            .collect();
        assert_eq!(paid, [6_750]);
    }

    #[tokio::test]
    async fn a_spent_budget_hands_the_rest_of_the_segment_to_the_queue() {
        let s = scheduler(sellers(6).await, 3, Duration::ZERO);
        let started = s.start(run_at()).await.unwrap();
        // Segments 1 and 2 queued; segment 0 read one page, then handed its rest off.
        assert_eq!(started.handed_off, 3, "{started:?}");
        let mut total = started.clone();
        // Drain the queue as the SQS-triggered invocations would.
        loop {
            let next = s.queue.0.lock().unwrap().pop();
            let Some(body) = next else { break };
            let task: ScanTask = serde_json::from_str(&body).unwrap();
            let more = s.scan(task).await.unwrap();
            total.add(&more);
        }
        assert_eq!((total.wallets, total.created), (7, 4), "{total:?}");
        assert!(
            s.apply("{\"period\":\"2026-12-01\"}").await.is_err(),
            "a malformed task is poison"
        );
    }
}
