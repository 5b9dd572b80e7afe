//! Lambda `refund_executor`: refund queue → the PSP's refunds API, with the refund id as its
//! idempotency key. `shared::app::refunds::executor` in the SQS batch harness.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::dynamo::DynamoStore;
use shared::adapters::lambda::sqs_batch::{handle_batch, ConsumerEnv};
use shared::adapters::stripe::StripeClient;
use shared::app::refunds::executor::RefundExecutor;
shared::event_lambda!(
    ConsumerEnv<RefundExecutor<DynamoStore, StripeClient>>,
    |env, event| { handle_batch(env, event) }
);
