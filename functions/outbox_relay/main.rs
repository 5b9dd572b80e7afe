//! Lambda `outbox_relay`: PaymentsTable stream (outbox records) → the queues each event kind
//! needs. See `shared::adapters::lambda::relay` and `shared::app::relay`.
use shared::adapters::lambda::relay::{handle_relay, RelayEnv};
shared::event_lambda!(RelayEnv, |env, event| handle_relay(env, event));
