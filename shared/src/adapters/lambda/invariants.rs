//! The scheduled `check_invariants` Lambda.

use lambda_runtime::LambdaEvent;

use crate::adapters::config::FromEnv;
use crate::adapters::dynamo::invariants::InvariantStore;
use crate::adapters::dynamo::ledger::LedgerStore;
use crate::app::invariants::check_invariants;
use crate::domain::invariants::Report;

impl FromEnv for InvariantStore {
    async fn load() -> Result<Self, String> {
        Ok(InvariantStore {
            ledger: LedgerStore::load().await?,
            payments_table: crate::adapters::config::var("PAYMENTS_TABLE")?,
        })
    }
}

/// Reads everything and reports the invariants as JSON; a broken invariant is logged at error
/// level (alarm on it) and fails the invocation.
pub async fn handle_check_invariants(
    env: &InvariantStore,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<Report, lambda_runtime::Error> {
    let report = check_invariants(env).await?;
    if report.ok {
        tracing::info!(
            transactions = report.ledger_transactions,
            wallets = report.wallets,
            "invariants hold"
        );
        Ok(report)
    } else {
        tracing::error!(violations = ?report.violations, total = report.violations_total, "INVARIANT BROKEN");
        Err(format!(
            "{} invariant violation(s): {:?}",
            report.violations_total, report.violations
        )
        .into())
    }
}
