//! Lambda `list_refunds`: see `shared::adapters::lambda::routes::refunds::handle_list_refunds`.
shared::http_lambda!(
    shared::adapters::lambda::routes::refunds::handle_list_refunds,
    shared::adapters::config::RefundListEnv
);
