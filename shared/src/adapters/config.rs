//! What each function builds once at cold start, from the environment the template sets.
//! Missing configuration fails the cold start (an init error), never a request.

use std::future::Future;
use std::time::Duration;

use rust_decimal::Decimal;

use crate::adapters::aws::dynamodb_client;
use crate::adapters::dynamo::cursor::Cursors;
use crate::adapters::dynamo::ledger::{LedgerReads, LedgerStore};
use crate::adapters::dynamo::refunds::RefundReads;
use crate::adapters::dynamo::{DynamoStore, Tables};
use crate::adapters::lambda::sqs_batch::ConsumerFromEnv;
use crate::adapters::sqs::SqsPublisher;
use crate::adapters::stripe::{RetryPolicy, StripeClient};
use crate::app::auth::CallerCache;
use crate::app::consumers::{LedgerConsumer, WalletConsumer};
use crate::app::payouts::executor::PayoutExecutor;
use crate::app::payouts::schedule::PayoutScheduler;
use crate::app::refunds::executor::RefundExecutor;
use crate::domain::payouts::schedule::PayoutMinimums;
use crate::domain::rate_limit::RateLimit;
use crate::domain::refunds::FeePolicy;
use crate::ports::Destination;

/// Built once per cold start.
pub trait FromEnv: Sized + Send + Sync + 'static {
    fn load() -> impl Future<Output = Result<Self, String>> + Send;
}

pub fn var(name: &str) -> Result<String, String> {
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
    /// Whose API keys this warm instance has seen (see `app::auth`).
    pub callers: CallerCache,
}

impl FromEnv for PaymentsEnv {
    async fn load() -> Result<PaymentsEnv, String> {
        Ok(PaymentsEnv {
            api: Env::load().await?,
            psp: psp_client()?,
            public_base_url: var("PUBLIC_BASE_URL")?,
            callers: CallerCache::default(),
        })
    }
}

/// `POST /v1/payouts`.
pub struct PayoutsEnv {
    pub api: Env,
    /// Whose API keys this warm instance has seen (see `app::auth`).
    pub callers: CallerCache,
}

impl FromEnv for PayoutsEnv {
    async fn load() -> Result<PayoutsEnv, String> {
        Ok(PayoutsEnv {
            api: Env::load().await?,
            callers: CallerCache::default(),
        })
    }
}

/// `GET /v1/payouts?seller_id=…`: the API and the list's sealed cursors.
pub struct PayoutListEnv {
    pub api: Env,
    pub reads: crate::adapters::dynamo::payouts::PayoutReads,
}

impl FromEnv for PayoutListEnv {
    async fn load() -> Result<PayoutListEnv, String> {
        let api = Env::load().await?;
        let reads = crate::adapters::dynamo::payouts::PayoutReads {
            store: api.store.clone(),
            cursors: cursors()?,
        };
        Ok(PayoutListEnv { api, reads })
    }
}

/// `PUT /v1/sellers/{seller_id}/payout_account`: the API and the PSP, which must know the
/// account.
pub struct SellersEnv {
    pub api: Env,
    pub psp: StripeClient,
}

impl FromEnv for SellersEnv {
    async fn load() -> Result<SellersEnv, String> {
        Ok(SellersEnv {
            api: Env::load().await?,
            psp: psp_client()?,
        })
    }
}

