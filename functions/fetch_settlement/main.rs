//! Lambda `fetch_settlement`: on its schedule, the PSP's itemized balance-change report for the
//! previous UTC day (Stripe's Reporting API), streamed to `psp/<account_id>/<date>.csv`, which
//! starts the reconciliation run. See `shared::adapters::lambda::fetch_settlement`.
use shared::adapters::lambda::fetch_settlement::{handle_fetch, FetchEnv};
shared::event_lambda!(FetchEnv, |env, event| handle_fetch(env, event));
