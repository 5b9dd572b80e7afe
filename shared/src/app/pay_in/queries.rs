//! `GET /v1/payments/{id}` and `GET /v1/checkouts/{id}`. A caller sees only its own account's
//! records: another account's id is answered exactly like an unknown one (404).

use crate::api::pay_in::{checkout_view, payment_order_view};
use crate::api::ApiError;
use crate::app::{Caller, Reply};
use crate::domain::ids::{CheckoutId, PaymentOrderId};
use crate::domain::PaymentStatus;
use crate::ports::Checkouts;

pub async fn get_payment_order<S: Checkouts>(
    store: &S,
    caller: &Caller,
    raw_id: &str,
) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("payment order", raw_id);
    let id = PaymentOrderId::parse(raw_id).map_err(|_| missing())?;
    match store.get_payment_order(&id).await? {
        Some(order) if order.account_id == caller.account_id => {
            Ok(Reply::json(200, &payment_order_view(&order)))
        }
        _ => Err(missing()),
    }
}

pub async fn get_checkout<S: Checkouts>(store: &S, caller: &Caller, raw_id: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("checkout", raw_id);
    let id = CheckoutId::parse(raw_id).map_err(|_| missing())?;
    match store.get_checkout(&id).await? {
        Some((checkout, orders)) if checkout.account_id == caller.account_id => {
            Ok(Reply::json(200, &checkout_view(&checkout, &orders)))
        }
        _ => Err(missing()),
    }
}

/// `GET /checkout/complete?checkout_id=…`: where the PSP sends the buyer back (design §6 ⑧a).
/// The redirect proves nothing: the page shows "Processing…" (and refreshes) until the verified
/// webhook has moved the checkout, then the final status. Public, so it shows no amounts or ids
/// beyond the one in the URL.
pub async fn completion_page<S: Checkouts>(store: &S, raw_id: &str, cancelled: bool) -> Reply {
    let found = match CheckoutId::parse(raw_id) {
        Ok(id) => store.get_checkout(&id).await,
        Err(_) => Ok(None),
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => {
            // A buyer's browser gets a page, never a JSON error: the status is not known yet,
            // and the page asks again by itself. (The error is logged where it is mapped.)
            let e = ApiError::from(e);
            return Reply::page(
                e.status,
                &page(
                    "Checking your payment…",
                    "We cannot confirm your payment's status right now. This page tries again by itself; nothing more is charged.",
                    true,
                    None,
                ),
            );
        }
    };
    let Some((checkout, _)) = found else {
        return Reply::page(
            404,
            &page(
                "Checkout not found",
                "We could not find this checkout.",
                false,
                None,
            ),
        );
    };
    let (title, text, refresh) = match checkout.status {
        PaymentStatus::Success => (
            "Payment received",
            "Thank you: your payment was confirmed by the payment provider.",
            false,
        ),
        PaymentStatus::Failed => (
            "Payment failed",
            "The payment did not go through and you were not charged.",
            false,
        ),
        PaymentStatus::Created | PaymentStatus::Executing if cancelled => (
            "Payment cancelled",
            "You left the payment page. Nothing was charged; you can return to the checkout to try again.",
            false,
        ),
        PaymentStatus::Created | PaymentStatus::Executing => (
            "Processing…",
            "We are waiting for the payment provider to confirm your payment. This page updates by itself.",
            true,
        ),
    };
    Reply::page(200, &page(title, text, refresh, Some(checkout.status)))
}

/// The page's one style sheet: inline, allowed by its hash in the page's
/// Content-Security-Policy (see `Reply::page`); the page has no script at all.
pub const PAGE_STYLE: &str =
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}#status{color:#666;font-size:.9rem}";

fn page(title: &str, text: &str, refresh: bool, status: Option<PaymentStatus>) -> String {
    let meta = if refresh {
        r#"<meta http-equiv="refresh" content="2">"#
    } else {
        ""
    };
    let status = status
        .map(|s| format!("<p id=\"status\" data-status=\"{s}\">{s}</p>"))
        .unwrap_or_default();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">{meta}<title>{title}</title>
<style>{PAGE_STYLE}</style></head>
<body><h1>{title}</h1><p>{text}</p>{status}</body></html>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::memory::{FakePsp, Memory};
    use crate::app::pay_in::create_payment::{create_checked, CreatePayment};
    use crate::domain::ids::{AccountId, ApiKeyId};

    #[tokio::test]
    async fn own_records_only() {
        let store = Memory::default();
        let alice = Caller {
            account_id: AccountId::parse("acct_alice").unwrap(),
            key_id: ApiKeyId::generate(),
        };
        let bob = Caller {
            account_id: AccountId::parse("acct_bob").unwrap(),
            key_id: ApiKeyId::generate(),
        };
        let now = chrono::Utc::now();
        let body = br#"{"buyer_id":"b","seller_id":"s","amount":5,"currency":"JPY","order_id":"o"}"#;
        let created = create_checked(
            &store,
            &FakePsp::default(),
            &alice,
            CreatePayment {
                idempotency_key: Some(b"k".as_slice()),
                body,
                now,
                deadline_ms: now.timestamp_millis() + 1000,
                public_base_url: "https://shop.example",
            },
        )
        .await
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&created.body).unwrap();
        let po = v["payment_order_id"].as_str().unwrap();
        let chk = v["checkout_id"].as_str().unwrap();

        let got: serde_json::Value =
            serde_json::from_str(&get_payment_order(&store, &alice, po).await.unwrap().body).unwrap();
        assert_eq!(
            (got["amount"].as_str(), got["currency"].as_str()),
            (Some("5"), Some("JPY"))
        );
        assert_eq!(get_checkout(&store, &alice, chk).await.unwrap().status, 200);

        assert_eq!(get_payment_order(&store, &bob, po).await.unwrap_err().status, 404);
        assert_eq!(get_checkout(&store, &bob, chk).await.unwrap_err().status, 404);
        assert_eq!(
            get_checkout(&store, &alice, "chk_nope").await.unwrap_err().status,
            404
        );
        assert_eq!(
            get_payment_order(&store, &alice, &PaymentOrderId::generate().to_string())
                .await
                .unwrap_err()
                .status,
            404
        );
    }

    #[tokio::test]
    async fn the_completion_page_is_a_page_even_when_the_store_is_down() {
        let store = Memory::default();
        store.unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
        let r = completion_page(&store, &CheckoutId::generate().to_string(), false).await;
        assert_eq!((r.status, r.content_type), (503, "text/html; charset=utf-8"));
        assert!(
            r.body.contains("http-equiv=\"refresh\""),
            "it asks again by itself"
        );
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("retry-after"), Some("2"));
        let csp = header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !r.body.contains("<script"),
            "no script"
        );
        assert_eq!(header("x-frame-options"), Some("DENY"));
        assert_eq!(header("x-content-type-options"), Some("nosniff"));
        assert_eq!(header("cache-control"), Some("no-store"));
        assert_eq!(header("referrer-policy"), Some("no-referrer"));
        store
            .unavailable
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let missing = completion_page(&store, "chk_nope", false).await;
        assert_eq!((missing.status, missing.headers.len()), (404, 5));
    }

    #[test]
    fn the_style_hash_in_the_policy_is_the_page_style() {
        use sha2::Digest;
        let r = Reply::page(200, "x");
        let csp = &r.headers[0].1;
        let hash = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            sha2::Sha256::digest(PAGE_STYLE.as_bytes()),
        );
        assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
        assert!(page("t", "x", false, None).contains(&format!("<style>{PAGE_STYLE}</style>")));
    }
}
