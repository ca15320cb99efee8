//! The verification pages over real HTTP: the journey, its errors, and its protections.

use serde_json::json;

use crate::support::{csrf_token, Browser, TestApp, TestResponse};

fn assert_html_security_headers(resp: &TestResponse) {
    let csp = resp.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("style-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "no script allowed: {csp}");
    assert_eq!(resp.header("x-frame-options"), Some("DENY"));
    assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
}

/// A pending code for `guest` stored as if the device had asked from `ip`.
fn code_from(app: &TestApp, ip: &str) -> String {
    let user_code = devicegate::secrets::new_user_code();
    let now = app.clock.now().secs();
    let stored = app
        .store()
        .create_device_code(devicegate::store::NewDeviceCode {
            device_code_hash: devicegate::secrets::hash_secret(&format!("dc-{user_code}")),
            user_code: user_code.clone(),
            client_id: "guest".into(),
            scope: "read write".into(),
            interval: 5,
            device_ip: ip.into(),
            device_user_agent: Some("campus-cli/2.1".into()),
            created_at: now,
            expires_at: now + 600,
        })
        .unwrap();
    assert!(stored);
    devicegate::secrets::display_user_code(&user_code)
}

#[test]
fn sign_in_returns_to_the_consent_page_with_the_code_kept() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    let browser = Browser::new(&app);
    let path = format!("/auth/v1/oauth/device?user_code={}", codes.user_code);
    let page = browser.get(&path);
    assert_eq!(page.status, 200);
    assert_html_security_headers(&page);
    assert!(
        page.body.contains(r#"name="username""#)
            && page.body.contains(r#"autocomplete="username""#)
    );
    assert!(page.body.contains(r#"autocomplete="current-password""#));
    // Before sign-in there is no session, only the anonymous CSRF cookie.
    assert_eq!(browser.cookie(), None);
    let csrf = csrf_token(&page.body);
    assert_eq!(browser.csrf_cookie().as_deref(), Some(csrf.as_str()));
    let resp = browser.post(
        "/auth/v1/login",
        &[
            ("csrf_token", &csrf),
            ("username", "alice"),
            ("password", "password123"),
            ("next", &path),
        ],
    );
    assert_eq!(resp.status, 303);
    assert_eq!(resp.header("location"), Some(path.as_str()));
    assert!(browser.cookie().is_some(), "a new session id on sign-in");
    // Back at the page: the code is shown prefilled; confirming it leads to consent.
    let consent = browser.confirm_code(&path);
    assert_eq!(consent.status, 200);
    assert_html_security_headers(&consent);
    for expected in [
        "Command-line sign-in",
        "guest",
        codes.user_code.as_str(),
        "127.0.0.1",
        "Read your data",
        "Change your data",
        ">Approve<",
        ">Deny<",
    ] {
        assert!(
            consent.body.contains(expected),
            "missing {expected}: {}",
            consent.body
        );
    }
    assert!(!consent.body.contains("different network"));
}

#[test]
fn code_in_the_path_works_under_the_campus_prefix() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.confirm_code(&format!("/auth/v1/oauth/device/{}", codes.user_code));
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&codes.user_code));
    assert!(page
        .body
        .contains(r#"action="/auth/v1/oauth/device/decision""#));
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let wrong = Browser::new(&app).sign_in("alice", "nope-nope");
    let unknown = Browser::new(&app).sign_in("mallory", "nope-nope");
    for resp in [&wrong, &unknown] {
        assert_eq!(resp.status, 401);
        assert!(resp
            .body
            .contains("That user name and password do not match."));
    }
}

#[test]
fn only_same_site_paths_are_redirect_targets() {
    let app = TestApp::spawn();
    app.add_user("alice");
    for next in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let browser = Browser::new(&app);
        let csrf = csrf_token(&browser.get("/oauth/device").body);
        let resp = browser.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "alice"),
                ("password", "password123"),
                ("next", next),
            ],
        );
        assert_eq!(resp.status, 303);
        assert_eq!(resp.header("location"), Some("/oauth/device"), "for {next}");
    }
}