/// The PSP's webhook: no API key, authenticated by the signature.
pub struct WebhookEnv {
    pub store: DynamoStore,
    /// Comma-separated in `PSP_WEBHOOK_SECRET`, so a secret can be rotated without downtime.
    pub secrets: Vec<String>,
    /// The platform fee, fixed on each order as its payment succeeds.
    pub fee_rate: Decimal,
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
            fee_rate: fee_rate()?,
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

/// `create_refund`: the API, and who bears a refund.
pub struct RefundsEnv {
    pub api: Env,
    /// Whose API keys this warm instance has seen (see `app::auth`).
    pub callers: CallerCache,
    /// `REFUND_PLATFORM_FEE`: `proportional` (default) or `none`.
    pub policy: FeePolicy,
    pub fee_rate: Decimal,
}

impl FromEnv for RefundsEnv {
    async fn load() -> Result<RefundsEnv, String> {
        Ok(RefundsEnv {
            api: Env::load().await?,
            callers: CallerCache::default(),
            policy: refund_fee_policy()?,
            fee_rate: fee_rate()?,
        })
    }
}

/// `REFUND_PLATFORM_FEE`: who bears a refund (`proportional`, the default, or `none`).
pub fn refund_fee_policy() -> Result<FeePolicy, String> {
    std::env::var("REFUND_PLATFORM_FEE")
        .unwrap_or_else(|_| "proportional".into())
        .parse()
}

/// `GET /v1/refunds?payment_order_id=…`: the API and the list's sealed cursors.
pub struct RefundListEnv {
    pub api: Env,
    pub reads: RefundReads,
}

impl FromEnv for RefundListEnv {
    async fn load() -> Result<RefundListEnv, String> {
        let api = Env::load().await?;
        let reads = RefundReads {
            store: api.store.clone(),
            cursors: cursors()?,
        };
        Ok(RefundListEnv { api, reads })
    }
}

/// The PSP client with the retry policy from `PSP_ATTEMPT_TIMEOUT_MS` and `PSP_RETRY_BUDGET_MS`.
pub fn psp_client() -> Result<StripeClient, String> {
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(number("PSP_ATTEMPT_TIMEOUT_MS", 4_000)?),
        budget: Duration::from_millis(number("PSP_RETRY_BUDGET_MS", 12_000)?),
        ..RetryPolicy::default()
    };
    StripeClient::new(&var("PSP_API_BASE")?, &var("PSP_SECRET_KEY")?, policy)
}

impl ConsumerFromEnv for PayoutExecutor<DynamoStore, StripeClient> {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(PayoutExecutor {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(config), Tables::from_env()?),
            psp: psp_client()?,
        })
    }
}

/// The payout scheduler: its own queue (the rest of a scan), the minimums per currency
/// (`PAYOUT_MINIMUMS`, e.g. `USD=25.00,EUR=25.00`), the scan's parallel segments
/// (`PAYOUT_SCAN_SEGMENTS`, 1–64) and each invocation's scanning budget
/// (`PAYOUT_SCAN_BUDGET_MS`).
impl ConsumerFromEnv for PayoutScheduler<DynamoStore, SqsPublisher> {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        let segments = number("PAYOUT_SCAN_SEGMENTS", 4)?;
        if !(1..=64).contains(&segments) {
            return Err(format!("PAYOUT_SCAN_SEGMENTS must be 1 to 64, got {segments}"));
        }
        Ok(PayoutScheduler {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(config), Tables::from_env()?),
            queue: SqsPublisher {
                sqs: aws_sdk_sqs::Client::new(config),
                queues: vec![(Destination::PayoutScan, var("SOURCE_QUEUE_URL")?)],
            },
            minimums: PayoutMinimums::parse(&var("PAYOUT_MINIMUMS")?)
                .map_err(|e| format!("PAYOUT_MINIMUMS: {e}"))?,
            segments: segments as u32,
            budget: Duration::from_millis(number("PAYOUT_SCAN_BUDGET_MS", 600_000)?),
            page_size: 200,
        })
    }
}

impl ConsumerFromEnv for RefundExecutor<DynamoStore, StripeClient> {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(RefundExecutor {
            store: DynamoStore::new(aws_sdk_dynamodb::Client::new(config), Tables::from_env()?),
            psp: psp_client()?,
        })
    }
}

/// The wallet and ledger read APIs.
pub struct LedgerApiEnv {
    pub api: Env,
    pub ledger: LedgerReads,
}

impl FromEnv for LedgerApiEnv {
    async fn load() -> Result<LedgerApiEnv, String> {
        let api = Env::load().await?;
        let ledger = LedgerReads {
            store: LedgerStore::with_client(api.store.client.clone())?,
            cursors: cursors()?,
        };
        Ok(LedgerApiEnv { api, ledger })
    }
}

