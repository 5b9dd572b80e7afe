//! AWS SDK configuration, built once per cold start. Endpoints come from the standard
//! `AWS_ENDPOINT_URL_<SERVICE>` variables, so the same code talks to AWS or the local twin.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

pub async fn sdk_config() -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .load()
        .await
}

pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// Configuration for a known endpoint with static credentials: the local twin, its tests and
/// tools. Functions never call this; they use [`sdk_config`] and the standard variables.
pub async fn static_sdk_config(
    endpoint_url: &str,
    region: &str,
    access_key: &str,
    secret_key: &str,
) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .endpoint_url(endpoint_url)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            access_key, secret_key, None, None, "static",
        ))
        .load()
        .await
}
