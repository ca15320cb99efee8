//! `POST /oauth/token` with the device code grant (RFC 8628 §3.4–3.5).

use devicegate::protocol::approval::{Actor, Decision};
use std::sync::{Arc, Barrier};

use serde_json::json;

use crate::support::{assert_no_store, assert_oauth_error, Browser, TestApp, DEVICE_GRANT};

#[test]
fn pending_code_answers_authorization_pending() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    assert_oauth_error(
        &app.poll("guest", &codes.device_code),
        400,
        "authorization_pending",
    );
}

#[test]
fn first_poll_is_never_slow_down_even_immediately() {
    let app = TestApp::spawn();
    for _ in 0..5 {
        let codes = app.device_authorize("guest");
        assert_oauth_error(
            &app.poll("guest", &codes.device_code),
            400,
            "authorization_pending",
        );
    }
}

#[test]
fn poll_before_interval_gets_slow_down_with_the_new_interval() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    app.poll("guest", &codes.device_code);
    app.advance(2.0);
    let resp = app.poll("guest", &codes.device_code);
    assert_oauth_error(&resp, 400, "slow_down");
    assert_eq!(resp.json()["interval"], json!(10));
    // Waiting the old interval is no longer enough (RFC 8628 §3.5: +5 s for all later polls).
    app.advance(5.0);
    let resp = app.poll("guest", &codes.device_code);
    assert_oauth_error(&resp, 400, "slow_down");
    assert_eq!(resp.json()["interval"], json!(15));
}

#[test]
fn client_that_waits_the_new_interval_is_never_told_to_slow_down() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    app.poll("guest", &codes.device_code);
    app.advance(1.0);
    let resp = app.poll("guest", &codes.device_code);
    let interval = resp.json()["interval"].as_f64().unwrap();
    for _ in 0..5 {
        app.advance(interval);
        assert_oauth_error(
            &app.poll("guest", &codes.device_code),
            400,
            "authorization_pending",
        );
    }
}

#[test]
fn compliant_client_within_a_second_of_slack_is_fine() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    for _ in 0..5 {
        assert_oauth_error(
            &app.poll("guest", &codes.device_code),
            400,
            "authorization_pending",
        );
        app.advance(4.2);
    }
}

#[test]
fn denied_code_answers_access_denied() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    app.poll("guest", &codes.device_code);
    app.deny(&codes.user_code);
    app.advance(5.0);
    assert_oauth_error(&app.poll("guest", &codes.device_code), 400, "access_denied");
}

/// Too-early polls of a code known to be pending are answered from memory; a decision
/// taken in this server must still reach such a client at its very next poll.
#[test]
fn a_decision_on_the_page_reaches_a_client_polling_too_fast_at_once() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    for decision in ["approve", "deny"] {
        let codes = app.device_authorize("guest");
        let poll = || app.poll("guest", &codes.device_code);
        assert_oauth_error(&poll(), 400, "authorization_pending");
        assert_oauth_error(&poll(), 400, "slow_down");
        let decided = browser.decide(&codes.user_code, decision);
        assert_eq!(decided.status, 200, "{decision}");
        let answer = poll();
        match decision {
            "approve" => assert_eq!(answer.status, 200, "{}", answer.body),
            _ => assert_oauth_error(&answer, 400, "access_denied"),
        }
    }
}

/// A decision taken by another process (`devicegate approve`, here a second connection)
/// reaches a client that keeps polling too early within `RECHECK_AFTER_SECS`.
#[test]
fn a_decision_by_another_process_reaches_a_too_fast_client_within_the_recheck_time() {
    let app = TestApp::spawn();
    let user = app.add_user("bob");
    let codes = app.device_authorize("guest");
    let poll = || app.poll("guest", &codes.device_code);
    assert_oauth_error(&poll(), 400, "authorization_pending");
    assert_oauth_error(&poll(), 400, "slow_down");
    app.approve(&codes.user_code, user);
    // Still too early: "slow down" is a true answer, only not the newest one.
    assert_oauth_error(&poll(), 400, "slow_down");
    app.advance(devicegate::protocol::polls::RECHECK_AFTER_SECS as f64);
    let tokens = poll();
    assert_eq!(tokens.status, 200, "{}", tokens.body);
}

#[test]
fn a_code_known_pending_still_expires_on_time() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    let poll = || app.poll("guest", &codes.device_code);
    assert_oauth_error(&poll(), 400, "authorization_pending");
    app.advance(599.0);
    assert_oauth_error(&poll(), 400, "authorization_pending");
    assert_oauth_error(&poll(), 400, "slow_down");
    app.advance(1.0);
    assert_oauth_error(&poll(), 400, "expired_token");
}

#[test]
fn code_past_its_lifetime_answers_expired_token() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    app.advance(601.0);
    assert_oauth_error(&app.poll("guest", &codes.device_code), 400, "expired_token");
    // An approval arriving too late cannot resurrect it.
    let user = app.add_user("late");
    let result = devicegate::protocol::approval::decide(
        &app.store(),
        &codes.user_code,
        Decision::Approve { user_id: user },
        Actor::Operator,
        app.clock.now(),
    );
    assert!(result.is_err());
}

