//! Lambda `get_payout`: see `shared::adapters::lambda::routes::payouts::handle_get_payout`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_get_payout,
    shared::adapters::config::Env
);
