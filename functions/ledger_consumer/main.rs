//! Lambda `ledger_consumer`: ledger queue → append-only double-entry transactions.
//! See `shared::adapters::events::handle_consumer`.
use shared::adapters::events::{handle_consumer, Consumer, ConsumerEnv};
shared::event_lambda!(ConsumerEnv, |env, event| handle_consumer(
    env,
    Consumer::Ledger,
    event
));
