//! Reconciliation routes: `GET /v1/reconciliation/runs`, `GET /v1/reconciliation/runs/{run_id}`,
//! `GET /v1/reconciliation/breaks?run_id=&status=&type=`,
//! `GET /v1/reconciliation/breaks/{break_id}`,
//! `POST /v1/reconciliation/breaks/{break_id}/resolve`.

use lambda_http::{Body, Request, Response};

use crate::adapters::config::{ReconApiEnv, ReconListEnv};
use crate::adapters::lambda::http::{
    authenticate, body_bytes, check_json_content_type, check_size, deadline_ms, header_bytes, now_us,
    path_param, query_param, respond,
};
use crate::app::auth::authenticated_post;
use crate::app::reconciliation::queries::{self, BreakQuery};
use crate::app::reconciliation::resolve::{resolve_break, ResolveBreak};

pub async fn handle_list_runs(env: &ReconListEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::list_runs(
            &env.reads,
            &caller,
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("list_reconciliation_runs", result)
}

pub async fn handle_get_run(env: &ReconApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::get_run(&env.recon, &caller, &path_param(&req, "run_id")).await
    }
    .await;
    respond("get_reconciliation_run", result)
}

pub async fn handle_list_breaks(env: &ReconListEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        let (run_id, status, kind) = (
            query_param(&req, "run_id"),
            query_param(&req, "status"),
            query_param(&req, "type"),
        );
        let (limit, cursor) = (query_param(&req, "limit"), query_param(&req, "cursor"));
        queries::list_breaks(
            &env.reads.table,
            &env.reads,
            &caller,
            BreakQuery {
                run_id: run_id.as_deref(),
                status: status.as_deref(),
                kind: kind.as_deref(),
                limit: limit.as_deref(),
                cursor: cursor.as_deref(),
            },
        )
        .await
    }
    .await;
    respond("list_reconciliation_breaks", result)
}

pub async fn handle_get_break(env: &ReconApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::get_break(&env.recon, &caller, &path_param(&req, "break_id")).await
    }
    .await;
    respond("get_reconciliation_break", result)
}

pub async fn handle_resolve_break(env: &ReconApiEnv, req: Request) -> Response<Body> {
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
                resolve_break(
                    &env.recon,
                    &env.api.store,
                    authority,
                    ResolveBreak {
                        break_id: &path_param(req, "break_id"),
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
    respond("resolve_reconciliation_break", result)
}
