//! `POST /oauth/device_authorize` (RFC 8628 §3.1–3.2) and client authentication.

use base64::Engine;
use serde_json::json;

use crate::support::{assert_no_store, assert_oauth_error, TestApp, DEVICE_GRANT};

fn basic(id: &str, secret: &str) -> String {
    // RFC 6749 §2.3.1: each part form-url-encoded, then Base64.
    let enc = |s: &str| serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_string();
    let raw = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[test]
fn success_has_every_member_with_the_right_types_and_no_store() {
    let app = TestApp::spawn();
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_no_store(&resp);
    let body = resp.json();
    let device_code = body["device_code"].as_str().unwrap();
    assert_eq!(device_code.len(), 43, "256 bits, base64url");
    let user_code = body["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(user_code
        .replace('-', "")
        .bytes()
        .all(|b| b"BCDFGHJKLMNPQRSTVWXZ23456789".contains(&b)));
    assert_eq!(
        body["verification_uri"],
        format!("{}/oauth/device", app.base)
    );
    assert_eq!(
        body["verification_uri_complete"],
        format!("{}/oauth/device?user_code={user_code}", app.base)
    );
    assert_eq!(body["expires_in"], json!(600));
    assert_eq!(body["interval"], json!(5));
}

#[test]
fn campus_prefix_and_json_body_work_and_keep_the_prefix_in_urls() {
    let app = TestApp::spawn();
    let resp = app.post_json(
        "/auth/v1/oauth/device_authorize",
        &json!({"client_id": "guest"}),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(
        resp.json()["verification_uri"],
        format!("{}/auth/v1/oauth/device", app.base)
    );
}

#[test]
fn user_codes_are_unique() {
    let app = TestApp::spawn();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        assert!(seen.insert(app.device_authorize("guest").user_code));
    }
}

/// Concurrent authorizations share commits (group commit): each answer must still name
/// its own stored code, and every code must be stored before its answer is sent.
#[test]
fn concurrent_authorizations_each_get_their_own_stored_code() {
    // 160 codes from one address at once: more than the per-address burst allows.
    let app = TestApp::spawn_with(|c| c.authorize_limit_per_address = 1000);
    let issued: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..20).map(|_| app.device_authorize("guest")).collect()))
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_else(|_| Vec::new()))
            .collect()
    });
    assert_eq!(issued.len(), 160);
    let device_codes: std::collections::HashSet<_> =
        issued.iter().map(|c| c.device_code.clone()).collect();
    let user_codes: std::collections::HashSet<_> =
        issued.iter().map(|c| c.user_code.clone()).collect();
    assert_eq!((device_codes.len(), user_codes.len()), (160, 160));
    let user = app.add_user("alice");
    for (n, codes) in issued.iter().enumerate() {
        if n % 2 == 0 {
            app.approve(&codes.user_code, user);
        }
    }
    // Each user code unlocks exactly its own device code.
    for (n, codes) in issued.iter().enumerate() {
        let resp = app.poll("guest", &codes.device_code);
        if n % 2 == 0 {
            assert_eq!(resp.status, 200, "{}", resp.body);
        } else {
            assert_oauth_error(&resp, 400, "authorization_pending");
        }
    }
}

#[test]
fn configured_lifetime_and_interval_are_advertised() {
    let app = TestApp::spawn_with(|c| {
        c.device_code_ttl = 900;
        c.poll_interval = 7;
    });
    let body = app.device_authorize("guest").body;
    assert_eq!(body["expires_in"], json!(900));
    assert_eq!(body["interval"], json!(7));
}

#[test]
fn omitted_scope_gets_the_clients_default_and_scope_is_checked() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    let user = app.add_user("ann");
    app.approve(&codes.user_code, user);
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["scope"],
        "read write"
    );

    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "guest"), ("scope", "read admin")],
    );
    assert_oauth_error(&resp, 400, "invalid_scope");
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "guest"), ("scope", "read")],
    );
    assert_eq!(resp.status, 200);
}

#[test]
fn unknown_client_is_invalid_client_401() {
    let app = TestApp::spawn();
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "nobody")]);
    assert_oauth_error(&resp, 401, "invalid_client");
    assert_eq!(resp.header("www-authenticate"), None);
    let resp = app.post_form("/oauth/device_authorize", &[]);
    assert_oauth_error(&resp, 401, "invalid_client");
}

