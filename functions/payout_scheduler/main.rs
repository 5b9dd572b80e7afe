//! Lambda `payout_scheduler`: on its `Schedule`, automatic payouts of every seller wallet due
//! one; the scan tasks it hands off come back through its own queue. See
//! `shared::app::payouts::schedule` and `shared::adapters::lambda::scheduler`.
// The SDK's nested futures inside the batch harness are deeper than rustc's default layout limit.
#![recursion_limit = "256"]
use shared::adapters::lambda::scheduler::{handle_scheduler, SchedulerEnv};
shared::event_lambda!(SchedulerEnv, |env, event| handle_scheduler(env, event));
