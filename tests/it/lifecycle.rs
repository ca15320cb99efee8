//! After approval: refresh with rotation and reuse detection, revocation, introspection,
//! userinfo, the account page and the operator's grant commands.

use serde_json::{json, Value};

use crate::support::{
    assert_no_store, assert_oauth_error, csrf_token, Browser, TestApp, DEVICE_GRANT,
};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_string()
}

fn introspect(app: &TestApp, token: &str) -> Value {
    let resp = app.post_form(
        "/oauth/introspect",
        &[
            ("client_id", "rs"),
            ("client_secret", "rs-secret"),
            ("token", token),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_no_store(&resp);
    resp.json()
}

fn with_resource_server(app: &TestApp) {
    app.add_client("rs", Some("rs-secret"), &[]);
}

#[test]
fn refresh_rotates_and_the_old_token_stops_working() {
    let app = TestApp::spawn();
    let first = app.login("alice");
    let resp = app.refresh("guest", &s(&first, "refresh_token"), None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_no_store(&resp);
    let second = resp.json();
    assert_eq!(second["token_type"], "Bearer");
    assert_eq!(second["scope"], "read write");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert_eq!(app.userinfo(&s(&second, "access_token")).status, 200);
    // The next refresh uses the new token and works again.
    let third = app.refresh("guest", &s(&second, "refresh_token"), None);
    assert_eq!(third.status, 200);
}

#[test]
fn reusing_a_rotated_refresh_token_revokes_the_whole_grant() {
    // Strict rotation (RFC 9700 §4.14.2): the default grace would count a repeat 1 s later
    // as a retry.
    let app = TestApp::spawn_with(|c| c.refresh_grace = 0);
    let first = app.login("alice");
    let second = app
        .refresh("guest", &s(&first, "refresh_token"), None)
        .json();
    app.advance(1.0);
    // A thief (or a confused client) presents the old token.
    let reuse = app.refresh("guest", &s(&first, "refresh_token"), None);
    assert_oauth_error(&reuse, 400, "invalid_grant");
    // Everything from that grant is dead: the legitimate device must log in again.
    assert_oauth_error(
        &app.refresh("guest", &s(&second, "refresh_token"), None),
        400,
        "invalid_grant",
    );
    assert_eq!(app.userinfo(&s(&second, "access_token")).status, 401);
    assert_eq!(app.userinfo(&s(&first, "access_token")).status, 401);
}

#[test]
fn within_the_grace_window_a_retried_refresh_gets_new_tokens() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 10);
    let first = app.login("alice");
    let lost = app
        .refresh("guest", &s(&first, "refresh_token"), None)
        .json();
    app.advance(3.0);
    let retry = app.refresh("guest", &s(&first, "refresh_token"), None);
    assert_eq!(retry.status, 200, "a retry within the grace window works");
    let retry = retry.json();
    // The pair already handed out stays valid (a replay must not lock the device out,
    // issue #12), and the retry's own pair works too.
    assert_eq!(app.userinfo(&s(&lost, "access_token")).status, 200);
    let next = app.refresh("guest", &s(&retry, "refresh_token"), None);
    assert_eq!(next.status, 200);
    // Past the window, presenting the first token again is reuse.
    app.advance(30.0);
    assert_oauth_error(
        &app.refresh("guest", &s(&first, "refresh_token"), None),
        400,
        "invalid_grant",
    );
    assert_oauth_error(
        &app.refresh("guest", &s(&next.json(), "refresh_token"), None),
        400,
        "invalid_grant",
    );
}

#[test]
fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let app = TestApp::spawn();
    let tokens = app.login("alice");
    let narrowed = app.refresh("guest", &s(&tokens, "refresh_token"), Some("read"));
    assert_eq!(narrowed.status, 200);
    let narrowed = narrowed.json();
    assert_eq!(narrowed["scope"], "read");
    assert_eq!(
        app.userinfo(&s(&narrowed, "access_token")).json()["scope"],
        "read"
    );
    // The refresh token keeps the grant's scope (RFC 6749 §6), so the next may ask for all.
    let back = app.refresh("guest", &s(&narrowed, "refresh_token"), Some("read write"));
    assert_eq!(back.status, 200);
    let wider = app.refresh(
        "guest",
        &s(&back.json(), "refresh_token"),
        Some("read write admin"),
    );
    assert_oauth_error(&wider, 400, "invalid_scope");

    // A grant of `read` alone cannot be refreshed into `write`.
    let codes = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", "guest"), ("scope", "read")],
    );
    let codes = codes.json();
    let user = app.store().find_user_by_name("alice").unwrap().unwrap().id;
    app.approve(&s(&codes, "user_code"), user);
    let read_only = app.poll("guest", &s(&codes, "device_code")).json();
    let widen = app.refresh("guest", &s(&read_only, "refresh_token"), Some("write"));
    assert_oauth_error(&widen, 400, "invalid_scope");
}

