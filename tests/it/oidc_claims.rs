//! OpenID Connect's user side (issue #14): scopes narrowed as RFC 6749 §3.3 allows, the
//! `offline_access` rule, userinfo claims per scope (OIDC Core §5.3–5.4), an opaque `sub`
//! that survives a rename, the discovery fields, and the user and client flags behind them.

use serde_json::{json, Value};

use crate::cli::run;
use crate::support::{
    assert_no_store, assert_oauth_error, new_database, sql_text, Browser, TestApp, TestDb,
    TestResponse,
};
use devicegate::store::{NewClient, Store, UserId, UserProfile};

const ALL_GUEST_SCOPES: [&str; 6] = [
    "read",
    "write",
    "openid",
    "profile",
    "email",
    "offline_access",
];

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {v}"))
        .to_string()
}

/// A public device client allowed exactly `scopes`.
fn add_client_with_scopes(app: &TestApp, client_id: &str, scopes: &[&str]) {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let grants = vec![
        "urn:ietf:params:oauth:grant-type:device_code".to_string(),
        "refresh_token".to_string(),
    ];
    app.store()
        .create_client(
            &NewClient {
                client_id,
                name: "Scoped client",
                secret_hash: None,
                scopes: &scopes,
                grant_types: &grants,
                device_code_ttl: None,
                poll_interval: None,
            },
            0,
        )
        .unwrap();
}

fn device_authorize(app: &TestApp, client_id: &str, scope: Option<&str>) -> TestResponse {
    let mut pairs = vec![("client_id", client_id)];
    if let Some(scope) = scope {
        pairs.push(("scope", scope));
    }
    app.post_form("/oauth/device_authorize", &pairs)
}

