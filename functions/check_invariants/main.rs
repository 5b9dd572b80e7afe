//! Lambda `check_invariants` (scheduled): every ledger transaction balanced, debits = credits,
//! running totals = entries, wallets = ledger, one ledger transaction per successful payment
//! order, no checkout charged twice. See `shared::adapters::lambda::invariants`; locally
//! `make check`.
use shared::adapters::dynamo::invariants::InvariantStore;
use shared::adapters::lambda::invariants::handle_check_invariants;
shared::event_lambda!(InvariantStore, |env, event| handle_check_invariants(env, event));
