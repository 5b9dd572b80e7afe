//! Lambda `resolve_reconciliation_break`: see `shared::adapters::lambda::routes::reconciliation::handle_resolve_break`.
shared::http_lambda!(
    shared::adapters::lambda::routes::reconciliation::handle_resolve_break,
    shared::adapters::config::ReconApiEnv
);
