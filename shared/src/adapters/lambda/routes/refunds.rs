//! Refund routes: `POST /v1/refunds`, `GET /v1/refunds/{refund_id}`,
//! `GET /v1/refunds?payment_order_id=…`.

use lambda_http::{Body, Request, Response};

use crate::adapters::config::{Env, RefundListEnv, RefundsEnv};
use crate::adapters::lambda::http::{
    authenticate, body_bytes, check_json_content_type, check_size, deadline_ms, header_bytes, now_us,
    path_param, query_param, respond,
};
use crate::app::auth::authenticated_post;
use crate::app::refunds::create::{create_refund, CreateRefund};
use crate::app::refunds::queries;

pub async fn handle_create_refund(env: &RefundsEnv, req: Request) -> Response<Body> {
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
                create_refund(
                    &env.api.store,
                    authority,
                    CreateRefund {
                        idempotency_key: header_bytes(req, "idempotency-key"),
                        body: body_bytes(req),
                        now: chrono::Utc::now(),
                        deadline_ms: deadline_ms(req),
                        policy: env.policy,
                        fee_rate: env.fee_rate,
                        psp_carries: |m| crate::adapters::stripe::to_stripe_amount(m).map(|_| ()),
                    },
                )
                .await
            },
        )
        .await
    }
    .await;
    respond("create_refund", result)
}

pub async fn handle_get_refund(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_refund(&env.store, &caller, &path_param(&req, "refund_id")).await
    }
    .await;
    respond("get_refund", result)
}

pub async fn handle_list_refunds(env: &RefundListEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::list_refunds(
            &env.api.store,
            &env.reads,
            &caller,
            query_param(&req, "payment_order_id").as_deref(),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("list_refunds", result)
}
