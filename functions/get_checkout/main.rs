//! Lambda `get_checkout`: see `shared::adapters::lambda::routes::pay_in::handle_get_checkout`.
shared::http_lambda!(
    shared::adapters::lambda::routes::pay_in::handle_get_checkout,
    shared::adapters::config::Env
);
