//! Thin adapters: the AWS SDK clients, DynamoDB, SQS, the PSP client (Stripe's wire format) and
//! the Lambda glue (API Gateway, SQS batches, DynamoDB streams, schedules).

pub mod aws;
pub mod config;
pub mod dynamo;
pub mod lambda;
pub mod s3;
pub mod sqs;
pub mod stripe;
