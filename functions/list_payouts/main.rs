//! Lambda `list_payouts`: see `shared::adapters::lambda::routes::payouts::handle_list_payouts`.
shared::http_lambda!(
    shared::adapters::lambda::routes::payouts::handle_list_payouts,
    shared::adapters::config::PayoutListEnv
);
