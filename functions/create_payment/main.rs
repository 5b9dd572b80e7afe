//! Lambda `create_payment`: see `shared::adapters::http::handle_create_payment`.
shared::http_lambda!(
    shared::adapters::http::handle_create_payment,
    shared::adapters::config::PaymentsEnv
);
