//! Lambda `checkout_complete`: see `shared::adapters::lambda::routes::pay_in::handle_checkout_complete`.
shared::http_lambda!(
    shared::adapters::lambda::routes::pay_in::handle_checkout_complete,
    shared::adapters::config::PublicEnv
);
