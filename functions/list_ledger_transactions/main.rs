//! Lambda `list_ledger_transactions`: see `shared::adapters::lambda::routes::ledger::handle_list_ledger_transactions`.
shared::http_lambda!(
    shared::adapters::lambda::routes::ledger::handle_list_ledger_transactions,
    shared::adapters::config::LedgerApiEnv
);
