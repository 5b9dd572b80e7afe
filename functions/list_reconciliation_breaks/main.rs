//! Lambda `list_reconciliation_breaks`: see `shared::adapters::lambda::routes::reconciliation::handle_list_breaks`.
shared::http_lambda!(
    shared::adapters::lambda::routes::reconciliation::handle_list_breaks,
    shared::adapters::config::ReconListEnv
);
