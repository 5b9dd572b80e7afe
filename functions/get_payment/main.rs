//! Lambda `get_payment`: see `shared::adapters::http::handle_get_payment`.
shared::http_lambda!(
    shared::adapters::http::handle_get_payment,
    shared::adapters::config::Env
);
