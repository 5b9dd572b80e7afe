//! Lambda `get_wallet`: see `shared::adapters::lambda::routes::ledger::handle_get_wallet`.
shared::http_lambda!(
    shared::adapters::lambda::routes::ledger::handle_get_wallet,
    shared::adapters::config::LedgerApiEnv
);
