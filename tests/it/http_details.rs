//! Issue #13 items 11, 12 and the routing of item 8: an issuer with a path (every URL
//! handed out is served), HEAD's `Content-Length`, 405 with the exact `Allow` for every
//! route, Basic `client_id:` with an empty password, `GET /` and the 404 for browsers.

use std::collections::BTreeSet;

use base64::Engine;

use crate::support::{
    assert_oauth_error, csrf_token, free_port, input_value, Browser, TestApp, TestResponse,
    DEVICE_GRANT,
};
use devicegate::{Config, Server};

const METRICS_TOKEN: &str = "a-metrics-token-long-enough-1234";

/// Firefox's `Accept` for a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

// ---- item 11: an issuer with a path --------------------------------------------------

/// A server whose issuer is `http://127.0.0.1:<port><path>` (no issuer configured when
/// `path` is `None`), listening on that port.
fn spawn_with_issuer_path(path: Option<&str>) -> (TestApp, String) {
    let port = free_port();
    let issuer = path.map(|p| format!("http://127.0.0.1:{port}{p}"));
    let configured = issuer.clone();
    let app = TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}");
        c.issuer = configured;
        // So `/metrics` exists (without a token it is a 404 by design).
        c.metrics_token = Some(METRICS_TOKEN.into());
    });
    let issuer = issuer.unwrap_or_else(|| app.base.clone());
    (app, issuer)
}

/// The path of a URL this server handed out; fails when it points anywhere else.
fn path_of(app: &TestApp, url: &str) -> String {
    let path = url
        .strip_prefix(&app.base)
        .unwrap_or_else(|| panic!("{url} is not on {}", app.base));
    assert!(path.starts_with('/'), "{url}");
    path.to_string()
}

