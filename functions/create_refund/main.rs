//! Lambda `create_refund`: see `shared::adapters::lambda::routes::refunds::handle_create_refund`.
shared::http_lambda!(
    shared::adapters::lambda::routes::refunds::handle_create_refund,
    shared::adapters::config::RefundsEnv
);