#[test]
fn approved_code_gets_tokens_exactly_once() {
    let app = TestApp::spawn();
    let user = app.add_user("alice");
    let codes = app.device_authorize("guest");
    app.approve(&codes.user_code, user);
    let resp = app.poll("guest", &codes.device_code);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_no_store(&resp);
    let body = resp.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], json!(3600));
    assert_eq!(body["scope"], "read write");
    for field in ["access_token", "refresh_token"] {
        let token = body[field].as_str().unwrap();
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    app.advance(5.0);
    assert_oauth_error(&app.poll("guest", &codes.device_code), 400, "invalid_grant");
}

#[test]
fn sixteen_simultaneous_polls_of_an_approved_code_yield_one_token() {
    let app = Arc::new(TestApp::spawn_with(|c| c.workers = 16));
    let user = app.add_user("racer");
    for _ in 0..3 {
        let codes = app.device_authorize("guest");
        app.approve(&codes.user_code, user);
        let barrier = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (app, barrier, code) = (
                    Arc::clone(&app),
                    Arc::clone(&barrier),
                    codes.device_code.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    app.poll("guest", &code)
                })
            })
            .collect();
        let responses: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = responses.iter().filter(|r| r.status == 200).count();
        assert_eq!(winners, 1);
        for loser in responses.iter().filter(|r| r.status != 200) {
            assert_oauth_error(loser, 400, "invalid_grant");
        }
    }
    assert_eq!(app.count_rows("grants"), 3);
}

#[test]
fn unknown_code_and_another_clients_code_are_invalid_grant() {
    let app = TestApp::spawn();
    app.add_client("other", None, &[DEVICE_GRANT]);
    assert_oauth_error(&app.poll("guest", "not-a-real-code"), 400, "invalid_grant");
    let codes = app.device_authorize("guest");
    assert_oauth_error(&app.poll("other", &codes.device_code), 400, "invalid_grant");
    // Also while the code is known pending for its own client (answered from memory).
    assert_oauth_error(
        &app.poll("guest", &codes.device_code),
        400,
        "authorization_pending",
    );
    assert_oauth_error(&app.poll("other", &codes.device_code), 400, "invalid_grant");
    // Even once approved, the code only works for the client it was issued to.
    let user = app.add_user("bob");
    app.approve(&codes.user_code, user);
    assert_oauth_error(&app.poll("other", &codes.device_code), 400, "invalid_grant");
    app.advance(5.0);
    assert_eq!(app.poll("guest", &codes.device_code).status, 200);
}

#[test]
fn missing_device_code_and_grant_type_are_invalid_request() {
    let app = TestApp::spawn();
    let resp = app.post_form(
        "/oauth/token",
        &[("grant_type", DEVICE_GRANT), ("client_id", "guest")],
    );
    assert_oauth_error(&resp, 400, "invalid_request");
    let resp = app.post_form(
        "/oauth/token",
        &[("client_id", "guest"), ("device_code", "x")],
    );
    assert_oauth_error(&resp, 400, "invalid_request");
}

#[test]
fn unknown_grant_type_is_unsupported_grant_type() {
    let app = TestApp::spawn();
    let resp = app.post_form(
        "/oauth/token",
        &[("grant_type", "password"), ("client_id", "guest")],
    );
    assert_oauth_error(&resp, 400, "unsupported_grant_type");
}

#[test]
fn client_not_allowed_the_grant_is_unauthorized_client() {
    let app = TestApp::spawn();
    app.add_client("refresh-only", None, &["refresh_token"]);
    let resp = app.poll("refresh-only", "whatever");
    assert_oauth_error(&resp, 400, "unauthorized_client");
}

#[test]
fn unknown_client_at_token_endpoint_is_invalid_client() {
    let app = TestApp::spawn();
    assert_oauth_error(&app.poll("ghost", "x"), 401, "invalid_client");
}

#[test]
fn extra_parameters_from_real_clients_are_ignored() {
    // x/oauth2 re-sends `scope` on every poll; MSAL adds `code` and `claims`.
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    let resp = app.post_form(
        "/oauth/token",
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "guest"),
            ("device_code", &codes.device_code),
            ("code", &codes.device_code),
            ("scope", "read write"),
            ("claims", "{}"),
        ],
    );
    assert_oauth_error(&resp, 400, "authorization_pending");
}

#[test]
fn campus_json_poll_under_the_prefix_works() {
    let app = TestApp::spawn();
    let user = app.add_user("carol");
    let codes = app.device_authorize("guest");
    let poll = || {
        app.post_json(
            "/auth/v1/oauth/token",
            &json!({"grant_type": DEVICE_GRANT, "client_id": "guest",
                    "device_code": codes.device_code}),
        )
    };
    assert_oauth_error(&poll(), 400, "authorization_pending");
    app.approve(&codes.user_code, user);
    app.advance(5.0);
    assert_eq!(poll().status, 200);
}

#[test]
fn expired_codes_are_swept_and_forgotten() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    app.poll("guest", &codes.device_code);
    assert_eq!(app.handle().live_poll_states(), 1);
    app.advance(601.0);
    assert_eq!(
        app.handle().sweep_now().unwrap(),
        0,
        "kept a while to say expired_token"
    );
    assert_oauth_error(&app.poll("guest", &codes.device_code), 400, "expired_token");
    app.advance(700.0);
    assert_eq!(app.handle().sweep_now().unwrap(), 1);
    assert_eq!(app.handle().live_poll_states(), 0);
    assert_oauth_error(&app.poll("guest", &codes.device_code), 400, "invalid_grant");
}
