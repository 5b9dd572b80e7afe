//! Lambda `psp_webhook`: see `shared::adapters::lambda::routes::pay_in::handle_psp_webhook`.
shared::http_lambda!(
    shared::adapters::lambda::routes::pay_in::handle_psp_webhook,
    shared::adapters::config::WebhookEnv
);
