//! The outbox relay (design §15): every outbox record of a stream batch goes to the queues its
//! kind needs, in order. A record that cannot be read is never skipped: it fails, so the
//! stream hands it back and, after its retries, Lambda sends it to the on-failure destination
//! (its reason is in the log, with its sequence number).

use crate::domain::outbox::{OutboxBody, OutboxEvent};
use crate::ports::{Destination, Outgoing, Publisher};

/// One outbox record of a stream batch, as read from its image.
#[derive(Debug, Clone)]
pub struct OutboxRecord {
    /// The stream's sequence number: what a partial batch failure names.
    pub sequence: Option<String>,
    /// The event and its payload verbatim, or why the record cannot be relayed.
    pub event: Result<(OutboxEvent, String), String>,
}

/// The queues an event kind goes to. Exhaustive: a new kind must say where it goes.
pub fn destinations(body: &OutboxBody) -> &'static [Destination] {
    match body {
        OutboxBody::PaymentSucceeded(_) => &[Destination::Ledger, Destination::Wallet],
        // Nothing was charged: nothing to book, no wallet moves. The record stays in the
        // payments table (and in reconciliation's view); no consumer needs it.
        OutboxBody::PaymentFailed(_) => &[],
        // The executor asks the PSP.
        OutboxBody::RefundRequested(_) => &[Destination::Refund],
        // Money moved: book it, and move the wallet (its hold goes too).
        OutboxBody::RefundSucceeded(_) | OutboxBody::RefundReversed(_) => {
            &[Destination::Ledger, Destination::Wallet]
        }
        // Nothing moved: only the hold is released.
        OutboxBody::RefundFailed(_) => &[Destination::Wallet],
        // The executor sends it.
        OutboxBody::PayoutRequested(_) => &[Destination::Payout],
        // Nothing was sent: only the hold is released.
        OutboxBody::PayoutCanceled(_) | OutboxBody::PayoutRefused(_) => &[Destination::Wallet],
        // The transfer posts, and the hold becomes a debit of the balance.
        OutboxBody::PayoutSent(_) => &[Destination::Ledger, Destination::Wallet],
        // The bank has it: nothing moves on our books.
        OutboxBody::PayoutPaid(_) => &[],
        // The bank sent it back to the seller's connected account: the executor reverses the
        // transfer.
        OutboxBody::PayoutFailed(_) => &[Destination::Payout],
        // The transfer is reversed: the reversal posts, and the money is available again.
        OutboxBody::PayoutReturned(_) => &[Destination::Ledger, Destination::Wallet],
    }
}

/// Publishes the batch; the index of the first record that must come again, if any (Lambda
/// retries from it, so what was already sent after it is sent twice, which every consumer
/// makes harmless).
pub async fn relay<P: Publisher>(publisher: &P, records: &[OutboxRecord]) -> Option<usize> {
    let mut first_failed: Option<usize> = None;
    // Per destination: the messages routed there and the batch index of each.
    let mut routed: Vec<(Destination, Vec<usize>, Vec<Outgoing>)> = Destination::ALL
        .iter()
        .map(|d| (*d, Vec::new(), Vec::new()))
        .collect();
    for (i, record) in records.iter().enumerate() {
        match &record.event {
            Ok((event, payload)) => {
                for d in destinations(&event.body) {
                    if let Some((_, indexes, messages)) = routed.iter_mut().find(|(x, _, _)| x == d) {
                        indexes.push(i);
                        messages.push(Outgoing {
                            event_id: event.event_id().to_owned(),
                            event_type: event.body.event_type(),
                            body: payload.clone(),
                        });
                    }
                }
            }
            Err(reason) => {
                tracing::error!(sequence = ?record.sequence, reason = %reason, "outbox record cannot be relayed; failing it");
                first_failed = Some(first_failed.map_or(i, |f| f.min(i)));
            }
        }
    }
    let sent =
        futures_util::future::join_all(routed.iter().filter(|(_, _, messages)| !messages.is_empty()).map(
            |(d, indexes, messages)| async move { publisher.publish(*d, messages).await.map(|j| indexes[j]) },
        ))
        .await;
    for failed in sent.into_iter().flatten() {
        first_failed = Some(first_failed.map_or(failed, |f| f.min(failed)));
    }
    let relayed = first_failed.unwrap_or(records.len());
    for record in &records[..relayed] {
        if let Ok((event, _)) = &record.event {
            tracing::info!(event_id = %event.event_id(), event_type = event.body.event_type(), "outbox event relayed");
        }
    }
    first_failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{paid_event, Memory};
    use crate::domain::outbox::OutboxBody;

    fn record(seq: &str, event: OutboxEvent) -> OutboxRecord {
        let payload = event.to_json();
        OutboxRecord {
            sequence: Some(seq.into()),
            event: Ok((event, payload)),
        }
    }

    fn failed(mut e: OutboxEvent) -> OutboxEvent {
        e.body = match e.body {
            OutboxBody::PaymentSucceeded(p) | OutboxBody::PaymentFailed(p) => OutboxBody::PaymentFailed(p),
            other => other,
        };
        e
    }

    #[tokio::test]
    async fn each_kind_goes_where_it_is_needed_in_order() {
        let store = Memory::default();
        let (a, b, c) = (
            paid_event("evt_a"),
            failed(paid_event("evt_b")),
            paid_event("evt_c"),
        );
        let batch = [record("1", a.clone()), record("2", b), record("3", c.clone())];
        assert_eq!(relay(&store, &batch).await, None);
        let published = store.published.lock().unwrap().clone();
        for d in [Destination::Ledger, Destination::Wallet] {
            let ids: Vec<&str> = published
                .iter()
                .filter(|(to, _)| *to == d)
                .map(|(_, m)| m.event_id.as_str())
                .collect();
            assert_eq!(
                ids,
                [a.event_id(), c.event_id()],
                "{d:?}: a failed payment goes nowhere"
            );
        }
        let (_, first) = &published[0];
        assert_eq!(first.event_type, "PAYMENT_SUCCEEDED");
        assert_eq!(first.body, a.to_json(), "the payload verbatim");
    }

    #[tokio::test]
    async fn an_unreadable_record_fails_it_and_nothing_is_skipped() {
        let store = Memory::default();
        let batch = [
            record("1", paid_event("evt_a")),
            OutboxRecord {
                sequence: Some("2".into()),
                event: Err("payload is not an outbox event".into()),
            },
            record("3", paid_event("evt_c")),
        ];
        assert_eq!(
            relay(&store, &batch).await,
            Some(1),
            "Lambda retries from the bad record"
        );
    }

    #[tokio::test]
    async fn a_failed_publish_reports_the_first_record_to_send_again() {
        let store = Memory::default();
        store
            .fail_publish_at
            .lock()
            .unwrap()
            .insert(Destination::Wallet, 1);
        let batch = [
            record("1", paid_event("evt_a")),
            record("2", paid_event("evt_b")),
            record("3", paid_event("evt_c")),
        ];
        assert_eq!(relay(&store, &batch).await, Some(1));
        // A failure on one queue names the earliest record any queue still needs.
        store
            .fail_publish_at
            .lock()
            .unwrap()
            .insert(Destination::Ledger, 0);
        assert_eq!(relay(&store, &batch).await, Some(0));
    }
}
