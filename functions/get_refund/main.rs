//! Lambda `get_refund`: see `shared::adapters::lambda::routes::refunds::handle_get_refund`.
shared::http_lambda!(
    shared::adapters::lambda::routes::refunds::handle_get_refund,
    shared::adapters::config::Env
);