#[test]
fn code_form_accepts_lower_case_without_dash_and_with_spaces() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    let entry = browser.get("/oauth/device");
    for attr in [
        r#"name="user_code""#,
        r#"autocapitalize="characters""#,
        r#"autocomplete="one-time-code""#,
        r#"spellcheck="false""#,
    ] {
        assert!(entry.body.contains(attr), "{attr}");
    }
    for typed in [
        |c: &str| c.replace('-', "").to_lowercase(),
        |c: &str| format!(" {} ", c.replace('-', " ")),
    ] {
        let codes = app.device_authorize("guest");
        let csrf = browser.csrf();
        let resp = browser.post(
            "/oauth/device",
            &[
                ("csrf_token", &csrf),
                ("user_code", &typed(&codes.user_code)),
            ],
        );
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert!(resp.body.contains(">Approve<"), "{}", resp.body);
        assert!(resp.body.contains(&codes.user_code));
    }
}

#[test]
fn characters_outside_the_alphabet_get_a_helpful_message() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    let csrf = browser.csrf();
    let resp = browser.post(
        "/oauth/device",
        &[("csrf_token", &csrf), ("user_code", "BCDF-GHJ0")],
    );
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("never contains “0”"), "{}", resp.body);
    let resp = browser.post(
        "/oauth/device",
        &[("csrf_token", &csrf), ("user_code", "BCD")],
    );
    assert_eq!(resp.status, 400);
    assert!(resp.body.contains("8 characters"));
}

#[test]
fn approving_reaches_the_device_and_the_back_button_cannot_reuse_the_code() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    let browser = Browser::signed_in(&app, "alice");
    let resp = browser.decide(&codes.user_code, "approve");
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("return to your device"));
    assert_html_security_headers(&resp);
    let tokens = app.poll("guest", &codes.device_code);
    assert_eq!(tokens.status, 200);
    // Back button + resubmit, or changing one's mind afterwards: the code is spent.
    for decision in ["approve", "deny"] {
        let again = browser.decide(&codes.user_code, decision);
        assert_eq!(again.status, 409, "{decision}");
        assert!(again.body.contains("already used"));
    }
    let page = browser.confirm_code(&format!("/oauth/device?user_code={}", codes.user_code));
    assert_eq!(page.status, 409);
}

#[test]
fn denying_reaches_the_device_as_access_denied_and_cannot_be_undone() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    let browser = Browser::signed_in(&app, "alice");
    let resp = browser.decide(&codes.user_code, "deny");
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains("Request denied"));
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "access_denied"
    );
    let again = browser.decide(&codes.user_code, "approve");
    assert_eq!(again.status, 409);
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "access_denied"
    );
}

#[test]
fn unknown_and_expired_codes_get_clear_pages() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    let unknown = browser.enter_code("BCDF-GHJK");
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("could not find that code"));
    let codes = app.device_authorize("guest");
    app.advance(601.0);
    let expired = browser.enter_code(&codes.user_code);
    assert_eq!(expired.status, 410);
    assert!(expired.body.contains("expired"));
    assert_eq!(browser.decide(&codes.user_code, "approve").status, 410);
}

#[test]
fn post_without_or_with_another_sessions_csrf_token_is_403_and_changes_nothing() {
    let app = TestApp::spawn();
    app.add_user("alice");
    app.add_user("eve");
    let codes = app.device_authorize("guest");
    let alice = Browser::signed_in(&app, "alice");
    let eve = Browser::signed_in(&app, "eve");
    let eves_token = eve.csrf();
    let none = alice.post(
        "/oauth/device/decision",
        &[("user_code", &codes.user_code), ("decision", "approve")],
    );
    assert_eq!(none.status, 403);
    assert_html_security_headers(&none);
    let foreign = alice.post(
        "/oauth/device/decision",
        &[
            ("csrf_token", &eves_token),
            ("user_code", &codes.user_code),
            ("decision", "approve"),
        ],
    );
    assert_eq!(foreign.status, 403);
    // No cookie at all (a cross-site form post with SameSite=Lax cookies withheld).
    let anonymous = app.post_form(
        "/oauth/device/decision",
        &[
            ("csrf_token", &eves_token),
            ("user_code", &codes.user_code),
            ("decision", "approve"),
        ],
    );
    assert_eq!(anonymous.status, 403);
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "authorization_pending"
    );
    // Sign-in and sign-out forms are protected too.
    let fresh = Browser::new(&app);
    fresh.get("/oauth/device");
    let login = fresh.post(
        "/login",
        &[("username", "alice"), ("password", "password123")],
    );
    assert_eq!(login.status, 403);
    assert_eq!(alice.post("/logout", &[]).status, 403);
}

