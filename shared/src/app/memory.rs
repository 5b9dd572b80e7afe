//! An in-memory implementation of the ports, for unit tests of the use cases only. Integration
//! tests run against DynamoDB Local and moto.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::app::auth::hash_api_key;
use crate::domain::currency::Currency;
use crate::domain::idempotency::{IdempotencyRecord, RecordState};
use crate::domain::ids::{
    AccountId, ApiKeyId, CheckoutId, OrderId, PaymentOrderId, PayoutId, RefundId, SellerId,
};
use crate::domain::invariants::{BalanceShard, Checker, OrderFacts, WalletBalance};
use crate::domain::ledger::balances::{deltas, Totals};
use crate::domain::ledger::{Entry, LedgerAccount, LedgerTransaction, WalletChange, WalletFigures};
use crate::domain::money::Money;
use crate::domain::outbox::{Anomaly, OutboxBody, OutboxEvent, OutboxHeader, OutboxOrder, SettledPayment};
use crate::domain::pay_in::{
    Checkout, OrderRefunds, PaymentOrder, PaymentStatus, PspSession, SessionRequest,
};
use crate::domain::payouts::{Available, Payout};
use crate::domain::psp::{PspAccountId, PspError, PspRefundId, PspSessionId};
use crate::domain::rate_limit::RateLimit;
use crate::domain::refunds::{Refund, RefundStatus};
use crate::ports::{
    ApiKeyRecord, ApiKeys, Applied, Begin, Checkouts, Claims, Completion, Consume, Destination,
    InvariantSource, LedgerReader, LedgerWriter, Outgoing, Page, Payouts, Psp, Publisher, RefundWrite,
    Refunds, StoreError, WalletWriter, Webhooks, Written,
};

#[derive(Default)]
pub struct Memory {
    keys: Mutex<HashMap<String, ApiKeyRecord>>,
    records: Mutex<HashMap<String, IdempotencyRecord>>,
    checkouts: Mutex<HashMap<CheckoutId, (Checkout, Vec<PaymentOrder>)>>,
    pub events: Mutex<HashMap<String, String>>,
    pub outbox: Mutex<Vec<OutboxEvent>>,
    pub anomalies: Mutex<Vec<Anomaly>>,
    /// Payment order states beyond the checkouts' own (for invariant tests).
    order_states: Mutex<BTreeMap<PaymentOrderId, PaymentStatus>>,
    pub transactions: Mutex<Vec<LedgerTransaction>>,
    /// Ledger items that do not read back (for invariant tests).
    pub unreadable: Mutex<Vec<String>>,
    pub balances: Mutex<Vec<BalanceShard>>,
    pub wallets: Mutex<Vec<WalletBalance>>,
    applied: Mutex<HashSet<String>>,
    pub published: Mutex<Vec<(Destination, Outgoing)>>,
    /// Per destination: the index, within one publish call, of the first message that fails.
    pub fail_publish_at: Mutex<HashMap<Destination, usize>>,
    pub refunds: Mutex<HashMap<RefundId, Refund>>,
    pub payout_accounts: Mutex<HashMap<(AccountId, SellerId), PspAccountId>>,
    pub payouts: Mutex<HashMap<PayoutId, Payout>>,
    /// While set, ledger and wallet writes and checkout reads fail as an unavailable store would.
    pub unavailable: AtomicBool,
}

/// A PSP that answers from a script: `Ok` sessions numbered per checkout, or the given error.
#[derive(Default)]
pub struct FakePsp {
    pub fail_with: Mutex<Option<PspError>>,
    pub calls: Mutex<Vec<SessionRequest>>,
}

impl Psp for FakePsp {
    async fn create_session(&self, request: &SessionRequest) -> Result<PspSession, PspError> {
        self.calls.lock().unwrap().push(request.clone());
        if let Some(e) = self.fail_with.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(PspSession {
            id: PspSessionId::parse(&format!("cs_test_{}", request.checkout_id)).unwrap(),
            url: format!("https://psp.example/pay/{}", request.checkout_id),
        })
    }
}

