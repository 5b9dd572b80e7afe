//! In-memory state: Checkout Sessions, PaymentIntents, charges and refunds, events, webhook
//! endpoints, idempotency records, balance transactions, and the admin logs. One `Mutex<State>` (it is a sandbox);
//! nothing holds the lock across an `.await`. Every list is bounded: the oldest entries go first.

use crate::connect::{Account, Payout, Transfer};
use crate::faults::Faults;
use crate::refunds::{Charge, Refund, RefundFlow};
use crate::webhooks::Job;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Cap on stored events, request log entries, delivery log entries, balance transactions,
/// refunds.
pub const RECORDS_MAX: usize = 100_000;
/// Cap on stored sessions (and their PaymentIntents).
pub const SESSIONS_MAX: usize = 100_000;
/// Idempotency keys are kept 24 h, as at Stripe.
pub const IDEMPOTENCY_TTL_S: i64 = 24 * 3600;
pub const DEFAULT_API_VERSION: &str = "2024-06-20";

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `prefix` + `len` random base62 characters (like Stripe's ids).
pub fn new_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    while out.len() < prefix.len() + len {
        for b in uuid::Uuid::new_v4().as_bytes() {
            // 248 = 4 × 62: reject above it, so every character is equally likely.
            if *b < 248 && out.len() < prefix.len() + len {
                out.push(ALPHABET[(*b % 62) as usize] as char);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Money: integers in minor units only.

/// Stripe's zero-decimal currencies.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
    "xpf",
];
/// Three-decimal currencies.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
/// Presentment currencies the sandbox accepts (ISO 4217, as Stripe lists them).
const CURRENCIES: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt", "bgn",
    "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf", "chf", "clp", "cny",
    "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb", "eur", "fjd", "fkp", "gbp", "gel",
    "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod",
    "jpy", "kes", "kgs", "khr", "kmf", "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad",
    "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio",
    "nok", "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "szl", "thb", "tjs", "tnd", "top",
    "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd", "vuv", "wst", "xaf", "xcd", "xof", "xpf",
    "yer", "zar", "zmw",
];

pub fn is_currency(c: &str) -> bool {
    CURRENCIES.contains(&c)
}

/// Minor-unit exponent: 0, 2 or 3.
pub fn decimals(currency: &str) -> u32 {
    let c = currency.to_ascii_lowercase();
    if ZERO_DECIMAL.contains(&c.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

/// Minor units → decimal text in major units, exactly (`9999, usd` → `"99.99"`, `-5, usd` → `"-0.05"`).
pub fn format_minor(amount: i64, currency: &str) -> String {
    let d = decimals(currency);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    if d == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(d);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = d as usize
    )
}

/// `numerator / denominator` rounded half to even (both non-negative, denominator > 0).
pub fn div_round_half_even(numerator: u128, denominator: u128) -> u128 {
    let q = numerator / denominator;
    let r = numerator % denominator;
    match (2 * r).cmp(&denominator) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q % 2),
    }
}

/// The sandbox's Stripe-like processing fee, in minor units: 2.9 % of the gross plus a fixed
/// 0.30 major units. Both parts are rounded half to even to the currency's minor unit, so the
/// fixed part is 30 minor units for 2-decimal currencies, 300 for 3-decimal ones (0.300 KWD) and
/// 0 for 0-decimal ones (¥0.30 rounds to ¥0: there the fee is the percentage alone).
pub fn fee_for(gross: i64, currency: &str) -> i64 {
    let gross = gross.max(0) as u128;
    let percent = div_round_half_even(gross * 29, 1000);
    let fixed = match decimals(currency) {
        0 => div_round_half_even(30, 100),
        3 => 300,
        _ => 30,
    };
    i64::try_from(percent + fixed).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Models.

#[derive(Debug, Clone)]
pub struct LineItem {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub quantity: i64,
    pub unit_amount: i64,
    pub currency: String,
    pub product_id: String,
    pub price_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Complete,
    Expired,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Complete => "complete",
            SessionStatus::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub created: i64,
    pub currency: String,
    pub line_items: Vec<LineItem>,
    pub amount_subtotal: i64,
    pub amount_total: i64,
    pub status: SessionStatus,
    pub paid: bool,
    pub payment_intent: String,
    pub client_reference_id: Option<String>,
    pub customer_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: String,
    pub cancel_url: Option<String>,
    pub expires_at: i64,
    pub payment_method_types: Vec<String>,
    pub api_version: String,
}

#[derive(Debug, Clone)]
pub struct PaymentIntent {
    pub id: String,
    pub created: i64,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    /// `requires_payment_method`, `processing`, `succeeded`, `canceled`.
    pub status: &'static str,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub last_payment_error: Option<Value>,
    pub latest_charge: Option<String>,
    pub payment_method: Option<String>,
    pub payment_method_types: Vec<String>,
    pub canceled_at: Option<i64>,
    pub cancellation_reason: Option<&'static str>,
    pub client_secret: String,
}

#[derive(Debug, Clone)]
pub struct BalanceTxn {
    pub id: String,
    /// Stripe's `type` (`TXN_*`): on the platform `charge`, `refund`, `refund_failure`,
    /// `transfer`, `transfer_reversal`; on a connected account `payment`, `payment_refund`,
    /// `payout`, `payout_failure`.
    pub kind: &'static str,
    /// What moved the money: the charge (`ch_…`), the refund (`re_…`), the transfer (`tr_…`) or
    /// reversal (`trr_…`) on the platform; on a connected account the transfer's destination
    /// payment (`py_…`), the reversal's payment refund (`pyr_…`) or the payout (`po_…`).
    pub source: String,
    /// Whose ledger it is in: `None` the platform's (`State::balance_txns`), `Some(acct_…)` that
    /// connected account's (`State::account_txns`).
    pub account: Option<String>,
    /// For a connected account's `payment` / `payment_refund`: the platform's transfer, and
    /// reversal, behind it (shown in the `sandbox` member only; Stripe links them through the
    /// transfer's `destination_payment` and the reversal's `destination_payment_refund`).
    pub transfer: Option<String>,
    pub transfer_reversal: Option<String>,
    /// Signed: a refund is negative, its failure positive again.
    pub amount: i64,
    pub fee: i64,
    pub net: i64,
    pub currency: String,
    pub created: i64,
    pub available_on: i64,
    pub charge_id: String,
    pub payment_intent_id: String,
    pub session_id: String,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub id: String,
    pub created: i64,
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub api_version: Option<String>,
    pub secret: String,
}

impl Endpoint {
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled_events.iter().any(|e| e == "*" || e == event_type)
    }
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub created: i64,
    pub json: Value,
}

#[derive(Debug, Clone)]
pub struct IdemRecord {
    pub created: i64,
    pub method: String,
    pub path: String,
    pub canonical: String,
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: String,
}

/// `BalanceTxn::kind` values (Stripe's balance transaction `type`; a transfer's reversal is
/// `transfer_refund`, reported under the category `transfer_reversal`).
pub const TXN_CHARGE: &str = "charge";
pub const TXN_REFUND: &str = "refund";
pub const TXN_REFUND_FAILURE: &str = "refund_failure";
pub const TXN_TRANSFER: &str = "transfer";
pub const TXN_TRANSFER_REVERSAL: &str = "transfer_refund";
/// Written by the admin API only (`POST /__sandbox/balance_transactions`): a balance adjustment,
/// and a Stripe fee billed on its own (reporting categories `adjustment` and `fee`).
pub const TXN_ADJUSTMENT: &str = "adjustment";
pub const TXN_STRIPE_FEE: &str = "stripe_fee";
/// A connected account's side of Connect: a transfer arriving (the transfer's
/// `destination_payment`, `py_…`), a reversal leaving (the reversal's
/// `destination_payment_refund`, `pyr_…`), a payout, and a failed payout's money coming back.
pub const TXN_PAYMENT: &str = "payment";
pub const TXN_PAYMENT_REFUND: &str = "payment_refund";
pub const TXN_PAYOUT: &str = "payout";
pub const TXN_PAYOUT_FAILURE: &str = "payout_failure";

/// Who caused a state change: the API request (`request.id`, `request.idempotency_key` of the
/// event), or nobody (the hosted page, the expiry sweep: both `null`, as at Stripe).
#[derive(Debug, Clone, Default)]
pub struct Cause {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

pub struct State {
    pub sessions: HashMap<String, Session>,
    pub session_order: VecDeque<String>,
    pub intents: HashMap<String, PaymentIntent>,
    pub events: HashMap<String, StoredEvent>,
    /// Event ids, oldest first.
    pub event_order: VecDeque<String>,
    pub endpoints: Vec<Endpoint>,
    /// (secret key, idempotency key) → stored response.
    pub idempotency: HashMap<(String, String), IdemRecord>,
    /// The platform's balance transactions, oldest first (`account: None` only).
    pub balance_txns: VecDeque<BalanceTxn>,
    /// Connected accounts' balance transactions, all accounts, oldest first (`account: Some`).
    /// Kept apart so that nothing reading the platform's ledger (its available balance, the
    /// settlement CSV, the unscoped list) can pick up a connected account's row.
    pub account_txns: VecDeque<BalanceTxn>,
    pub requests: VecDeque<Value>,
    pub deliveries: VecDeque<Value>,
    pub faults: Faults,
    /// The signing secret given to every endpoint created (`PSP_WEBHOOK_SECRET`).
    pub webhook_secret: String,
    /// Webhook jobs to hand to the delivery worker once the lock is released.
    pub outbox: Vec<Job>,
    /// Successful charges by id (one per succeeded PaymentIntent; dropped with its session).
    pub charges: HashMap<String, Charge>,
    pub refunds: HashMap<String, Refund>,
    /// Refund ids, oldest first.
    pub refund_order: VecDeque<String>,
    /// (due at, ms; refund id) of the scheduled refund moves; stale entries are skipped.
    pub refund_timers: BTreeSet<(i64, String)>,
    /// How long after creation a scheduled refund move happens (`SANDBOX_REFUND_SETTLE_MS`).
    pub refund_settle_ms: i64,
    /// Connected accounts by id (Connect), and their ids oldest first.
    pub accounts: HashMap<String, Account>,
    pub account_order: VecDeque<String>,
    /// Transfers to connected accounts by id, and their ids oldest first.
    pub transfers: HashMap<String, Transfer>,
    pub transfer_order: VecDeque<String>,
    /// Connected accounts' payouts by id, their ids oldest first, and their scheduled moves
    /// (due at, ms; payout id).
    pub payouts: HashMap<String, Payout>,
    pub payout_order: VecDeque<String>,
    pub payout_timers: BTreeSet<(i64, String)>,
    /// A payout goes `in_transit` half this long after creation, and is `paid` or `failed`
    /// (its bank account decides) this long after (`SANDBOX_PAYOUT_SETTLE_MS`).
    pub payout_settle_ms: i64,
    /// Report runs by id, their ids oldest first, and when the pending ones succeed (due at,
    /// ms; run id). A run succeeds `report_run_ms` after creation (`SANDBOX_REPORT_RUN_MS`).
    pub report_runs: HashMap<String, crate::reports::ReportRun>,
    pub report_run_order: VecDeque<String>,
    pub report_timers: BTreeSet<(i64, String)>,
    pub report_run_ms: i64,
    /// Files (a report run's CSV) by id, and their ids oldest first.
    pub files: HashMap<String, crate::reports::StoredFile>,
    pub file_order: VecDeque<String>,
}

/// Default of `SANDBOX_PAYOUT_SETTLE_MS`.
pub const PAYOUT_SETTLE_MS_DEFAULT: u64 = 1000;

/// Default of `SANDBOX_REFUND_SETTLE_MS`.
pub const REFUND_SETTLE_MS_DEFAULT: u64 = 1000;

pub fn push_bounded<T>(q: &mut VecDeque<T>, item: T) {
    if q.len() >= RECORDS_MAX {
        q.pop_front();
    }
    q.push_back(item);
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

impl State {
    pub fn new(webhook_secret: String) -> State {
        State {
            sessions: HashMap::new(),
            session_order: VecDeque::new(),
            intents: HashMap::new(),
            events: HashMap::new(),
            event_order: VecDeque::new(),
            endpoints: Vec::new(),
            idempotency: HashMap::new(),
            balance_txns: VecDeque::new(),
            account_txns: VecDeque::new(),
            requests: VecDeque::new(),
            deliveries: VecDeque::new(),
            faults: Faults::default(),
            webhook_secret,
            outbox: Vec::new(),
            charges: HashMap::new(),
            refunds: HashMap::new(),
            refund_order: VecDeque::new(),
            refund_timers: BTreeSet::new(),
            accounts: HashMap::new(),
            account_order: VecDeque::new(),
            transfers: HashMap::new(),
            transfer_order: VecDeque::new(),
            payouts: HashMap::new(),
            payout_order: VecDeque::new(),
            payout_timers: BTreeSet::new(),
            payout_settle_ms: PAYOUT_SETTLE_MS_DEFAULT as i64,
            refund_settle_ms: REFUND_SETTLE_MS_DEFAULT as i64,
            report_runs: HashMap::new(),
            report_run_order: VecDeque::new(),
            report_timers: BTreeSet::new(),
            report_run_ms: crate::reports::REPORT_RUN_MS_DEFAULT as i64,
            files: HashMap::new(),
            file_order: VecDeque::new(),
        }
    }

    pub fn insert_session(&mut self, session: Session, intent: PaymentIntent) {
        if self.session_order.len() >= SESSIONS_MAX {
            if let Some(old) = self.session_order.pop_front() {
                if let Some(s) = self.sessions.remove(&old) {
                    if let Some(pi) = self.intents.remove(&s.payment_intent) {
                        if let Some(ch) = pi.latest_charge {
                            self.charges.remove(&ch);
                        }
                    }
                }
            }
        }
        self.session_order.push_back(session.id.clone());
        self.intents.insert(intent.id.clone(), intent);
        self.sessions.insert(session.id.clone(), session);
    }

    // --- rendering -----------------------------------------------------------------------------

    pub fn line_items_json(&self, s: &Session) -> Value {
        let data: Vec<Value> = s
            .line_items
            .iter()
            .map(|li| {
                let total = li.unit_amount.saturating_mul(li.quantity);
                json!({
                    "id": li.id, "object": "item", "amount_discount": 0, "amount_subtotal": total,
                    "amount_tax": 0, "amount_total": total, "currency": li.currency,
                    "description": li.name, "quantity": li.quantity,
                    "price": {
                        "id": li.price_id, "object": "price", "active": false, "billing_scheme": "per_unit",
                        "created": s.created, "currency": li.currency, "livemode": false,
                        "metadata": {}, "nickname": null, "product": li.product_id, "recurring": null,
                        "tax_behavior": "unspecified", "type": "one_time", "unit_amount": li.unit_amount,
                        "unit_amount_decimal": li.unit_amount.to_string(),
                    },
                })
            })
            .collect();
        json!({
            "object": "list", "data": data, "has_more": false,
            "url": format!("/v1/checkout/sessions/{}/line_items", s.id),
        })
    }

    /// A Checkout Session in Stripe's shape; `expand` may hold `payment_intent`, `line_items`.
    pub fn session_json(&self, s: &Session, public_url: &str, expand: &[String]) -> Value {
        let url = match s.status {
            SessionStatus::Open => Value::String(format!("{public_url}/pay/{}", s.id)),
            _ => Value::Null,
        };
        let payment_intent = if expand.iter().any(|e| e == "payment_intent") {
            self.intents
                .get(&s.payment_intent)
                .map(|pi| self.intent_json(pi))
                .unwrap_or(Value::Null)
        } else {
            Value::String(s.payment_intent.clone())
        };
        let mut v = json!({
            "id": s.id, "object": "checkout.session",
            "after_expiration": null, "allow_promotion_codes": null,
            "amount_subtotal": s.amount_subtotal, "amount_total": s.amount_total,
            "automatic_tax": {"enabled": false, "liability": null, "status": null},
            "billing_address_collection": null, "cancel_url": opt(s.cancel_url.clone()),
            "client_reference_id": opt(s.client_reference_id.clone()), "client_secret": null,
            "consent": null, "consent_collection": null, "created": s.created, "currency": s.currency,
            "custom_fields": [], "custom_text": {"after_submit": null, "shipping_address": null,
                "submit": null, "terms_of_service_acceptance": null},
            "customer": null, "customer_creation": "if_required",
            "customer_details": match &s.customer_email {
                Some(e) if s.status == SessionStatus::Complete =>
                    json!({"address": null, "email": e, "name": null, "phone": null,
                           "tax_exempt": "none", "tax_ids": []}),
                _ => Value::Null,
            },
            "customer_email": opt(s.customer_email.clone()),
            "expires_at": s.expires_at, "invoice": null, "livemode": false, "locale": null,
            "metadata": s.metadata, "mode": "payment", "payment_intent": payment_intent,
            "payment_link": null, "payment_method_collection": "if_required",
            "payment_method_options": {}, "payment_method_types": s.payment_method_types,
            "payment_status": if s.paid { "paid" } else { "unpaid" },
            "phone_number_collection": {"enabled": false}, "recovered_from": null,
            "setup_intent": null, "shipping_address_collection": null, "shipping_cost": null,
            "shipping_details": null, "shipping_options": [], "status": s.status.as_str(),
            "submit_type": null, "subscription": null, "success_url": s.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted", "url": url,
        });
        if expand.iter().any(|e| e == "line_items") {
            v["line_items"] = self.line_items_json(s);
        }
        v
    }

    pub fn intent_json(&self, pi: &PaymentIntent) -> Value {
        json!({
            "id": pi.id, "object": "payment_intent", "amount": pi.amount,
            "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": pi.amount_received,
            "application": null, "application_fee_amount": null, "automatic_payment_methods": null,
            "canceled_at": opt(pi.canceled_at), "cancellation_reason": opt(pi.cancellation_reason),
            "capture_method": "automatic_async", "client_secret": pi.client_secret,
            "confirmation_method": "automatic", "created": pi.created, "currency": pi.currency,
            "customer": null, "description": opt(pi.description.clone()),
            "last_payment_error": pi.last_payment_error.clone().unwrap_or(Value::Null),
            "latest_charge": opt(pi.latest_charge.clone()), "livemode": false, "metadata": pi.metadata,
            "next_action": null, "on_behalf_of": null, "payment_method": opt(pi.payment_method.clone()),
            "payment_method_options": {}, "payment_method_types": pi.payment_method_types,
            "processing": null, "receipt_email": null, "review": null, "setup_future_usage": null,
            "shipping": null, "source": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": pi.status, "transfer_data": null,
            "transfer_group": null,
        })
    }

    pub fn endpoint_json(e: &Endpoint, with_secret: bool) -> Value {
        let mut v = json!({
            "id": e.id, "object": "webhook_endpoint", "api_version": opt(e.api_version.clone()),
            "application": null, "created": e.created, "description": opt(e.description.clone()),
            "enabled_events": e.enabled_events, "livemode": false, "metadata": e.metadata,
            "status": "enabled", "url": e.url,
        });
        if with_secret {
            v["secret"] = Value::String(e.secret.clone());
        }
        v
    }

    pub fn balance_txn_json(t: &BalanceTxn) -> Value {
        // Stripe charges no fee on a refund (nor gives one back): no fee line then.
        let fee_details = if t.kind == TXN_CHARGE {
            json!([{"amount": t.fee, "application": null, "currency": t.currency,
                    "description": "Stripe processing fees", "type": "stripe_fee"}])
        } else {
            json!([])
        };
        json!({
            "id": t.id, "object": "balance_transaction", "amount": t.amount,
            "available_on": t.available_on, "created": t.created, "currency": t.currency,
            "description": opt(t.description.clone()), "exchange_rate": null, "fee": t.fee,
            "fee_details": fee_details,
            "net": t.net, "reporting_category": reporting_category(t.kind),
            "source": if t.source.is_empty() { Value::Null } else { json!(t.source) },
            "status": if now() >= t.available_on { "available" } else { "pending" },
            "type": t.kind,
            // Sandbox extension (not in Stripe's object): what the charge paid for, or, on a
            // connected account, whose ledger it is and the transfer / reversal behind it.
            "sandbox": match &t.account {
                None => json!({"checkout_session": t.session_id,
                               "payment_intent": t.payment_intent_id, "charge": t.charge_id,
                               "client_reference_id": opt(t.client_reference_id.clone()),
                               "metadata": t.metadata}),
                Some(account) => json!({"account": account, "transfer": opt(t.transfer.clone()),
                                        "transfer_reversal": opt(t.transfer_reversal.clone()),
                                        "metadata": t.metadata}),
            },
        })
    }

    /// A balance transaction on connected account `account`'s ledger (`TXN_PAYMENT`,
    /// `TXN_PAYMENT_REFUND`, `TXN_PAYOUT`, `TXN_PAYOUT_FAILURE`): signed `amount`, no fee,
    /// available at once (the account's balance moves when it is written). Returns its id.
    pub fn account_txn(&mut self, new: AccountTxn<'_>) -> String {
        let created = now();
        let txn = BalanceTxn {
            id: new_id("txn_", 24),
            kind: new.kind,
            source: new.source.to_string(),
            account: Some(new.account.to_string()),
            transfer: new.transfer.map(str::to_string),
            transfer_reversal: new.transfer_reversal.map(str::to_string),
            amount: new.amount,
            fee: 0,
            net: new.amount,
            currency: new.currency.to_string(),
            created,
            available_on: created,
            charge_id: String::new(),
            payment_intent_id: String::new(),
            session_id: String::new(),
            client_reference_id: None,
            metadata: new.metadata.clone(),
            description: None,
        };
        let id = txn.id.clone();
        push_bounded(&mut self.account_txns, txn);
        id
    }

    /// The platform's available balance in `currency`: every balance transaction whose funds
    /// are available by now (charges net of fees once available, refunds, transfers and their
    /// reversals at once).
    pub fn platform_available(&self, currency: &str) -> i64 {
        let now = now();
        self.balance_txns
            .iter()
            .filter(|t| t.currency == currency && t.available_on <= now)
            .map(|t| t.net)
            .sum()
    }

    /// A platform balance transaction written by the admin API (`TXN_ADJUSTMENT`,
    /// `TXN_STRIPE_FEE`): signed `amount`, no fee, no source, available at once. Returns it.
    pub fn admin_txn(
        &mut self,
        kind: &'static str,
        amount: i64,
        currency: &str,
        description: Option<String>,
    ) -> BalanceTxn {
        let id = self.transfer_txn(kind, "", amount, currency, &BTreeMap::new());
        let t = self
            .balance_txns
            .iter_mut()
            .rev()
            .find(|t| t.id == id)
            .expect("just written");
        t.description = description;
        t.clone()
    }

    /// The platform's balance transaction of a transfer (`amount` negative) or of its reversal
    /// (positive): no fee, available at once. Returns its id.
    pub fn transfer_txn(
        &mut self,
        kind: &'static str,
        source: &str,
        amount: i64,
        currency: &str,
        metadata: &BTreeMap<String, String>,
    ) -> String {
        let created = now();
        let txn = BalanceTxn {
            id: new_id("txn_", 24),
            kind,
            source: source.to_string(),
            account: None,
            transfer: None,
            transfer_reversal: None,
            amount,
            fee: 0,
            net: amount,
            currency: currency.to_string(),
            created,
            available_on: created,
            charge_id: String::new(),
            payment_intent_id: String::new(),
            session_id: String::new(),
            client_reference_id: None,
            metadata: metadata.clone(),
            description: None,
        };
        let id = txn.id.clone();
        push_bounded(&mut self.balance_txns, txn);
        id
    }

    // --- events ----------------------------------------------------------------------------------

    /// Record an event and queue one delivery job per endpoint that wants it.
    pub fn emit(&mut self, event_type: &str, object: Value, api_version: &str, cause: &Cause) -> String {
        self.emit_for(None, event_type, object, api_version, cause)
    }

    /// An event about a connected account's object (Connect): its `account` is that account.
    pub fn emit_for(
        &mut self,
        account: Option<&str>,
        event_type: &str,
        object: Value,
        api_version: &str,
        cause: &Cause,
    ) -> String {
        let id = new_id("evt_", 24);
        let created = now();
        let targets: Vec<Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| e.wants(event_type))
            .cloned()
            .collect();
        let json = json!({
            "id": id, "object": "event", "account": account, "api_version": api_version,
            "created": created, "data": {"object": object}, "livemode": false,
            "pending_webhooks": targets.len(),
            "request": {"id": opt(cause.request_id.clone()),
                        "idempotency_key": opt(cause.idempotency_key.clone())},
            "type": event_type,
        });
        let body = json.to_string();
        if let Some(cs) = self.dropped_session(&json["data"]["object"]) {
            // Fault `drop_sessions`: recorded, never sent; `pending_webhooks` stays as it is
            // (as for an event whose deliveries all failed), so `delivery_success=false`.
            for e in &targets {
                push_bounded(
                    &mut self.deliveries,
                    json!({"event_id": id, "type": event_type, "endpoint": e.id, "url": e.url,
                           "attempt": 1, "duplicate": false, "signed_at": created, "late_by_s": 0,
                           "status": null, "ok": false, "at_ms": now_ms(),
                           "error": format!("dropped by fault injection (drop_sessions: {cs})")}),
                );
            }
        } else {
            self.queue_deliveries(&id, event_type, &targets, &body);
        }
        if self.event_order.len() >= RECORDS_MAX {
            if let Some(old) = self.event_order.pop_front() {
                self.events.remove(&old);
            }
        }
        self.event_order.push_back(id.clone());
        self.events.insert(
            id.clone(),
            StoredEvent {
                id: id.clone(),
                event_type: event_type.to_string(),
                created,
                json,
            },
        );
        id
    }

    fn queue_deliveries(&mut self, id: &str, event_type: &str, targets: &[Endpoint], body: &str) {
        for e in targets {
            self.outbox.push(Job {
                event_id: id.to_string(),
                event_type: event_type.to_string(),
                endpoint_id: e.id.clone(),
                url: e.url.clone(),
                secret: e.secret.clone(),
                body: body.to_string(),
                late_by_s: 0,
                copy: 0,
            });
        }
    }

    /// The Checkout Session (in fault `drop_sessions`) an event's object belongs to: the
    /// session itself, its PaymentIntent, or a charge of that PaymentIntent.
    fn dropped_session(&self, object: &Value) -> Option<String> {
        let drop = &self.faults.drop_sessions;
        if drop.is_empty() {
            return None;
        }
        let pi = match object["object"].as_str()? {
            "checkout.session" => {
                let id = object["id"].as_str()?;
                return drop.contains(id).then(|| id.to_string());
            }
            "payment_intent" => object["id"].as_str()?,
            "charge" => object["payment_intent"].as_str()?,
            _ => return None,
        };
        drop.iter()
            .find(|cs| self.sessions.get(*cs).is_some_and(|s| s.payment_intent == pi))
            .cloned()
    }

    pub fn delivered(&mut self, event_id: &str) {
        if let Some(e) = self.events.get_mut(event_id) {
            if let Some(n) = e.json["pending_webhooks"].as_u64() {
                e.json["pending_webhooks"] = json!(n.saturating_sub(1));
            }
        }
    }

    pub fn session_event(&mut self, event_type: &str, session_id: &str, public_url: &str, cause: &Cause) {
        let Some(s) = self.sessions.get(session_id) else {
            return;
        };
        let object = self.session_json(s, public_url, &[]);
        let version = s.api_version.clone();
        self.emit(event_type, object, &version, cause);
    }

    pub fn intent_event(&mut self, event_type: &str, session_id: &str, cause: &Cause) {
        let Some(s) = self.sessions.get(session_id) else {
            return;
        };
        let Some(pi) = self.intents.get(&s.payment_intent) else {
            return;
        };
        let object = self.intent_json(pi);
        let version = s.api_version.clone();
        self.emit(event_type, object, &version, cause);
    }

    // --- state changes ---------------------------------------------------------------------------

    /// Expire an open session (API call, sweep, or lapse): the session is `expired`, its
    /// PaymentIntent `canceled`, and `checkout.session.expired` is emitted. False if not open.
    pub fn expire_session(&mut self, session_id: &str, public_url: &str, cause: &Cause) -> bool {
        let Some(s) = self.sessions.get_mut(session_id) else {
            return false;
        };
        if s.status != SessionStatus::Open {
            return false;
        }
        s.status = SessionStatus::Expired;
        let t = now();
        if s.expires_at > t {
            s.expires_at = t;
        }
        let pi_id = s.payment_intent.clone();
        if let Some(pi) = self.intents.get_mut(&pi_id) {
            if pi.status == "requires_payment_method" {
                pi.status = "canceled";
                pi.canceled_at = Some(t);
                pi.cancellation_reason = Some("abandoned");
            }
        }
        self.session_event("checkout.session.expired", session_id, public_url, cause);
        true
    }

    /// A successful charge of the session's full amount: PaymentIntent `succeeded`, session
    /// `complete`/`paid`, the charge (refunds of it follow `flow`: the test card decides), one
    /// balance transaction. Returns the charge id.
    pub fn record_success(
        &mut self,
        session_id: &str,
        payment_method: &str,
        flow: RefundFlow,
        funds: Funds,
    ) -> Option<String> {
        let s = self.sessions.get_mut(session_id)?;
        s.status = SessionStatus::Complete;
        s.paid = true;
        let session = s.clone();
        let pi = self.intents.get_mut(&session.payment_intent)?;
        let charge_id = new_id("ch_", 24);
        pi.status = "succeeded";
        pi.amount_received = pi.amount;
        pi.last_payment_error = None;
        pi.latest_charge = Some(charge_id.clone());
        pi.payment_method = Some(payment_method.to_string());
        let created = now();
        let fee = fee_for(pi.amount, &pi.currency);
        let txn = BalanceTxn {
            id: new_id("txn_", 24),
            kind: TXN_CHARGE,
            source: charge_id.clone(),
            account: None,
            transfer: None,
            transfer_reversal: None,
            amount: pi.amount,
            fee,
            net: pi.amount - fee,
            currency: pi.currency.clone(),
            created,
            available_on: match funds {
                Funds::Pending => available_on(created),
                Funds::Available => created,
            },
            charge_id: charge_id.clone(),
            payment_intent_id: pi.id.clone(),
            session_id: session.id.clone(),
            client_reference_id: session.client_reference_id.clone(),
            metadata: session.metadata.clone(),
            description: pi.description.clone(),
        };
        let charge = Charge {
            id: charge_id.clone(),
            created,
            amount: pi.amount_received,
            currency: pi.currency.clone(),
            payment_intent_id: pi.id.clone(),
            payment_method: payment_method.to_string(),
            balance_transaction: txn.id.clone(),
            amount_refunded: 0,
            refunds: Vec::new(),
            flow,
            api_version: session.api_version.clone(),
            session_id: session.id.clone(),
            client_reference_id: session.client_reference_id.clone(),
            metadata: session.metadata.clone(),
            description: pi.description.clone(),
        };
        push_bounded(&mut self.balance_txns, txn);
        self.charges.insert(charge_id.clone(), charge);
        Some(charge_id)
    }
}

/// What [`State::account_txn`] writes.
pub struct AccountTxn<'a> {
    pub account: &'a str,
    pub kind: &'static str,
    pub source: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub metadata: &'a BTreeMap<String, String>,
    pub transfer: Option<&'a str>,
    pub transfer_reversal: Option<&'a str>,
}

/// Stripe's `reporting_category` of a balance transaction `type`: the platform's are their
/// own name but a transfer's reversal (`transfer_refund` → `transfer_reversal`); of a
/// connected account's, Stripe's reporting-categories guide folds `payment` into `charge` and
/// `payment_refund` into `refund`, and counts a failed payout as a `payout_reversal`.
pub fn reporting_category(kind: &'static str) -> &'static str {
    match kind {
        TXN_TRANSFER_REVERSAL => "transfer_reversal",
        TXN_PAYMENT => TXN_CHARGE,
        TXN_PAYMENT_REFUND => TXN_REFUND,
        TXN_PAYOUT_FAILURE => "payout_reversal",
        TXN_STRIPE_FEE => "fee",
        other => other,
    }
}

/// When a charge's funds join the available balance (the test card decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funds {
    /// Two days later ([`available_on`]), as for most cards.
    Pending,
    /// At once (Stripe's `4000000000000077`).
    Available,
}

/// Funds become available two days after the charge, at 00:00 UTC (Stripe's standard rolling
/// schedule, simplified to calendar days).
pub fn available_on(created: i64) -> i64 {
    let day = created.div_euclid(86_400);
    (day + 2) * 86_400
}

/// `2026-11-25 08:30:00` (the UTC timestamp format of Stripe's reports).
pub fn utc_text(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units_per_currency() {
        assert_eq!(format_minor(9999, "usd"), "99.99");
        assert_eq!(format_minor(5, "eur"), "0.05");
        assert_eq!(format_minor(1000, "jpy"), "1000");
        assert_eq!(format_minor(1234, "kwd"), "1.234");
        assert_eq!(format_minor(7, "BHD"), "0.007");
        assert_eq!(format_minor(-105, "usd"), "-1.05");
        assert_eq!(format_minor(i64::MIN, "usd"), "-92233720368547758.08");
    }

    #[test]
    fn half_even_rounding() {
        assert_eq!(div_round_half_even(5, 10), 0);
        assert_eq!(div_round_half_even(15, 10), 2);
        assert_eq!(div_round_half_even(25, 10), 2);
        assert_eq!(div_round_half_even(26, 10), 3);
        assert_eq!(div_round_half_even(24, 10), 2);
    }

    #[test]
    fn fees_are_two_point_nine_percent_plus_thirty() {
        // 9999 × 0.029 = 289.971 → 290, + 30.
        assert_eq!(fee_for(9999, "usd"), 320);
        // 1000 × 0.029 = 29 exactly.
        assert_eq!(fee_for(1000, "usd"), 59);
        // 500 × 0.029 = 14.5 → 14 (half to even); 1500 × 0.029 = 43.5 → 44.
        assert_eq!(fee_for(500, "usd"), 44);
        assert_eq!(fee_for(1500, "eur"), 74);
        // JPY: no minor unit, the fixed ¥0.30 rounds to 0: 10000 × 0.029 = 290.
        assert_eq!(fee_for(10_000, "jpy"), 290);
        // KWD: 3 decimals, fixed 0.300 = 300; 12345 × 0.029 = 358.005 → 358.
        assert_eq!(fee_for(12_345, "kwd"), 658);
        assert_eq!(fee_for(99_999_999, "usd"), 2_900_030);
    }

    #[test]
    fn ids_have_prefix_and_length() {
        let id = new_id("cs_test_", 58);
        assert!(id.starts_with("cs_test_"));
        assert_eq!(id.len(), 8 + 58);
        assert!(id[8..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_id("pi_", 24), new_id("pi_", 24));
    }

    #[test]
    fn available_two_days_later_at_midnight() {
        // 2026-11-25 08:30:00 UTC → 2026-11-27 00:00:00 UTC.
        let t = 1_795_595_400;
        assert_eq!(utc_text(t), "2026-11-25 08:30:00");
        assert_eq!(utc_text(available_on(t)), "2026-11-27 00:00:00");
    }
}
