//! The operator's side of issue #13 through the binary: the first start's admin password
//! (bind first; a private file when stdout is not a terminal), client add/edit/rotate,
//! configuration spellings (booleans, durations, `_FILE` secrets) and `check`, metrics with
//! every series present, audit lines for admin actions, and the shipped systemd unit.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{run, sign_in_status, stop};
use crate::support::{
    assert_oauth_error, free_port, new_database, serve_binary, test_database, Browser, TestApp,
    TestDb, DEVICE_GRANT,
};

/// `devicegate --db <db> <args…>` with extra environment variables: (exit code, stdout, stderr).
fn run_env(db: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = crate::support::devicegate()
        .arg("--db")
        .arg(db)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count_users(db: &Path) -> i64 {
    TestDb::open(db).count_rows("users")
}

/// Waits out the server's client cache: a client changed by another process (the CLI) is
/// seen by every worker once `CLIENT_CACHE_TTL` (1 s) has passed since the change.
fn wait_for_client_cache() {
    std::thread::sleep(devicegate::store::CLIENT_CACHE_TTL + Duration::from_millis(100));
}

// ---- item 6: the first start's admin password ----

#[cfg(unix)]
#[test]
fn a_busy_port_creates_nothing_and_the_next_start_leaves_the_password_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let (code, out, err) = run(&db, &["serve", "--listen", &listen], None);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("cannot listen"), "{err}");
    assert!(
        !db.exists(),
        "a failed bind creates no database, so no admin"
    );
    let file = dir.path().join("d.db.admin-password");
    assert!(!file.exists());
    drop(busy);

    // stdout is a pipe, as under systemd: the password goes to the file, never to a stream.
    let child = serve_binary(&db, &listen, &[], Stdio::piped());
    let base = format!("http://{listen}");
    assert_eq!(count_users(&db), 1);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let password = std::fs::read_to_string(&file)
        .unwrap()
        .trim_end()
        .to_string();
    assert_eq!(password.len(), 20);
    assert_eq!(sign_in_status(&base, "admin", &password), 303);
    let (stdout, stderr) = stop(child);
    assert!(!stdout.contains(&password) && !stderr.contains(&password));
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("user passwd admin"), "{stderr}");

    // While the file is there, every start reminds of it.
    let child = serve_binary(&db, &listen, &[], Stdio::piped());
    let (_, stderr) = stop(child);
    assert!(stderr.contains("still in"), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("user passwd admin"), "{stderr}");
    assert!(!stderr.contains(&password));
    assert_eq!(count_users(&db), 1);
}

#[cfg(unix)]
#[test]
fn a_leftover_password_file_stops_the_first_start_before_admin_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let file = dir.path().join("d.db.admin-password");
    let target = dir.path().join("target");
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run(&db, &["serve", "--listen", &listen], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no user was created"), "{err}");
    assert!(!target.exists(), "nothing written through the symlink");
    assert_eq!(count_users(&db), 0);
}

// ---- item 7: clients ----

#[test]
fn client_add_takes_a_chosen_id_prints_json_and_refuses_a_taken_or_bad_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, out, err) = run(
        &db,
        &[
            "client",
            "add",
            "Campus CLI",
            "--id",
            "campus-cli",
            "--confidential",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["client_id"], "campus-cli");
    let secret = added["client_secret"].as_str().unwrap();
    assert!(secret.len() >= 32);
    assert!(!err.contains(secret));
    let (code, out, _) = run(
        &db,
        &["client", "add", "Kiosk", "--id", "kiosk", "--json"],
        None,
    );
    assert_eq!(code, 0);
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["client_secret"], Value::Null, "a public client");

    let (code, _, err) = run(&db, &["client", "add", "Again", "--id", "campus-cli"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("a client `campus-cli` already exists"),
        "{err}"
    );
    let long = "x".repeat(65);
    for bad in ["has space", "ünïcode", "a/b", "", long.as_str()] {
        let (code, _, err) = run(&db, &["client", "add", "Bad", "--id", bad], None);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("a client_id is 1–64 of"), "{err}");
    }
    let (_, out, _) = run(&db, &["client", "list", "--json"], None);
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "guest, campus-cli, kiosk"
    );
}

