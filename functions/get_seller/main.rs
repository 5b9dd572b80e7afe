//! Lambda `get_seller`: see `shared::adapters::lambda::routes::payouts::handle_get_seller`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_get_seller,
    shared::adapters::config::LedgerApiEnv
);
