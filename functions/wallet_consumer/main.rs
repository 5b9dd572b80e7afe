//! Lambda `wallet_consumer`: wallet queue → each seller's balance, once per event.
//! `shared::app::consumers::wallet` in the SQS batch harness.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::dynamo::ledger::LedgerStore;
use shared::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
use shared::app::consumers::WalletConsumer;
shared::event_lambda!(ConsumerEnv<WalletConsumer<LedgerStore>>, |env, event| {
    handle_batch(env, event)
});