/// A paid single-seller payment's event: 10.00 USD for `seller_A` of `acct_a`.
pub fn paid_event(psp_event_id: &str) -> OutboxEvent {
    let usd = Currency::parse("USD").unwrap();
    OutboxEvent {
        header: OutboxHeader {
            event_id: format!("obx_{psp_event_id}"),
            account_id: AccountId::parse("acct_a").unwrap(),
            occurred_at: "2026-11-30T00:00:00.000Z".into(),
            cause: psp_event_id.into(),
        },
        body: OutboxBody::PaymentSucceeded(SettledPayment {
            checkout_id: CheckoutId::generate(),
            order_id: OrderId::parse("o").unwrap(),
            buyer_id: crate::domain::ids::BuyerId::parse("b").unwrap(),
            psp_session: None,
            payment_intent: None,
            total_minor: 1000,
            currency: usd,
            payment_orders: vec![OutboxOrder {
                payment_order_id: PaymentOrderId::generate(),
                seller_id: SellerId::parse("seller_A").unwrap(),
                sub_order_id: None,
                amount_minor: 1000,
                amount: "10.00".into(),
                currency: usd,
                fee_minor: None,
            }],
        }),
    }
}

impl Memory {
    pub fn add_key(&self, raw: &str, limit: Option<RateLimit>) -> AccountId {
        let account_id = AccountId::parse(&format!("acct_{}", raw.len())).unwrap();
        self.keys.lock().unwrap().insert(
            hash_api_key(raw),
            ApiKeyRecord {
                key_id: ApiKeyId::generate(),
                account_id: account_id.clone(),
                active: true,
                tat_us: None,
                limit,
            },
        );
        account_id
    }

    pub fn key(&self, raw: &str) -> Option<ApiKeyRecord> {
        self.keys.lock().unwrap().get(&hash_api_key(raw)).cloned()
    }

    pub fn revoke_key(&self, raw: &str) {
        if let Some(k) = self.keys.lock().unwrap().get_mut(&hash_api_key(raw)) {
            k.active = false;
        }
    }

    pub fn checkout(&self, id: &CheckoutId) -> Option<(Checkout, Vec<PaymentOrder>)> {
        self.checkouts.lock().unwrap().get(id).cloned()
    }

    pub fn checkout_count(&self) -> usize {
        self.checkouts.lock().unwrap().len()
    }

    pub fn expire_leases(&self) {
        for r in self.records.lock().unwrap().values_mut() {
            if let RecordState::InProgress { lease_until_ms, .. } = &mut r.state {
                *lease_until_ms = 0;
            }
        }
    }

    /// Delivers `event` to both consumers (fee 2.5 %), as the queues would.
    pub async fn consume(&self, event: &OutboxEvent) -> (Written, Written) {
        use crate::app::consumers::{Consumer, LedgerConsumer, WalletConsumer};
        let (body, fee_rate) = (event.to_json(), rust_decimal::Decimal::new(25, 3));
        let ledger = LedgerConsumer {
            store: self,
            fee_rate,
        }
        .apply(&body)
        .await;
        let wallet = WalletConsumer {
            store: self,
            fee_rate,
        }
        .apply(&body)
        .await;
        (ledger.expect("ledger consumer"), wallet.expect("wallet consumer"))
    }

    pub fn add_outbox(&self, e: &OutboxEvent) {
        self.outbox.lock().unwrap().push(e.clone());
    }

    pub fn set_order(&self, id: &PaymentOrderId, status: PaymentStatus) {
        self.order_states.lock().unwrap().insert(id.clone(), status);
    }

    fn check_available(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("memory store switched off".into()));
        }
        Ok(())
    }
}