#[test]
fn client_edit_changes_only_what_is_given_and_the_live_server_uses_it() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    let (code, out, err) = run(
        db,
        &[
            "client",
            "edit",
            "guest",
            "--name",
            "Campus sign-in",
            "--poll-interval",
            "7s",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Campus sign-in"), "{out}");
    let (_, out, _) = run(db, &["client", "show", "guest", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["name"], "Campus sign-in");
    assert_eq!(shown["poll_interval"], 7);
    assert_eq!(
        shown["scopes"],
        serde_json::json!([
            "read",
            "write",
            "openid",
            "profile",
            "email",
            "offline_access"
        ])
    );
    assert_eq!(shown["device_code_ttl"], Value::Null, "left alone");

    // The device sees the interval; the person sees the name on the consent page.
    wait_for_client_cache();
    let codes = app.device_authorize("guest");
    assert_eq!(codes.body["interval"], 7, "{}", codes.body);
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    let consent = browser.enter_code(&codes.user_code);
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Campus sign-in"), "{}", consent.body);

    let (code, _, err) = run(db, &["client", "edit", "nobody", "--name", "x"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no client `nobody`"), "{err}");
    let (code, _, err) = run(db, &["client", "edit", "guest"], None);
    assert_eq!(code, 2);
    assert!(err.contains("nothing to change"), "{err}");
    let (code, _, err) = run(
        db,
        &["client", "edit", "guest", "--poll-interval", "2m"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("between 1 and 60 seconds"), "{err}");
    let (code, _, _) = run(
        db,
        &[
            "client",
            "edit",
            "guest",
            "--poll-interval",
            "default",
            "--scope",
            "read",
            "--grant-types",
            "device_code",
        ],
        None,
    );
    assert_eq!(code, 0);
    let (_, out, _) = run(db, &["client", "show", "guest", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["poll_interval"], Value::Null, "back to the server's");
    assert_eq!(shown["scopes"], serde_json::json!(["read"]));
    assert_eq!(shown["name"], "Campus sign-in");
}

#[test]
fn the_builtin_client_has_a_human_name_and_an_operators_edit_survives_restarts() {
    let app = TestApp::spawn();
    let (_, out, _) = run(&app.db_path, &["client", "show", "guest", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["name"], "Command-line sign-in");
    drop(app);

    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    stop(serve_binary(&db, &listen, &[], Stdio::null()));
    let (code, _, _) = run(
        &db,
        &["client", "edit", "guest", "--name", "Lab login"],
        None,
    );
    assert_eq!(code, 0);
    stop(serve_binary(&db, &listen, &[], Stdio::null()));
    let (_, out, _) = run(&db, &["client", "show", "guest", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["name"], "Lab login", "bootstrap left the edit alone");

    // A database from before carries the old default name: it gets the new one.
    TestDb::open(&db).execute(
        "UPDATE clients SET name = 'Guest (built-in public client)' WHERE client_id = 'guest'",
    );
    let (_, out, _) = run(&db, &["client", "show", "guest", "--json"], None);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["name"], "Command-line sign-in");
}

#[test]
fn a_rotated_secret_replaces_the_old_one_at_the_token_endpoint() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    let (code, out, _) = run(
        db,
        &[
            "client",
            "add",
            "Build bot",
            "--id",
            "bot",
            "--confidential",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0);
    let old: String = serde_json::from_str::<Value>(&out).unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .into();
    let authorize = |secret: &str| {
        app.post_form(
            "/oauth/device_authorize",
            &[("client_id", "bot"), ("client_secret", secret)],
        )
    };
    let started = authorize(&old);
    assert_eq!(started.status, 200, "{}", started.body);
    let device_code = started.json()["device_code"].as_str().unwrap().to_string();
    let poll = |secret: &str| {
        app.post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "bot"),
                ("client_secret", secret),
                ("device_code", &device_code),
            ],
        )
    };

    let (code, out, err) = run(db, &["client", "rotate-secret", "bot"], None);
    assert_eq!(code, 0, "{err}");
    let new = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap()
        .to_string();
    assert_ne!(new, old);
    assert!(err.contains("audit: client rotate-secret `bot`"), "{err}");
    assert!(!err.contains(&new) && !err.contains(&old));
    wait_for_client_cache();
    // Whichever worker answers: four tries each.
    for _ in 0..4 {
        assert_oauth_error(&poll(&old), 401, "invalid_client");
        app.advance(6.0); // past the 5 s interval: pending, not slow_down
        assert_oauth_error(&poll(&new), 400, "authorization_pending");
    }
    // And once more, as JSON: the secret from before stops working in turn.
    let (code, out, _) = run(db, &["client", "rotate-secret", "bot", "--json"], None);
    assert_eq!(code, 0);
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["client_id"], "bot");
    let (old, new) = (new, rotated["client_secret"].as_str().unwrap().to_string());
    wait_for_client_cache();
    for _ in 0..4 {
        assert_oauth_error(&poll(&old), 401, "invalid_client");
        app.advance(6.0); // past the 5 s interval: pending, not slow_down
        assert_oauth_error(&poll(&new), 400, "authorization_pending");
    }

    let (code, _, err) = run(db, &["client", "rotate-secret", "guest"], None);
    assert_eq!(code, 1);
    assert!(err.contains("public client"), "{err}");
    let (code, _, err) = run(db, &["client", "rotate-secret", "nobody"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no client `nobody`"), "{err}");
}

// ---- item 13: configuration conventions and `check` ----

#[test]
fn boolean_variables_take_the_usual_spellings_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    // With an https issuer on loopback, leaving out --trust-proxy is warned about.
    let check = |value: &str| {
        run_env(
            &db,
            &[
                "check",
                "--listen",
                "127.0.0.1:0",
                "--issuer",
                "https://auth.example.com",
            ],
            &[("DEVICEGATE_TRUST_PROXY", value)],
        )
    };
    for on in ["1", "true", "YES", "on"] {
        let (code, _, err) = check(on);
        assert_eq!(code, 0, "{on}: {err}");
        assert!(!err.contains("pass --trust-proxy"), "{on} is true: {err}");
    }
    for off in ["0", "false", "No", "OFF", ""] {
        let (code, _, err) = check(off);
        assert_eq!(code, 0, "{off}: {err}");
        assert!(err.contains("pass --trust-proxy"), "{off} is false: {err}");
    }
    let (code, _, err) = check("maybe");
    assert_eq!(code, 2);
    assert!(
        err.contains("DEVICEGATE_TRUST_PROXY: `maybe` is not a boolean"),
        "{err}"
    );
    let (code, _, err) = run_env(
        &db,
        &["check", "--listen", "127.0.0.1:0"],
        &[("DEVICEGATE_ALLOW_INSECURE_HTTP", "sure")],
    );
    assert_eq!(code, 2);
    assert!(err.contains("DEVICEGATE_ALLOW_INSECURE_HTTP"), "{err}");
}

#[test]
fn durations_take_units_and_a_bad_one_names_its_flag_or_variable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let (code, out, err) = run_env(
        &db,
        &[
            "check",
            "--listen",
            "127.0.0.1:0",
            "--device-code-ttl",
            "15m",
            "--poll-interval",
            "5s",
            "--refresh-token-ttl",
            "30d",
            "--password-hash-wait-ms",
            "1500ms",
        ],
        &[("DEVICEGATE_ACCESS_TOKEN_TTL", "1h")],
    );
    assert_eq!(code, 0, "{out}{err}");
    // Units are checked against the same bounds as seconds: 2h is not a poll interval.
    let (code, _, err) = run(
        &db,
        &["check", "--listen", "127.0.0.1:0", "--poll-interval", "2h"],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("--poll-interval: must be between 1 and 60 seconds"));
    let (code, _, err) = run_env(&db, &["check"], &[("DEVICEGATE_ACCESS_TOKEN_TTL", "1x")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("DEVICEGATE_ACCESS_TOKEN_TTL: `1x` is not a duration"),
        "{err}"
    );
    let (code, _, err) = run(&db, &["check", "--io-timeout", "ten"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("--io-timeout: `ten` is not a duration"),
        "{err}"
    );

    // And the server uses them: 15m is 900 s in the device authorization response.
    let listen = format!("127.0.0.1:{}", free_port());
    let child = serve_binary(&db, &listen, &["--device-code-ttl", "15m"], Stdio::null());
    let body: Value = ureq::post(&format!("http://{listen}/oauth/device_authorize"))
        .send_form(&[("client_id", "guest")])
        .unwrap()
        .into_json()
        .unwrap();
    stop(child);
    assert_eq!(body["expires_in"], 900);
}

#[test]
fn the_metrics_token_comes_from_a_file_and_every_series_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "token-from-a-file-0123\n").unwrap();
    let file = token_file.to_str().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = crate::support::devicegate()
        .args(["--db", db.to_str().unwrap(), "serve", "--listen", &listen])
        .env("DEVICEGATE_METRICS_TOKEN_FILE", file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_until_healthy(&format!("http://{listen}"));
    let metrics = ureq::get(&format!("http://{listen}/metrics"))
        .set("Authorization", "Bearer token-from-a-file-0123")
        .call();
    stop(child);
    let text = metrics.unwrap().into_string().unwrap();
    for state in ["pending", "approved", "denied", "redeemed", "expired"] {
        assert!(
            text.contains(&format!("devicegate_device_codes{{state=\"{state}\"}} 0\n")),
            "{state}: {text}"
        );
    }
    assert!(text.contains(&format!(
        "devicegate_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    )));
    for name in [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .parse()
            .unwrap();
        assert!(value > 0.0, "{name} {value}");
        assert!(text.contains(&format!("# TYPE {name} gauge")));
    }

    let (code, _, err) = run_env(
        &db,
        &["check", "--listen", "127.0.0.1:0"],
        &[
            ("DEVICEGATE_METRICS_TOKEN_FILE", file),
            ("DEVICEGATE_METRICS_TOKEN", "another-token-0123456"),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("DEVICEGATE_METRICS_TOKEN_FILE") && err.contains("both set"),
        "{err}"
    );
    let missing = dir.path().join("missing");
    let (code, _, err) = run_env(
        &db,
        &["check", "--listen", "127.0.0.1:0"],
        &[("DEVICEGATE_METRICS_TOKEN_FILE", missing.to_str().unwrap())],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("DEVICEGATE_METRICS_TOKEN_FILE") && err.contains("cannot read"),
        "{err}"
    );
    let (code, _, err) = run(
        &db,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-token-file",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 2, "serve refuses it too");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn metrics_over_http_list_states_at_zero_and_the_process() {
    let token = "a-long-metrics-token";
    let app = TestApp::spawn_with(|c| c.metrics_token = Some(token.into()));
    let auth = format!("Bearer {token}");
    let resp = app.request("GET", "/metrics", &[("Authorization", &auth)], None);
    assert_eq!(resp.status, 200);
    for state in ["approved", "denied", "redeemed", "expired"] {
        assert!(
            resp.body
                .contains(&format!("devicegate_device_codes{{state=\"{state}\"}} 0")),
            "{state}: {}",
            resp.body
        );
    }
    app.device_authorize("guest");
    let resp = app.request("GET", "/metrics", &[("Authorization", &auth)], None);
    assert!(resp
        .body
        .contains("devicegate_device_codes{state=\"pending\"} 1"));
    assert!(resp.body.contains("devicegate_build_info{version="));
    assert!(resp.body.contains("process_start_time_seconds "));
}

#[test]
fn check_tries_the_listen_address_and_the_database_directory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(&db, &["check", "--listen", &listen], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("listen: {listen}: address in use")),
        "{err}"
    );
    let (code, out, _) = run(&db, &["check", "--listen", &listen, "--json"], None);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["listen"]["ok"], false);
    assert!(report["listen"]["problem"]
        .as_str()
        .unwrap()
        .contains("address in use"));
    assert_eq!(report["configuration"]["ok"], true);
    assert_eq!(report["database"]["ok"], true);
    assert_eq!(report["database"]["exists"], false);
    drop(busy);

    let nowhere = dir.path().join("no-such-dir").join("d.db");
    let (code, _, err) = run(&nowhere, &["check", "--listen", "127.0.0.1:0"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no-such-dir does not exist"), "{err}");
    let (code, out, _) = run(
        &nowhere,
        &["check", "--listen", "127.0.0.1:0", "--json"],
        None,
    );
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["database"]["ok"], false);
    assert_eq!(report["listen"]["ok"], true);

    let (code, out, _) = run(&db, &["check", "--listen", "127.0.0.1:0", "--json"], None);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    let (code, out, _) = run(
        &db,
        &[
            "check",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 2);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["configuration"]["ok"], false);
    assert!(report["configuration"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("--workers"));
}

// ---- item 14: audit lines ----

#[test]
fn admin_actions_write_an_audit_line_without_secrets() {
    let app = TestApp::spawn();
    let db = &app.db_path;
    let password = "correct-horse-battery";
    let (code, _, err) = run(
        db,
        &["user", "add", "frank"],
        Some(&format!("{password}\n")),
    );
    assert_eq!(code, 0);
    assert!(err.contains("audit: user add `frank` by "), "{err}");
    assert!(!err.contains(password));
    let (_, _, err) = run(
        db,
        &["user", "passwd", "frank"],
        Some("another-password-1\n"),
    );
    assert!(err.contains("audit: user passwd `frank`"), "{err}");
    assert!(!err.contains("another-password-1"));
    let (_, _, err) = run(db, &["user", "disable", "frank"], None);
    assert!(err.contains("audit: user disable `frank`"), "{err}");
    let (_, _, err) = run(db, &["user", "enable", "frank"], None);
    assert!(err.contains("audit: user enable `frank`"), "{err}");

    let (_, out, err) = run(
        db,
        &["client", "add", "Bot", "--id", "bot", "--confidential"],
        None,
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap();
    assert!(
        err.contains("audit: client add `bot` (confidential"),
        "{err}"
    );
    assert!(!err.contains(secret));
    let (_, _, err) = run(db, &["client", "edit", "bot", "--scope", "read"], None);
    assert!(err.contains("audit: client edit `bot`: scopes"), "{err}");

    let codes = app.device_authorize("guest");
    let (code, _, err) = run(db, &["approve", &codes.user_code, "--user", "frank"], None);
    assert_eq!(code, 0, "{err}");
    let head = &codes.user_code[..4];
    assert!(
        err.contains(&format!("audit: approve {head}-**** for `frank`")),
        "{err}"
    );
    assert!(!err.contains(&codes.user_code), "no whole code in the log");
    let denied = app.device_authorize("guest");
    let (_, _, err) = run(db, &["deny", &denied.user_code], None);
    assert!(err.contains("audit: deny "), "{err}");
    assert!(!err.contains(&denied.user_code));
    assert_eq!(app.poll("guest", &codes.device_code).status, 200);
    let (_, out, _) = run(db, &["grant", "list"], None);
    let id = out.split('\t').next().unwrap();
    let (_, _, err) = run(db, &["grant", "revoke", id], None);
    assert!(err.contains(&format!("audit: grant revoke {id}")), "{err}");
    let (_, _, err) = run(db, &["unlock", "frank"], None);
    assert!(err.contains("audit: unlock user name `frank`"), "{err}");
    let (_, _, err) = run(db, &["client", "remove", "bot"], None);
    assert!(err.contains("audit: client remove `bot`"), "{err}");
    let (_, _, err) = run(db, &["user", "remove", "frank"], None);
    assert!(err.contains("audit: user remove `frank`"), "{err}");
    // Each line is the server's log format: a UTC time stamp and the level first.
    let line = err.lines().find(|l| l.contains("audit:")).unwrap();
    assert!(line.contains(" INFO  audit: "), "{line}");
}

// ---- item 15: distribution ----

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_shipped_systemd_unit_runs_serve_with_flags_that_exist() {
    let unit = repo_file("docs/devicegate.service");
    let mut section = String::new();
    let mut service: Vec<(String, String)> = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if section == "Service" {
            let (key, value) = line.split_once('=').unwrap();
            service.push((key.to_string(), value.to_string()));
        }
    }
    let get = |key: &str| {
        service
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} missing"))
    };
    assert_eq!(get("DynamicUser"), "yes");
    assert_eq!(get("StateDirectory"), "devicegate");
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("ProtectSystem"), "strict");
    let exec: Vec<&str> = get("ExecStart").split_whitespace().collect();
    assert_eq!(exec[0], "/usr/local/bin/devicegate");
    let serve = exec.iter().position(|w| *w == "serve").unwrap();
    let db = exec.iter().position(|w| *w == "--db").unwrap();
    assert!(
        exec[db + 1].starts_with("/var/lib/devicegate/"),
        "the database lives in the StateDirectory"
    );
    let help = crate::support::devicegate()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in exec[1..].iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not a serve flag");
    }
    assert!(serve > db, "--db before serve works too, but it is global");
    for (key, value) in &service {
        if key == "Environment" {
            let name = value.split('=').next().unwrap();
            assert!(help.contains(name), "{name} is not a variable serve reads");
        }
    }
    // The unit must still parse as the binary's flags.
    let (code, _, err) = run(
        &tempfile::tempdir().unwrap().path().join("d.db"),
        &["check", "--listen", "127.0.0.1:0", "--trust-proxy"],
        None,
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn the_release_profile_ships_no_symbols() {
    let manifest = repo_file("Cargo.toml");
    let release: Vec<&str> = manifest
        .split("[profile.release]")
        .nth(1)
        .expect("a [profile.release] section")
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .map(str::trim)
        .collect();
    let strip = release
        .iter()
        .find_map(|l| l.strip_prefix("strip"))
        .map(|v| v.trim_start_matches([' ', '=']).trim());
    assert_eq!(strip, Some("\"symbols\""), "{release:?}");
    assert!(
        !release.iter().any(|l| l.starts_with("debug")),
        "debug info stays out of the shipped binary: {release:?}"
    );
}

// ---- review fixes (issue #13's operator side, after a release-build review) ----

/// The README's Install section: from `### Install` to the next `### ` heading.
fn install_section() -> String {
    let readme = repo_file("README.md");
    let start = readme.find("### Install").expect("an Install section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n### ").unwrap_or(rest.len())].to_string()
}

#[test]
fn the_readme_restores_as_the_service_user_and_checks_with_the_units_flags() {
    let install = install_section();
    // The restored file must belong to the state directory's owner: systemd re-owns
    // only when the directory itself is someone else's.
    let restore = install
        .lines()
        .skip_while(|l| !l.starts_with("systemctl stop devicegate"))
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        restore.contains("stat -L -c %u:%g /var/lib/devicegate")
            && restore.contains("install -m 0600 -o "),
        "{restore}"
    );
    assert!(!install.contains("owner does not matter"), "{install}");
    assert!(install.contains("/var/lib/private/devicegate"));
    // Upgrade: `check` gets every flag the unit's ExecStart passes (but the port).
    let unit = repo_file("docs/devicegate.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let check = install
        .lines()
        .skip_while(|l| !l.contains(" check "))
        .take(1)
        .collect::<String>();
    assert!(!check.is_empty(), "an upgrade check line");
    for flag in exec
        .split_whitespace()
        .filter(|w| w.starts_with("--") && !["--db", "--listen"].contains(w))
    {
        assert!(
            check.contains(flag),
            "the upgrade check lacks {flag}: {check}"
        );
    }
    let issuer = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=DEVICEGATE_ISSUER="))
        .unwrap();
    assert!(
        install.contains(&format!("DEVICEGATE_ISSUER={issuer}")),
        "{install}"
    );
}

/// The first start's sign-in URL from the log line of a server started with `issuer`
/// (stdout not a terminal: the password goes to a file and the URL to the log).
fn first_start_url(db: &Path, listen: &str, issuer: &str) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = serve_binary(db, listen, &["--issuer", issuer], Stdio::piped());
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = loop {
        let line = lines.next().expect("log ended").unwrap();
        if line.contains("Sign in at ") {
            break line;
        }
    };
    let url = line
        .split("Sign in at ")
        .nth(1)
        .unwrap()
        .split(", then")
        .next()
        .unwrap()
        .to_string();
    (child, format!("{url}\n{line}"))
}

#[test]
fn the_first_start_names_a_sign_in_url_that_is_served_whatever_the_issuers_slash() {
    for path in ["/", "/sso/"] {
        let dir = tempfile::tempdir().unwrap();
        // A database path with a space: the `user passwd` hint quotes it for the shell.
        std::fs::create_dir(dir.path().join("with space")).unwrap();
        let db = dir.path().join("with space/d.db");
        let listen = format!("127.0.0.1:{}", free_port());
        let issuer = format!("http://{listen}{path}");
        let (child, found) = first_start_url(&db, &listen, &issuer);
        let (url, line) = found.split_once('\n').unwrap();
        assert_eq!(
            url,
            format!("http://{listen}{}oauth/device", path),
            "{line}"
        );
        let status = match ureq::get(url).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(status, 200, "{url}");
        assert!(
            line.contains(&format!(
                "devicegate --db '{}' user passwd admin",
                db.display()
            )),
            "{line}"
        );
        stop(child);
    }
}

#[test]
fn check_reports_every_problem_with_its_variable_and_binds_only_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    // Bad spellings from the environment: all of them, as JSON.
    let (code, out, err) = run_env(
        &db,
        &["check", "--json"],
        &[
            ("DEVICEGATE_TRUST_PROXY", "maybe"),
            ("DEVICEGATE_POLL_INTERVAL", "xx"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(report["ok"], false);
    let problems = report["configuration"]["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{out}");
    assert!(problems.iter().any(|p| p
        .as_str()
        .unwrap()
        .starts_with("DEVICEGATE_TRUST_PROXY: `maybe` is not a boolean")));
    assert!(problems.iter().any(|p| p
        .as_str()
        .unwrap()
        .starts_with("DEVICEGATE_POLL_INTERVAL: `xx` is not a duration")));

    // Out of range from a variable: the variable is named. An unreadable token file hides
    // nothing else.
    let (code, out, _) = run_env(
        &db,
        &["check", "--json"],
        &[
            ("DEVICEGATE_POLL_INTERVAL", "0"),
            ("DEVICEGATE_METRICS_TOKEN_FILE", "/nonexistent/token"),
        ],
    );
    assert_eq!(code, 2);
    let report: Value = serde_json::from_str(&out).unwrap();
    let problems: Vec<&str> = report["configuration"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.contains(
            &"DEVICEGATE_POLL_INTERVAL (--poll-interval): must be between 1 and 60 seconds"
        ),
        "{problems:?}"
    );
    assert!(
        problems[0].starts_with(
            "DEVICEGATE_METRICS_TOKEN_FILE (--metrics-token-file): cannot read /nonexistent/token"
        ),
        "{problems:?}"
    );
    // The same value on the command line is named by its flag.
    let (code, _, err) = run_env(&db, &["check", "--poll-interval", "0"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("config: --poll-interval: must be between"),
        "{err}"
    );

    // A host name is not an address: never reported as bound.
    let (code, out, _) = run_env(&db, &["check", "--json", "--listen", "localhost:8080"], &[]);
    assert_eq!(code, 2);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["listen"]["ok"], false, "{out}");
    assert_eq!(report["listen"]["tried"], false, "{out}");
    let (_, out, err) = run_env(&db, &["check", "--listen", "localhost:8080"], &[]);
    assert!(!out.contains("can be bound"), "{out}");
    assert!(err.contains("listen: localhost:8080: not tried"), "{err}");

    // An empty DEVICEGATE_METRICS_TOKEN_FILE= (as a unit leaves it) is unset.
    let (code, out, err) = run_env(
        &db,
        &["check", "--listen", "127.0.0.1:0"],
        &[("DEVICEGATE_METRICS_TOKEN_FILE", "")],
    );
    assert_eq!(code, 0, "{out}{err}");
}

#[cfg(unix)]
#[test]
fn the_metrics_token_file_is_trimmed_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let file = dir.path().join("token");
    std::fs::write(&file, "  metrics-token-0123456789 \n\n").unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let child = serve_binary(
        &db,
        &listen,
        &["--metrics-token-file", file.to_str().unwrap()],
        Stdio::null(),
    );
    let status = match ureq::get(&format!("http://{listen}/metrics"))
        .set("Authorization", "Bearer metrics-token-0123456789")
        .call()
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    stop(child);
    assert_eq!(status, 200);
    // /dev/zero never ends: refused after 4 KiB, not read into memory.
    let (code, _, err) = run_env(&db, &["check", "--metrics-token-file", "/dev/zero"], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("(--metrics-token-file): /dev/zero is longer than 4096 bytes"),
        "{err}"
    );
}

#[test]
fn the_audit_line_says_where_the_operators_name_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, _, err2) = run_env(
        &db,
        &["client", "add", "Bot", "--id", "bot"],
        &[("SUDO_USER", "alice")],
    );
    assert_eq!(code, 0, "{err2}");
    let line = err2.lines().find(|l| l.contains("audit: ")).unwrap();
    // The name is a claim from the environment, said as one, after the kernel's uid.
    assert!(line.contains(" by uid "), "{line}");
    assert!(line.ends_with(" (SUDO_USER=alice)"), "{line}");
}

#[test]
fn serve_names_a_busy_address_and_a_missing_database_directory() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(
        &dir.path().join("d.db"),
        &["serve", "--listen", &listen],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("error: cannot listen: {listen}: address in use")),
        "{err}"
    );
    drop(busy);
    let db = dir.path().join("missing/d.db");
    let (code, _, err) = run(&db, &["serve", "--listen", "127.0.0.1:0"], None);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "error: the directory {} does not exist, so {} cannot be created; create it (owned \
             by the user devicegate runs as) or pass another --db",
            dir.path().join("missing").display(),
            db.display()
        )
    );
}