#[test]
fn refresh_errors() {
    let app = TestApp::spawn();
    app.add_client("other", None, &[DEVICE_GRANT, "refresh_token"]);
    app.add_client("device-only", None, &[DEVICE_GRANT]);
    let tokens = app.login("alice");
    let rt = s(&tokens, "refresh_token");
    assert_oauth_error(&app.refresh("other", &rt, None), 400, "invalid_grant");
    assert_oauth_error(
        &app.refresh("device-only", &rt, None),
        400,
        "unauthorized_client",
    );
    assert_oauth_error(
        &app.refresh("guest", "no-such-token", None),
        400,
        "invalid_grant",
    );
    let missing = app.post_form(
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("client_id", "guest")],
    );
    assert_oauth_error(&missing, 400, "invalid_request");
    // The wrong client's attempt did not hurt the grant.
    assert_eq!(app.refresh("guest", &rt, None).status, 200);
}

#[test]
fn refresh_for_a_disabled_or_removed_user_fails() {
    let app = TestApp::spawn();
    let alice = app.login("alice");
    let bob = app.login("bob");
    assert!(app.store().set_user_disabled("alice", true).unwrap());
    assert_oauth_error(
        &app.refresh("guest", &s(&alice, "refresh_token"), None),
        400,
        "invalid_grant",
    );
    assert_eq!(app.userinfo(&s(&alice, "access_token")).status, 401);
    assert!(app.store().delete_user("bob").unwrap());
    assert_oauth_error(
        &app.refresh("guest", &s(&bob, "refresh_token"), None),
        400,
        "invalid_grant",
    );
}

#[test]
fn refresh_tokens_expire() {
    let app = TestApp::spawn_with(|c| c.refresh_token_ttl = 3600);
    let tokens = app.login("alice");
    app.advance(3601.0);
    assert_oauth_error(
        &app.refresh("guest", &s(&tokens, "refresh_token"), None),
        400,
        "invalid_grant",
    );
}

