//! Lambda `get_payment`: see `shared::adapters::lambda::routes::pay_in::handle_get_payment`.
shared::http_lambda!(
    shared::adapters::lambda::routes::pay_in::handle_get_payment,
    shared::adapters::config::Env
);
