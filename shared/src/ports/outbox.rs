//! Where the relay publishes outbox events.

use std::future::Future;

/// A queue that consumes outbox events. The relay routes each event kind to the ones that
/// need it (`app::relay::destinations`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Ledger,
    Wallet,
    /// The refund executor's queue.
    Refund,
    /// The payout executor's queue.
    Payout,
    /// The payout scheduler's own queue: the rest of a scan it hands off.
    PayoutScan,
}

impl Destination {
    /// Where the outbox relay routes events.
    pub const ALL: [Destination; 4] = [
        Destination::Ledger,
        Destination::Wallet,
        Destination::Refund,
        Destination::Payout,
    ];
}

/// One event as published: its body verbatim, and the attributes consumers and operators
/// filter on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub event_id: String,
    pub event_type: &'static str,
    pub body: String,
}

pub trait Publisher: Send + Sync {
    /// Publishes `messages` (in no promised order: standard queues keep none either); the
    /// index of the first that failed, if any (everything from there on must be published
    /// again).
    fn publish(
        &self,
        destination: Destination,
        messages: &[Outgoing],
    ) -> impl Future<Output = Option<usize>> + Send;
}
