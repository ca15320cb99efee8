//! `TestApp`: a real server on 127.0.0.1:0 with a temporary database and a manual clock,
//! one helper per endpoint, shut down on drop. The database is a SQLite file, or with
//! `DEVICEGATE_TEST_DATABASE` a fresh PostgreSQL database (`database`).

use devicegate::protocol::approval::{Actor, Decision};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use devicegate::store::{NewClient, Store, UserId};
use devicegate::{Clock, Config, Server, ServerHandle, Timestamp};
use serde_json::Value;

mod database;
pub use database::{
    on_postgres, sql_text, test_database, test_database_named, TestDatabase, TestDb,
};

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The devicegate binary as a command, run from the temporary directory rather than the
/// source tree: on PostgreSQL a first start leaves its admin-password file in the working
/// directory (`devicegate-<database>.admin-password`).
pub fn devicegate() -> std::process::Command {
    let mut command = std::process::Command::new(crate::cli::BIN);
    command.current_dir(std::env::temp_dir());
    command
}

/// POST a form; `None` when the server was not there (killed mid-request).
pub fn post_form_or_gone(base: &str, path: &str, form: &[(&str, &str)]) -> Option<(u16, Value)> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let response = match agent.post(&format!("{base}{path}")).send_form(form) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return None,
    };
    let status = response.status();
    let body = response.into_string().ok()?;
    Some((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// A port that was free a moment ago (for tests that start the binary themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the real binary, `devicegate --db <db> serve --listen <listen> <extra…>`, and waits
/// until it answers. Its stdout is piped (the first-run admin password is printed there);
/// `stderr` is the log's destination: piped to read it, null when the test sends many
/// requests (an unread pipe fills and blocks the server).
pub fn serve_binary(
    db: &std::path::Path,
    listen: &str,
    extra: &[&str],
    stderr: std::process::Stdio,
) -> std::process::Child {
    let child = devicegate()
        .args(["--db", db.to_str().unwrap(), "serve", "--listen", listen])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    wait_until_healthy(&format!("http://{listen}"));
    child
}

/// A new database (`d.db` in `dir`, or a fresh PostgreSQL database: `test_database`), as a
/// server's first start leaves it: admin commands refuse a database that does not exist.
pub fn new_database(dir: &std::path::Path) -> TestDatabase {
    let db = test_database(dir);
    drop(Store::open(&db).unwrap());
    db
}

/// Sends `bytes` as they are over a new connection to `addr` (`host:port`) and returns all
/// that comes back until the server closes it (send `Connection: close`). For requests
/// ureq cannot make: repeated header lines, control bytes.
pub fn raw_http(addr: &str, bytes: &[u8]) -> String {
    String::from_utf8_lossy(&raw_http_bytes(addr, bytes)).into_owned()
}

/// `raw_http`, the answer's bytes as they came (to count a body's length).
pub fn raw_http_bytes(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// A connection to `addr` from the local address `local` (Linux routes all of 127/8 to
/// loopback, so 127.0.0.2 is "another address"), reads timing out after 10 s.
pub fn connect_from(local: &str, addr: std::net::SocketAddr) -> std::net::TcpStream {
    connect_from_with(local, addr, |_| Ok(()))
}

/// `connect_from`, with socket options set before connecting.
pub fn connect_from_with(
    local: &str,
    addr: std::net::SocketAddr,
    options: impl Fn(&socket2::Socket) -> std::io::Result<()>,
) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let local = std::net::SocketAddr::new(local.parse().unwrap(), 0);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    options(&socket).unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The body of a raw HTTP/1.1 response (after the blank line).
pub fn raw_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Waits until a separately started server answers `/healthz`.
pub fn wait_until_healthy(base: &str) {
    let started = std::time::Instant::now();
    while ureq::get(&format!("{base}/healthz")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct TestApp {
    pub base: String,
    pub clock: Clock,
    pub db_path: PathBuf,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
    agent: ureq::Agent,
    // Dropped after `Drop for TestApp` has stopped the server: the PostgreSQL database
    // goes only once nothing uses it.
    _database: TestDatabase,
    _dir: tempfile::TempDir,
}

#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Codes from a successful device authorization.
#[derive(Debug, Clone)]
pub struct DeviceCodes {
    pub device_code: String,
    pub user_code: String,
    pub body: Value,
}

/// RFC 6749 §5.2 error: exact status, JSON content type, `error` code, and no caching.
pub fn assert_oauth_error(resp: &TestResponse, status: u16, code: &str) {
    assert_eq!(resp.status, status, "status for {code}: {}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.json()["error"], code, "body: {}", resp.body);
    assert!(resp.json()["error_description"].is_string());
    assert_no_store(resp);
}

pub fn assert_no_store(resp: &TestResponse) {
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("pragma"), Some("no-cache"));
}

/// One RSA and one Ed25519 signing key, made once per test process. Each `TestApp`'s
/// database gets them before its server starts (a first start then finds keys and makes
/// none), so hundreds of test servers do not each spend a fraction of a second on an RSA
/// key; `TestApp::spawn_with_own_keys` goes through the real first start instead.
pub fn shared_signing_keys() -> &'static [devicegate::keys::GeneratedKey] {
    static KEYS: std::sync::OnceLock<Vec<devicegate::keys::GeneratedKey>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        devicegate::keys::Alg::ALL
            .into_iter()
            .map(|alg| devicegate::keys::generate(alg).unwrap())
            .collect()
    })
}

impl TestApp {
    pub fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {})
    }

    pub fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_inner(adjust, true)
    }

    /// As `spawn_with`, without the shared keys: the server's first start makes its own.
    pub fn spawn_with_own_keys(adjust: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_inner(adjust, false)
    }

    fn spawn_inner(adjust: impl FnOnce(&mut Config), shared_keys: bool) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let database = test_database_named(dir.path(), "devicegate.db");
        let mut config = Config {
            db_path: database.to_path_buf(),
            listen: "127.0.0.1:0".into(),
            workers: 4,
            log_level: "off".into(),
            // Tests stop their servers often; queued requests are still answered.
            shutdown_grace: 0,
            ..Config::default()
        };
        adjust(&mut config);
        // What the server uses: `adjust` may point it at another test's database.
        let db_path = config.db_path.clone();
        if shared_keys {
            // A database the server could not open is the test's business: skip seeding.
            if let Ok(store) = Store::open(&config.db_path) {
                for key in shared_signing_keys() {
                    store.create_first_signing_key(&key.as_new(), 0).unwrap();
                }
            }
        }
        let clock = Clock::manual(Timestamp::from_secs(1_800_000_000));
        let server = Server::bind_with_clock(config, clock.clone()).unwrap();
        let base = format!("http://{}", server.local_addr());
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        TestApp {
            base,
            clock,
            db_path,
            handle,
            thread: Some(thread),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(30))
                .build(),
            _database: database,
            _dir: dir,
        }
    }

    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    pub fn store(&self) -> Store {
        Store::open(&self.db_path).unwrap()
    }

    /// Rows in `table`, read straight from the database (on SQLite, WAL included).
    pub fn count_rows(&self, table: &str) -> i64 {
        self.db().count_rows(table)
    }

    /// A direct connection to this server's database, to read what it stored.
    pub fn db(&self) -> TestDb {
        TestDb::open(&self.db_path)
    }

    pub fn advance(&self, secs: f64) {
        self.clock.advance_millis((secs * 1000.0) as i64);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn finish(result: Result<ureq::Response, ureq::Error>) -> TestResponse {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("transport error: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .flat_map(|name| {
                response
                    .all(&name)
                    .into_iter()
                    .map(|v| (name.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let body = response.into_string().unwrap_or_default();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> TestResponse {
        let mut req = self.agent.request(method, &self.url(path));
        for (name, value) in headers {
            req = req.set(name, value);
        }
        TestApp::finish(match body {
            Some(body) => req.send_bytes(body),
            None => req.call(),
        })
    }

    pub fn get(&self, path: &str) -> TestResponse {
        self.request("GET", path, &[], None)
    }

    pub fn post_form(&self, path: &str, pairs: &[(&str, &str)]) -> TestResponse {
        self.post_form_with(path, pairs, &[])
    }

    pub fn post_form_with(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let body = serde_urlencoded::to_string(pairs).unwrap();
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, Some(body.as_bytes()))
    }

    pub fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }

    pub fn device_authorize(&self, client_id: &str) -> DeviceCodes {
        let resp = self.post_form("/oauth/device_authorize", &[("client_id", client_id)]);
        assert_eq!(resp.status, 200, "{}", resp.body);
        let body = resp.json();
        DeviceCodes {
            device_code: body["device_code"].as_str().unwrap().to_string(),
            user_code: body["user_code"].as_str().unwrap().to_string(),
            body,
        }
    }

    pub fn poll(&self, client_id: &str, device_code: &str) -> TestResponse {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", client_id),
                ("device_code", device_code),
            ],
        )
    }

    pub fn add_user(&self, name: &str) -> UserId {
        let hash = devicegate::secrets::hash_password("password123").unwrap();
        self.store().create_user(name, &hash, 0).unwrap()
    }

    /// A client with a chosen secret (`None`: public) and grant types.
    pub fn add_client(&self, client_id: &str, secret: Option<&str>, grants: &[&str]) {
        let scopes = vec!["read".to_string(), "write".to_string()];
        let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
        let hash = secret.map(devicegate::secrets::hash_secret);
        self.store()
            .create_client(
                &NewClient {
                    client_id,
                    name: "Test client",
                    secret_hash: hash.as_deref(),
                    scopes: &scopes,
                    grant_types: &grants,
                    device_code_ttl: None,
                    poll_interval: None,
                },
                0,
            )
            .unwrap();
    }

    pub fn approve(&self, user_code: &str, user_id: UserId) {
        devicegate::protocol::approval::decide(
            &self.store(),
            user_code,
            Decision::Approve { user_id },
            Actor::Operator,
            self.clock.now(),
        )
        .unwrap();
    }

    pub fn deny(&self, user_code: &str) {
        devicegate::protocol::approval::decide(
            &self.store(),
            user_code,
            Decision::Deny,
            Actor::Operator,
            self.clock.now(),
        )
        .unwrap();
    }

    /// Runs a whole device login for `guest` and returns the token response body.
    pub fn login(&self, username: &str) -> Value {
        let user_id = self
            .store()
            .find_user_by_name(username)
            .unwrap()
            .map(|u| u.id)
            .unwrap_or_else(|| self.add_user(username));
        let codes = self.device_authorize("guest");
        self.approve(&codes.user_code, user_id);
        let resp = self.poll("guest", &codes.device_code);
        assert_eq!(resp.status, 200, "{}", resp.body);
        resp.json()
    }

    pub fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> TestResponse {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            pairs.push(("scope", scope));
        }
        self.post_form("/oauth/token", &pairs)
    }

    pub fn userinfo(&self, access_token: &str) -> TestResponse {
        let auth = format!("Bearer {access_token}");
        self.request("GET", "/oauth/userinfo", &[("Authorization", &auth)], None)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A browser stand-in: keeps the session cookie (and, before sign-in, the anonymous
/// `dg_csrf` cookie), reads CSRF tokens out of forms.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    cookie: std::cell::RefCell<Option<String>>,
    csrf_cookie: std::cell::RefCell<Option<String>>,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Browser<'a> {
        Browser {
            app,
            cookie: std::cell::RefCell::new(None),
            csrf_cookie: std::cell::RefCell::new(None),
        }
    }

    /// The anonymous CSRF cookie's value, if the server set one.
    pub fn csrf_cookie(&self) -> Option<String> {
        self.csrf_cookie.borrow().clone()
    }

    pub fn cookie(&self) -> Option<String> {
        self.cookie.borrow().clone()
    }

    pub fn set_cookie(&self, value: Option<String>) {
        *self.cookie.borrow_mut() = value;
    }

    fn remember(&self, resp: &TestResponse) {
        let sets = resp
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"));
        for (_, set) in sets {
            let pair = set.split(';').next().unwrap().trim();
            let (name, value) = pair.split_once('=').unwrap();
            let value = (!value.is_empty()).then(|| value.to_string());
            match name {
                "dg_session" => *self.cookie.borrow_mut() = value,
                "dg_csrf" => *self.csrf_cookie.borrow_mut() = value,
                other => panic!("unexpected cookie {other}"),
            }
        }
    }

    /// The `Cookie` header value this browser would send (session and CSRF cookies).
    pub fn cookie_header(&self) -> Option<String> {
        let pairs: Vec<String> = [
            self.cookie().map(|c| format!("dg_session={c}")),
            self.csrf_cookie().map(|c| format!("dg_csrf={c}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    pub fn get(&self, path: &str) -> TestResponse {
        let cookie = self.cookie_header();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let resp = self.app.request("GET", path, &headers, None);
        self.remember(&resp);
        resp
    }

    pub fn post(&self, path: &str, pairs: &[(&str, &str)]) -> TestResponse {
        let cookie = self.cookie_header();
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", c.as_str())).collect();
        let resp = self.app.post_form_with(path, pairs, &headers);
        self.remember(&resp);
        resp
    }

    pub fn post_json(&self, path: &str, body: &Value, extra: &[(&str, &str)]) -> TestResponse {
        let cookie = self.cookie_header();
        let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        headers.extend(cookie.iter().map(|c| ("Cookie", c.as_str())));
        headers.extend_from_slice(extra);
        let resp = self
            .app
            .request("POST", path, &headers, Some(body.to_string().as_bytes()));
        self.remember(&resp);
        resp
    }

    /// A browser signed in as `username` (added with `TestApp::add_user`'s password).
    pub fn signed_in(app: &'a TestApp, username: &str) -> Browser<'a> {
        let browser = Browser::new(app);
        let resp = browser.sign_in(username, "password123");
        assert_eq!(resp.status, 303, "sign-in as {username}: {}", resp.body);
        browser
    }

    /// Opens the verification page and signs in through the form.
    pub fn sign_in(&self, username: &str, password: &str) -> TestResponse {
        let page = self.get("/oauth/device");
        let csrf = csrf_token(&page.body);
        self.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", username),
                ("password", password),
                ("next", "/oauth/device"),
            ],
        )
    }

    /// Submits the code form with `typed`, as a person would: the consent page, or why not.
    pub fn enter_code(&self, typed: &str) -> TestResponse {
        let csrf = self.csrf();
        self.post(
            "/oauth/device",
            &[("csrf_token", &csrf), ("user_code", typed)],
        )
    }

    /// Opens a URL carrying a code (`/oauth/device?user_code=…`, `/oauth/device/<code>`,
    /// also under `/auth/v1`), which only shows it prefilled, and submits that form
    /// unchanged: the consent page, or why not.
    pub fn confirm_code(&self, path: &str) -> TestResponse {
        let page = self.get(path);
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = csrf_token(&page.body);
        let typed = input_value(&page.body, "user_code");
        let action = match path.split_once('?') {
            Some((action, _)) => action,
            None => path.rsplit_once('/').unwrap().0,
        };
        self.post(action, &[("csrf_token", &csrf), ("user_code", &typed)])
    }

    /// The current session's CSRF token, read from a freshly loaded page.
    pub fn csrf(&self) -> String {
        csrf_token(&self.get("/oauth/device").body)
    }

    /// Approve (`"approve"`) or deny (`"deny"`) from the consent page, with this session's
    /// CSRF token.
    pub fn decide(&self, user_code: &str, decision: &str) -> TestResponse {
        let csrf = self.csrf();
        self.post(
            "/oauth/device/decision",
            &[
                ("csrf_token", &csrf),
                ("user_code", user_code),
                ("decision", decision),
            ],
        )
    }
}

/// The value of the input named `name` in an HTML page, unescaped.
pub fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in: {html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The `csrf_token` hidden field's value in an HTML page.
pub fn csrf_token(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF field in: {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// An HTTP client for the `oauth2` and `openidconnect` crates (one type: `openidconnect`
/// re-exports `oauth2`'s). Their built-in `ureq` 2 adapter turns every 4xx into a transport
/// error, so they would never see `access_denied` (they back off and poll on until the code
/// expires); this adapter hands 4xx responses to the crate as responses.
pub fn oauth2_http(
) -> impl Fn(oauth2::HttpRequest) -> Result<oauth2::HttpResponse, Box<ureq::Error>> {
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    move |request: oauth2::HttpRequest| {
        let mut req = agent.request(request.method().as_str(), &request.uri().to_string());
        for (name, value) in request.headers() {
            req = req.set(name.as_str(), value.to_str().unwrap());
        }
        let response = match req.send_bytes(request.body()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(Box::new(e)),
        };
        let mut builder = oauth2::http::Response::builder().status(response.status());
        if let Some(ct) = response.header("content-type") {
            builder = builder.header("content-type", ct);
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        Ok(builder.body(body).unwrap())
    }
}
