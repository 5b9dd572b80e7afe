//! Lambda `get_checkout`: see `shared::adapters::http::handle_get_checkout`.
shared::http_lambda!(
    shared::adapters::http::handle_get_checkout,
    shared::adapters::config::Env
);
