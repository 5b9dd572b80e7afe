//! Payout routes: `PUT /v1/sellers/{seller_id}/payout_account`, `GET /v1/sellers/{seller_id}`,
//! `POST /v1/payouts`, `POST /v1/payouts/{payout_id}/cancel`, `GET /v1/payouts/{payout_id}`,
//! `GET /v1/payouts?seller_id=…`.

use lambda_http::{Body, Request, Response};

use crate::adapters::config::{Env, LedgerApiEnv, PayoutListEnv, PayoutsEnv, SellersEnv};
use crate::adapters::lambda::http::{
    authenticate, body_bytes, check_json_content_type, check_size, deadline_ms, header_bytes, now_us,
    path_param, query_param, respond,
};
use crate::app::auth::authenticated_post;
use crate::app::payouts::accounts::put_payout_account;
use crate::app::payouts::create::{create_payout, CreatePayout};
use crate::app::payouts::queries;

pub async fn handle_put_payout_account(env: &SellersEnv, req: Request) -> Response<Body> {
    let result = async {
        check_size(&req)?;
        let caller = authenticate(&env.api, &req).await?;
        check_json_content_type(&req)?;
        put_payout_account(
            &env.api.store,
            &env.psp,
            &caller,
            &path_param(&req, "seller_id"),
            body_bytes(&req),
            chrono::Utc::now(),
        )
        .await
    }
    .await;
    respond("put_payout_account", result)
}

pub async fn handle_get_seller(env: &LedgerApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        crate::app::payouts::accounts::get_seller(
            &env.api.store,
            &env.ledger,
            &caller,
            &path_param(&req, "seller_id"),
        )
        .await
    }
    .await;
    respond("get_seller", result)
}

pub async fn handle_create_payout(env: &PayoutsEnv, req: Request) -> Response<Body> {
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
                create_payout(
                    &env.api.store,
                    authority,
                    CreatePayout {
                        idempotency_key: header_bytes(req, "idempotency-key"),
                        body: body_bytes(req),
                        now: chrono::Utc::now(),
                        deadline_ms: deadline_ms(req),
                    },
                )
                .await
            },
        )
        .await
    }
    .await;
    respond("create_payout", result)
}

pub async fn handle_cancel_payout(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        crate::app::payouts::cancel::cancel_payout(
            &env.store,
            &caller,
            &path_param(&req, "payout_id"),
            chrono::Utc::now(),
        )
        .await
    }
    .await;
    respond("cancel_payout", result)
}

pub async fn handle_list_payouts(env: &PayoutListEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::list_payouts(
            &env.reads,
            &caller,
            query_param(&req, "seller_id").as_deref(),
            query_param(&req, "status").as_deref(),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("list_payouts", result)
}

pub async fn handle_get_payout(env: &Env, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(env, &req).await?;
        queries::get_payout(&env.store, &caller, &path_param(&req, "payout_id")).await
    }
    .await;
    respond("get_payout", result)
}
