//! Lambda `reconcile_settlement`: a settlement file under `psp/<account_id>/` (S3 →
//! ReconcileQueue) → one reconciliation run. `shared::app::reconciliation` in the SQS batch
//! harness.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::lambda::reconcile::ReconcileConsumer;
use shared::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
shared::event_lambda!(ConsumerEnv<ReconcileConsumer>, |env, event| {
    handle_batch(env, event)
});
