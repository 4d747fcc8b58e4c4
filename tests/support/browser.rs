//! A real browser for the web-page tests: Debian's headless Chromium,
//! driven through its WebDriver server (`chromedriver`) by the few W3C
//! WebDriver commands the tests need, spoken over the harness's reqwest
//! client (no WebDriver crate, so no second HTTP stack or TLS library).
//!
//! `.ci/browser` installs Chromium and exports `RELAY_TEST_CHROMEDRIVER` and
//! `RELAY_TEST_CHROMIUM`. Without them a browser test skips loudly, and
//! fails under `RELAY_REQUIRE_SERVICES=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver on a free loopback port. Dropping it stops it.
pub struct Driver {
    child: Child,
    base: String,
    chromium: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver, or `None` (skipped) when no browser is set up.
    ///
    /// # Panics
    /// When `RELAY_REQUIRE_SERVICES=1` and the browser is missing.
    pub fn start(test: &str) -> Option<Driver> {
        let found = |var: &str, program: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| which(program))
        };
        let (Some(driver), Some(chromium)) = (
            found("RELAY_TEST_CHROMEDRIVER", "chromedriver"),
            found("RELAY_TEST_CHROMIUM", "chromium"),
        ) else {
            if std::env::var("RELAY_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "{test}: no chromium/chromedriver but RELAY_REQUIRE_SERVICES=1; run the tests with .ci/test"
                );
            }
            eprintln!(
                "\n*** SKIPPED {test}: no headless Chromium (RELAY_TEST_CHROMEDRIVER is not set). \
                 Run .ci/test to install one. ***\n"
            );
            return None;
        };
        let mut child = Command::new(&driver)
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{driver} does not start: {e}"));
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .map(|p| p.trim_end_matches('.').trim().to_owned())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("chromedriver reports its port");
        relay_workers::tls::install_crypto_provider();
        Some(Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            chromium,
            http: reqwest::Client::new(),
        })
    }

    /// A new headless browser window of `width`×`height`.
    pub async fn session(&self, width: u32, height: u32) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let answer = post(&self.http, &format!("{}/session", self.base), &capabilities).await;
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_owned();
        Browser {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
            visited: Vec::new(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

async fn answer(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "WebDriver {what}: {status} {body}");
    body
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = http.post(url).json(body).send().await.expect("WebDriver");
    answer(response, url).await
}

/// One browser window.
pub struct Browser {
    base: String,
    http: reqwest::Client,
    /// Every URL the pages loaded or fetched, collected by [`Browser::record`].
    pub visited: Vec<String>,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    async fn cmd(&self, path: &str, body: Value) -> Value {
        post(&self.http, &format!("{}{path}", self.base), &body).await["value"].take()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("WebDriver");
        answer(response, path).await["value"].take()
    }

    /// Notes the URLs this page loaded and fetched (the Resource Timing
    /// entries: the document, scripts, images, fetch and XHR), so a test
    /// can check that no patient data ever went into one. Call it before
    /// anything that leaves the page.
    pub async fn record(&mut self) {
        let urls = self
            .script(
                "return [location.href].concat(performance.getEntries().map(e => e.name));",
                json!([]),
            )
            .await;
        for url in urls.as_array().into_iter().flatten() {
            if let Some(url) = url.as_str()
                && !self.visited.iter().any(|v| v == url)
            {
                self.visited.push(url.to_owned());
            }
        }
    }

    pub async fn goto(&mut self, url: &str) {
        self.record().await;
        self.cmd("/url", json!({ "url": url })).await;
        self.record().await;
    }

    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.cmd("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .expect("WebDriver");
            if response.status().is_success() {
                let body: Value = response.json().await.expect("json");
                return Element(body["value"][ELEMENT].as_str().expect("element").to_owned());
            }
            assert!(Instant::now() < deadline, "no element {css}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.script(
            "return document.querySelectorAll(arguments[0]).length;",
            json!([css]),
        )
        .await
        .as_u64()
        .unwrap_or(0) as usize
    }

    pub async fn click(&mut self, css: &str) {
        let element = self.find(css).await;
        self.cmd(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Clicks something that leaves the page, noting this page's URLs first.
    pub async fn click_away(&mut self, css: &str) {
        self.record().await;
        self.click(css).await;
    }

    /// Types into a field (for a file input: absolute paths, one per line).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.cmd(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Chooses the option with `value` in the `<select>` at `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let option = format!("{css} option[value=\"{value}\"]");
        let element = self.find(&option).await;
        self.cmd(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits up to 20 s for `condition` (a JavaScript expression) to be true.
    pub async fn wait_for(&self, what: &str, condition: &str) {
        let script = format!("return Boolean({condition});");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.script(&script, json!([])).await != Value::Bool(true) {
            if Instant::now() > deadline {
                let body = self
                    .script(
                        "return document.body ? document.body.innerText : '';",
                        json!([]),
                    )
                    .await;
                panic!("waited 20 s for {what} ({condition}); page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's path is `path`.
    pub async fn wait_for_path(&self, path: &str) {
        self.wait_for(
            &format!("the page {path}"),
            &format!(
                "location.pathname === {} && document.readyState === 'complete'",
                json!(path)
            ),
        )
        .await;
    }

    /// Keys pressed and released in turn on the focused element
    /// (WebDriver's codes for special keys, e.g. `\u{E015}` for ↓).
    pub async fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for key in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": key.to_string()}));
            actions.push(json!({"type": "keyUp", "value": key.to_string()}));
        }
        self.perform(json!([{"type": "key", "id": "keyboard", "actions": actions}]))
            .await;
    }

    /// One wheel notch over the element at `css` (positive: down).
    pub async fn wheel(&self, css: &str, delta_y: i64) {
        let element = self.find(css).await;
        self.perform(json!([{"type": "wheel", "id": "wheel", "actions": [
            {"type": "scroll", "x": 0, "y": 0, "deltaX": 0, "deltaY": delta_y, "duration": 0,
             "origin": {ELEMENT: element.0}}
        ]}]))
        .await;
    }

    /// A mouse drag from the centre of `css` by (`dx`, `dy`) pixels.
    pub async fn drag(&self, css: &str, dx: i64, dy: i64) {
        let element = self.find(css).await;
        let origin = json!({ ELEMENT: element.0 });
        let mut actions = vec![
            json!({"type": "pointerMove", "x": 0, "y": 0, "duration": 0, "origin": origin}),
            json!({"type": "pointerDown", "button": 0}),
        ];
        for step in 1..=5 {
            actions.push(
                json!({"type": "pointerMove", "x": dx * step / 5, "y": dy * step / 5,
                "duration": 30, "origin": origin}),
            );
        }
        actions.push(json!({"type": "pointerUp", "button": 0}));
        self.perform(json!([{"type": "pointer", "id": "mouse",
            "parameters": {"pointerType": "mouse"}, "actions": actions}]))
            .await;
    }

    async fn perform(&self, actions: Value) {
        self.cmd("/actions", json!({ "actions": actions })).await;
        let _ = self
            .http
            .delete(format!("{}/actions", self.base))
            .send()
            .await;
    }

    /// A cookie as the browser keeps it (WebDriver sees HttpOnly ones too).
    pub async fn cookie(&self, name: &str) -> Value {
        self.get(&format!("/cookie/{name}")).await
    }

    /// Saves a PNG of the window under the test artifacts directory and
    /// returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("base64 PNG");
        let path = artifacts().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

/// Where screenshots go: `target/tmp/web-screenshots/`.
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}