#[test]
fn failed_code_entries_lock_the_account_for_a_while() {
    let app = TestApp::spawn();
    app.add_user("alice");
    app.add_user("bob");
    let browser = Browser::signed_in(&app, "alice");
    for _ in 0..5 {
        let resp = browser.enter_code("BCDF-GHJK");
        assert_eq!(resp.status, 404);
    }
    // Now even a valid code is refused, on the form and on the decision.
    let codes = app.device_authorize("guest");
    let locked = browser.enter_code(&codes.user_code);
    assert_eq!(locked.status, 429);
    assert!(
        locked.body.contains("try again in 10 minutes"),
        "{}",
        locked.body
    );
    assert!(locked.header("retry-after").is_some());
    assert_eq!(browser.decide(&codes.user_code, "approve").status, 429);
    // Another account at the same address is not (a classroom shares one address).
    let bob = Browser::signed_in(&app, "bob");
    assert_eq!(bob.enter_code(&codes.user_code).status, 200);
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "authorization_pending"
    );
    // The window passes.
    app.advance(601.0);
    let codes = app.device_authorize("guest");
    assert_eq!(browser.enter_code(&codes.user_code).status, 200);
}

#[test]
fn malformed_codes_count_as_failures_and_success_does_not_reset_the_counter() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    for bad in ["AAAA-AAAA", "x", "BCDF-GHJK", "<script>"] {
        assert!(browser.enter_code(bad).status >= 400);
    }
    let good = app.device_authorize("guest");
    assert_eq!(browser.decide(&good.user_code, "approve").status, 200);
    // One more failure makes five: locked, the success in between notwithstanding.
    assert_eq!(browser.enter_code("BCDF-GHJK").status, 404);
    assert_eq!(browser.enter_code("BCDF-GHJK").status, 429);
}

#[test]
fn failed_sign_ins_lock_the_user_name() {
    let app = TestApp::spawn();
    app.add_user("alice");
    for _ in 0..5 {
        assert_eq!(
            Browser::new(&app).sign_in("alice", "wrong-password").status,
            401
        );
    }
    let resp = Browser::new(&app).sign_in("alice", "password123");
    assert_eq!(resp.status, 429);
    assert!(resp.body.contains("try again in"));
    app.advance(601.0);
    assert_eq!(
        Browser::new(&app).sign_in("alice", "password123").status,
        303
    );
}

#[test]
fn session_cookie_attributes() {
    let app = TestApp::spawn();
    app.add_user("alice");
    // The anonymous CSRF cookie (a page view) and the session cookie (a sign-in) alike.
    let resp = app.get("/oauth/device");
    let cookie = resp.header("set-cookie").unwrap();
    for attr in ["dg_csrf=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"));
    let signed_in = Browser::new(&app).sign_in("alice", "password123");
    let cookie = signed_in.header("set-cookie").unwrap();
    for attr in ["dg_session=", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"));
    let https = TestApp::spawn_with(|c| c.issuer = Some("https://auth.example.com".into()));
    let cookie = https
        .get("/oauth/device")
        .header("set-cookie")
        .unwrap()
        .to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[test]
fn sessions_expire_when_idle_and_sign_out_ends_them() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    assert!(browser.get("/oauth/device").body.contains("Enter the code"));
    app.advance(31.0 * 60.0);
    assert!(browser.get("/oauth/device").body.contains("Sign in"));

    browser.sign_in("alice", "password123");
    let old = browser.cookie();
    let csrf = browser.csrf();
    let resp = browser.post("/logout", &[("csrf_token", &csrf)]);
    assert_eq!(resp.status, 303);
    assert!(resp.header("set-cookie").unwrap().contains("Max-Age=0"));
    browser.set_cookie(old);
    assert!(
        browser.get("/oauth/device").body.contains("Sign in"),
        "old id is dead"
    );
}

#[test]
fn identity_never_comes_from_the_query_string() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let codes = app.device_authorize("guest");
    let page = app.get(&format!(
        "/oauth/device?user_code={}&user=alice&user_id=1",
        codes.user_code
    ));
    assert!(page.body.contains("Sign in"));
    assert!(!page.body.contains(">Approve<"));
}

