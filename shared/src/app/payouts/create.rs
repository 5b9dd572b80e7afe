//! `POST /v1/payouts`: validate, read the seller's payout account, and in one transaction claim the Idempotency-Key, create the payout (`PENDING`), hold its amount on
//! condition that the wallet still has it available, and write `PAYOUT_REQUESTED`. The `201`
//! is stored with the claim (the PSP is asked later, from the payout queue), so there is no
//! in-flight window.

use chrono::{DateTime, Utc};

use crate::api::payouts::{parse_payout_request, payout_view};
use crate::api::ApiError;
use crate::app::auth::Authority;
use crate::app::idempotent::{self, Claim, Command, Lease};
use crate::app::Reply;
use crate::domain::idempotency::{IdempotencyRecord, ResourceKind, ResourceRef};
use crate::domain::ids::PayoutId;
use crate::domain::outbox::OutboxEvent;
use crate::domain::payouts::Payout;
use crate::ports::{Begin, Claims, Payouts, Refusal, StoreError};

pub struct CreatePayout<'a> {
    /// The raw `Idempotency-Key` header's bytes, if any.
    pub idempotency_key: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The invocation's deadline: our lease on the key ends there.
    pub deadline_ms: i64,
}

pub async fn create_payout<S: Payouts + Claims>(
    store: &S,
    authority: Authority,
    input: CreatePayout<'_>,
) -> Result<Reply, ApiError> {
    let (claim, request) = Claim::parse(
        input.idempotency_key,
        input.body,
        parse_payout_request,
        |r| r.fingerprint(),
        input.now.timestamp_millis(),
        input.deadline_ms,
    )?;
    let account_id = &authority.caller().account_id;
    // The one read: where the money goes. Whether the wallet has it is decided by the hold's
    // condition in the creating transaction (a retry of a request that took it finds its
    // claim first, and its stored answer).
    let destination = store.payout_account(account_id, &request.seller_id).await?;
    let payout = Payout::open(
        PayoutId::generate(),
        account_id.clone(),
        &request,
        destination,
        false,
        input.now,
    )
    .map_err(|refusal| ApiError::from(Refusal::from(refusal)))?;
    let command = OpenPayout {
        store,
        now: input.now,
    };
    idempotent::run(store, &command, &authority, claim, payout).await
}

/// A payout, created with the claim.
struct OpenPayout<'a, S> {
    store: &'a S,
    now: DateTime<Utc>,
}

impl<S: Payouts + Claims> Command for OpenPayout<'_, S> {
    type Resource = Payout;

    fn reference(&self, payout: &Payout) -> ResourceRef {
        ResourceRef::payout(&payout.id)
    }

    fn answer_with_claim(&self, payout: &Payout) -> Option<Reply> {
        Some(Reply::json(201, &payout_view(payout)))
    }

    async fn begin(&self, record: &IdempotencyRecord, payout: &Payout) -> Result<Begin, StoreError> {
        let outbox = OutboxEvent::payout(payout, None, "request", self.now);
        let begun = self.store.begin_payout(record, payout, &outbox).await?;
        if begun == Begin::Created {
            tracing::info!(payout_id = %payout.id, seller_id = %payout.seller_id, amount = %payout.amount, "payout created");
        }
        Ok(begun)
    }

    async fn load(&self, reference: &ResourceRef) -> Result<Option<Payout>, StoreError> {
        match reference.kind {
            ResourceKind::Payout => match PayoutId::parse(&reference.id) {
                Ok(id) => self.store.get_payout(&id).await,
                Err(e) => Err(StoreError::Corrupt(format!(
                    "idempotency record names {reference}: {e}"
                ))),
            },
            ResourceKind::Checkout | ResourceKind::Refund | ResourceKind::ReconciliationBreak => Err(
                StoreError::Corrupt(format!("a payout's idempotency record names {reference}")),
            ),
        }
    }

    /// Only reached by a takeover, which a record written completed never needs: answers the
    /// payout as it is.
    async fn execute(&self, lease: &Lease, payout: Payout) -> Result<Reply, ApiError> {
        let reply = Reply::json(201, &payout_view(&payout));
        idempotent::complete(self.store, lease, &reply).await?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::Memory;
    use crate::app::Caller;
    use crate::domain::currency::Currency;
    use crate::domain::ids::{AccountId, ApiKeyId, SellerId};
    use crate::domain::invariants::WalletBalance;
    use crate::domain::psp::PspAccountId;

    fn caller() -> Caller {
        Caller {
            account_id: AccountId::parse("acct_a").unwrap(),
            key_id: ApiKeyId::generate(),
        }
    }

    async fn post(store: &Memory, caller: &Caller, key: &str, body: &str) -> Result<Reply, ApiError> {
        let now = Utc::now();
        create_payout(
            store,
            Authority::Checked(caller.clone()),
            CreatePayout {
                idempotency_key: Some(key.as_bytes()),
                body: body.as_bytes(),
                now,
                deadline_ms: now.timestamp_millis() + 10_000,
            },
        )
        .await
    }

    fn code(r: &Result<Reply, ApiError>) -> String {
        let e = r.as_ref().unwrap_err();
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }

    fn body(amount: &str) -> String {
        format!(r#"{{"seller_id":"s1","amount":"{amount}","currency":"USD"}}"#)
    }

    /// 100.00 owed to the seller, 30.00 of it held by a pending refund: 70.00 can go out, once,
    /// and nothing more.
    #[tokio::test]
    async fn a_payout_takes_only_what_is_available_once() {
        let (store, c) = (Memory::default(), caller());
        let seller = SellerId::parse("s1").unwrap();
        assert_eq!(
            code(&post(&store, &c, "k0", &body("1.00")).await),
            "payout_account_missing"
        );
        store
            .put_payout_account(
                &c.account_id,
                &seller,
                &PspAccountId::parse("acct_1S").unwrap(),
                Utc::now(),
            )
            .await
            .unwrap();
        assert_eq!(
            code(&post(&store, &c, "k0", &body("1.00")).await),
            "balance_insufficient",
            "no wallet"
        );
        store.wallets.lock().unwrap().push(WalletBalance {
            account_id: c.account_id.clone(),
            seller_id: seller.clone(),
            currency: Currency::parse("USD").unwrap(),
            balance_minor: 10_000,
            held_minor: 3_000,
            available_minor: 7_000,
        });
        let over = post(&store, &c, "k1", &body("70.01")).await;
        assert_eq!(code(&over), "balance_insufficient");
        assert!(
            over.unwrap_err().message.contains("70.00 USD"),
            "it says what is available"
        );

        let made = post(&store, &c, "k2", &body("70.00")).await.unwrap();
        assert_eq!((made.status, made.replayed), (201, false));
        let v: serde_json::Value = serde_json::from_str(&made.body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["amount"].as_str()),
            (Some("PENDING"), Some("70.00"))
        );
        let again = post(&store, &c, "k2", &body("70.00")).await.unwrap();
        assert_eq!(
            (again.replayed, &again.body),
            (true, &made.body),
            "replayed byte for byte"
        );
        assert_eq!(store.payouts.lock().unwrap().len(), 1);
        let w = store.wallets.lock().unwrap()[0].clone();
        assert_eq!((w.held_minor, w.available_minor), (10_000, 0));
        // Nothing left: refused by the store's own check, not only the read.
        assert_eq!(
            code(&post(&store, &c, "k3", &body("0.01")).await),
            "balance_insufficient"
        );
        let kinds: Vec<&str> = store
            .outbox
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.body.event_type())
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(kinds, ["PAYOUT_REQUESTED"]);
    }
}
