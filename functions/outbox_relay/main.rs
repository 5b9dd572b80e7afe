//! Lambda `outbox_relay`: PaymentsTable stream (outbox records) → the ledger and wallet queues.
//! See `shared::adapters::events::handle_relay`.
shared::event_lambda!(shared::adapters::events::RelayEnv, |env, event| {
    shared::adapters::events::handle_relay(env, event)
});
