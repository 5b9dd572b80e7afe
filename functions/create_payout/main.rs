//! Lambda `create_payout`: see `shared::adapters::lambda::routes::payouts::handle_create_payout`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_create_payout,
    shared::adapters::config::PayoutsEnv
);
