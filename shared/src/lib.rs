//! The payment system's shared code.
//!
//! - [`domain`]: money, currencies, ids, the payment state machine, request validation,
//!   idempotency and rate-limit rules. Pure: no I/O, no AWS types.
//! - [`ports`]: the storage capabilities the use cases need.
//! - [`app`]: the use cases, written against the ports.
//! - [`adapters`]: DynamoDB, AWS SDK configuration, API Gateway glue.

pub mod adapters;
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
