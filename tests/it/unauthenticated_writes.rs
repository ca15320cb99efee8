//! Issue #12 item 6: what someone without an account can make the server store is bounded.
//! Device authorization is rate limited per address (IPv6 by /64) and per client (429 with
//! `Retry-After`); anonymous page views store nothing (the sign-in form's CSRF token is a
//! double-submit `dg_csrf` cookie, not a session row).

use devicegate::config::{DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS, DEFAULT_AUTHORIZE_LIMIT_PER_CLIENT};

use crate::support::{assert_no_store, csrf_token, Browser, TestApp, TestResponse};

fn authorize_from(app: &TestApp, client_id: &str, address: &str) -> TestResponse {
    app.post_form_with(
        "/oauth/device_authorize",
        &[("client_id", client_id)],
        &[("X-Forwarded-For", address)],
    )
}

/// A rate-limit refusal: 429, the RFC 6749 §5.2 body with `code`, `Retry-After` seconds.
fn assert_limited(resp: &TestResponse, code: &str, retry_after: &str) {
    assert_eq!(resp.status, 429, "{}", resp.body);
    assert_eq!(resp.json()["error"], code, "{}", resp.body);
    assert!(resp.json()["error_description"].is_string());
    assert_eq!(resp.header("retry-after"), Some(retry_after));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_no_store(resp);
}

#[test]
fn a_burst_of_3000_device_authorizations_from_one_address_stores_only_the_burst() {
    let app = TestApp::spawn();
    // The manual clock stands still: no refill during the burst, so the count is exact.
    let mut statuses = Vec::with_capacity(3000);
    let mut first_refusal = None;
    for _ in 0..3000 {
        let resp = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
        if resp.status != 200 && first_refusal.is_none() {
            first_refusal = Some(resp.clone());
        }
        statuses.push(resp.status);
    }
    let burst = DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS as usize;
    // A classroom behind one NAT (60 people, two logins each) all get their codes at once…
    assert!(statuses[..burst].iter().all(|s| *s == 200), "{statuses:?}");
    // …and nothing more from that address: every later request is refused.
    assert!(statuses[burst..].iter().all(|s| *s == 429));
    assert_limited(&first_refusal.unwrap(), "slow_down", "1");
    let stored = app.count_rows("device_codes");
    assert_eq!(stored, burst as i64);
    assert!(stored <= 500);

    // The bucket refills at the sustained rate: 120 a minute is one every half second.
    app.advance(30.0);
    let mut passed = 0;
    for _ in 0..100 {
        if app
            .post_form("/oauth/device_authorize", &[("client_id", "guest")])
            .status
            == 200
        {
            passed += 1;
        }
    }
    assert_eq!(passed, 60);
    assert_eq!(app.count_rows("device_codes"), burst as i64 + 60);
}

#[test]
fn the_per_client_limit_bounds_all_addresses_together() {
    let app = TestApp::spawn_with(|c| {
        c.trust_proxy = true;
        c.authorize_limit_per_address = 3;
        c.authorize_limit_per_client = 5;
    });
    app.add_client(
        "tv",
        None,
        &["urn:ietf:params:oauth:grant-type:device_code"],
    );
    for _ in 0..3 {
        assert_eq!(authorize_from(&app, "guest", "203.0.113.1").status, 200);
    }
    // One address past its own limit: its fault, `slow_down`; 3 a minute is one per 20 s.
    assert_limited(
        &authorize_from(&app, "guest", "203.0.113.1"),
        "slow_down",
        "20",
    );
    // Those refusals did not spend the client's budget: two more addresses get through…
    assert_eq!(authorize_from(&app, "guest", "198.51.100.1").status, 200);
    assert_eq!(authorize_from(&app, "guest", "198.51.100.2").status, 200);
    // …and then `guest` is out for everyone (5 a minute: one per 12 s), through no fault
    // of this caller.
    assert_limited(
        &authorize_from(&app, "guest", "192.0.2.9"),
        "temporarily_unavailable",
        "12",
    );
    // Another client has its own budget.
    assert_eq!(authorize_from(&app, "tv", "192.0.2.9").status, 200);
    assert_eq!(app.count_rows("device_codes"), 6);
    // Past Retry-After, the client's budget has one more.
    app.advance(12.0);
    assert_eq!(authorize_from(&app, "guest", "192.0.2.9").status, 200);
}

