//! Lambda `payout_executor`: payout queue → the PSP's transfer and the connected account's
//! payout, each idempotent by its key. `shared::app::payouts::executor` in the SQS batch harness.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
use shared::adapters::stripe::StripeClient;
use shared::app::payouts::executor::PayoutExecutor;
shared::event_lambda!(
    ConsumerEnv<PayoutExecutor<DynamoStore, StripeClient>>,
    |env, event| { handle_batch(env, event) }
);
