//! The wallet and ledger read APIs.

pub mod queries;