/// Every `href="…"` and `action="…"` in a page (the stylesheet, links, form actions).
fn links(html: &str, attribute: &str) -> Vec<String> {
    let marker = format!("{attribute}=\"");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

/// What a browser follows on a page: links (GET) and form actions (POST).
#[derive(Default)]
struct Crawl {
    gets: BTreeSet<String>,
    posts: BTreeSet<String>,
}

impl Crawl {
    fn page(&mut self, resp: &TestResponse) {
        assert_eq!(resp.status, 200, "{}", resp.body);
        self.gets.extend(links(&resp.body, "href"));
        self.posts.extend(links(&resp.body, "action"));
    }

    fn redirect(&mut self, resp: &TestResponse) -> String {
        assert_eq!(resp.status, 303, "{}", resp.body);
        let location = resp.header("location").unwrap().to_string();
        self.gets.insert(location.clone());
        location
    }
}

/// Fetches every URL the server hands out under the mount `mount` (`""` or `/auth/v1`,
/// after the issuer's path) and asserts none is a 404: the metadata at each of its
/// locations, every endpoint it lists, verification_uri(_complete), every link and form
/// action of the pages on the way through a whole approval, and every redirect.
fn every_handed_out_url_is_served(app: &TestApp, issuer: &str, mount: &str) {
    let issuer_path = issuer
        .trim_end_matches('/')
        .strip_prefix(&app.base)
        .unwrap()
        .to_string();
    let base = format!("{}{mount}", issuer.trim_end_matches('/'));
    let under = format!("{issuer_path}{mount}");

    // Metadata at RFC 8414 §3's path-inserted location, under the issuer (OIDC Discovery
    // §4 and the long-standing one), and at the host's root.
    let mut locations = vec![
        format!("{under}/.well-known/oauth-authorization-server"),
        format!("{under}/.well-known/openid-configuration"),
    ];
    if !under.is_empty() {
        locations.push(format!("/.well-known/oauth-authorization-server{under}"));
    }
    let first = app.get(&locations[0]);
    assert_eq!(first.status, 200, "{}: {}", locations[0], first.body);
    let doc = first.json();
    for location in &locations[1..] {
        let resp = app.get(location);
        assert_eq!(resp.status, 200, "{location}");
        assert_eq!(resp.json(), doc, "{location}");
    }
    assert_eq!(doc["issuer"], issuer, "the issuer exactly as configured");
    let endpoint = |name: &str| {
        let url = doc[name].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!("{base}/")),
            "{name} {url} under {base}"
        );
        path_of(app, &url)
    };

    // Each endpoint answers as itself (never 404, never 405 to its own method).
    let resp = app.post_form(
        &endpoint("device_authorization_endpoint"),
        &[("client_id", "guest")],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let codes = resp.json();
    let device_code = codes["device_code"].as_str().unwrap().to_string();
    let user_code = codes["user_code"].as_str().unwrap().to_string();
    assert_eq!(codes["verification_uri"], format!("{base}/oauth/device"));
    assert_eq!(
        codes["verification_uri_complete"],
        format!("{base}/oauth/device?user_code={user_code}")
    );
    let token_path = endpoint("token_endpoint");
    let poll = |app: &TestApp| {
        app.post_form(
            &token_path,
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "guest"),
                ("device_code", &device_code),
            ],
        )
    };
    assert_oauth_error(&poll(app), 400, "authorization_pending");
    let resp = app.post_form(
        &endpoint("revocation_endpoint"),
        &[("client_id", "guest"), ("token", "unknown")],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = app.post_form(
        &endpoint("introspection_endpoint"),
        &[("client_id", "guest"), ("token", "unknown")],
    );
    assert_oauth_error(&resp, 401, "invalid_client");
    let resp = app.get(&endpoint("userinfo_endpoint"));
    assert_eq!(resp.status, 401, "{}", resp.body);

    // A person follows verification_uri_complete through sign-in, code and consent.
    let mut crawl = Crawl::default();
    let browser = Browser::new(app);
    let plain = browser.get(&path_of(app, codes["verification_uri"].as_str().unwrap()));
    crawl.page(&plain);
    let page = browser.get(&path_of(
        app,
        codes["verification_uri_complete"].as_str().unwrap(),
    ));
    crawl.page(&page);
    let sign_in = links(&page.body, "action")[0].clone();
    assert_eq!(sign_in, format!("{under}/login"));
    let next = input_value(&page.body, "next");
    assert!(next.starts_with(&format!("{under}/oauth/device")), "{next}");
    let signed_in = browser.post(
        &sign_in,
        &[
            ("csrf_token", &csrf_token(&page.body)),
            ("username", "alice"),
            ("password", "password123"),
            ("next", &next),
        ],
    );
    let after = crawl.redirect(&signed_in);
    let entry = browser.get(&after);
    crawl.page(&entry);
    assert_eq!(input_value(&entry.body, "user_code"), user_code);
    let code_action = links(&entry.body, "action")
        .into_iter()
        .find(|a| a.ends_with("/oauth/device"))
        .unwrap();
    let consent = browser.post(
        &code_action,
        &[
            ("csrf_token", &csrf_token(&entry.body)),
            ("user_code", &user_code),
        ],
    );
    crawl.page(&consent);
    let decision = links(&consent.body, "action")
        .into_iter()
        .find(|a| a.ends_with("/decision"))
        .unwrap();
    let approved = browser.post(
        &decision,
        &[
            ("csrf_token", &csrf_token(&consent.body)),
            ("user_code", &user_code),
            ("decision", "approve"),
        ],
    );
    crawl.page(&approved);
    crawl.page(&browser.get(&format!("{under}/account")));
    let root = app.get(&format!("{under}/"));
    assert_eq!(crawl.redirect(&root), format!("{under}/account"));
    crawl.redirect(&app.get(&format!("{under}/login")));

    // The device gets its tokens from the token endpoint it was given.
    let tokens = poll(app);
    assert_eq!(tokens.status, 200, "{}", tokens.body);

    // Every link a page or a redirect handed out is served...
    for link in &crawl.gets {
        assert!(
            link.starts_with(&format!("{under}/")),
            "{link} under {under}/"
        );
        let resp = browser.get(link);
        assert!(
            resp.status == 200 || resp.status == 303,
            "{link}: {} {}",
            resp.status,
            resp.body
        );
    }
    // ...and so is every form's action (an empty form fails its CSRF check: 403, not 404).
    assert!(crawl.posts.len() >= 4, "{:?}", crawl.posts);
    for action in &crawl.posts {
        assert!(action.starts_with(&format!("{under}/")), "{action}");
        let resp = app.post_form(action, &[]);
        assert!(
            ![404, 405].contains(&resp.status),
            "{action}: {} {}",
            resp.status,
            resp.body
        );
    }
}