#[test]
fn clients_keep_a_scope_and_a_grant_type_and_ids_stay_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let (code, _, err) = run(&db, &["client", "add", "Bot", "--id", "bot"], None);
    assert_eq!(code, 0, "{err}");
    for (flag, message) in [
        ("--scope", "error: --scope: a client needs at least one scope"),
        (
            "--grant-types",
            "error: --grant-types: empty; give device_code, refresh_token, or none (a resource server)",
        ),
    ] {
        let (code, _, err) = run(&db, &["client", "edit", "bot", flag, ""], None);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.trim(), message);
        let (code, _, err) = run(&db, &["client", "add", "Other", flag, " "], None);
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.trim(), message);
    }
    // `show` says the lifetimes too.
    let (code, out, _) = run(
        &db,
        &["client", "edit", "bot", "--poll-interval", "7s"],
        None,
    );
    assert_eq!(code, 0, "{out}");
    let (_, out, _) = run(&db, &["client", "show", "bot"], None);
    assert!(
        out.contains("  device codes live: the server's\n  poll interval:     7s\n"),
        "{out}"
    );
    // Ids that differ only in case, and `.`/`..`, are refused.
    let (code, _, err) = run(&db, &["client", "add", "Bot 2", "--id", "BOT"], None);
    assert_ne!(code, 0);
    assert!(
        err.contains("a client `bot` already exists, differing only in case"),
        "{err}"
    );
    for id in [".", ".."] {
        let (code, _, err) = run(&db, &["client", "add", "Dots", "--id", id], None);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not . or .."), "{err}");
    }
}
