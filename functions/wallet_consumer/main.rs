//! Lambda `wallet_consumer`: wallet queue → each seller's balance, once per event.
//! See `shared::adapters::events::handle_consumer`.
use shared::adapters::events::{handle_consumer, Consumer, ConsumerEnv};
shared::event_lambda!(ConsumerEnv, |env, event| handle_consumer(
    env,
    Consumer::Wallet,
    event
));
