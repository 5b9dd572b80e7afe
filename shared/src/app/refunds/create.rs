//! `POST /v1/refunds`: validate, read the order, and write the refund in one transaction with
//! its claim, the reservation on the order, the seller's hold and the `REFUND_REQUESTED`
//! outbox record. The PSP is asked later, by the refund executor, from the queue: the `201`
//! is known before anything is written, so it is stored with the claim.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::api::refunds::{parse_refund_request, refund_view};
use crate::api::ApiError;
use crate::app::auth::Authority;
use crate::app::idempotent::{self, Claim, Command, Lease};
use crate::app::Reply;
use crate::domain::idempotency::{IdempotencyRecord, ResourceKind, ResourceRef};
use crate::domain::ids::{PaymentOrderId, RefundId};
use crate::domain::ledger::platform_fee;
use crate::domain::money::Money;
use crate::domain::outbox::OutboxEvent;
use crate::domain::pay_in::PaymentOrder;
use crate::domain::refunds::{FeePolicy, Refund, RefundRefusal, Refundable};
use crate::ports::{Begin, Checkouts, Claims, Refunds, Refusal, StoreError};

pub struct CreateRefund<'a> {
    /// The raw `Idempotency-Key` header's bytes, if any.
    pub idempotency_key: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
    /// The invocation's deadline.
    pub deadline_ms: i64,
    /// Who bears a refund (`RefundPlatformFee`).
    pub policy: FeePolicy,
    /// The platform fee rate, for orders that succeeded before their fee was fixed on them.
    pub fee_rate: Decimal,
    /// Whether the PSP can carry an amount (Stripe wants three-decimal amounts to end in 0):
    /// checked here, so such a refund is a 400 now rather than a failure later.
    pub psp_carries: fn(Money) -> Result<(), String>,
}

pub async fn create_refund<S: Refunds + Checkouts + Claims>(
    store: &S,
    authority: Authority,
    input: CreateRefund<'_>,
) -> Result<Reply, ApiError> {
    let parsed = Claim::parse(
        input.idempotency_key,
        input.body,
        parse_refund_request,
        |r| r.fingerprint(),
        input.now.timestamp_millis(),
        input.deadline_ms,
    );
    let (claim, request) = parsed?;
    // The order: unknown and another account's are the same 404.
    let order = load_order(store, &request.payment_order_id, &authority).await?;
    let target = refundable(store, &order, input.fee_rate).await?;
    let refund = match Refund::open(RefundId::generate(), &target, &request, input.policy, input.now) {
        Ok(r) => r,
        // Nothing left, as read: if this is a retry of a request that took it all, its answer
        // is stored under the key; otherwise the refusal stands.
        Err(refusal @ RefundRefusal::NothingLeft { .. }) => {
            return idempotent::stored_answer_or(store, &authority, &claim, Refusal::from(refusal).into())
                .await
        }
        Err(refusal) => return Err(Refusal::from(refusal).into()),
    };
    if let Err(why) = (input.psp_carries)(refund.amount) {
        let e = ApiError::invalid_param(
            "amount",
            "amount_not_supported",
            format!("amount {} {}: {why}", refund.amount, refund.amount.currency()),
        );
        return Err(e);
    }
    let command = OpenRefund {
        store,
        now: input.now,
    };
    idempotent::run(store, &command, &authority, claim, refund).await
}

async fn load_order<S: Checkouts>(
    store: &S,
    id: &PaymentOrderId,
    authority: &Authority,
) -> Result<PaymentOrder, ApiError> {
    let missing = || ApiError::not_found("payment order", id.as_str()).with_param("payment_order_id");
    match store.get_payment_order(id).await? {
        Some(order) if order.account_id == authority.caller().account_id => Ok(order),
        _ => Err(missing()),
    }
}

/// The order with what a refund needs from its checkout: the charge and the fee.
async fn refundable<'a, S: Checkouts>(
    store: &S,
    order: &'a PaymentOrder,
    fee_rate: Decimal,
) -> Result<Refundable<'a>, ApiError> {
    let payment_intent = match &order.payment_intent {
        Some(pi) => Some(pi.clone()),
        // Orders settled before the charge was copied onto them: their checkout has it.
        None => store
            .get_checkout(&order.checkout_id)
            .await?
            .and_then(|(c, _)| c.payment_intent),
    };
    let Some(payment_intent) = payment_intent else {
        // A SUCCESS order always has its charge; any other is refused by `Refund::open`.
        return Err(match order.status {
            crate::domain::PaymentStatus::Success => {
                tracing::error!(payment_order_id = %order.id, "a successful order without its PSP charge");
                ApiError::internal()
            }
            status => Refusal::from(RefundRefusal::NotRefundable {
                id: order.id.clone(),
                status,
            })
            .into(),
        });
    };
    let fee = match order.fee {
        Some(fee) => fee,
        None => platform_fee(order.amount, fee_rate).map_err(|e| {
            tracing::error!(error = %e, "platform fee");
            ApiError::internal()
        })?,
    };
    Ok(Refundable {
        order,
        payment_intent,
        fee,
    })
}

/// A refund, created with the claim.
struct OpenRefund<'a, S> {
    store: &'a S,
    now: DateTime<Utc>,
}

impl<S: Refunds + Claims> Command for OpenRefund<'_, S> {
    type Resource = Refund;

    fn reference(&self, refund: &Refund) -> ResourceRef {
        ResourceRef::refund(&refund.id)
    }

    fn answer_with_claim(&self, refund: &Refund) -> Option<Reply> {
        Some(Reply::json(201, &refund_view(refund)))
    }

    async fn begin(&self, record: &IdempotencyRecord, refund: &Refund) -> Result<Begin, StoreError> {
        let outbox = OutboxEvent::refund(refund, None, "request", self.now);
        let begun = self.store.begin_refund(record, refund, &outbox).await?;
        if begun == Begin::Created {
            tracing::info!(refund_id = %refund.id, payment_order_id = %refund.payment_order_id, amount = %refund.amount, "refund created");
        }
        Ok(begun)
    }

    async fn load(&self, reference: &ResourceRef) -> Result<Option<Refund>, StoreError> {
        match reference.kind {
            ResourceKind::Refund => match RefundId::parse(&reference.id) {
                Ok(id) => self.store.get_refund(&id).await,
                Err(e) => Err(StoreError::Corrupt(format!(
                    "idempotency record names {reference}: {e}"
                ))),
            },
            ResourceKind::Checkout | ResourceKind::Payout | ResourceKind::ReconciliationBreak => Err(
                StoreError::Corrupt(format!("a refund's idempotency record names {reference}")),
            ),
        }
    }

    /// Only reached by a takeover, which a record written completed never needs: answers the
    /// refund as it is.
    async fn execute(&self, lease: &Lease, refund: Refund) -> Result<Reply, ApiError> {
        let reply = Reply::json(201, &refund_view(&refund));
        idempotent::complete(self.store, lease, &reply).await?;
        Ok(reply)
    }
}
