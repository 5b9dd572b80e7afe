//! The payment system's shared code, layer first, then a folder or file per capability
//! (pay-in, ledger; refunds, payouts and reconciliation next):
//!
//! - [`domain`]: money, currencies, ids, the state machines, idempotency and rate-limit rules,
//!   the outbox's events, posting rules and invariants. Pure: no I/O, no AWS types.
//! - [`api`]: the HTTP contract: the error object, strict JSON bodies, the JSON views.
//! - [`ports`]: the capabilities the use cases need from storage, queues and the PSP.
//! - [`app`]: the use cases, written against the ports only.
//! - [`adapters`]: DynamoDB, SQS, the PSP client and the Lambda glue.

pub mod adapters;
pub mod api;
pub mod app;
pub mod domain;
pub mod ports;
pub mod telemetry;

/// Runs an HTTP Lambda: JSON logs, the environment built once, then one handler per request.
#[macro_export]
macro_rules! http_lambda {
    ($handler:path, $env:ty) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_http::Error> {
            $crate::telemetry::init();
            let env: &'static $env = Box::leak(Box::new(
                <$env as $crate::adapters::config::FromEnv>::load().await?,
            ));
            lambda_http::run(lambda_http::service_fn(
                move |req: lambda_http::Request| async move {
                    Ok::<_, std::convert::Infallible>($handler(env, req).await)
                },
            ))
            .await
        }
    };
}

/// Runs an event Lambda (streams, queues): JSON logs, the environment built once, then the
/// handler per batch.
#[macro_export]
macro_rules! event_lambda {
    ($env:ty, |$e:ident, $event:ident| $body:expr) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_runtime::Error> {
            $crate::telemetry::init();
            let env: &'static $env = Box::leak(Box::new(
                <$env as $crate::adapters::config::FromEnv>::load().await?,
            ));
            lambda_runtime::run(lambda_runtime::service_fn(move |$event| {
                let $e = env;
                async move { $body.await }
            }))
            .await
        }
    };
}
