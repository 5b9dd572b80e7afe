//! Refunds (design §8, §13, §14): `POST /v1/refunds` ([`create`]), the executor that asks the
//! PSP from the refund queue ([`executor`]), the moves the PSP's answers and webhooks make
//! ([`settle`]), and the reads ([`queries`]).

pub mod create;
pub mod executor;
pub mod queries;
pub mod settle;
pub mod webhook;
