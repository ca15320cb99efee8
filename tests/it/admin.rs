//! The admin CLI against a live server's database: users, clients, pending, backup, check.

use serde_json::Value;

use crate::cli::run;
use crate::support::{Browser, TestApp};

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn user_lifecycle_commands() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    assert_eq!(
        run(db, &["user", "add", "ann"], Some("first-password\n")).0,
        0
    );
    let tokens = app.login("ann");
    let users = json(&run(db, &["user", "list", "--json"], None).1);
    assert_eq!(users[0]["username"], "ann");
    assert_eq!(users[0]["disabled"], false);

    // Disabled: no sign-in, and tokens stop working.
    assert_eq!(run(db, &["user", "disable", "ann"], None).0, 0);
    assert_eq!(
        Browser::new(&app).sign_in("ann", "first-password").status,
        401
    );
    assert_eq!(
        app.userinfo(tokens["access_token"].as_str().unwrap())
            .status,
        401
    );
    assert_eq!(run(db, &["user", "enable", "ann"], None).0, 0);
    assert_eq!(
        Browser::new(&app).sign_in("ann", "first-password").status,
        303
    );

    // passwd: the new password works, the old does not, and sessions end.
    let browser = Browser::new(&app);
    browser.sign_in("ann", "first-password");
    assert_eq!(
        run(db, &["user", "passwd", "ann"], Some("second-password\n")).0,
        0
    );
    assert!(
        browser.get("/oauth/device").body.contains("Sign in"),
        "session ended"
    );
    assert_eq!(
        Browser::new(&app).sign_in("ann", "first-password").status,
        401
    );
    assert_eq!(
        Browser::new(&app).sign_in("ann", "second-password").status,
        303
    );

    // remove: gone with their grants.
    assert_eq!(run(db, &["user", "remove", "ann"], None).0, 0);
    assert!(json(&run(db, &["user", "list", "--json"], None).1)
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        app.refresh("guest", tokens["refresh_token"].as_str().unwrap(), None)
            .status,
        400
    );
    let (code, _, err) = run(db, &["user", "remove", "ann"], None);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: "));
}

#[test]
fn client_commands_with_per_client_lifetime_and_interval() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    let (code, out, _) = run(
        db,
        &[
            "client",
            "add",
            "TV app",
            "--scope",
            "read",
            "--device-code-ttl",
            "300",
            "--poll-interval",
            "9",
        ],
        None,
    );
    assert_eq!(code, 0);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap()
        .to_string();
    let shown = json(&run(db, &["client", "show", &id, "--json"], None).1);
    assert_eq!(shown["name"], "TV app");
    assert_eq!(shown["confidential"], false);
    assert_eq!(shown["device_code_ttl"], 300);
    let codes = app.device_authorize(&id);
    assert_eq!(codes.body["expires_in"], 300);
    assert_eq!(codes.body["interval"], 9);
    let list = json(&run(db, &["client", "list", "--json"], None).1);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // rotate-secret only for confidential clients; the old secret stops working.
    assert_eq!(run(db, &["client", "rotate-secret", &id], None).0, 1);
    let (_, out, _) = run(
        db,
        &[
            "client",
            "add",
            "Backend",
            "--confidential",
            "--grant-types",
            "none",
        ],
        None,
    );
    let rs = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap()
        .to_string();
    let old = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    let (code, out, _) = run(db, &["client", "rotate-secret", &rs], None);
    assert_eq!(code, 0);
    let new = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    let introspect = |secret: &str| {
        app.post_form(
            "/oauth/introspect",
            &[
                ("client_id", &rs),
                ("client_secret", secret),
                ("token", "x"),
            ],
        )
        .status
    };
    assert_eq!(introspect(&old), 401);
    assert_eq!(introspect(&new), 200);
    // remove: the client's pending codes go with it.
    assert_eq!(run(db, &["client", "remove", &id], None).0, 0);
    // Another process's change reaches the server's client cache within its TTL (a worker
    // that read the client in the last second may still hold it).
    std::thread::sleep(devicegate::store::CLIENT_CACHE_TTL + std::time::Duration::from_millis(100));
    assert_eq!(app.poll(&id, &codes.device_code).status, 401);
    let (code, _, err) = run(db, &["client", "remove", "guest"], None);
    assert_eq!(code, 1);
    assert!(err.contains("built-in"));
}

#[test]
fn pending_lists_requests_with_client_scope_age_and_origin() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    let (code, out, _) = run(&app.db_path, &["pending", "--json"], None);
    assert_eq!(code, 0);
    let pending = json(&out);
    assert_eq!(pending[0]["user_code"], codes.user_code.as_str());
    assert_eq!(pending[0]["client_id"], "guest");
    assert_eq!(pending[0]["scope"], "read write");
    assert_eq!(pending[0]["device_ip"], "127.0.0.1");
    assert!(pending[0]["age_secs"].is_i64());
    let (_, text, _) = run(&app.db_path, &["pending"], None);
    assert!(text.contains(&codes.user_code));
}

#[test]
fn backup_copies_the_live_database_and_refuses_to_overwrite() {
    // `backup` writes a SQLite file; on PostgreSQL it points to pg_dump instead.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    app.login("alice");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let copy_str = copy.to_str().unwrap();
    assert_eq!(run(&app.db_path, &["backup", copy_str], None).0, 0);
    let (code, _, err) = run(&app.db_path, &["backup", copy_str], None);
    assert_eq!(code, 1);
    assert!(err.contains("--force"));
    assert_eq!(
        run(&app.db_path, &["backup", copy_str, "--force"], None).0,
        0
    );
    // The copy is a working database with the same data.
    let (code, out, _) = run(&copy, &["grant", "list", "--json"], None);
    assert_eq!(code, 0);
    assert_eq!(json(&out)[0]["username"], "alice");
    assert_eq!(run(&copy, &["check"], None).0, 0);
}

#[test]
fn check_reports_configuration_problems_and_integrity() {
    let app = TestApp::spawn();
    let (code, out, _) = run(&app.db_path, &["check"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("configuration: ok") && out.contains("database: ok"),
        "{out}"
    );
    let (code, _, err) = run(
        &app.db_path,
        &[
            "check",
            "--listen",
            "x",
            "--poll-interval",
            "0",
            "--issuer",
            "ftp://x",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert_eq!(err.matches("config: ").count(), 3, "{err}");
}

#[test]
fn bad_usage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    assert_eq!(run(&db, &["user"], None).0, 2);
    assert_eq!(run(&db, &["client", "add"], None).0, 2);
    assert_eq!(run(&db, &["grant", "revoke", "not-a-number"], None).0, 2);
}
