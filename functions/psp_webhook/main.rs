//! Lambda `psp_webhook`: see `shared::adapters::http::handle_psp_webhook`.
shared::http_lambda!(
    shared::adapters::http::handle_psp_webhook,
    shared::adapters::config::WebhookEnv
);
