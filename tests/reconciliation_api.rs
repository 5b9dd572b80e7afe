//! The reconciliation read and resolve API on the local twin (issue 12 §6): runs and breaks
//! listed and read by their own account only, the breaks list's filters, and a break's
//! resolution through the one idempotency mechanism, recorded as an append-only entry.
//!
//! Each test uploads its own small settlement file for its own account: a charge row naming a
//! checkout we never created (`missing_in_ours`) and a row whose date is not a date
//! (`malformed_row`).

use common::{new_key, Account, Stack};
use serde_json::{json, Value};

fn stack() -> &'static Stack {
    common::stack_of(&common::TwinSpec {
        label: "reconciliation_api",
        params: &[("RetryBackoffBaseSeconds", "0")],
        on_disk: false,
        env: &[],
    })
}

fn hex32() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Uploads a file with one `missing_in_ours` and one `malformed_row` break for `acct`; the
/// run, once it finished.
async fn run_with_two_breaks(acct: &Account, name: &str) -> Value {
    let t = &hex32()[..12];
    let file = format!(
        "balance_transaction_id,created_utc,available_on_utc,currency,gross,fee,net,reporting_category,\
source_id,charge_id,payment_intent_id,automatic_payout_id,payment_metadata[checkout_id]\n\
txn_{t}a,2026-11-30 10:00:00,2026-12-02 00:00:00,usd,10.00,0.59,9.41,charge,ch_{t},ch_{t},pi_{t},,chk_{}\n\
txn_{t}b,yesterday,2026-12-02 00:00:00,usd,5.00,0.00,5.00,charge,ch_{t}b,ch_{t}b,pi_{t}b,,\n",
        hex32()
    );
    let a = acct.account_id.as_str();
    stack()
        .put_object("SettlementBucket", &format!("psp/{a}/{name}.csv"), file)
        .await;
    let key = format!("psp/{a}/{name}.csv");
    common::eventually(&format!("the run of {key}"), 30, || async {
        let runs = acct.get("/v1/reconciliation/runs?limit=100").await;
        assert_eq!(runs.status, 200, "{}", runs.text);
        runs.json["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"]["key"] == key.as_str() && r["status"] != "RUNNING")
            .cloned()
    })
    .await
}

async fn breaks(acct: &Account, query: &str) -> Vec<Value> {
    let r = acct.get(&format!("/v1/reconciliation/breaks?{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    assert_eq!(r.json["object"], "list");
    r.json["data"].as_array().unwrap().clone()
}

fn break_of<'a>(list: &'a [Value], kind: &str) -> &'a Value {
    list.iter()
        .find(|b| b["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} break in {list:#?}"))
}