#[test]
fn ipv6_addresses_in_one_64_share_one_limit() {
    let app = TestApp::spawn_with(|c| {
        c.trust_proxy = true;
        c.authorize_limit_per_address = 2;
    });
    assert_eq!(authorize_from(&app, "guest", "2001:db8:1:2::1").status, 200);
    assert_eq!(
        authorize_from(&app, "guest", "2001:db8:1:2:ffff:1:2:3").status,
        200
    );
    assert_limited(
        &authorize_from(&app, "guest", "2001:db8:1:2::99"),
        "slow_down",
        "30",
    );
    assert_eq!(authorize_from(&app, "guest", "2001:db8:1:3::1").status, 200);
}

#[test]
fn the_default_limits_are_the_documented_ones() {
    assert_eq!(DEFAULT_AUTHORIZE_LIMIT_PER_ADDRESS, 120);
    assert_eq!(DEFAULT_AUTHORIZE_LIMIT_PER_CLIENT, 1200);
    let bad = devicegate::Config {
        authorize_limit_per_address: 0,
        authorize_limit_per_client: 0,
        ..devicegate::Config::default()
    };
    assert_eq!(bad.validate().unwrap_err().len(), 2);
}

#[test]
fn anonymous_page_views_store_no_session() {
    let app = TestApp::spawn();
    let codes = app.device_authorize("guest");
    let paths = [
        "/oauth/device".to_string(),
        "/login".to_string(),
        format!("/oauth/device/{}", codes.user_code),
        "/account".to_string(),
    ];
    for i in 0..300 {
        let resp = app.get(&paths[i % paths.len()]);
        assert!(resp.status == 200 || resp.status == 303, "{}", resp.status);
    }
    assert_eq!(app.count_rows("sessions"), 0);

    // The sign-in form still works, and signing in stores the one session.
    app.add_user("alice");
    let browser = Browser::new(&app);
    assert_eq!(browser.sign_in("alice", "password123").status, 303);
    assert_eq!(app.count_rows("sessions"), 1);
    assert!(browser.get("/oauth/device").body.contains("Enter the code"));
}

#[test]
fn login_csrf_is_still_refused_and_stores_nothing() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let page = app.get("/oauth/device");
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("dg_csrf="), "{cookie}");
    let token = csrf_token(&page.body);
    let other_page = app.get("/oauth/device");
    let other_token = csrf_token(&other_page.body);
    assert_ne!(token, other_token, "each browser gets its own token");
    let credentials = [("username", "alice"), ("password", "password123")];
    let login = |cookie: Option<&str>, token: Option<&str>| {
        let mut pairs = credentials.to_vec();
        if let Some(token) = token {
            pairs.push(("csrf_token", token));
        }
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("Cookie", *c)).collect();
        app.post_form_with("/login", &pairs, &headers)
    };
    let refusals = [
        login(None, None),
        login(Some(&cookie), None),
        login(Some(&cookie), Some("not-the-token")),
        login(Some(&cookie), Some(&other_token)),
        // A cross-site form post: SameSite=Lax withholds the cookie, the attacker's own
        // token is then worth nothing.
        login(None, Some(&token)),
        login(Some("dg_csrf="), Some("")),
    ];
    for resp in &refusals {
        assert_eq!(resp.status, 403, "{}", resp.body);
        assert!(resp.body.contains("This form has expired"));
        assert_eq!(resp.header("set-cookie"), None, "no session on a refusal");
    }
    assert_eq!(app.count_rows("sessions"), 0);
    // The matching pair signs in.
    let ok = login(Some(&cookie), Some(&token));
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(ok.header("set-cookie").unwrap().starts_with("dg_session="));
    assert_eq!(app.count_rows("sessions"), 1);
}
