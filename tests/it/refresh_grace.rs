//! Issue #12 item 8: `--refresh-grace` without takeover. A spent refresh token presented
//! again inside the window gets its own new pair and the pair already handed out stays
//! valid, so replaying an old token cannot lock the real device out; reuse after the window,
//! of a token older than the last rotation, or past the retry bound still revokes the grant
//! (RFC 9700 §4.14.2).

use serde_json::Value;

use crate::support::{assert_oauth_error, TestApp};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap().to_string()
}

/// The token pair a successful refresh with `pair`'s refresh token hands out.
fn refreshed(app: &TestApp, pair: &Value) -> Value {
    let resp = app.refresh("guest", &s(pair, "refresh_token"), None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

/// A refresh with `pair`'s refresh token is refused: `invalid_grant`.
fn assert_refresh_refused(app: &TestApp, pair: &Value) {
    assert_oauth_error(
        &app.refresh("guest", &s(pair, "refresh_token"), None),
        400,
        "invalid_grant",
    );
}

/// The grant is gone: this pair's access and refresh tokens both fail.
fn assert_revoked(app: &TestApp, pair: &Value) {
    let userinfo = app.userinfo(&s(pair, "access_token"));
    assert_eq!(userinfo.status, 401);
    assert_eq!(userinfo.json()["error"], "invalid_token");
    assert_refresh_refused(app, pair);
}

#[test]
fn an_old_token_replayed_inside_the_window_gets_its_own_pair_and_the_device_keeps_working() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 10);
    let first = app.login("alice");
    // The real device rotates T0 → T1 and holds the new pair.
    let device = refreshed(&app, &first);
    app.advance(3.0);
    // Someone presents T0 again inside the window (a retry after a lost response, or a
    // replay): a pair of its own.
    let retry = refreshed(&app, &first);
    assert_ne!(s(&retry, "refresh_token"), s(&device, "refresh_token"));
    assert_ne!(s(&retry, "access_token"), s(&device, "access_token"));
    // The real device's pair still works: its access token and its refresh token.
    assert_eq!(app.userinfo(&s(&device, "access_token")).status, 200);
    let device_next = refreshed(&app, &device);
    assert_eq!(app.userinfo(&s(&device_next, "access_token")).status, 200);
    // And so does the retry's own pair.
    assert_eq!(app.userinfo(&s(&retry, "access_token")).status, 200);
    assert_eq!(app.count_rows("grants WHERE revoked_at IS NULL"), 1);
}

#[test]
fn a_token_older_than_the_last_rotation_is_reuse_even_inside_the_window() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 60);
    let t0 = app.login("alice");
    let t1 = refreshed(&app, &t0);
    let t2 = refreshed(&app, &t1);
    app.advance(1.0);
    // T0 → T1 → T2, then T0 again: T1 was itself rotated, so T0 is older than the last
    // rotation.
    assert_refresh_refused(&app, &t0);
    assert_revoked(&app, &t2);
}

#[test]
fn an_old_token_whose_retry_was_rotated_is_reuse_inside_the_window() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 60);
    let t0 = app.login("alice");
    let device = refreshed(&app, &t0);
    let retry = refreshed(&app, &t0);
    refreshed(&app, &retry);
    assert_refresh_refused(&app, &t0);
    assert_revoked(&app, &device);
}

#[test]
fn reuse_after_the_window_revokes_the_grant() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 10);
    let t0 = app.login("alice");
    let t1 = refreshed(&app, &t0);
    app.advance(11.0);
    assert_refresh_refused(&app, &t0);
    assert_revoked(&app, &t1);
}

#[test]
fn retries_of_one_token_are_bounded_then_refused_without_ending_the_grant() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 10);
    let t0 = app.login("alice");
    let device = refreshed(&app, &t0);
    let max = devicegate::protocol::refresh::MAX_GRACE_RETRIES;
    assert_eq!(max, 3);
    for _ in 0..max {
        refreshed(&app, &t0);
    }
    assert_eq!(app.userinfo(&s(&device, "access_token")).status, 200);
    // One more is no longer a retry (a token factory is not what the window is for), but
    // inside the window it is only refused: a replay must not end the device's grant.
    for _ in 0..3 {
        assert_refresh_refused(&app, &t0);
    }
    assert_eq!(app.userinfo(&s(&device, "access_token")).status, 200);
    let rotated = refreshed(&app, &device);
    assert_eq!(app.userinfo(&s(&rotated, "access_token")).status, 200);
    // After the window the same token is reuse, and the grant ends.
    app.advance(11.0);
    assert_refresh_refused(&app, &t0);
    assert_revoked(&app, &rotated);
}

#[test]
fn without_a_grace_window_any_reuse_revokes_the_grant() {
    let app = TestApp::spawn_with(|c| c.refresh_grace = 0);
    let t0 = app.login("alice");
    let t1 = refreshed(&app, &t0);
    assert_refresh_refused(&app, &t0);
    assert_revoked(&app, &t1);
}

#[test]
fn a_version_1_database_is_upgraded_for_grace_retries() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    drop(devicegate::store::Store::open(&db).unwrap());
    {
        // Make it what version 1 wrote: refresh_tokens without the two new columns.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; DROP TABLE refresh_tokens; \
             CREATE TABLE refresh_tokens (token_hash TEXT PRIMARY KEY, \
               grant_id INTEGER NOT NULL REFERENCES grants(id) ON DELETE CASCADE, \
               scope TEXT NOT NULL, issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, \
               rotated_at INTEGER) WITHOUT ROWID; \
             INSERT INTO refresh_tokens VALUES ('h', 1, 'read', 0, 9, NULL); \
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    drop(devicegate::store::Store::open(&db).unwrap());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('refresh_tokens')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(columns.contains(&"rotated_from".to_string()), "{columns:?}");
    assert!(
        columns.contains(&"grace_retries".to_string()),
        "{columns:?}"
    );
    // Rows written before the upgrade count no retries yet.
    let retries: i64 = conn
        .query_row(
            "SELECT grace_retries FROM refresh_tokens WHERE token_hash = 'h'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(retries, 0);
}