fn crawl_both_mounts(issuer_path: Option<&str>) {
    let (app, issuer) = spawn_with_issuer_path(issuer_path);
    app.add_user("alice");
    every_handed_out_url_is_served(&app, &issuer, "");
    every_handed_out_url_is_served(&app, &issuer, "/auth/v1");
}

#[test]
fn every_url_handed_out_is_served_without_an_issuer_path() {
    crawl_both_mounts(None);
}

#[test]
fn every_url_handed_out_is_served_with_the_campus_path_as_issuer() {
    crawl_both_mounts(Some("/auth/v1"));
}

#[test]
fn every_url_handed_out_is_served_with_another_issuer_path() {
    crawl_both_mounts(Some("/sso"));
}

#[test]
fn the_campus_issuer_lists_endpoints_once_under_auth_v1() {
    let (app, issuer) = spawn_with_issuer_path(Some("/auth/v1"));
    for location in [
        "/.well-known/oauth-authorization-server/auth/v1",
        "/auth/v1/.well-known/oauth-authorization-server",
        "/auth/v1/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc = app.get(location).json();
        assert_eq!(doc["issuer"], issuer, "{location}");
        assert_eq!(
            doc["device_authorization_endpoint"],
            format!("{issuer}/oauth/device_authorize"),
            "{location}"
        );
    }
    let resp = app.post_form("/auth/v1/oauth/device_authorize", &[("client_id", "guest")]);
    assert_eq!(
        resp.json()["verification_uri"],
        format!("{issuer}/oauth/device"),
        "never …/auth/v1/auth/v1/…"
    );
}

#[test]
fn metadata_fetched_under_auth_v1_lists_endpoints_under_auth_v1() {
    let app = TestApp::spawn();
    let doc = app
        .get("/auth/v1/.well-known/oauth-authorization-server")
        .json();
    assert_eq!(doc["issuer"], app.base);
    for (name, path) in [
        ("device_authorization_endpoint", "/oauth/device_authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("userinfo_endpoint", "/oauth/userinfo"),
    ] {
        assert_eq!(doc[name], format!("{}/auth/v1{path}", app.base), "{name}");
    }
}

#[test]
fn a_trailing_slash_in_the_issuer_is_kept_in_issuer_and_left_out_of_urls() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}/sso/");
    let configured = issuer.clone();
    let app = TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}");
        c.issuer = Some(configured);
    });
    let resp = app.get("/.well-known/oauth-authorization-server/sso");
    assert_eq!(resp.status, 200);
    let doc = resp.json();
    assert_eq!(doc["issuer"], issuer);
    assert_eq!(
        doc["token_endpoint"],
        format!("http://127.0.0.1:{port}/sso/oauth/token")
    );
    assert_eq!(app.get("/sso/.well-known/openid-configuration").json(), doc);
}

