//! A minimal W3C WebDriver client over HTTP (chromedriver), enough to drive real pages in
//! headless Chromium: navigate, find, type, read the URL and the page.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
    profile: std::path::PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (Debian's packages, installed by
    /// `scripts/setup.sh`).
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver; `make deps` does it)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("psys-chromium-{}", uuid::Uuid::new_v4().simple()));
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", format!("--user-data-dir={}", profile.display())]}}}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Browser {
            http,
            base,
            session,
            driver,
            profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let v = self.try_call(method, path, body).await;
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    /// The raw WebDriver answer, errors included.
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Types into the element matching `css` (`\u{E007}` is the Enter key). If the page is
    /// replaced between finding the element and typing (a navigation still landing), the
    /// element goes stale and is found again on the new page.
    pub async fn type_into(&self, css: &str, text: &str) {
        let started = Instant::now();
        loop {
            let el = self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            let id = el[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {el}"))
                .to_owned();
            let v = self
                .try_call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/value"),
                    Some(json!({ "text": text })),
                )
                .await;
            match v["value"].get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some(_) => panic!("WebDriver typing into {css}: {v}"),
            }
        }
    }

    /// Waits until the page's text contains `needle` (the page may refresh itself meanwhile).
    pub async fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            let html = self.source().await;
            if html.contains(needle) {
                return html;
            }
            assert!(
                started.elapsed() < timeout,
                "page never showed {needle:?}; last page:\n{html}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
