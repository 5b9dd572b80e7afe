//! Lambda `cancel_payout`: see `shared::adapters::lambda::routes::payouts::handle_cancel_payout`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_cancel_payout,
    shared::adapters::config::Env
);