#[test]
fn session_cookies_are_scoped_to_the_issuer_path() {
    let (app, _) = spawn_with_issuer_path(Some("/sso"));
    let page = app.get("/sso/oauth/device");
    let cookie = page.header("set-cookie").unwrap();
    assert!(cookie.contains("; Path=/sso;"), "{cookie}");
    // The stylesheet the page links to is under the issuer's path too.
    assert!(page.body.contains("href=\"/sso/static/style.css\""));
    assert_eq!(app.get("/sso/static/style.css").status, 200);
}

#[test]
fn an_issuer_whose_path_cannot_be_served_is_refused_at_start() {
    for (issuer, words) in [
        ("https://auth.example.com/sso?tenant=1", "query"),
        ("https://auth.example.com/sso#top", "fragment"),
        ("https://auth.example.com//sso", "empty segment"),
        ("https://auth.example.com/a/../sso", "`..`"),
        ("https://auth.example.com/caf%C3%A9", "percent-encoding"),
        ("https://auth.example.com/account", "own routes"),
        // The session cookie's Path would be cut at `;`: nobody could sign in.
        ("https://auth.example.com/a;b", "no `;`"),
        ("https://auth.example.com/a,b", "no `;`"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            db_path: dir.path().join("d.db"),
            listen: "127.0.0.1:0".into(),
            log_level: "off".into(),
            issuer: Some(issuer.into()),
            ..Config::default()
        };
        let error = Server::bind(config)
            .err()
            .unwrap_or_else(|| panic!("{issuer} accepted"))
            .to_string();
        assert!(error.contains("--issuer"), "{error}");
        assert!(error.contains(words), "{issuer}: {error}");
    }
}

// ---- item 8 (routing): GET / and the 404 ------------------------------------------------

#[test]
fn the_bare_address_sends_people_to_their_account_page() {
    let app = TestApp::spawn();
    for (path, location) in [
        ("/", "/account"),
        ("/auth/v1/", "/auth/v1/account"),
        ("/auth/v1", "/auth/v1/account"),
    ] {
        let resp = app.get(path);
        assert_eq!(resp.status, 303, "{path}");
        assert_eq!(resp.header("location"), Some(location), "{path}");
        assert_eq!(resp.header("cache-control"), Some("no-store"));
    }
    let head = app.request("HEAD", "/", &[], None);
    assert_eq!(head.status, 303);
    assert_eq!(head.header("location"), Some("/account"));
    let (sso, _) = spawn_with_issuer_path(Some("/sso"));
    assert_eq!(sso.get("/sso").header("location"), Some("/sso/account"));
    assert_eq!(sso.get("/sso/").header("location"), Some("/sso/account"));
}

#[test]
fn an_unknown_path_is_a_page_for_browsers_and_json_for_api_clients() {
    let (app, _) = spawn_with_issuer_path(Some("/sso"));
    let page = app.request("GET", "/sso/nowhere", &[("Accept", BROWSER_ACCEPT)], None);
    assert_eq!(page.status, 404);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.header("content-security-policy").is_some());
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert!(page.body.contains("Page not found"), "{}", page.body);
    // Which 404 depends on `Accept`: a shared cache must keep them apart.
    assert_eq!(page.header("vary"), Some("Accept"));
    assert!(
        page.body.contains("href=\"/sso/oauth/device\""),
        "a link to the start: {}",
        page.body
    );
    for accept in [None, Some("*/*"), Some("application/json")] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("Accept", *a)).collect();
        let resp = app.request("GET", "/sso/nowhere", &headers, None);
        assert_eq!(resp.status, 404, "{accept:?}");
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.json(), serde_json::json!({"error": "not_found"}));
        assert_eq!(resp.header("vary"), Some("Accept"), "{accept:?}");
    }
    // A browser's POST to nowhere gets the page too; HEAD the same head without a body.
    let post = app.request("POST", "/nowhere", &[("Accept", BROWSER_ACCEPT)], Some(b""));
    assert_eq!(post.status, 404);
    assert_eq!(
        post.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

// ---- item 12: HEAD, 405, Basic with an empty password ------------------------------------

/// One request over a fresh connection (`Connection: close`): the status, the head's
/// `Content-Length` (if any) and the bytes after the head.
fn raw(app: &TestApp, method: &str, path: &str) -> (u16, Option<usize>, Vec<u8>) {
    let addr = app.base.strip_prefix("http://").unwrap();
    let out = crate::support::raw_http_bytes(
        addr,
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head[9..12].parse().unwrap();
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().unwrap())
    });
    (status, length, out[split + 4..].to_vec())
}

