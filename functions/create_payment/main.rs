//! Lambda `create_payment`: see `shared::adapters::lambda::routes::pay_in::handle_create_payment`.
shared::http_lambda!(
    shared::adapters::lambda::routes::pay_in::handle_create_payment,
    shared::adapters::config::PaymentsEnv
);
