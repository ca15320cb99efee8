//! End to end in a real browser: headless Chromium driven over the W3C WebDriver protocol
//! (Debian's `chromium` and `chromium-driver`; `.ci/test` installs them). A person signs in,
//! types a code in lower case without the dash, approves or denies, and the device's next
//! poll sees the outcome. Screenshots of each page go to `$CARGO_TARGET_TMPDIR/screenshots`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::TestApp;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Shared with other modules' browser tests (`pages_ux`).
pub(crate) struct Driver {
    process: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Driver {
    /// `None` when Chromium or its driver is missing (allowed only outside CI).
    pub(crate) fn start() -> Option<Driver> {
        let found = |bin: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !found("chromedriver") || !found("chromium") {
            let required = std::env::var_os("DEVICEGATE_REQUIRE_BROWSER").is_some()
                || std::env::var_os("CI").is_some();
            assert!(
                !required,
                "chromium and chromedriver are required (run .ci/test)"
            );
            eprintln!("skipping browser test: chromium/chromedriver not installed (run .ci/test)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let started = Instant::now();
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=430,932".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let mut driver = Driver {
            process,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let created = driver.call("POST", "/session", Some(caps));
        driver.session = created["sessionId"].as_str().unwrap().to_string();
        Some(driver)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = self.agent.request(method, &url);
        let result = match body {
            Some(body) => req
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
            None => req.call(),
        };
        let text = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r.into_string().unwrap(),
            Err(e) => panic!("webdriver transport: {e}"),
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(
            value["value"]["error"].is_null(),
            "webdriver error on {path}: {text}"
        );
        value["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub(crate) fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        );
    }

    pub(crate) fn find(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{el}/value")),
            Some(json!({"text": text})),
        );
    }

    pub(crate) fn click(&self, css: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &self.session_path(&format!("/element/{el}/click")),
            Some(json!({})),
        );
    }

    pub(crate) fn source(&self) -> String {
        self.call("GET", &self.session_path("/source"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page source once it contains `text` (a click's navigation may still be under
    /// way when the click returns); fails after 15 s with what the page shows instead.
    pub(crate) fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let source = self.source();
            if source.contains(text) {
                return source;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "page never showed {text:?}: {source}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.call("GET", &self.session_path("/screenshot"), None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(&format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

pub(crate) fn sign_in(driver: &Driver) {
    driver.type_into("#username", "alice");
    driver.type_into("#password", "password123");
    driver.click("button[type=submit]");
}

#[test]
fn a_person_signs_in_types_the_code_loosely_and_approves_in_chromium() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    driver.goto(codes.body["verification_uri"].as_str().unwrap());
    driver.wait_for("Sign in to connect a device");
    driver.screenshot("01-sign-in");
    sign_in(&driver);
    driver.wait_for("Enter the code");
    driver.screenshot("02-code-entry");
    let loose = codes.user_code.replace('-', "").to_lowercase();
    driver.type_into("#user_code", &loose);
    driver.click("button[type=submit]");
    let consent = driver.wait_for("Approve this device?");
    assert!(consent.contains(&codes.user_code));
    driver.screenshot("03-consent");
    driver.click("button[value=approve]");
    driver.wait_for("Device connected");
    driver.screenshot("04-approved");
    let tokens = app.poll("guest", &codes.device_code);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.json()["token_type"], "Bearer");
}

#[test]
fn a_person_denies_in_chromium_and_the_device_hears_access_denied() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    // The complete URI: sign-in, then the code shown prefilled to confirm, then consent.
    driver.goto(codes.body["verification_uri_complete"].as_str().unwrap());
    sign_in(&driver);
    driver.wait_for("Check that this is the code");
    driver.click(r#"form[action$="/oauth/device"] button"#);
    let consent = driver.wait_for("Approve this device?");
    assert!(consent.contains(&codes.user_code), "{consent}");
    driver.click("button[value=deny]");
    driver.wait_for("Request denied");
    driver.screenshot("05-denied");
    let resp = app.poll("guest", &codes.device_code);
    assert_eq!(resp.json()["error"], "access_denied");
}