impl LedgerStore {
    /// The ledger, its running balances and the wallets, as the template names them.
    pub fn with_client(client: aws_sdk_dynamodb::Client) -> Result<Self, String> {
        Ok(LedgerStore {
            client,
            ledger_table: var("LEDGER_TABLE")?,
            wallets_table: var("WALLETS_TABLE")?,
            balances_table: var("LEDGER_BALANCES_TABLE")?,
        })
    }
}

/// `CURSOR_SECRET`: seals list cursors (see `adapters::dynamo::cursor`); at least 32
/// characters, so a deployment cannot run on a guessable one.
pub fn cursors() -> Result<Cursors, String> {
    let secret = var("CURSOR_SECRET")?;
    if secret.len() < CURSOR_SECRET_LEN_MIN {
        return Err(format!(
            "CURSOR_SECRET must be at least {CURSOR_SECRET_LEN_MIN} characters"
        ));
    }
    Ok(Cursors::new(&secret))
}

/// The shortest `CURSOR_SECRET` accepted.
pub const CURSOR_SECRET_LEN_MIN: usize = 32;

impl FromEnv for LedgerStore {
    async fn load() -> Result<Self, String> {
        LedgerStore::with_client(dynamodb_client().await)
    }
}

/// `PLATFORM_FEE_RATE`: an exact decimal between 0 and 1 (default 0.025).
pub fn fee_rate() -> Result<Decimal, String> {
    let rate: Decimal = std::env::var("PLATFORM_FEE_RATE")
        .unwrap_or_else(|_| "0.025".into())
        .parse()
        .map_err(|_| "PLATFORM_FEE_RATE must be a decimal such as 0.025")?;
    if rate < Decimal::ZERO || rate > Decimal::ONE {
        return Err("PLATFORM_FEE_RATE must be between 0 and 1".into());
    }
    Ok(rate)
}

impl ConsumerFromEnv for LedgerConsumer<LedgerStore> {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(LedgerConsumer {
            store: LedgerStore::with_client(aws_sdk_dynamodb::Client::new(config))?,
            fee_rate: fee_rate()?,
        })
    }
}

impl ConsumerFromEnv for WalletConsumer<LedgerStore> {
    async fn load(config: &aws_config::SdkConfig) -> Result<Self, String> {
        Ok(WalletConsumer {
            store: LedgerStore::with_client(aws_sdk_dynamodb::Client::new(config))?,
            fee_rate: fee_rate()?,
        })
    }
}

/// The reconciliation table as the template names it (`RECONCILIATION_TABLE`).
fn recon_table(
    store: &DynamoStore,
) -> Result<crate::adapters::dynamo::reconciliation_api::ReconTable, String> {
    Ok(crate::adapters::dynamo::reconciliation_api::ReconTable {
        store: store.clone(),
        table: var("RECONCILIATION_TABLE")?,
    })
}

/// `GET /v1/reconciliation/runs/{run_id}`, `GET /v1/reconciliation/breaks/{break_id}` and
/// `POST /v1/reconciliation/breaks/{break_id}/resolve`: the API and the reconciliation table.
pub struct ReconApiEnv {
    pub api: Env,
    pub recon: crate::adapters::dynamo::reconciliation_api::ReconTable,
    /// Whose API keys this warm instance has seen (see `app::auth`).
    pub callers: CallerCache,
}

impl FromEnv for ReconApiEnv {
    async fn load() -> Result<ReconApiEnv, String> {
        let api = Env::load().await?;
        let recon = recon_table(&api.store)?;
        Ok(ReconApiEnv {
            api,
            recon,
            callers: CallerCache::default(),
        })
    }
}

/// `GET /v1/reconciliation/runs` and `GET /v1/reconciliation/breaks`: the API, the table and
/// the lists' sealed cursors.
pub struct ReconListEnv {
    pub api: Env,
    pub reads: crate::adapters::dynamo::reconciliation_api::ReconListReads,
}

impl FromEnv for ReconListEnv {
    async fn load() -> Result<ReconListEnv, String> {
        let api = Env::load().await?;
        let reads = crate::adapters::dynamo::reconciliation_api::ReconListReads {
            table: recon_table(&api.store)?,
            cursors: cursors()?,
        };
        Ok(ReconListEnv { api, reads })
    }
}
