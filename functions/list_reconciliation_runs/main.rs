//! Lambda `list_reconciliation_runs`: see `shared::adapters::lambda::routes::reconciliation::handle_list_runs`.
shared::http_lambda!(
    shared::adapters::lambda::routes::reconciliation::handle_list_runs,
    shared::adapters::config::ReconListEnv
);
