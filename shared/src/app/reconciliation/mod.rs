//! Reconciliation use cases: a settlement file's run ([`run`]) and the repair of webhooks that
//! never arrived ([`repair`]).

pub mod queries;
pub mod repair;
pub mod resolve;
pub mod run;

pub use repair::{RepairSummary, Repairer, StuckRepair, WebhookRepair};
pub use run::{Reconciler, RunOutcome};
