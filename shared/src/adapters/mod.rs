//! Thin adapters: AWS SDK clients, DynamoDB, and API Gateway via lambda_http.

pub mod aws;
pub mod config;
pub mod dynamo;
pub mod events;
pub mod http;
pub mod stripe;
