//! Pay-in routes: `POST /v1/payments`, `GET /v1/payments/{id}`, `GET /v1/checkouts/{id}`, the
//! PSP's webhook and the completion page.

use lambda_http::{Body, Request, RequestExt, Response};

use crate::adapters::config::{Env, PaymentsEnv, PublicEnv, WebhookEnv};
use crate::adapters::lambda::http::{
    authenticate, body_bytes, check_json_content_type, check_size, deadline_ms, header, header_bytes, now_us,
    path_param, respond,
};
use crate::adapters::stripe::events::parse_event;
use crate::api::ApiError;
use crate::app::auth::authenticated_post;
use crate::app::pay_in::create_payment::{create_payment, CreatePayment};
use crate::app::pay_in::queries;
use crate::app::pay_in::webhook::{anomaly, apply_webhook, VerifiedEvent};
use crate::domain::psp::{verify_signature, SIGNATURE_TOLERANCE_S};

pub async fn handle_create_payment(env: &PaymentsEnv, req: Request) -> Response<Body> {
    let result = async {
        check_size(&req)?;
        let (req, env) = (&req, env);
        authenticated_post(
            &env.api.store,
            &env.callers,
            header_bytes(req, "authorization"),
            env.api.rate_limit,
            now_us,
            |authority| async move {
                check_json_content_type(req)?;
                create_payment(
                    &env.api.store,
                    &env.psp,
                    authority,
                    CreatePayment {
                        idempotency_key: header_bytes(req, "idempotency-key"),
                        body: body_bytes(req),
                        now: chrono::Utc::now(),
                        deadline_ms: deadline_ms(req),
                        public_base_url: &env.public_base_url,
                    },
                )
                .await
            },
        )
        .await
    }
    .await;
    respond("create_payment", result)
}

pub async fn handle_get_payment(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_payment_order(&env.store, &caller, &path_param(&req, "payment_order_id")).await
    }
    .await;
    respond("get_payment", result)
}

pub async fn handle_get_checkout(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_checkout(&env.store, &caller, &path_param(&req, "checkout_id")).await
    }
    .await;
    respond("get_checkout", result)
}

/// `POST /webhooks/psp`: no API key; the signature over the raw body is the authentication.
/// A bad signature changes nothing (400). A verified event we cannot use is acknowledged (2xx)
/// and recorded as an anomaly; our own failures are 5xx so the PSP retries.
pub async fn handle_psp_webhook(env: &WebhookEnv, req: Request) -> Response<Body> {
    let result = async {
        check_size(&req)?;
        let body = body_bytes(&req);
        let now = chrono::Utc::now();
        verify_signature(
            header(&req, "stripe-signature"),
            body,
            &env.secrets,
            now.timestamp(),
            SIGNATURE_TOLERANCE_S,
        )
        .map_err(|e| ApiError::invalid("signature_invalid", format!("Webhook signature rejected: {e}")))?;
        match parse_event(body) {
            Ok((id, notice)) => {
                apply_webhook(&env.store, VerifiedEvent { id, notice }, env.fee_rate, now).await
            }
            Err(why) => {
                // Signed by the PSP but not something we understand: acknowledge and keep it.
                let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body));
                anomaly(
                    &env.store,
                    &format!("unparsed_{}", &digest[..32]),
                    "unparseable_event",
                    why,
                    None,
                    now,
                )
                .await
            }
        }
    }
    .await;
    respond("psp_webhook", result)
}

/// `GET /checkout/complete?checkout_id=…`: the buyer's landing page after the PSP.
pub async fn handle_checkout_complete(env: &PublicEnv, req: Request) -> Response<Body> {
    let query = req.query_string_parameters_ref().cloned().unwrap_or_default();
    let id = query.first("checkout_id").unwrap_or_default().to_owned();
    let cancelled = query.first("cancelled").is_some_and(|v| v == "true");
    let page = queries::completion_page(&env.store, &id, cancelled).await;
    respond("checkout_complete", Ok(page))
}