#[test]
fn head_answers_carry_the_length_get_would_send() {
    let app = TestApp::spawn_with(|c| c.metrics_token = Some(METRICS_TOKEN.into()));
    for path in [
        "/.well-known/oauth-authorization-server",
        "/auth/v1/.well-known/openid-configuration",
        "/healthz",
        "/oauth/device",
        "/oauth/device?user_code=BCDF-GHJK",
        "/static/style.css",
        "/account",
        "/",
        "/oauth/userinfo",
        "/metrics",
    ] {
        let (get_status, get_length, get_body) = raw(&app, "GET", path);
        let (head_status, head_length, head_body) = raw(&app, "HEAD", path);
        assert_eq!(head_status, get_status, "{path}");
        assert_eq!(get_length, Some(get_body.len()), "{path}");
        assert_eq!(head_length, get_length, "{path}: HEAD's Content-Length");
        assert!(head_body.is_empty(), "{path}: HEAD sent a body");
        if path != "/" {
            assert_ne!(head_length, Some(0), "{path}");
        }
    }
}

/// Every route, the methods it answers (as `Allow` lists them) and a path to reach it.
const ROUTES: &[(&str, &str)] = &[
    ("/", "GET, HEAD"),
    ("/oauth/device_authorize", "POST"),
    ("/oauth/token", "POST"),
    ("/.well-known/oauth-authorization-server", "GET, HEAD"),
    ("/.well-known/openid-configuration", "GET, HEAD"),
    ("/oauth/revoke", "POST"),
    ("/oauth/introspect", "POST"),
    ("/oauth/userinfo", "GET, HEAD, POST"),
    ("/account", "GET, HEAD"),
    ("/account/revoke", "POST"),
    ("/metrics", "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/oauth/device", "GET, HEAD, POST"),
    ("/oauth/device/decision", "POST"),
    ("/oauth/device/authorize", "POST"),
    ("/oauth/device/BCDF-GHJK", "GET, HEAD"),
    ("/login", "GET, HEAD, POST"),
    ("/logout", "POST"),
    ("/static/style.css", "GET, HEAD"),
];

#[test]
fn every_route_answers_other_methods_with_405_and_its_exact_allow_list() {
    let (app, _) = spawn_with_issuer_path(Some("/sso"));
    for (path, allow) in ROUTES {
        for mount in ["", "/auth/v1", "/sso", "/sso/auth/v1"] {
            let full = format!("{mount}{path}");
            for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
                let allowed = allow.split(", ").any(|m| m == method);
                let body: Option<&[u8]> = (method != "GET" && method != "HEAD").then_some(b"");
                let resp = app.request(method, &full, &[], body);
                if allowed {
                    assert!(
                        ![404, 405].contains(&resp.status),
                        "{method} {full}: {}",
                        resp.status
                    );
                    continue;
                }
                assert_eq!(resp.status, 405, "{method} {full}: {}", resp.body);
                assert_eq!(resp.header("allow"), Some(*allow), "{method} {full}");
                assert_eq!(resp.header("content-type"), Some("application/json"));
                if method != "HEAD" {
                    assert_eq!(resp.json()["error"], "invalid_request");
                }
            }
        }
    }
}

