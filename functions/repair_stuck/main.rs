//! Lambda `repair_stuck`: on its schedule, the PSP's undelivered events and the checkouts,
//! refunds and payouts stuck waiting on the PSP, applied through the webhook's code. See
//! `shared::adapters::lambda::repair`.
use shared::adapters::lambda::repair::{handle_repair, RepairEnv};
shared::event_lambda!(RepairEnv, |env, event| handle_repair(env, event));