#[tokio::test]
async fn runs_are_listed_newest_first_and_seen_by_their_own_account_only() {
    let acct = stack().new_account(None).await;
    let first = run_with_two_breaks(&acct, "first").await;
    let second = run_with_two_breaks(&acct, "second").await;

    assert_eq!(first["object"], "reconciliation_run");
    assert_eq!(first["status"], "SUCCEEDED", "{first}");
    assert_eq!(first["account_id"], acct.account_id.as_str());
    assert_eq!(first["rows"], 2, "{first}");
    assert_eq!(first["breaks_by_type"]["missing_in_ours"], 1, "{first}");
    assert_eq!(first["breaks_by_type"]["malformed_row"], 1, "{first}");
    assert_eq!(first["breaks_by_type"]["duplicate"], 0, "{first}");
    assert!(first["run_id"].as_str().unwrap().starts_with("recon_"));
    assert_eq!(first["file"]["sha256"].as_str().unwrap().len(), 64, "{first}");
    assert!(
        first["interval"].is_null(),
        "a hand-made upload names no interval: {first}"
    );
    assert!(
        first["psp_receivable"].is_object() && first["psp_balance"].is_object(),
        "{first}"
    );
    assert!(first["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(first["finished_at"].as_str().is_some(), "{first}");

    // Newest first, a page at a time.
    let page = acct.get("/v1/reconciliation/runs?limit=1").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.json["data"][0]["run_id"], second["run_id"]);
    assert_eq!(page.json["has_more"], true);
    let cursor = page.json["next_cursor"].as_str().unwrap().to_owned();
    let next = acct
        .get(&format!("/v1/reconciliation/runs?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert_eq!(next.json["data"][0]["run_id"], first["run_id"]);

    // By id: the same view.
    let id = first["run_id"].as_str().unwrap();
    let got = acct.get(&format!("/v1/reconciliation/runs/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json, first);

    // Another account: 404 by id, nothing in its list, and our cursor does not open for it.
    let other = stack().new_account(None).await;
    let r = other.get(&format!("/v1/reconciliation/runs/{id}")).await;
    assert_eq!((r.status, r.code()), (404, "resource_missing"), "{}", r.text);
    let r = other.get("/v1/reconciliation/runs").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["data"], json!([]));
    let r = other
        .get(&format!("/v1/reconciliation/runs?cursor={cursor}"))
        .await;
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{}", r.text);

    // Unknown and malformed ids, a bad limit.
    let unknown = format!("recon_{}", hex32());
    assert_eq!(
        acct.get(&format!("/v1/reconciliation/runs/{unknown}"))
            .await
            .status,
        404
    );
    assert_eq!(acct.get("/v1/reconciliation/runs/nope").await.status, 404);
    let r = acct.get("/v1/reconciliation/runs?limit=0").await;
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{}", r.text);
}

#[tokio::test]
async fn breaks_are_listed_by_run_status_and_type() {
    let acct = stack().new_account(None).await;
    let run = run_with_two_breaks(&acct, "filters").await;
    let run_id = run["run_id"].as_str().unwrap();

    let all = breaks(&acct, &format!("run_id={run_id}")).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    let missing = break_of(&all, "missing_in_ours");
    assert_eq!(missing["object"], "reconciliation_break");
    assert_eq!(missing["run_id"], run_id);
    assert_eq!(missing["status"], "open");
    assert_eq!(missing["line"], 2);
    assert_eq!(missing["row"]["gross"], "10.00", "{missing}");
    assert_eq!(missing["row"]["reporting_category"], "charge", "{missing}");
    assert!(missing["resolution"].is_null());
    assert!(
        missing["reason"].as_str().unwrap().contains("no checkout"),
        "{missing}"
    );
    let malformed = break_of(&all, "malformed_row");
    assert_eq!(malformed["line"], 3, "{malformed}");

    let only = breaks(&acct, &format!("run_id={run_id}&type=malformed_row")).await;
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["break_id"], malformed["break_id"]);
    let only = breaks(
        &acct,
        &format!("run_id={run_id}&type=missing_in_ours&status=open"),
    )
    .await;
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["break_id"], missing["break_id"]);
    assert!(breaks(&acct, &format!("run_id={run_id}&status=resolved"))
        .await
        .is_empty());
    assert!(breaks(&acct, &format!("run_id={run_id}&type=duplicate"))
        .await
        .is_empty());
    // Without run_id: every break of the account.
    assert_eq!(breaks(&acct, "status=open").await.len(), 2);
    assert_eq!(breaks(&acct, "").await.len(), 2);

    // Paged: one at a time, the cursor goes on.
    let page = acct
        .get(&format!("/v1/reconciliation/breaks?run_id={run_id}&limit=1"))
        .await;
    assert_eq!(page.json["data"].as_array().unwrap().len(), 1, "{}", page.text);
    let cursor = page.json["next_cursor"].as_str().unwrap();
    let next = acct
        .get(&format!(
            "/v1/reconciliation/breaks?run_id={run_id}&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.status, 200, "{}", next.text);
    assert_ne!(next.json["data"][0]["break_id"], page.json["data"][0]["break_id"]);

    // Bad filters name their parameter.
    for (query, param) in [
        ("status=closed", "status"),
        ("status=OPEN", "status"),
        ("type=missing", "type"),
        ("limit=101", "limit"),
    ] {
        let r = acct.get(&format!("/v1/reconciliation/breaks?{query}")).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "parameter_invalid"),
            "{query}: {}",
            r.text
        );
        assert_eq!(r.json["error"]["param"], param, "{query}: {}", r.text);
    }

    // By id; another account sees neither the run's breaks nor the break.
    let id = missing["break_id"].as_str().unwrap();
    let got = acct.get(&format!("/v1/reconciliation/breaks/{id}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(&got.json, missing);
    let other = stack().new_account(None).await;
    let r = other
        .get(&format!("/v1/reconciliation/breaks?run_id={run_id}"))
        .await;
    assert_eq!((r.status, r.code()), (404, "resource_missing"), "{}", r.text);
    assert_eq!(r.json["error"]["param"], "run_id");
    assert!(breaks(&other, "").await.is_empty());
    let r = other.get(&format!("/v1/reconciliation/breaks/{id}")).await;
    assert_eq!((r.status, r.code()), (404, "resource_missing"), "{}", r.text);
    assert_eq!(acct.get("/v1/reconciliation/breaks/brk_nope").await.status, 404);
}

#[tokio::test]
async fn a_break_is_resolved_once_with_its_entry_and_the_same_key_replays() {
    let acct = stack().new_account(None).await;
    let run = run_with_two_breaks(&acct, "resolve").await;
    let run_id = run["run_id"].as_str().unwrap();
    let all = breaks(&acct, &format!("run_id={run_id}")).await;
    let target = break_of(&all, "missing_in_ours")["break_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let untouched = break_of(&all, "malformed_row")["break_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/reconciliation/breaks/{target}/resolve");
    let body = r#"{"resolution":"written_off","note":"not ours: a test charge at the PSP"}"#;

    // Refused before anything is written: no key, a bad resolution, an unknown field.
    let r = acct.post(&path, None, body).await;
    assert_eq!(
        (r.status, r.code()),
        (400, "idempotency_key_missing"),
        "{}",
        r.text
    );
    let r = acct
        .post(&path, Some(&new_key()), r#"{"resolution":"forgiven"}"#)
        .await;
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{}", r.text);
    assert_eq!(r.json["error"]["param"], "resolution");
    let r = acct
        .post(
            &path,
            Some(&new_key()),
            r#"{"resolution":"ignored","amount":"1.00"}"#,
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "parameter_unknown"), "{}", r.text);
    let r = acct.post(&path, Some(&new_key()), r#"{"note":"x"}"#).await;
    assert_eq!((r.status, r.code()), (400, "parameter_missing"), "{}", r.text);

    // Another account's break: 404, and nothing moves.
    let other = stack().new_account(None).await;
    let r = other.post(&path, Some(&new_key()), body).await;
    assert_eq!((r.status, r.code()), (404, "resource_missing"), "{}", r.text);
    let unknown = format!("/v1/reconciliation/breaks/brk_{}/resolve", hex32());
    assert_eq!(acct.post(&unknown, Some(&new_key()), body).await.status, 404);

    // Resolved: 200 with the break as it now is.
    let key = new_key();
    let done = acct.post(&path, Some(&key), body).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert!(done.headers.get("idempotent-replayed").is_none());
    assert_eq!(done.json["object"], "reconciliation_break");
    assert_eq!(done.json["break_id"], target.as_str());
    assert_eq!(done.json["status"], "resolved");
    let resolution = &done.json["resolution"];
    assert_eq!(resolution["resolution"], "written_off");
    assert_eq!(resolution["note"], "not ours: a test charge at the PSP");
    assert_eq!(resolution["resolved_by"], acct.key_id.as_str());
    let resolved_at = resolution["resolved_at"].as_str().unwrap().to_owned();

    // The same key: the same bytes, replayed. Another body under it: 422.
    let again = acct.post(&path, Some(&key), body).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.text, done.text);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let r = acct.post(&path, Some(&key), r#"{"resolution":"adjusted"}"#).await;
    assert_eq!(
        (r.status, r.code()),
        (422, "idempotency_key_reused"),
        "{}",
        r.text
    );

    // A second resolution with a new key: 409, whatever it says.
    let r = acct
        .post(&path, Some(&new_key()), r#"{"resolution":"adjusted"}"#)
        .await;
    assert_eq!((r.status, r.code()), (409, "break_not_open"), "{}", r.text);

    // Read back: the break, the lists, and the one append-only entry.
    let got = acct.get(&format!("/v1/reconciliation/breaks/{target}")).await;
    assert_eq!(got.json, done.json);
    let resolved = breaks(&acct, &format!("run_id={run_id}&status=resolved")).await;
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["break_id"], target.as_str());
    let open = breaks(&acct, &format!("run_id={run_id}&status=open")).await;
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["break_id"], untouched.as_str());

    let items = stack().scan_all("ReconciliationTable").await;
    let text = |i: &shared::adapters::dynamo::codec::Item, k: &str| {
        i.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    let entries: Vec<_> = items
        .iter()
        .filter(|i| text(i, "entity") == "reconciliation_resolution" && text(i, "break_id") == target)
        .collect();
    assert_eq!(entries.len(), 1, "one entry: {entries:#?}");
    let e = entries[0];
    assert_eq!(text(e, "pk"), format!("RUN#{run_id}"));
    assert_eq!(text(e, "sk"), format!("BRK#{target}#RES#{resolved_at}"));
    assert_eq!(text(e, "resolution"), "written_off");
    assert_eq!(text(e, "note"), "not ours: a test charge at the PSP");
    assert_eq!(text(e, "resolved_by"), acct.key_id);
    assert_eq!(text(e, "resolved_at"), resolved_at);
    assert!(!e.contains_key("list_pk"), "entries stay out of the lists");

    // The other break resolves on its own, without a note.
    let r = acct
        .post(
            &format!("/v1/reconciliation/breaks/{untouched}/resolve"),
            Some(&new_key()),
            r#"{"resolution":"ignored"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["resolution"]["note"].is_null());
}