/// A whole device login of `client_id` asking `scope`, approved for `user_id`: the token
/// response (status 200 asserted).
fn login_with(app: &TestApp, client_id: &str, user_id: UserId, scope: Option<&str>) -> Value {
    let resp = device_authorize(app, client_id, scope);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let codes = resp.json();
    app.approve(&s(&codes, "user_code"), user_id);
    let resp = app.poll(client_id, &s(&codes, "device_code"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_no_store(&resp);
    resp.json()
}

/// alice, with a display name and a verified address.
fn add_alice(app: &TestApp) -> UserId {
    let hash = devicegate::secrets::hash_password("password123").unwrap();
    app.store()
        .create_user_with_profile(
            "alice",
            &hash,
            &UserProfile {
                display_name: Some("Alice Liddell"),
                email: Some("alice@example.com"),
                email_verified: true,
            },
            0,
        )
        .unwrap()
}

fn subject_of(app: &TestApp, username: &str) -> String {
    app.store()
        .find_user_by_name(username)
        .unwrap()
        .unwrap()
        .subject
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
    resp.json()
}

// ---- scopes: narrowing (RFC 6749 §3.3) ----

#[test]
fn msal_scopes_sent_to_a_client_allowed_only_read_get_tokens_for_read() {
    let app = TestApp::spawn();
    add_client_with_scopes(&app, "reader", &["read"]);
    let alice = app.add_user("alice");
    // MSAL Python adds `openid profile offline_access` to what the application asked for.
    let tokens = login_with(
        &app,
        "reader",
        alice,
        Some("read openid profile offline_access"),
    );
    // RFC 6749 §5.1: scope differs from the request, so it is present, and says `read`.
    assert_eq!(tokens["scope"], "read");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    assert_eq!(
        app.userinfo(&s(&tokens, "access_token")).json()["scope"],
        "read"
    );
    // MSAL refreshes with the same fixed scopes: narrowed again, not invalid_scope.
    let resp = app.refresh(
        "reader",
        &s(&tokens, "refresh_token"),
        Some("read openid profile offline_access"),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["scope"], "read");
}

#[test]
fn a_request_narrowed_to_nothing_is_refused_not_given_other_scopes() {
    let app = TestApp::spawn();
    add_client_with_scopes(&app, "reader", &["read", "write"]);
    let resp = device_authorize(&app, "reader", Some("openid profile offline_access"));
    assert_oauth_error(&resp, 400, "invalid_scope");
    assert_eq!(
        resp.json()["error_description"],
        "none of the requested scopes is allowed for this client"
    );
    // A client allowed `openid email` that asks for `profile` does not get email instead.
    add_client_with_scopes(&app, "narrow", &["openid", "email"]);
    let resp = device_authorize(&app, "narrow", Some("profile"));
    assert_oauth_error(&resp, 400, "invalid_scope");
}

/// OIDC Core §11: `offline_access` must be asked for; a client that opted in to needing it
/// for a refresh token gets none when it names no scope.
#[test]
fn the_default_scope_never_includes_offline_access() {
    let app = TestApp::spawn();
    add_client_with_scopes(&app, "oidc", &["openid", "profile", "offline_access"]);
    app.store()
        .update_client(
            "oidc",
            &devicegate::store::ClientChanges {
                refresh_requires_offline_access: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    let alice = app.add_user("alice");
    let tokens = login_with(&app, "oidc", alice, None);
    assert_eq!(tokens["scope"], "openid profile");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
}

#[test]
fn unknown_scopes_are_still_invalid_scope() {
    let app = TestApp::spawn();
    add_client_with_scopes(&app, "reader", &["read"]);
    for scope in [
        "read admin",
        "openid admin",
        "write",
        "profile openid+extra",
    ] {
        let resp = device_authorize(&app, "reader", Some(scope));
        assert_oauth_error(&resp, 400, "invalid_scope");
        assert!(
            resp.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("is not allowed for this client"),
            "{scope}: {}",
            resp.body
        );
    }
    // A malformed value is invalid_scope too, OIDC scope beside it or not.
    let resp = device_authorize(&app, "reader", Some("openid re\"ad"));
    assert_oauth_error(&resp, 400, "invalid_scope");
    // A refresh may not widen to a non-OIDC scope outside the grant.
    let alice = app.add_user("alice");
    let tokens = login_with(&app, "reader", alice, Some("read"));
    let resp = app.refresh("reader", &s(&tokens, "refresh_token"), Some("read write"));
    assert_oauth_error(&resp, 400, "invalid_scope");
}

#[test]
fn guest_grants_oidc_scopes_only_when_asked_and_keeps_campus_default() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice");
    // Campus's CLI names no scope: exactly what it got before OpenID Connect.
    assert_eq!(
        login_with(&app, "guest", alice, None)["scope"],
        "read write"
    );
    let tokens = login_with(
        &app,
        "guest",
        alice,
        Some("openid profile email offline_access"),
    );
    assert_eq!(tokens["scope"], "openid profile email offline_access");
    // guest does not opt in to the offline_access rule: a refresh token either way.
    let tokens = login_with(&app, "guest", alice, Some("openid"));
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

// ---- userinfo (OIDC Core §5.3) ----

#[test]
fn userinfo_releases_exactly_the_claims_each_scope_allows() {
    let app = TestApp::spawn();
    let alice = add_alice(&app);
    let sub = subject_of(&app, "alice");
    let userinfo = |scope: &str| {
        let tokens = login_with(&app, "guest", alice, Some(scope));
        let resp = app.userinfo(&s(&tokens, "access_token"));
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_no_store(&resp);
        resp.json()
    };
    // The login name is `profile`'s to release: not with `openid` alone, nor with `email`.
    assert_eq!(
        userinfo("openid"),
        json!({"sub": sub, "scope": "openid", "client_id": "guest"})
    );
    assert_eq!(
        userinfo("openid profile"),
        json!({
            "sub": sub, "name": "Alice Liddell", "preferred_username": "alice",
            "username": "alice", "scope": "openid profile", "client_id": "guest",
        })
    );
    assert_eq!(
        userinfo("openid email"),
        json!({
            "sub": sub, "email": "alice@example.com", "email_verified": true,
            "scope": "openid email", "client_id": "guest",
        })
    );
    // A plain OAuth token (Campus's, devicegate login's) still learns who it acts for.
    assert_eq!(
        userinfo("read"),
        json!({"sub": sub, "username": "alice", "scope": "read", "client_id": "guest"})
    );
}

#[test]
fn claims_without_a_value_are_left_out() {
    let app = TestApp::spawn();
    let bob = app.add_user("bob");
    let tokens = login_with(&app, "guest", bob, Some("openid profile email"));
    let body = app.userinfo(&s(&tokens, "access_token")).json();
    assert_eq!(
        body,
        json!({
            "sub": subject_of(&app, "bob"), "preferred_username": "bob",
            "username": "bob", "scope": "openid profile email", "client_id": "guest",
        })
    );
}

#[test]
fn sub_is_opaque_and_stays_the_same_across_a_rename_and_a_refresh() {
    let app = TestApp::spawn();
    app.add_client("rs", Some("rs-secret"), &[]);
    let alice = add_alice(&app);
    let tokens = login_with(&app, "guest", alice, Some("openid profile"));
    let before = app.userinfo(&s(&tokens, "access_token")).json();
    let sub = s(&before, "sub");
    assert_eq!(sub, subject_of(&app, "alice"));
    assert_ne!(sub, "alice");
    assert_ne!(sub, alice.to_string());
    assert_eq!(sub.len(), 26);
    // RFC 7662 `sub` is the same subject.
    let live = introspect(&app, &s(&tokens, "access_token"));
    assert_eq!(live["sub"], sub.as_str());
    assert_eq!(
        introspect(&app, &s(&tokens, "refresh_token"))["sub"],
        sub.as_str()
    );

    // There is no `user rename` command; rename the row as an operator's SQL would.
    app.db()
        .execute("UPDATE users SET username = 'alice.l' WHERE username = 'alice'");
    let after = app.userinfo(&s(&tokens, "access_token")).json();
    assert_eq!(after["sub"], sub.as_str());
    assert_eq!(after["preferred_username"], "alice.l");
    let renewed = app
        .refresh("guest", &s(&tokens, "refresh_token"), None)
        .json();
    assert_eq!(
        app.userinfo(&s(&renewed, "access_token")).json()["sub"],
        sub.as_str()
    );
    assert_eq!(
        introspect(&app, &s(&renewed, "access_token"))["sub"],
        sub.as_str()
    );
    // Another user has another subject.
    let bob = app.add_user("bob");
    let theirs = login_with(&app, "guest", bob, Some("openid"));
    assert_ne!(
        app.userinfo(&s(&theirs, "access_token")).json()["sub"],
        sub.as_str()
    );
}

// ---- offline_access (OIDC Core §11) ----

#[test]
fn a_client_that_opts_in_gets_a_refresh_token_only_with_offline_access() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    let (code, _, err) = run(
        db,
        &[
            "client",
            "add",
            "Kubernetes",
            "--id",
            "kube",
            "--scope",
            "openid profile email offline_access",
            "--refresh-requires-offline-access",
            "true",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("refresh token only with offline_access"),
        "audit line: {err}"
    );
    assert!(!err.contains("warning"), "{err}");
    let (_, out, _) = run(db, &["client", "show", "kube", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["refresh_requires_offline_access"], true);
    let alice = app.add_user("alice");

    let without = login_with(&app, "kube", alice, Some("openid profile"));
    assert_eq!(without["scope"], "openid profile");
    assert!(without.get("refresh_token").is_none(), "{without}");
    assert!(without["access_token"].is_string());
    assert_eq!(app.userinfo(&s(&without, "access_token")).status, 200);
    // A login without a refresh token is still a device the person and operator can see
    // and revoke while its access token lives.
    let (_, out, _) = run(db, &["grant", "list", "--json"], None);
    let grants: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");

    let with = login_with(&app, "kube", alice, Some("openid offline_access"));
    assert_eq!(with["scope"], "openid offline_access");
    let refreshed = app.refresh("kube", &s(&with, "refresh_token"), None);
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert!(refreshed.json()["refresh_token"].is_string());

    // Switched off again (for new logins); shown in the client's details.
    let (code, out, err) = run(
        db,
        &[
            "client",
            "edit",
            "kube",
            "--refresh-requires-offline-access",
            "false",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("offline_access only"), "{out}");
    let (_, out, _) = run(db, &["client", "show", "kube", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["refresh_requires_offline_access"], false);
    let (code, _, err) = run(
        db,
        &[
            "client",
            "edit",
            "kube",
            "--refresh-requires-offline-access",
            "maybe",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("not a boolean"), "{err}");
    // Requiring offline_access of a client that may not ask for it: done, with a warning.
    let (code, _, err) = run(
        db,
        &[
            "client",
            "edit",
            "kube",
            "--scope",
            "openid profile",
            "--refresh-requires-offline-access",
            "true",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "warning: this client needs offline_access for a refresh token but may not ask for it"
        ),
        "{err}"
    );
}

// ---- users: profile flags through the binary ----

fn users_json(db: &std::path::Path) -> Value {
    let (code, out, err) = run(db, &["user", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn user_add_and_edit_set_email_and_display_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, _, err) = run(
        &db,
        &[
            "user",
            "add",
            "ann",
            "--email",
            "ann@example.com",
            "--display-name",
            "Ann Example",
        ],
        Some("a-long-password\n"),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("audit: user add `ann` with email (unverified), display name"),
        "{err}"
    );
    assert!(
        !err.contains("ann@example.com"),
        "no address in the log: {err}"
    );
    let users = users_json(&db);
    let ann = &users[0];
    assert_eq!(ann["email"], "ann@example.com");
    assert_eq!(
        ann["email_verified"], false,
        "an operator's address is unverified"
    );
    assert_eq!(ann["display_name"], "Ann Example");
    assert_eq!(ann["subject"].as_str().unwrap().len(), 26);
    let (_, out, _) = run(&db, &["user", "list"], None);
    assert!(
        out.contains("name: Ann Example\temail: ann@example.com (unverified)"),
        "{out}"
    );

    let edit = |args: &[&str]| {
        let mut all = vec!["user", "edit", "ann"];
        all.extend_from_slice(args);
        let (code, _, err) = run(&db, &all, None);
        assert_eq!(code, 0, "{args:?}: {err}");
        err
    };
    let err = edit(&["--email-verified", "true"]);
    assert!(
        err.contains("audit: user edit `ann`: email_verified true"),
        "{err}"
    );
    assert_eq!(users_json(&db)[0]["email_verified"], true);
    // The same address again keeps its state; a new one starts unverified.
    edit(&["--email", "ann@example.com"]);
    assert_eq!(users_json(&db)[0]["email_verified"], true);
    edit(&["--email", "ann@example.org"]);
    assert_eq!(users_json(&db)[0]["email"], "ann@example.org");
    assert_eq!(users_json(&db)[0]["email_verified"], false);
    edit(&["--email", "ann@example.net", "--email-verified", "yes"]);
    assert_eq!(users_json(&db)[0]["email_verified"], true);
    edit(&["--display-name", "Ann E. Xample"]);
    let err = edit(&["--no-email", "--no-display-name"]);
    assert!(
        err.contains("email removed, email_verified false, display name removed"),
        "{err}"
    );
    let ann = &users_json(&db)[0];
    assert_eq!(ann["email"], Value::Null);
    assert_eq!(ann["email_verified"], false);
    assert_eq!(ann["display_name"], Value::Null);

    // user add --email-verified: the operator vouches at once.
    let (code, _, err) = run(
        &db,
        &[
            "user",
            "add",
            "ben",
            "--email",
            "ben@example.com",
            "--email-verified",
            "true",
        ],
        Some("a-long-password\n"),
    );
    assert_eq!(code, 0, "{err}");
    let users = users_json(&db);
    let ben = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "ben")
        .unwrap();
    assert_eq!(ben["email_verified"], true);
}

#[test]
fn user_profile_flags_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let bad_add = |args: &[&str], exit: i32, says: &str| {
        let mut all = vec!["user", "add", "zed"];
        all.extend_from_slice(args);
        let (code, _, err) = run(&db, &all, Some("a-long-password\n"));
        assert_eq!(code, exit, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    bad_add(
        &["--email", "zed@localhost"],
        2,
        "--email: `zed@localhost` is not an email address: the domain needs a dot",
    );
    bad_add(
        &["--email", "zed"],
        2,
        "is not an email address: it has no `@`",
    );
    bad_add(
        &["--email", "z\u{1b}[31m@example.com"],
        2,
        "`z\\x1b[31m@example.com` is not an email address",
    );
    bad_add(
        &["--display-name", "Zed\nZed"],
        2,
        "--display-name: a display name is 1–100 printable characters",
    );
    bad_add(&["--display-name", " "], 2, "a display name is 1–100");
    bad_add(
        &["--display-name", &"z".repeat(101)],
        2,
        "a display name is 1–100",
    );
    // --email-verified needs an address.
    bad_add(&["--email-verified", "true"], 2, "--email");
    assert_eq!(users_json(&db), json!([]), "nothing was created");

    let (code, _, err) = run(&db, &["user", "add", "zed"], Some("a-long-password\n"));
    assert_eq!(code, 0, "{err}");
    let bad_edit = |args: &[&str], exit: i32, says: &str| {
        let (code, _, err) = run(&db, args, None);
        assert_eq!(code, exit, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    bad_edit(
        &["user", "edit", "zed", "--email", "zed@@example.com"],
        2,
        "is not an email address",
    );
    bad_edit(&["user", "edit", "zed"], 2, "nothing to change");
    bad_edit(
        &["user", "edit", "zed", "--email-verified", "true"],
        1,
        "`zed` has no email address: give one with --email",
    );
    bad_edit(
        &["user", "edit", "zed", "--email-verified", "maybe"],
        2,
        "not a boolean",
    );
    bad_edit(
        &[
            "user",
            "edit",
            "zed",
            "--email",
            "z@example.com",
            "--no-email",
        ],
        2,
        "cannot be used with",
    );
    bad_edit(
        &["user", "edit", "nobody", "--display-name", "No Body"],
        1,
        "no user named `nobody`",
    );
    let zed = &users_json(&db)[0];
    assert_eq!(zed["email"], Value::Null);
    assert_eq!(zed["display_name"], Value::Null);
}

// ---- discovery ----

#[test]
fn metadata_lists_the_openid_connect_fields_in_a_shape_authlib_accepts() {
    let app = TestApp::spawn();
    add_client_with_scopes(&app, "reader", &["read", "files:list"]);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc = app.get(path).json();
        assert_eq!(
            doc["userinfo_endpoint"],
            format!("{}/oauth/userinfo", app.base)
        );
        assert_eq!(
            doc["scopes_supported"],
            json!([
                "email",
                "files:list",
                "offline_access",
                "openid",
                "profile",
                "read",
                "write"
            ])
        );
        assert_eq!(
            doc["claims_supported"],
            json!([
                "sub",
                "name",
                "preferred_username",
                "email",
                "email_verified"
            ])
        );
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        // Authlib: REQUIRED and non-empty. `none`: no credential from an authorization
        // endpoint, which devicegate does not have...
        assert_eq!(doc["response_types_supported"], json!(["none"]));
        // ...so none is advertised, which RFC 8414 §2 (and Authlib) allow only because no
        // listed grant type uses one.
        assert!(doc.get("authorization_endpoint").is_none(), "{doc}");
        assert_eq!(
            doc["grant_types_supported"],
            json!([
                "urn:ietf:params:oauth:grant-type:device_code",
                "refresh_token"
            ])
        );
        assert_eq!(
            doc["device_authorization_endpoint"],
            format!("{}/oauth/device_authorize", app.base)
        );
    }
}

// ---- the built-in client ----

fn guest_scopes(db: &std::path::Path) -> Vec<String> {
    Store::open(db)
        .unwrap()
        .find_client("guest")
        .unwrap()
        .unwrap()
        .scopes
        .clone()
}

#[test]
fn guest_allows_the_four_oidc_scopes_on_a_fresh_and_an_upgraded_database() {
    let app = TestApp::spawn();
    assert_eq!(guest_scopes(&app.db_path), ALL_GUEST_SCOPES);
    drop(app);

    // A database from before OpenID Connect: guest with its old default list.
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let set = |scopes: &str| {
        TestDb::open(&db).execute(&format!(
            "UPDATE clients SET scopes = {} WHERE client_id = 'guest'",
            sql_text(scopes)
        ));
    };
    let (code, _, _) = run(&db, &["client", "list"], None);
    assert_eq!(code, 0);
    // An operator who limits guest to `read write` (no email through the shared public
    // client) keeps that: widening guest is a one-time upgrade step (version 2 → 3, see
    // `a_version_2_database_with_guest_gets_the_oidc_scopes`), not something every start
    // or admin command redoes.
    let (code, _, err) = run(
        &db,
        &["client", "edit", "guest", "--scope", "read write"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&db, &["client", "show", "guest"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(guest_scopes(&db), ["read", "write"]);
    // An operator's own list is left alone, at every start.
    set("read");
    run(&db, &["client", "list"], None);
    assert_eq!(guest_scopes(&db), ["read"]);
    let (code, _, err) = run(
        &db,
        &["client", "edit", "guest", "--scope", "read write email"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    run(&db, &["client", "list"], None);
    assert_eq!(guest_scopes(&db), ["read", "write", "email"]);
}

#[test]
fn a_version_2_database_with_guest_gets_the_oidc_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.db");
    drop(Store::open(&db).unwrap());
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        // What version 2's first start wrote for guest, without version 3's columns (in
        // either order: the upgrade compares the set, not the text).
        conn.execute_batch(
            "INSERT INTO clients (client_id, name, secret_hash, scopes, grant_types, created_at) \
             VALUES ('guest', 'Command-line sign-in', NULL, 'write read', \
             'urn:ietf:params:oauth:grant-type:device_code refresh_token', 1); \
             DROP INDEX users_by_subject; \
             ALTER TABLE users DROP COLUMN subject; \
             ALTER TABLE users DROP COLUMN display_name; \
             ALTER TABLE users DROP COLUMN email; \
             ALTER TABLE users DROP COLUMN email_verified; \
             ALTER TABLE clients DROP COLUMN refresh_requires_offline_access; \
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let (code, _, err) = run(&db, &["client", "list"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(guest_scopes(&db), ALL_GUEST_SCOPES);
}

// ---- pages ----

#[test]
fn the_consent_page_says_what_each_oidc_scope_means() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let resp = device_authorize(
        &app,
        "guest",
        Some("read openid profile email offline_access"),
    );
    let codes = resp.json();
    let browser = Browser::signed_in(&app, "alice");
    let consent = browser.enter_code(&s(&codes, "user_code"));
    assert_eq!(consent.status, 200, "{}", consent.body);
    for words in [
        "Read your data",
        "Know who you are (an ID that stays the same for your account)",
        "See your name and user name",
        "See your email address",
        "Stay signed in when you are not using it",
    ] {
        assert!(consent.body.contains(words), "{words}: {}", consent.body);
    }
}

/// OIDC Core §5.3.1: the UserInfo Endpoint supports GET and POST.
#[test]
fn userinfo_answers_post_as_it_answers_get() {
    let app = TestApp::spawn();
    let alice = add_alice(&app);
    let tokens = login_with(&app, "guest", alice, Some("openid profile"));
    let bearer = format!("Bearer {}", s(&tokens, "access_token"));
    let get = app.request(
        "GET",
        "/oauth/userinfo",
        &[("Authorization", &bearer)],
        None,
    );
    let post = app.request(
        "POST",
        "/oauth/userinfo",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(b""),
    );
    assert_eq!(get.status, 200, "{}", get.body);
    assert_eq!(post.status, 200, "{}", post.body);
    assert_eq!(post.json(), get.json());
    assert_no_store(&post);
    // Without a token: the same bearer challenge.
    let bare = app.request("POST", "/oauth/userinfo", &[], Some(b""));
    assert_eq!(bare.status, 401);
    assert_eq!(
        bare.header("www-authenticate"),
        Some("Bearer realm=\"devicegate\"")
    );
}

/// Look-alike domains (`ｅxample.com` with a fullwidth e) and numeric top-level domains are
/// not addresses; a verified address names one person, so a second user cannot claim it.
#[test]
fn emails_are_ascii_domains_and_a_verified_one_belongs_to_one_user() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    for email in ["alice@\u{ff45}xample.com", "a@\u{2178}.com", "a@b.123"] {
        let (code, _, err) = run(&db, &["user", "add", "zed", "--email", email], None);
        assert_eq!(code, 2, "{email}: {err}");
        assert!(err.contains("is not an email address"), "{email}: {err}");
    }
    let add = |name: &str, args: &[&str]| {
        let mut all = vec!["user", "add", name];
        all.extend_from_slice(args);
        run(&db, &all, Some("a-long-password\n"))
    };
    let verified = ["--email", "alice@example.com", "--email-verified", "true"];
    assert_eq!(add("alice", &verified).0, 0);
    let (code, _, err) = add(
        "fay",
        &["--email", "ALICE@example.com", "--email-verified", "true"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("is already the verified address of `alice`"),
        "{err}"
    );
    // Unverified, the same address is only a claim, and allowed.
    assert_eq!(add("fay", &["--email", "alice@example.com"]).0, 0);
    let (code, _, err) = run(
        &db,
        &["user", "edit", "fay", "--email-verified", "true"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("already the verified address of `alice`"),
        "{err}"
    );
    // Once alice's address is gone, fay's can be verified.
    assert_eq!(
        run(&db, &["user", "edit", "alice", "--no-email"], None).0,
        0
    );
    let (code, _, err) = run(
        &db,
        &["user", "edit", "fay", "--email-verified", "true"],
        None,
    );
    assert_eq!(code, 0, "{err}");
}

/// Found in review: an operator who takes a scope away from a client (the README's
/// `client edit guest --scope "read write"`) takes it from existing logins at their next
/// refresh, not only from new ones.
#[test]
fn a_scope_taken_from_a_client_is_gone_from_its_grants_at_the_next_refresh() {
    let app = TestApp::spawn();
    let alice = add_alice(&app);
    let tokens = login_with(&app, "guest", alice, Some("read openid profile"));
    assert!(tokens["id_token"].is_string());
    let only_oidc = login_with(&app, "guest", alice, Some("openid profile"));
    let limited: Vec<String> = vec!["read".into(), "write".into()];
    app.store()
        .update_client(
            "guest",
            &devicegate::store::ClientChanges {
                scopes: Some(&limited),
                ..Default::default()
            },
        )
        .unwrap();
    // The server reads a changed client within its one-second cache.
    std::thread::sleep(devicegate::store::CLIENT_CACHE_TTL + std::time::Duration::from_millis(200));
    let resp = app.refresh("guest", &s(&tokens, "refresh_token"), None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let refreshed = resp.json();
    assert_eq!(refreshed["scope"], "read");
    assert!(refreshed.get("id_token").is_none(), "{refreshed}");
    // A grant with nothing the client may still ask for ends.
    let resp = app.refresh("guest", &s(&only_oidc, "refresh_token"), None);
    assert_oauth_error(&resp, 400, "invalid_grant");
}
