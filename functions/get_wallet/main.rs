//! Lambda `get_wallet`: see `shared::adapters::http::handle_get_wallet`.
shared::http_lambda!(
    shared::adapters::http::handle_get_wallet,
    shared::adapters::config::LedgerApiEnv
);
