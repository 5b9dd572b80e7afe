//! Wallet and ledger read routes.

use lambda_http::{Body, Request, Response};

use crate::adapters::config::LedgerApiEnv;
use crate::adapters::lambda::http::{authenticate, path_param, query_param, respond};
use crate::app::ledger::queries;

pub async fn handle_get_wallet(env: &LedgerApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::get_wallet(&env.ledger, &caller, &path_param(&req, "seller_id")).await
    }
    .await;
    respond("get_wallet", result)
}

pub async fn handle_list_ledger_transactions(env: &LedgerApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::list_transactions(
            &env.ledger,
            &caller,
            query_param(&req, "payment_order_id").as_deref(),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("list_ledger_transactions", result)
}

pub async fn handle_get_ledger_account(env: &LedgerApiEnv, req: Request) -> Response<Body> {
    let result = async {
        let caller = authenticate(&env.api, &req).await?;
        queries::get_account(
            &env.ledger,
            &caller,
            &path_param(&req, "account"),
            query_param(&req, "limit").as_deref(),
            query_param(&req, "cursor").as_deref(),
        )
        .await
    }
    .await;
    respond("get_ledger_account", result)
}
