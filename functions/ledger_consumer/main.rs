//! Lambda `ledger_consumer`: ledger queue → append-only double-entry transactions and their
//! accounts' running totals. `shared::app::consumers::ledger` in the SQS batch harness.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::dynamo::ledger::LedgerStore;
use shared::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
use shared::app::consumers::LedgerConsumer;
shared::event_lambda!(ConsumerEnv<LedgerConsumer<LedgerStore>>, |env, event| {
    handle_batch(env, event)
});
