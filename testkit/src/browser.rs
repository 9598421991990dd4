//! Headless Chromium over WebDriver for the page tests: Debian's `chromium` and
//! `chromium-driver` (which `scripts/test.sh` installs when missing), driven by the few JSON
//! requests these tests need, over `reqwest`. Both processes end, and the profile directory
//! goes, when the [`Browser`] is dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::http::SendJson;

fn find(var: &str, candidates: &[&str]) -> String {
    if let Ok(path) = std::env::var(var) {
        return path;
    }
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
        .unwrap_or_else(|| {
            panic!(
                "{} not found: install Debian's chromium and chromium-driver \
                 (apt-get install -y chromium chromium-driver; scripts/test.sh does) or set {var}",
                candidates[0]
            )
        })
}

/// A chromedriver and one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts chromedriver and a session; a dialog a page opens is dismissed (WebDriver's
    /// default).
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts chromedriver and a session; dialogs (`confirm`) stay open for the test to answer
    /// with [`Browser::dialog`] and [`Browser::answer_dialog`].
    pub async fn start_keeping_dialogs() -> Self {
        Self::launch(Some("ignore")).await
    }

    async fn launch(prompts: Option<&str>) -> Self {
        let chromium = find(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = find("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let port = crate::process::free_addr().port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("df-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("a Chromium profile directory");
        let mut always = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1500",
                format!("--user-data-dir={}", profile.display()),
            ]}
        });
        if let Some(prompts) = prompts {
            always["unhandledPromptBehavior"] = json!(prompts);
        }
        let caps = json!({"capabilities": {"alwaysMatch": always}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send_json()
            .await;
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
            profile,
        }
    }

    /// One WebDriver command; its `value`, or the error's when `tolerate` (else a panic).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        tolerate: bool,
    ) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r: Value = req.send_json().await;
        if r["value"]["error"].is_string() && !tolerate {
            panic!("WebDriver {path}: {r}");
        }
        r["value"].clone()
    }

    /// One WebDriver command on the session; its `value` (a panic on a WebDriver error).
    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send(method, path, body, false).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Runs `script`, a function body that calls `arguments[0]` with its result.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The text of element `id` ("" when there is none).
    pub async fn text(&self, id: &str) -> String {
        self.eval(&format!(
            "var e = document.getElementById('{id}'); return e ? e.textContent : null;"
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The text of element `id` as a number (a panic when it is not one).
    pub async fn number(&self, id: &str) -> i64 {
        let t = self.text(id).await;
        t.parse()
            .unwrap_or_else(|_| panic!("#{id} is not a number: {t:?}"))
    }

    /// Clicks the element `css` selects as a user does (a dialog it opens stays open when the
    /// session was started with [`Browser::start_keeping_dialogs`]).
    pub async fn click(&self, css: &str) {
        let el = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = el
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {el}"))
            .to_owned();
        self.send(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
            true,
        )
        .await;
    }

    /// The open dialog's text, if one is open.
    pub async fn dialog(&self) -> Option<String> {
        let v = self
            .send(reqwest::Method::GET, "/alert/text", None, true)
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Answers the open dialog: OK (`true`) or Cancel.
    pub async fn answer_dialog(&self, ok: bool) {
        let path = if ok {
            "/alert/accept"
        } else {
            "/alert/dismiss"
        };
        self.cmd(reqwest::Method::POST, path, Some(json!({}))).await;
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("a base64 screenshot"))
            .expect("a base64 screenshot")
    }

    /// Saves a screenshot as `docs/{name}` when `UPDATE_SCREENSHOTS` is set (so a test run
    /// leaves the working tree as it was), else in the temporary directory as
    /// `dialfleet-{name}`.
    pub async fn save_screenshot(&self, name: &str) {
        let png = self.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../docs")
                .join(name)
        } else {
            std::env::temp_dir().join(format!("dialfleet-{name}"))
        };
        std::fs::write(&path, &png).expect("the screenshot written");
        println!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
