//! What each function builds once at cold start, from the environment the template sets.
//! Missing configuration fails the cold start (an init error), never a request.

use std::future::Future;
use std::time::Duration;

use crate::adapters::aws::dynamodb_client;
use crate::adapters::dynamo::{DynamoStore, Tables};
use crate::adapters::stripe::{RetryPolicy, StripeClient};
use crate::domain::rate_limit::RateLimit;

/// Built once per cold start.
pub trait FromEnv: Sized + Send + Sync + 'static {
    fn load() -> impl Future<Output = Result<Self, String>> + Send;
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("environment variable {name} is not set"))
}

fn number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a positive integer, got {v:?}")),
    }
}

async fn store() -> Result<DynamoStore, String> {
    Ok(DynamoStore::new(dynamodb_client().await, Tables::from_env()?))
}

/// Authenticated read/write API functions.
pub struct Env {
    pub store: DynamoStore,
    /// The default per-key limit (a key may carry its own).
    pub rate_limit: RateLimit,
}

impl FromEnv for Env {
    async fn load() -> Result<Env, String> {
        let rps = u32::try_from(number("RATE_LIMIT_RPS", 50)?).map_err(|_| "RATE_LIMIT_RPS too large")?;
        let burst =
            u32::try_from(number("RATE_LIMIT_BURST", 100)?).map_err(|_| "RATE_LIMIT_BURST too large")?;
        let rate_limit =
            RateLimit::new(rps, burst).ok_or("RATE_LIMIT_RPS and RATE_LIMIT_BURST must be at least 1")?;
        Ok(Env {
            store: store().await?,
            rate_limit,
        })
    }
}

/// `create_payment`: the API plus the payment executor's PSP client.
pub struct PaymentsEnv {
    pub api: Env,
    pub psp: StripeClient,
    /// Our public site (the completion page), where the PSP sends the buyer back.
    pub public_base_url: String,
}

impl FromEnv for PaymentsEnv {
    async fn load() -> Result<PaymentsEnv, String> {
        let policy = RetryPolicy {
            attempt_timeout: Duration::from_millis(number("PSP_ATTEMPT_TIMEOUT_MS", 4_000)?),
            budget: Duration::from_millis(number("PSP_RETRY_BUDGET_MS", 12_000)?),
            ..RetryPolicy::default()
        };
        Ok(PaymentsEnv {
            api: Env::load().await?,
            psp: StripeClient::new(&var("PSP_API_BASE")?, &var("PSP_SECRET_KEY")?, policy)?,
            public_base_url: var("PUBLIC_BASE_URL")?,
        })
    }
}

/// The PSP's webhook: no API key, authenticated by the signature.
pub struct WebhookEnv {
    pub store: DynamoStore,
    /// Comma-separated in `PSP_WEBHOOK_SECRET`, so a secret can be rotated without downtime.
    pub secrets: Vec<String>,
}

impl FromEnv for WebhookEnv {
    async fn load() -> Result<WebhookEnv, String> {
        let secrets: Vec<String> = var("PSP_WEBHOOK_SECRET")?
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(WebhookEnv {
            store: store().await?,
            secrets,
        })
    }
}

/// Public pages (the completion page): storage only.
pub struct PublicEnv {
    pub store: DynamoStore,
}

impl FromEnv for PublicEnv {
    async fn load() -> Result<PublicEnv, String> {
        Ok(PublicEnv {
            store: store().await?,
        })
    }
}

/// The wallet and ledger read APIs.
pub struct LedgerApiEnv {
    pub api: Env,
    pub ledger: crate::adapters::dynamo::ledger::LedgerStore,
}

impl FromEnv for LedgerApiEnv {
    async fn load() -> Result<LedgerApiEnv, String> {
        let api = Env::load().await?;
        let ledger = crate::adapters::dynamo::ledger::LedgerStore {
            client: api.store.client.clone(),
            ledger_table: var("LEDGER_TABLE")?,
            wallets_table: var("WALLETS_TABLE")?,
        };
        Ok(LedgerApiEnv { api, ledger })
    }
}
