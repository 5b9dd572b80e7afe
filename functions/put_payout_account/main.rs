//! Lambda `put_payout_account`: see `shared::adapters::lambda::routes::payouts::handle_put_payout_account`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_put_payout_account,
    shared::adapters::config::SellersEnv
);