impl ApiKeys for Memory {
    async fn consume_idle(
        &self,
        key_hash: &str,
        now_us: i64,
        default_interval_us: i64,
    ) -> Result<Consume, StoreError> {
        let mut keys = self.keys.lock().unwrap();
        let Some(k) = keys.get_mut(key_hash) else {
            return Ok(Consume::Refused(None));
        };
        if !k.active || k.tat_us.is_some_and(|t| t >= now_us) {
            return Ok(Consume::Refused(Some(k.clone())));
        }
        k.tat_us = Some(now_us + k.limit.map_or(default_interval_us, |l| l.interval_us()));
        Ok(Consume::Allowed(k.clone()))
    }

    async fn consume_busy(
        &self,
        key_hash: &str,
        now_us: i64,
        limit_us: i64,
        default_interval_us: i64,
    ) -> Result<Consume, StoreError> {
        let mut keys = self.keys.lock().unwrap();
        let Some(k) = keys.get_mut(key_hash) else {
            return Ok(Consume::Refused(None));
        };
        match k.tat_us {
            Some(t) if k.active && t >= now_us && t <= limit_us => {
                k.tat_us = Some(t + k.limit.map_or(default_interval_us, |l| l.interval_us()));
                Ok(Consume::Allowed(k.clone()))
            }
            _ => Ok(Consume::Refused(Some(k.clone()))),
        }
    }
}

impl Checkouts for Memory {
    async fn begin_checkout(
        &self,
        record: &IdempotencyRecord,
        checkout: &Checkout,
        orders: &[PaymentOrder],
    ) -> Result<Begin, StoreError> {
        let mut records = self.records.lock().unwrap();
        if let Some(existing) = records.get(&record.record_id) {
            return Ok(Begin::Exists(existing.clone()));
        }
        records.insert(record.record_id.clone(), record.clone());
        self.checkouts
            .lock()
            .unwrap()
            .insert(checkout.id.clone(), (checkout.clone(), orders.to_vec()));
        Ok(Begin::Created)
    }

    async fn get_checkout(
        &self,
        id: &CheckoutId,
    ) -> Result<Option<(Checkout, Vec<PaymentOrder>)>, StoreError> {
        self.check_available()?;
        Ok(self.checkouts.lock().unwrap().get(id).cloned())
    }

    async fn get_payment_order(&self, id: &PaymentOrderId) -> Result<Option<PaymentOrder>, StoreError> {
        Ok(self
            .checkouts
            .lock()
            .unwrap()
            .values()
            .flat_map(|(_, o)| o)
            .find(|o| &o.id == id)
            .cloned())
    }

    async fn save_transition(
        &self,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        completion: Completion<'_>,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().unwrap();
        let mut checkouts = self.checkouts.lock().unwrap();
        let leased = records
            .get(completion.record_id)
            .is_some_and(|r| r.lease_token() == Some(completion.lease_token));
        let in_from = checkouts.get(&checkout.id).is_some_and(|(c, _)| c.status == from);
        if !leased || !in_from {
            return Ok(false);
        }
        checkouts.insert(checkout.id.clone(), (checkout.clone(), orders.to_vec()));
        if let Some(r) = records.get_mut(completion.record_id) {
            r.state = RecordState::Completed {
                status: completion.status,
                body: completion.body.to_owned(),
            };
        }
        Ok(true)
    }
}

impl Webhooks for Memory {
    async fn checkout_by_session(&self, session: &PspSessionId) -> Result<Option<CheckoutId>, StoreError> {
        Ok(self
            .checkouts
            .lock()
            .unwrap()
            .values()
            .find(|(c, _)| c.psp_session.as_ref() == Some(session))
            .map(|(c, _)| c.id.clone()))
    }

    async fn apply_event(
        &self,
        psp_event_id: &str,
        checkout: &Checkout,
        orders: &[PaymentOrder],
        from: PaymentStatus,
        outbox: &OutboxEvent,
    ) -> Result<Applied, StoreError> {
        let mut events = self.events.lock().unwrap();
        let mut checkouts = self.checkouts.lock().unwrap();
        if events.contains_key(psp_event_id) {
            return Ok(Applied::Duplicate);
        }
        if !checkouts.get(&checkout.id).is_some_and(|(c, _)| c.status == from) {
            return Ok(Applied::Conflict);
        }
        events.insert(psp_event_id.to_owned(), "applied".into());
        checkouts.insert(checkout.id.clone(), (checkout.clone(), orders.to_vec()));
        self.outbox.lock().unwrap().push(outbox.clone());
        Ok(Applied::Applied)
    }

