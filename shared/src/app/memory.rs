//! An in-memory implementation of the ports, for unit tests of the use cases only. Integration
//! tests run against DynamoDB Local.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::app::auth::hash_api_key;
use crate::domain::idempotency::{IdempotencyRecord, RecordState};
use crate::domain::ids::{AccountId, ApiKeyId, CheckoutId, PaymentOrderId};
use crate::domain::outbox::{Anomaly, OutboxEvent};
use crate::domain::psp::{PspError, PspSession, SessionRequest};
use crate::domain::rate_limit::RateLimit;
use crate::domain::PaymentStatus;
use crate::domain::{Checkout, PaymentOrder};
use crate::ports::{
    ApiKeyRecord, ApiKeys, Applied, Begin, Checkouts, Completion, Consume, Idempotency, Psp, StoreError,
    Webhooks,
};

#[derive(Default)]
pub struct Memory {
    keys: Mutex<HashMap<String, ApiKeyRecord>>,
    records: Mutex<HashMap<String, IdempotencyRecord>>,
    checkouts: Mutex<HashMap<CheckoutId, (Checkout, Vec<PaymentOrder>)>>,
    pub events: Mutex<HashMap<String, String>>,
    pub outbox: Mutex<Vec<OutboxEvent>>,
    pub anomalies: Mutex<Vec<Anomaly>>,
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
            id: format!("cs_test_{}", request.checkout_id),
            url: format!("https://psp.example/pay/{}", request.checkout_id),
        })
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
    async fn checkout_id_by_psp_token(&self, psp_token: &str) -> Result<Option<CheckoutId>, StoreError> {
        Ok(self
            .checkouts
            .lock()
            .unwrap()
            .values()
            .find(|(c, _)| c.psp_token.as_deref() == Some(psp_token))
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

impl Idempotency for Memory {
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
