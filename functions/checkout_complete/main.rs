//! Lambda `checkout_complete`: see `shared::adapters::http::handle_checkout_complete`.
shared::http_lambda!(
    shared::adapters::http::handle_checkout_complete,
    shared::adapters::config::PublicEnv
);