#[test]
fn confidential_client_authenticates_with_basic_or_post() {
    let app = TestApp::spawn();
    // A secret with every character Appendix B encoding matters for.
    let secret = "p+ss:/=% wörd";
    app.add_client("conf", Some(secret), &[DEVICE_GRANT]);
    let resp = app.post_form_with(
        "/oauth/device_authorize",
        &[],
        &[("Authorization", &basic("conf", secret))],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "conf"), ("client_secret", secret)],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn wrong_secret_and_unknown_client_get_the_same_401_with_basic_challenge() {
    let app = TestApp::spawn();
    app.add_client("conf", Some("right"), &[DEVICE_GRANT]);
    let wrong = app.post_form_with(
        "/oauth/device_authorize",
        &[],
        &[("Authorization", &basic("conf", "wrong"))],
    );
    let unknown = app.post_form_with(
        "/oauth/device_authorize",
        &[],
        &[("Authorization", &basic("ghost", "wrong"))],
    );
    for resp in [&wrong, &unknown] {
        assert_oauth_error(resp, 401, "invalid_client");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Basic realm=\"devicegate\"")
        );
    }
    assert_eq!(wrong.body, unknown.body);
    let malformed = app.post_form_with(
        "/oauth/device_authorize",
        &[],
        &[("Authorization", "Basic !!!notbase64")],
    );
    assert_oauth_error(&malformed, 401, "invalid_client");
    // Post method: same code, no challenge.
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "conf"), ("client_secret", "wrong")],
    );
    assert_oauth_error(&resp, 401, "invalid_client");
    assert_eq!(resp.header("www-authenticate"), None);
    // A confidential client that sends no secret is not authenticated.
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "conf")]);
    assert_oauth_error(&resp, 401, "invalid_client");
    // A public client does not have a secret to send.
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "guest"), ("client_secret", "x")],
    );
    assert_oauth_error(&resp, 401, "invalid_client");
}

#[test]
fn two_authentication_methods_at_once_is_invalid_request() {
    let app = TestApp::spawn();
    app.add_client("conf", Some("right"), &[DEVICE_GRANT]);
    let resp = app.post_form_with(
        "/oauth/device_authorize",
        &[("client_secret", "right")],
        &[("Authorization", &basic("conf", "right"))],
    );
    assert_oauth_error(&resp, 400, "invalid_request");
}

#[test]
fn client_without_the_device_grant_is_unauthorized_client() {
    let app = TestApp::spawn();
    app.add_client("refresh-only", None, &["refresh_token"]);
    let resp = app.post_form("/oauth/device_authorize", &[("client_id", "refresh-only")]);
    assert_oauth_error(&resp, 400, "unauthorized_client");
}

#[test]
fn empty_values_are_absent_and_unknown_parameters_ignored() {
    let app = TestApp::spawn();
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[
            ("client_id", "guest"),
            ("scope", ""),
            ("claims", "{}"),
            ("x", "y"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
}

#[test]
fn repeated_parameter_is_invalid_request() {
    let app = TestApp::spawn();
    let resp = app.request(
        "POST",
        "/oauth/device_authorize",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"client_id=guest&client_id=guest"),
    );
    assert_oauth_error(&resp, 400, "invalid_request");
    let resp = app.request(
        "POST",
        "/oauth/device_authorize",
        &[("Content-Type", "application/json")],
        Some(br#"{"client_id":"guest","client_id":"other"}"#),
    );
    assert_oauth_error(&resp, 400, "invalid_request");
}

#[test]
fn bad_bodies_are_400_and_huge_bodies_413() {
    let app = TestApp::spawn();
    for (content_type, body) in [
        ("text/plain", &b"client_id=guest"[..]),
        ("application/json", b"{not json"),
        ("application/json", b"[1,2]"),
        ("application/json", br#"{"client_id":["guest"]}"#),
        ("application/x-www-form-urlencoded", b"client_id=\xff\xfe"),
    ] {
        let resp = app.request(
            "POST",
            "/oauth/device_authorize",
            &[("Content-Type", content_type)],
            Some(body),
        );
        assert_oauth_error(&resp, 400, "invalid_request");
    }
    let huge = format!("client_id=guest&pad={}", "a".repeat(70 * 1024));
    let resp = app.request(
        "POST",
        "/oauth/device_authorize",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(huge.as_bytes()),
    );
    assert_eq!(resp.status, 413);
    assert_eq!(resp.json()["error"], "invalid_request");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let app = TestApp::spawn();
    for path in [
        "/oauth/device_authorize",
        "/oauth/token",
        "/auth/v1/oauth/token",
    ] {
        let resp = app.get(path);
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("POST"));
    }
    let resp = app.request("POST", "/healthz", &[], Some(b""));
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    assert_eq!(app.get("/nope").status, 404);
}
