//! Lambda `get_ledger_account`: see `shared::adapters::lambda::routes::ledger::handle_get_ledger_account`.
shared::http_lambda!(
    shared::adapters::lambda::routes::ledger::handle_get_ledger_account,
    shared::adapters::config::LedgerApiEnv
);