#[test]
fn revoking_a_refresh_token_ends_its_grant() {
    let app = TestApp::spawn();
    let tokens = app.login("alice");
    let resp = app.post_form(
        "/oauth/revoke",
        &[
            ("client_id", "guest"),
            ("token", &s(&tokens, "refresh_token")),
            ("token_type_hint", "refresh_token"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert_oauth_error(
        &app.refresh("guest", &s(&tokens, "refresh_token"), None),
        400,
        "invalid_grant",
    );
    assert_eq!(app.userinfo(&s(&tokens, "access_token")).status, 401);
}

#[test]
fn revoking_an_access_token_leaves_the_refresh_token() {
    let app = TestApp::spawn();
    let tokens = app.login("alice");
    // A wrong hint is only a hint (RFC 7009 §2.1).
    let resp = app.post_form(
        "/auth/v1/oauth/revoke",
        &[
            ("client_id", "guest"),
            ("token", &s(&tokens, "access_token")),
            ("token_type_hint", "refresh_token"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(app.userinfo(&s(&tokens, "access_token")).status, 401);
    assert_eq!(
        app.refresh("guest", &s(&tokens, "refresh_token"), None)
            .status,
        200
    );
}

#[test]
fn revocation_answers_200_for_unknown_and_foreign_tokens_without_revoking_them() {
    let app = TestApp::spawn();
    app.add_client("other", None, &[DEVICE_GRANT, "refresh_token"]);
    let tokens = app.login("alice");
    let unknown = app.post_form(
        "/oauth/revoke",
        &[("client_id", "guest"), ("token", "nope")],
    );
    assert_eq!(unknown.status, 200);
    for token in ["refresh_token", "access_token"] {
        let foreign = app.post_form(
            "/oauth/revoke",
            &[("client_id", "other"), ("token", &s(&tokens, token))],
        );
        assert_eq!(foreign.status, 200);
    }
    assert_eq!(app.userinfo(&s(&tokens, "access_token")).status, 200);
    assert_eq!(
        app.refresh("guest", &s(&tokens, "refresh_token"), None)
            .status,
        200
    );
    let missing = app.post_form("/oauth/revoke", &[("client_id", "guest")]);
    assert_oauth_error(&missing, 400, "invalid_request");
    let nobody = app.post_form("/oauth/revoke", &[("client_id", "ghost"), ("token", "x")]);
    assert_oauth_error(&nobody, 401, "invalid_client");
}

#[test]
fn introspection_of_each_token_state() {
    let app = TestApp::spawn();
    with_resource_server(&app);
    let tokens = app.login("alice");
    let alice = app.store().find_user_by_name("alice").unwrap().unwrap();
    let live = introspect(&app, &s(&tokens, "access_token"));
    assert_eq!(live["active"], true);
    assert_eq!(live["scope"], "read write");
    assert_eq!(live["client_id"], "guest");
    assert_eq!(live["username"], "alice");
    // RFC 7662 `sub`: the same opaque OpenID Connect subject as userinfo, not the row id.
    assert_eq!(live["sub"], alice.subject);
    assert_ne!(live["sub"], alice.id.to_string());
    assert_eq!(live["token_type"], "Bearer");
    assert_eq!(live["iss"], app.base);
    let (iat, exp) = (live["iat"].as_i64().unwrap(), live["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);
    let refresh = introspect(&app, &s(&tokens, "refresh_token"));
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    // Unknown: nothing but active=false.
    assert_eq!(introspect(&app, "unknown"), json!({"active": false}));
    // Rotated refresh token and the new pair.
    let second = app
        .refresh("guest", &s(&tokens, "refresh_token"), None)
        .json();
    assert_eq!(
        introspect(&app, &s(&tokens, "refresh_token")),
        json!({"active": false})
    );
    assert_eq!(
        introspect(&app, &s(&second, "refresh_token"))["active"],
        true
    );
    // Expired access token.
    app.advance(3601.0);
    assert_eq!(
        introspect(&app, &s(&second, "access_token")),
        json!({"active": false})
    );
    // Revoked.
    app.post_form(
        "/oauth/revoke",
        &[
            ("client_id", "guest"),
            ("token", &s(&second, "refresh_token")),
        ],
    );
    assert_eq!(
        introspect(&app, &s(&second, "refresh_token")),
        json!({"active": false})
    );
}

#[test]
fn introspection_needs_a_confidential_client() {
    let app = TestApp::spawn();
    with_resource_server(&app);
    let tokens = app.login("alice");
    let public = app.post_form(
        "/oauth/introspect",
        &[
            ("client_id", "guest"),
            ("token", &s(&tokens, "access_token")),
        ],
    );
    assert_oauth_error(&public, 401, "invalid_client");
    let anonymous = app.post_form(
        "/oauth/introspect",
        &[("token", &s(&tokens, "access_token"))],
    );
    assert_oauth_error(&anonymous, 401, "invalid_client");
    let wrong = app.post_form(
        "/oauth/introspect",
        &[
            ("client_id", "rs"),
            ("client_secret", "nope"),
            ("token", &s(&tokens, "access_token")),
        ],
    );
    assert_oauth_error(&wrong, 401, "invalid_client");
}

#[test]
fn userinfo_answers_and_its_errors() {
    let app = TestApp::spawn();
    let tokens = app.login("alice");
    let resp = app.userinfo(&s(&tokens, "access_token"));
    assert_eq!(resp.status, 200);
    let body = resp.json();
    assert_eq!(body["username"], "alice");
    assert_eq!(body["scope"], "read write");
    assert_eq!(body["client_id"], "guest");
    assert!(body["sub"].is_string());
    let none = app.get("/oauth/userinfo");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"devicegate\"")
    );
    let bad = app.userinfo("not-a-token");
    assert_eq!(bad.status, 401);
    assert!(bad
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(bad.json()["error"], "invalid_token");
    app.advance(3601.0);
    let expired = app.userinfo(&s(&tokens, "access_token"));
    assert!(expired
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

#[test]
fn two_devices_of_one_user_are_independent_grants() {
    let app = TestApp::spawn();
    let laptop = app.login("alice");
    let phone = app.login("alice");
    app.post_form(
        "/oauth/revoke",
        &[
            ("client_id", "guest"),
            ("token", &s(&laptop, "refresh_token")),
        ],
    );
    assert_eq!(app.userinfo(&s(&laptop, "access_token")).status, 401);
    assert_eq!(app.userinfo(&s(&phone, "access_token")).status, 200);
    assert_eq!(
        app.refresh("guest", &s(&phone, "refresh_token"), None)
            .status,
        200
    );
}

#[test]
fn concurrent_refreshes_of_one_token_let_at_most_one_succeed() {
    // Strict rotation; the default grace is pinned in `device_cli`.
    let app = std::sync::Arc::new(TestApp::spawn_with(|c| {
        c.workers = 8;
        c.refresh_grace = 0;
    }));
    let tokens = app.login("alice");
    let rt = s(&tokens, "refresh_token");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (app, barrier, rt) = (app.clone(), barrier.clone(), rt.clone());
            std::thread::spawn(move || {
                barrier.wait();
                app.refresh("guest", &rt, None).status
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        statuses.iter().filter(|s| **s == 200).count() <= 1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400),
        "{statuses:?}"
    );
}

#[test]
fn account_page_lists_grants_and_revokes_with_csrf_only() {
    let app = TestApp::spawn();
    let laptop = app.login("alice");
    let phone = app.login("alice");
    let bobs = app.login("bob");
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.get("/account");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.body.matches(">Revoke<").count(),
        2,
        "alice's two grants, not bob's"
    );
    assert!(page.body.contains("Command-line sign-in"));
    let ids: Vec<String> = page
        .body
        .match_indices("name=\"grant_id\" value=\"")
        .map(|(i, m)| {
            page.body[i + m.len()..]
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    // Without the CSRF token: 403, nothing revoked.
    let forged = browser.post("/account/revoke", &[("grant_id", &ids[0])]);
    assert_eq!(forged.status, 403);
    assert_eq!(app.userinfo(&s(&phone, "access_token")).status, 200);
    assert_eq!(app.userinfo(&s(&laptop, "access_token")).status, 200);
    // Bob's grant id is not alice's to revoke.
    let bob_grant = app
        .store()
        .list_active_grants(None, app.clock.now().secs())
        .unwrap();
    let bob_id = bob_grant
        .iter()
        .find(|g| g.username == "bob")
        .unwrap()
        .id
        .to_string();
    let csrf = csrf_token(&page.body);
    let other = browser.post(
        "/account/revoke",
        &[("csrf_token", &csrf), ("grant_id", &bob_id)],
    );
    assert_eq!(other.status, 404);
    assert_eq!(app.userinfo(&s(&bobs, "access_token")).status, 200);
    // With it: the newest grant (the phone, listed first) ends at once.
    let resp = browser.post(
        "/account/revoke",
        &[("csrf_token", &csrf), ("grant_id", &ids[0])],
    );
    assert_eq!(resp.status, 303);
    assert_eq!(app.userinfo(&s(&phone, "access_token")).status, 401);
    assert_oauth_error(
        &app.refresh("guest", &s(&phone, "refresh_token"), None),
        400,
        "invalid_grant",
    );
    assert_eq!(app.userinfo(&s(&laptop, "access_token")).status, 200);
    assert_eq!(browser.get("/account").body.matches(">Revoke<").count(), 1);
}

#[test]
fn a_page_longer_than_the_response_buffer_arrives_whole() {
    // Responses are buffered up to 8 KiB to leave in one send (tiny_http patch 7); a longer
    // one must still arrive complete and match its Content-Length.
    let app = TestApp::spawn();
    for _ in 0..40 {
        app.login("alice");
    }
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.get("/account");
    assert_eq!(page.status, 200);
    assert!(page.body.len() > 8192, "{} bytes", page.body.len());
    assert_eq!(
        page.header("content-length"),
        Some(page.body.len().to_string().as_str())
    );
    assert_eq!(page.body.matches(">Revoke<").count(), 40);
    assert!(page.body.ends_with("</html>"));
}

#[test]
fn account_page_asks_for_sign_in_first() {
    let app = TestApp::spawn();
    let page = app.get("/account");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"next\" value=\"/account\""));
}

#[test]
fn metadata_lists_the_lifecycle_endpoints() {
    let app = TestApp::spawn();
    let doc = app.get("/.well-known/oauth-authorization-server").json();
    assert_eq!(
        doc["revocation_endpoint"],
        format!("{}/oauth/revoke", app.base)
    );
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{}/oauth/introspect", app.base)
    );
    assert_eq!(
        doc["userinfo_endpoint"],
        format!("{}/oauth/userinfo", app.base)
    );
    assert!(doc["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("refresh_token")));
    assert!(doc["revocation_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("none")));
    assert!(!doc["introspection_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("none")));
}
