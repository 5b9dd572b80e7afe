//! Lambda `get_ledger_account`: see `shared::adapters::http::handle_get_ledger_account`.
shared::http_lambda!(
    shared::adapters::http::handle_get_ledger_account,
    shared::adapters::config::LedgerApiEnv
);
