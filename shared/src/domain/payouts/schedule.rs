//! Scheduled payouts (design §4: "Finance team or automated scheduler triggers pay-out"): each
//! run pays out the whole available balance of every seller wallet that has a payout account
//! and at least the currency's minimum, once per seller, currency and period.
//!
//! - The period is the UTC day of the run's scheduled time: a second run the same day (a retry,
//!   a manual fire, a schedule more frequent than daily) creates nothing new. Its payouts are
//!   claimed under a record id derived from the account, seller, currency and day, through the
//!   same idempotency records the API's `Idempotency-Key`s use.
//! - A currency without a minimum (`PayoutMinimum`, e.g. `USD=25.00,EUR=25.00,JPY=2500`) is not
//!   paid out automatically.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::PayoutRequest;
use crate::domain::currency::Currency;
use crate::domain::ids::{AccountId, SellerId};
use crate::domain::money::Money;

/// How long an automatic payout's claim is kept after its period: a late re-run of an old
/// period still finds it.
pub const AUTOMATIC_CLAIM_KEPT_S: i64 = 8 * 24 * 60 * 60;

/// Per currency, the least available balance worth paying out automatically.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PayoutMinimums(BTreeMap<Currency, Money>);

impl PayoutMinimums {
    /// `USD=25.00,EUR=25.00,JPY=2500`: each amount exact in its currency and positive; each
    /// currency once.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (code, amount) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected CURRENCY=AMOUNT"))?;
            let currency = Currency::parse(code.trim()).map_err(|e| format!("{part:?}: {e}"))?;
            let money = Money::parse(amount.trim(), currency).map_err(|e| format!("{part:?}: {e}"))?;
            money
                .check_charge()
                .map_err(|e| format!("{part:?}: minimum {e}"))?;
            if out.insert(currency, money).is_some() {
                return Err(format!("{code} is given twice"));
            }
        }
        Ok(PayoutMinimums(out))
    }

    pub fn minimum(&self, currency: Currency) -> Option<Money> {
        self.0.get(&currency).copied()
    }
}

/// The UTC day a scheduled run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchedulePeriod(NaiveDate);

impl SchedulePeriod {
    pub fn of(time: DateTime<Utc>) -> Self {
        SchedulePeriod(time.date_naive())
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(SchedulePeriod)
            .map_err(|e| format!("period {s:?}: {e}"))
    }

    /// When its claims may be forgotten (epoch seconds).
    pub fn claims_expire_at_s(self) -> i64 {
        let end = self
            .0
            .succ_opt()
            .unwrap_or(self.0)
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0);
        end + AUTOMATIC_CLAIM_KEPT_S
    }
}

impl std::fmt::Display for SchedulePeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A seller's wallet in one currency as the scan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletCandidate {
    pub account_id: AccountId,
    pub seller_id: SellerId,
    pub currency: Currency,
    pub balance_minor: i64,
    pub held_minor: i64,
}

impl WalletCandidate {
    pub fn available_minor(&self) -> i64 {
        self.balance_minor.saturating_sub(self.held_minor)
    }

    /// The automatic payout this wallet is due: its whole available balance, if that is at
    /// least the currency's minimum.
    pub fn due(&self, minimums: &PayoutMinimums) -> Option<PayoutRequest> {
        let minimum = minimums.minimum(self.currency)?;
        let available = self.available_minor();
        if available < minimum.minor() {
            return None;
        }
        let amount = Money::from_minor(available, self.currency);
        amount.check_charge().ok()?;
        Some(PayoutRequest {
            seller_id: self.seller_id.clone(),
            amount,
        })
    }
}

/// The automatic payout's claim: one per account, seller, currency and period. (API keys' ids
/// never start with `auto#`, so these never meet a request's `Idempotency-Key`.)
pub fn automatic_claim_id(
    account: &AccountId,
    seller: &SellerId,
    currency: Currency,
    period: SchedulePeriod,
) -> String {
    format!("auto#{account}#{seller}#{}#{period}", currency.code())
}

/// What the claim is for (the amount may differ between runs: it is not part of it).
pub fn automatic_fingerprint(seller: &SellerId, currency: Currency, period: SchedulePeriod) -> String {
    let text = format!("automatic payout\n{seller}\n{}\n{period}", currency.code());
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn wallet(balance: i64, held: i64, currency: &str) -> WalletCandidate {
        WalletCandidate {
            account_id: AccountId::parse("acct_a").unwrap(),
            seller_id: SellerId::parse("s1").unwrap(),
            currency: Currency::parse(currency).unwrap(),
            balance_minor: balance,
            held_minor: held,
        }
    }

    #[test]
    fn minimums_parse_exactly_and_refuse_nonsense() {
        let m = PayoutMinimums::parse("USD=25.00, JPY=2500,EUR=25").unwrap();
        assert_eq!(m.minimum(usd()), Some(Money::from_minor(2500, usd())));
        assert_eq!(m.minimum(Currency::parse("JPY").unwrap()).unwrap().minor(), 2500);
        assert_eq!(m.minimum(Currency::parse("GBP").unwrap()), None);
        assert_eq!(PayoutMinimums::parse("").unwrap(), PayoutMinimums::default());
        for bad in [
            "USD",
            "USD=1.001",
            "USD=0",
            "USD=-1",
            "XXX=1",
            "USD=1,USD=2",
            "JPY=1.5",
        ] {
            assert!(PayoutMinimums::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_whole_available_balance_is_due_from_the_minimum_on() {
        let m = PayoutMinimums::parse("USD=25.00").unwrap();
        // 97.50 owed, 30.00 held by a pending refund: 67.50 is due.
        let due = wallet(9_750, 3_000, "USD").due(&m).unwrap();
        assert_eq!(due.amount, Money::from_minor(6_750, usd()));
        assert!(wallet(2_500, 0, "USD").due(&m).is_some(), "the minimum itself");
        assert!(wallet(2_499, 0, "USD").due(&m).is_none(), "below it");
        assert!(wallet(5_000, 6_000, "USD").due(&m).is_none(), "nothing available");
        assert!(
            wallet(9_999, 0, "EUR").due(&m).is_none(),
            "no minimum: not automatic"
        );
    }

    #[test]
    fn one_claim_per_seller_currency_and_day() {
        let (a, s) = (
            AccountId::parse("acct_a").unwrap(),
            SellerId::parse("s1").unwrap(),
        );
        let morning = SchedulePeriod::of("2026-12-01T06:00:00Z".parse().unwrap());
        let evening = SchedulePeriod::of("2026-12-01T23:59:59Z".parse().unwrap());
        let next = SchedulePeriod::of("2026-12-02T00:00:00Z".parse().unwrap());
        assert_eq!(morning, evening);
        assert_eq!(
            automatic_claim_id(&a, &s, usd(), morning),
            "auto#acct_a#s1#USD#2026-12-01"
        );
        assert_ne!(
            automatic_claim_id(&a, &s, usd(), morning),
            automatic_claim_id(&a, &s, usd(), next)
        );
        assert_eq!(SchedulePeriod::parse("2026-12-01").unwrap(), morning);
        assert_eq!(
            morning.claims_expire_at_s(),
            "2026-12-02T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp()
                + AUTOMATIC_CLAIM_KEPT_S
        );
    }
}
