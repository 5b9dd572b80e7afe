//! Lambda `list_ledger_transactions`: see `shared::adapters::http::handle_list_ledger_transactions`.
shared::http_lambda!(
    shared::adapters::http::handle_list_ledger_transactions,
    shared::adapters::config::LedgerApiEnv
);
