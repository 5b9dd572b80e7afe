//! Lambda `check_invariants` (scheduled): debits = credits, wallets = ledger, one ledger
//! transaction per successful payment order, no checkout charged twice.
//! See `shared::adapters::events::handle_check_invariants`; locally `make check`.
shared::event_lambda!(shared::adapters::events::InvariantsEnv, |env, event| {
    shared::adapters::events::handle_check_invariants(env, event)
});