#[test]
fn the_campus_approval_path_is_never_read_as_a_user_code() {
    let app = TestApp::spawn();
    for path in ["/oauth/device/authorize", "/auth/v1/oauth/device/authorize"] {
        let resp = app.get(path);
        assert_eq!(resp.status, 405, "{path}: {}", resp.body);
        assert_eq!(resp.header("allow"), Some("POST"));
    }
    // A path with more segments is no user code either.
    assert_eq!(app.get("/oauth/device/BCDF/GHJK").status, 404);
}

fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

#[test]
fn basic_with_an_empty_password_is_a_public_client_and_each_poll_counts_once() {
    let app = TestApp::spawn();
    let auth = basic("guest", "");
    let headers = [("Authorization", auth.as_str())];
    let resp = app.post_form_with("/oauth/device_authorize", &[], &headers);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let codes = resp.json();
    let device_code = codes["device_code"].as_str().unwrap();
    let interval = codes["interval"].as_f64().unwrap();
    let poll = || {
        app.post_form_with(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
            &headers,
        )
    };
    for _ in 0..3 {
        assert_oauth_error(&poll(), 400, "authorization_pending");
        app.advance(interval);
    }
    let user = app.add_user("alice");
    app.approve(codes["user_code"].as_str().unwrap(), user);
    let tokens = poll();
    assert_eq!(tokens.status, 200, "{}", tokens.body);
}

#[test]
fn a_confidential_client_with_an_empty_password_still_fails() {
    let app = TestApp::spawn();
    app.add_client("backend", Some("s3cret"), &[DEVICE_GRANT]);
    for auth in [basic("backend", ""), basic("nobody", "")] {
        let resp = app.post_form_with(
            "/oauth/device_authorize",
            &[],
            &[("Authorization", auth.as_str())],
        );
        assert_oauth_error(&resp, 401, "invalid_client");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"devicegate\"")
        );
    }
    let resp = app.post_form_with(
        "/oauth/device_authorize",
        &[],
        &[("Authorization", basic("backend", "s3cret").as_str())],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// RFC 6749 §5.2: a client that used the Authorization header gets `WWW-Authenticate`
/// with every `invalid_client`, also when it authenticated as a public client that may
/// not use the endpoint.
#[test]
fn a_public_client_at_introspection_with_basic_gets_the_basic_challenge() {
    let app = TestApp::spawn();
    let resp = app.post_form_with(
        "/oauth/introspect",
        &[("token", "whatever")],
        &[("Authorization", basic("guest", "").as_str())],
    );
    assert_oauth_error(&resp, 401, "invalid_client");
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Basic realm=\"devicegate\"")
    );
    // Without Basic there is nothing to challenge.
    let resp = app.post_form(
        "/oauth/introspect",
        &[("client_id", "guest"), ("token", "x")],
    );
    assert_oauth_error(&resp, 401, "invalid_client");
    assert_eq!(resp.header("www-authenticate"), None);
}

/// `Authorization` is not a list: two of them make the request ambiguous (the first one
/// used to win silently), at the client endpoints and at userinfo alike.
#[test]
fn two_authorization_headers_are_refused_not_guessed() {
    let app = TestApp::spawn();
    app.add_client("conf", Some("s3cret"), &[DEVICE_GRANT]);
    let addr = app.base.trim_start_matches("http://");
    let body = "client_id=guest";
    for path in [
        "/oauth/device_authorize",
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
    ] {
        let answer = crate::support::raw_http(
            addr,
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Authorization: {}\r\nAuthorization: {}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                basic("guest", ""),
                basic("conf", "s3cret"),
                body.len()
            )
            .as_bytes(),
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        let json: serde_json::Value =
            serde_json::from_str(crate::support::raw_body(&answer)).unwrap();
        assert_eq!(json["error"], "invalid_request", "{path}");
    }
    let answer = crate::support::raw_http(
        addr,
        b"GET /oauth/userinfo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
          Authorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("WWW-Authenticate: Bearer realm=\"devicegate\", error=\"invalid_request\""),
        "{answer}"
    );
}