#[test]
fn hostile_user_codes_are_escaped_and_refused() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::new(&app);
    // Before sign-in, the hostile value sits in the `next` field: escaped.
    let page = browser.get("/oauth/device?user_code=%3Cscript%3Ealert(1)%3C/script%3E%22");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>"));
    browser.sign_in("alice", "password123");
    // Signed in, it is shown prefilled (escaped) for confirmation; submitting it is a 400.
    let page = browser.get("/oauth/device?user_code=%3Cscript%3Ealert(1)%3C/script%3E%22");
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("&lt;"));
    let resp = browser.confirm_code("/oauth/device?user_code=%3Cscript%3Ealert(1)%3C/script%3E%22");
    assert_eq!(resp.status, 400);
    assert!(!resp.body.contains("<script>"));
    assert!(resp.body.contains("&lt;"));
    let huge = "A".repeat(10 * 1024);
    let resp = browser.enter_code(&huge);
    assert_eq!(resp.status, 400);
    assert!(resp.body.len() < 5000);
    let page = browser.get(&format!("/oauth/device?user_code={huge}"));
    assert_eq!(page.status, 200);
    assert!(page.body.len() < 5000);
    let resp = browser.confirm_code("/oauth/device/%22%3E%3Cimg%20src=x%3E");
    assert!(resp.status == 400 || resp.status == 429);
    assert!(!resp.body.contains("<img"));
}

#[test]
fn a_request_from_another_network_is_flagged_and_deny_is_suggested() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    let remote = code_from(&app, "203.0.113.7");
    let page = browser.enter_code(&remote);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("different network"), "{}", page.body);
    assert!(page.body.contains("203.0.113.7"));
    assert!(page.body.contains("campus-cli/2.1"));
    let deny = page.body.find(">Deny<").unwrap();
    let approve = page.body.find(">Approve<").unwrap();
    assert!(deny < approve, "Deny comes first when the networks differ");
    let local = code_from(&app, "127.0.0.1");
    let page = browser.enter_code(&local);
    assert!(!page.body.contains("different network"));
}

#[test]
fn campus_json_approval_uses_the_session_user_only() {
    let app = TestApp::spawn();
    let alice_id = app.add_user("alice");
    app.add_user("mallory");
    let codes = app.device_authorize("guest");
    let path = "/auth/v1/oauth/device/authorize";
    // No session: 401, whatever the body claims.
    let resp = app.post_json(
        path,
        &json!({"user_code": codes.user_code, "user_id": alice_id}),
    );
    assert_eq!(resp.status, 401);
    let mallory = Browser::signed_in(&app, "mallory");
    let csrf = mallory.csrf();
    // No CSRF token: 403.
    let resp = mallory.post_json(path, &json!({"user_code": codes.user_code}), &[]);
    assert_eq!(resp.status, 403);
    // Claiming to be alice: 403.
    let resp = mallory.post_json(
        path,
        &json!({"user_code": codes.user_code, "user_id": alice_id.to_string()}),
        &[("X-CSRF-Token", &csrf)],
    );
    assert_eq!(resp.status, 403);
    assert_eq!(resp.json()["error"], "forbidden");
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "authorization_pending"
    );
    // As herself, with the token: approved for mallory.
    let resp = mallory.post_json(
        path,
        &json!({"user_code": codes.user_code}),
        &[("X-CSRF-Token", &csrf)],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"success": true}));
    assert_eq!(app.poll("guest", &codes.device_code).status, 200);
    let resp = mallory.post_json(
        path,
        &json!({"user_code": codes.user_code, "csrf_token": csrf}),
        &[],
    );
    assert_eq!(resp.status, 409);
    assert_eq!(resp.json()["error"], "already_used");
    let resp = mallory.post_json(
        path,
        &json!({"user_code": "BCDF-GHJK", "csrf_token": csrf}),
        &[],
    );
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"], "invalid_code");
    let denied = app.device_authorize("guest");
    app.deny(&denied.user_code);
    let resp = mallory.post_json(
        path,
        &json!({"user_code": denied.user_code, "csrf_token": csrf}),
        &[],
    );
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (409, json!("denied"))
    );
    let old = app.device_authorize("guest");
    app.advance(601.0);
    let resp = mallory.post_json(
        path,
        &json!({"user_code": old.user_code, "csrf_token": csrf}),
        &[],
    );
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (409, json!("expired"))
    );
}

#[test]
fn stylesheet_is_served_and_pages_use_it() {
    let app = TestApp::spawn();
    let css = app.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.body.contains("prefers-color-scheme: dark"));
    assert!(app
        .get("/oauth/device")
        .body
        .contains(r#"href="/static/style.css""#));
}