    async fn mark_event(&self, psp_event_id: &str, note: &str) -> Result<bool, StoreError> {
        Ok(self
            .events
            .lock()
            .unwrap()
            .insert(psp_event_id.to_owned(), note.to_owned())
            .is_none())
    }

    async fn record_anomaly(&self, anomaly: &Anomaly) -> Result<bool, StoreError> {
        let mut events = self.events.lock().unwrap();
        if events.contains_key(&anomaly.psp_event_id) {
            return Ok(false);
        }
        events.insert(anomaly.psp_event_id.clone(), anomaly.kind.to_owned());
        self.anomalies.lock().unwrap().push(anomaly.clone());
        Ok(true)
    }
}

impl Claims for Memory {
    async fn get_record(&self, record_id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        Ok(self.records.lock().unwrap().get(record_id).cloned())
    }

    async fn take_over(
        &self,
        record_id: &str,
        stale: &str,
        new: &str,
        lease_until_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().unwrap();
        let Some(r) = records.get_mut(record_id) else {
            return Ok(false);
        };
        match &r.state {
            RecordState::InProgress {
                lease_until_ms: until,
                lease_token,
            } if lease_token == stale && *until <= now_ms => {
                r.state = RecordState::InProgress {
                    lease_until_ms,
                    lease_token: new.to_owned(),
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, record_id: &str, lease_token: &str) -> Result<bool, StoreError> {
        let mut records = self.records.lock().unwrap();
        let Some(r) = records.get_mut(record_id) else {
            return Ok(false);
        };
        match &mut r.state {
            RecordState::InProgress {
                lease_until_ms,
                lease_token: t,
            } if t == lease_token => {
                *lease_until_ms = 0;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete(
        &self,
        record_id: &str,
        lease_token: &str,
        status: u16,
        body: &str,
    ) -> Result<bool, StoreError> {
        let mut records = self.records.lock().unwrap();
        let Some(r) = records.get_mut(record_id) else {
            return Ok(false);
        };
        if r.lease_token() != Some(lease_token) {
            return Ok(false);
        }
        r.state = RecordState::Completed {
            status,
            body: body.to_owned(),
        };
        Ok(true)
    }
}

impl LedgerWriter for Memory {
    async fn append(&self, tx: &LedgerTransaction) -> Result<Written, StoreError> {
        self.check_available()?;
        tx.check_balanced()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut txs = self.transactions.lock().unwrap();
        if txs.iter().any(|t| t.id == tx.id) {
            return Ok(Written::AlreadyApplied);
        }
        let deltas = deltas(tx).ok_or_else(|| StoreError::Corrupt("totals overflow".into()))?;
        let mut balances = self.balances.lock().unwrap();
        for ((account, currency), totals) in deltas {
            balances.push(BalanceShard {
                account_id: tx.account_id.clone(),
                account,
                currency,
                totals,
            });
        }
        txs.push(tx.clone());
        Ok(Written::Written)
    }
}

impl WalletWriter for Memory {
    async fn apply_wallet_changes(
        &self,
        event_id: &str,
        account_id: &AccountId,
        changes: &[WalletChange],
        _now: &str,
    ) -> Result<Written, StoreError> {
        self.check_available()?;
        if !self.applied.lock().unwrap().insert(event_id.to_owned()) {
            return Ok(Written::AlreadyApplied);
        }
        let mut wallets = self.wallets.lock().unwrap();
        for c in changes {
            match wallets.iter_mut().find(|w| {
                &w.account_id == account_id && w.seller_id == c.seller_id && w.currency == c.currency
            }) {
                Some(w) => {
                    w.balance_minor += c.balance_minor;
                    w.held_minor += c.held_minor;
                    w.available_minor += c.balance_minor - c.held_minor;
                }
                None => wallets.push(WalletBalance {
                    account_id: account_id.clone(),
                    seller_id: c.seller_id.clone(),
                    currency: c.currency,
                    balance_minor: c.balance_minor,
                    held_minor: c.held_minor,
                    available_minor: c.balance_minor - c.held_minor,
                }),
            }
        }
        Ok(Written::Written)
    }
}

impl Memory {
    fn order_mut<T>(&self, id: &PaymentOrderId, f: impl FnOnce(&mut PaymentOrder) -> T) -> Option<T> {
        let mut checkouts = self.checkouts.lock().unwrap();
        checkouts
            .values_mut()
            .flat_map(|(_, o)| o.iter_mut())
            .find(|o| &o.id == id)
            .map(f)
    }

    fn hold(&self, account_id: &AccountId, seller: &SellerId, currency: Currency, held: i64) {
        let mut wallets = self.wallets.lock().unwrap();
        match wallets
            .iter_mut()
            .find(|w| &w.account_id == account_id && &w.seller_id == seller && w.currency == currency)
        {
            Some(w) => {
                w.held_minor += held;
                w.available_minor -= held;
            }
            None => wallets.push(WalletBalance {
                account_id: account_id.clone(),
                seller_id: seller.clone(),
                currency,
                balance_minor: 0,
                held_minor: held,
                available_minor: -held,
            }),
        }
    }
}

/// Payouts as DynamoDB keeps them: the hold checked against `available` and made in one step.
impl Payouts for Memory {
    async fn payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
    ) -> Result<Option<PspAccountId>, StoreError> {
        self.check_available()?;
        Ok(self
            .payout_accounts
            .lock()
            .unwrap()
            .get(&(account_id.clone(), seller.clone()))
            .cloned())
    }

    async fn put_payout_account(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        psp_account: &PspAccountId,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        self.check_available()?;
        self.payout_accounts
            .lock()
            .unwrap()
            .insert((account_id.clone(), seller.clone()), psp_account.clone());
        Ok(())
    }

    async fn wallet_available(
        &self,
        account_id: &AccountId,
        seller: &SellerId,
        currency: Currency,
    ) -> Result<Option<Available>, StoreError> {
        self.check_available()?;
        Ok(self
            .wallets
            .lock()
            .unwrap()
            .iter()
            .find(|w| &w.account_id == account_id && &w.seller_id == seller && w.currency == currency)
            .map(|w| Available {
                balance: Money::from_minor(w.balance_minor, currency),
                held: Money::from_minor(w.held_minor, currency),
            }))
    }

    async fn begin_payout(
        &self,
        record: &IdempotencyRecord,
        payout: &Payout,
        outbox: &OutboxEvent,
    ) -> Result<Begin, StoreError> {
        self.check_available()?;
        let mut records = self.records.lock().unwrap();
        if let Some(existing) = records.get(&record.record_id) {
            return Ok(Begin::Exists(existing.clone()));
        }
        let currency = payout.amount.currency();
        let available = self
            .wallets
            .lock()
            .unwrap()
            .iter()
            .find(|w| {
                w.account_id == payout.account_id && w.seller_id == payout.seller_id && w.currency == currency
            })
            .map(|w| w.available_minor);
        if available.is_none_or(|a| a < payout.amount.minor()) {
            let refusal =
                crate::domain::payouts::PayoutRefusal::short(&payout.seller_id, payout.amount, available);
            return Ok(Begin::Refused(refusal.into()));
        }
        records.insert(record.record_id.clone(), record.clone());
        drop(records);
        self.hold(
            &payout.account_id,
            &payout.seller_id,
            currency,
            payout.amount.minor(),
        );
        self.payouts
            .lock()
            .unwrap()
            .insert(payout.id.clone(), payout.clone());
        self.outbox.lock().unwrap().push(outbox.clone());
        Ok(Begin::Created)
    }

    async fn get_payout(&self, id: &PayoutId) -> Result<Option<Payout>, StoreError> {
        self.check_available()?;
        Ok(self.payouts.lock().unwrap().get(id).cloned())
    }

    async fn mark_payout_sending(&self, id: &PayoutId) -> Result<bool, StoreError> {
        self.check_available()?;
        Ok(self
            .payouts
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|p| p.status == crate::domain::payouts::PayoutStatus::Pending))
    }

    async fn cancel_payout(&self, payout: &Payout, outbox: &OutboxEvent) -> Result<bool, StoreError> {
        let from = crate::domain::payouts::PayoutStatus::Pending;
        Ok(self.save_payout_move(payout, from, outbox, None).await? == Applied::Applied)
    }

    async fn save_payout_move(
        &self,
        payout: &Payout,
        from: crate::domain::payouts::PayoutStatus,
        outbox: &OutboxEvent,
        psp_event_id: Option<&str>,
    ) -> Result<Applied, StoreError> {
        self.check_available()?;
        if let Some(e) = psp_event_id {
            if self.events.lock().unwrap().contains_key(e) {
                return Ok(Applied::Duplicate);
            }
        }
        let mut payouts = self.payouts.lock().unwrap();
        let mut outbox_records = self.outbox.lock().unwrap();
        let fresh = !outbox_records
            .iter()
            .any(|o| o.header.event_id == outbox.header.event_id);
        match payouts.get(&payout.id) {
            Some(p) if p.status == from && fresh => {
                payouts.insert(payout.id.clone(), payout.clone());
                outbox_records.push(outbox.clone());
                if let Some(e) = psp_event_id {
                    self.events.lock().unwrap().insert(e.to_owned(), "applied".into());
                }
                Ok(Applied::Applied)
            }
            _ => Ok(Applied::Conflict),
        }
    }
}

/// The scheduler's scan: wallet `i` is in segment `i % segments`; the cursor is the index to
/// go on from.
impl crate::ports::PayoutScan for Memory {
    async fn wallet_page(
        &self,
        segment: u32,
        segments: u32,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<Page<crate::domain::payouts::schedule::WalletCandidate>, StoreError> {
        self.check_available()?;
        let from: usize = match cursor {
            Some(c) => c.parse().map_err(|_| StoreError::InvalidCursor(c.to_owned()))?,
            None => 0,
        };
        let wallets = self.wallets.lock().unwrap();
        let mut data = Vec::new();
        let mut next = None;
        for (i, w) in wallets.iter().enumerate().skip(from) {
            if i % segments as usize != segment as usize {
                continue;
            }
            if data.len() == limit as usize {
                next = Some(i.to_string());
                break;
            }
            if w.available_minor > 0 {
                data.push(crate::domain::payouts::schedule::WalletCandidate {
                    account_id: w.account_id.clone(),
                    seller_id: w.seller_id.clone(),
                    currency: w.currency,
                    balance_minor: w.balance_minor,
                    held_minor: w.held_minor,
                });
            }
        }
        Ok(Page {
            data,
            next_cursor: next,
        })
    }

    async fn payout_accounts(
        &self,
        sellers: &[(AccountId, SellerId)],
    ) -> Result<HashMap<(AccountId, SellerId), PspAccountId>, StoreError> {
        self.check_available()?;
        let accounts = self.payout_accounts.lock().unwrap();
        Ok(sellers
            .iter()
            .filter_map(|k| accounts.get(k).map(|a| (k.clone(), a.clone())))
            .collect())
    }
}

/// Refunds as DynamoDB keeps them: the reservation checked and made in one step.
impl Refunds for Memory {
    async fn begin_refund(
        &self,
        record: &IdempotencyRecord,
        refund: &Refund,
        outbox: &OutboxEvent,
    ) -> Result<Begin, StoreError> {
        self.check_available()?;
        if let Some(existing) = self.records.lock().unwrap().get(&record.record_id) {
            return Ok(Begin::Exists(existing.clone()));
        }
        let reserved = self.order_mut(&refund.payment_order_id, |o| {
            if o.status != PaymentStatus::Success
                || o.refunds.reserved_minor + refund.amount.minor() > o.amount.minor()
            {
                return false;
            }
            o.refunds.reserved_minor += refund.amount.minor();
            true
        });
        if reserved != Some(true) {
            return Ok(Begin::Refused(crate::ports::Refusal {
                code: "amount_exceeds_refundable",
                param: Some("amount"),
                message: "nothing left".into(),
                conflict: false,
            }));
        }
        self.records
            .lock()
            .unwrap()
            .insert(record.record_id.clone(), record.clone());
        self.hold(
            &refund.account_id,
            &refund.seller_id,
            refund.amount.currency(),
            refund.seller_held.minor(),
        );
        self.refunds
            .lock()
            .unwrap()
            .insert(refund.id.clone(), refund.clone());
        self.outbox.lock().unwrap().push(outbox.clone());
        Ok(Begin::Created)
    }

    async fn get_refund(&self, id: &RefundId) -> Result<Option<Refund>, StoreError> {
        self.check_available()?;
        Ok(self.refunds.lock().unwrap().get(id).cloned())
    }

    async fn order_refunds(&self, id: &PaymentOrderId) -> Result<Option<OrderRefunds>, StoreError> {
        Ok(self.order_mut(id, |o| o.refunds))
    }

    async fn save_refund_move(&self, w: RefundWrite<'_>) -> Result<Applied, StoreError> {
        self.check_available()?;
        if let Some(e) = w.psp_event_id {
            if self.events.lock().unwrap().contains_key(e) {
                return Ok(Applied::Duplicate);
            }
        }
        let mut refunds = self.refunds.lock().unwrap();
        if refunds.get(&w.refund.id).map(|r| r.status) != Some(w.from) {
            return Ok(Applied::Conflict);
        }
        let moved = self.order_mut(&w.refund.payment_order_id, |o| {
            if o.refunds.refunded_minor != w.before.refunded_minor
                || o.refunds.fee_refunded_minor != w.before.fee_refunded_minor
            {
                return false;
            }
            o.refunds.reserved_minor += w.after.reserved_minor - w.before.reserved_minor;
            o.refunds.refunded_minor = w.after.refunded_minor;
            o.refunds.fee_refunded_minor = w.after.fee_refunded_minor;
            true
        });
        if moved != Some(true) {
            return Ok(Applied::Conflict);
        }
        if let Some(e) = w.psp_event_id {
            self.events.lock().unwrap().insert(e.to_owned(), "applied".into());
        }
        refunds.insert(w.refund.id.clone(), w.refund.clone());
        self.outbox.lock().unwrap().push(w.outbox.clone());
        Ok(Applied::Applied)
    }

    async fn note_refund(&self, refund: &Refund, status: RefundStatus) -> Result<bool, StoreError> {
        let mut refunds = self.refunds.lock().unwrap();
        if refunds.get(&refund.id).map(|r| r.status) != Some(status) {
            return Ok(false);
        }
        refunds.insert(refund.id.clone(), refund.clone());
        Ok(true)
    }

    async fn refund_by_psp_id(&self, psp_refund: &PspRefundId) -> Result<Option<RefundId>, StoreError> {
        Ok(self
            .refunds
            .lock()
            .unwrap()
            .values()
            .find(|r| r.psp_refund.as_ref() == Some(psp_refund))
            .map(|r| r.id.clone()))
    }
}

impl LedgerReader for Memory {
    async fn wallet_balances(
        &self,
        account_id: &AccountId,
        seller_id: &SellerId,
    ) -> Result<Vec<WalletFigures>, StoreError> {
        Ok(self
            .wallets
            .lock()
            .unwrap()
            .iter()
            .filter(|w| &w.account_id == account_id && &w.seller_id == seller_id)
            .map(|w| WalletFigures {
                currency: w.currency,
                balance_minor: w.balance_minor,
                held_minor: w.held_minor,
            })
            .collect())
    }

    async fn transactions_for_order(
        &self,
        account_id: &AccountId,
        payment_order_id: &PaymentOrderId,
        _limit: i32,
        _cursor: Option<&str>,
    ) -> Result<Page<LedgerTransaction>, StoreError> {
        Ok(Page {
            data: self
                .transactions
                .lock()
                .unwrap()
                .iter()
                .filter(|t| {
                    &t.account_id == account_id && t.payment_order_id.as_ref() == Some(payment_order_id)
                })
                .cloned()
                .collect(),
            next_cursor: None,
        })
    }

    async fn account_totals(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
    ) -> Result<BTreeMap<Currency, Totals>, StoreError> {
        let shards: Vec<(Currency, Totals)> = self
            .balances
            .lock()
            .unwrap()
            .iter()
            .filter(|b| &b.account_id == account_id && &b.account == account)
            .map(|b| (b.currency, b.totals))
            .collect();
        crate::domain::ledger::balances::sum_shards(shards)
            .ok_or_else(|| StoreError::Corrupt("totals overflow".into()))
    }

    async fn account_entries(
        &self,
        account_id: &AccountId,
        account: &LedgerAccount,
        _limit: i32,
        _cursor: Option<&str>,
    ) -> Result<Page<(String, String, Entry)>, StoreError> {
        Ok(Page {
            data: self
                .transactions
                .lock()
                .unwrap()
                .iter()
                .filter(|t| &t.account_id == account_id)
                .flat_map(|t| {
                    t.entries
                        .iter()
                        .filter(|e| &e.account == account)
                        .map(|e| (t.id.clone(), t.created_at.clone(), e.clone()))
                })
                .collect(),
            next_cursor: None,
        })
    }
}

impl Publisher for Memory {
    async fn publish(&self, destination: Destination, messages: &[Outgoing]) -> Option<usize> {
        let fail_at = self.fail_publish_at.lock().unwrap().get(&destination).copied();
        let mut published = self.published.lock().unwrap();
        for (i, m) in messages.iter().enumerate() {
            if fail_at == Some(i) {
                return Some(i);
            }
            published.push((destination, m.clone()));
        }
        None
    }
}

impl InvariantSource for Memory {
    async fn feed(&self, checker: &mut Checker) -> Result<(), StoreError> {
        for tx in self.transactions.lock().unwrap().iter() {
            checker.ledger_transaction(tx);
        }
        for what in self.unreadable.lock().unwrap().iter() {
            checker.unreadable_transaction(what.clone());
        }
        for b in self.balances.lock().unwrap().iter() {
            checker.balance_shard(b);
        }
        for w in self.wallets.lock().unwrap().iter() {
            checker.wallet(w);
        }
        let mut orders: BTreeMap<PaymentOrderId, OrderFacts> = self
            .checkouts
            .lock()
            .unwrap()
            .values()
            .flat_map(|(_, o)| {
                o.iter().map(|o| {
                    (
                        o.id.clone(),
                        OrderFacts {
                            id: o.id.clone(),
                            status: o.status,
                            amount_minor: o.amount.minor(),
                            refunds: o.refunds,
                        },
                    )
                })
            })
            .collect();
        for (id, status) in self.order_states.lock().unwrap().iter() {
            orders.insert(
                id.clone(),
                OrderFacts {
                    id: id.clone(),
                    status: *status,
                    amount_minor: 0,
                    refunds: OrderRefunds::default(),
                },
            );
        }
        for o in orders.values() {
            checker.payment_order(o);
        }
        for e in self.outbox.lock().unwrap().iter() {
            checker.outbox_event(e);
        }
        for p in self.payouts.lock().unwrap().values() {
            checker.payout(&crate::domain::invariants::PayoutFacts {
                id: p.id.clone(),
                account_id: p.account_id.clone(),
                seller_id: p.seller_id.clone(),
                currency: p.amount.currency(),
                status: p.status,
                amount_minor: p.amount.minor(),
                transferred: p.psp_transfer.is_some(),
                reversed: p.psp_reversal.is_some(),
            });
        }
        Ok(())
    }
}
