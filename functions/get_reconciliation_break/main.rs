//! Lambda `get_reconciliation_break`: see `shared::adapters::lambda::routes::reconciliation::handle_get_break`.
shared::http_lambda!(
    shared::adapters::lambda::routes::reconciliation::handle_get_break,
    shared::adapters::config::ReconApiEnv
);
