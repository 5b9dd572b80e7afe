//! Lambda `get_reconciliation_run`: see `shared::adapters::lambda::routes::reconciliation::handle_get_run`.
shared::http_lambda!(
    shared::adapters::lambda::routes::reconciliation::handle_get_run,
    shared::adapters::config::ReconApiEnv
);
