//! `GET /v1/reconciliation/runs[/{run_id}]` and `GET /v1/reconciliation/breaks[/{break_id}]`.
//! A caller sees only its own account's runs and breaks: another account's id is answered
//! exactly like an unknown one (404), and the breaks of another account's run likewise.

use crate::api::ledger::{list_view, parse_limit};
use crate::api::reconciliation::{break_view, parse_filter, run_view};
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::{BreakId, ReconRunId};
use crate::ports::reconciliation_api::{BreakFilter, ReconLists, ReconReader};

pub async fn get_run<S: ReconReader>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("reconciliation run", raw_id);
    let id = ReconRunId::parse(raw_id).map_err(|_| missing())?;
    match store.get_run(&caller.account_id, &id).await? {
        Some(run) => Ok(Reply::json(200, &run_view(&run))),
        None => Err(missing()),
    }
}

pub async fn get_break<S: ReconReader>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("reconciliation break", raw_id);
    let id = BreakId::parse(raw_id).map_err(|_| missing())?;
    match store.get_break(&caller.account_id, &id).await? {
        Some(b) => Ok(Reply::json(200, &break_view(&b))),
        None => Err(missing()),
    }
}

pub async fn list_runs<S: ReconLists>(
    store: &S,
    caller: &Caller,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<Reply, ApiError> {
    let limit = parse_limit(limit)?;
    let page = store.list_runs(&caller.account_id, limit, cursor).await?;
    let data = page.data.iter().map(run_view).collect();
    Ok(Reply::json(200, &list_view(data, page.next_cursor.as_deref())))
}

/// The breaks list's query, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct BreakQuery<'a> {
    pub run_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub cursor: Option<&'a str>,
}

pub async fn list_breaks<R: ReconReader, S: ReconLists>(
    runs: &R,
    store: &S,
    caller: &Caller,
    q: BreakQuery<'_>,
) -> Result<Reply, ApiError> {
    let status = parse_filter(q.status, "status")?;
    let kind = parse_filter(q.kind, "type")?;
    let limit = parse_limit(q.limit)?;
    let run_id = match q.run_id.filter(|r| !r.is_empty()) {
        None => None,
        Some(raw) => {
            let missing = || ApiError::not_found("reconciliation run", raw).with_param("run_id");
            let id = ReconRunId::parse(raw).map_err(|_| missing())?;
            if runs.get_run(&caller.account_id, &id).await?.is_none() {
                return Err(missing());
            }
            Some(id)
        }
    };
    let filter = BreakFilter { run_id, status, kind };
    let page = store
        .list_breaks(&caller.account_id, &filter, limit, q.cursor)
        .await?;
    let data = page.data.iter().map(break_view).collect();
    Ok(Reply::json(200, &list_view(data, page.next_cursor.as_deref())))
}
