//! Several devicegate instances on one database (issue #15): whatever instance a request
//! reaches, the guarantees hold. On PostgreSQL (`DEVICEGATE_TEST_DATABASE`) this is the
//! scale-out setup; on SQLite it is two servers sharing one file, which must hold too.

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use devicegate::store::{DeviceCodeStatus, Store};
use devicegate::Clock;
use serde_json::Value;

use crate::support::{
    assert_oauth_error, free_port, post_form_or_gone as post, serve_binary, test_database, Browser,
    TestApp, DEVICE_GRANT,
};

/// Two servers on one database: `a` made it, `b` was pointed at it.
fn two_instances() -> (Arc<TestApp>, Arc<TestApp>) {
    let a = TestApp::spawn_with(|c| c.workers = 8);
    let db = a.db_path.clone();
    let b = TestApp::spawn_with(move |c| {
        c.db_path = db;
        c.workers = 8;
    });
    (Arc::new(a), Arc::new(b))
}

#[test]
fn sixteen_polls_split_across_two_instances_get_exactly_one_token() {
    let (a, b) = two_instances();
    let user = a.add_user("racer");
    for round in 0..3 {
        let codes = if round % 2 == 0 {
            a.device_authorize("guest")
        } else {
            b.device_authorize("guest")
        };
        a.approve(&codes.user_code, user);
        let barrier = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let app = Arc::clone(if i % 2 == 0 { &a } else { &b });
                let (barrier, code) = (Arc::clone(&barrier), codes.device_code.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    app.poll("guest", &code)
                })
            })
            .collect();
        let responses: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners = responses.iter().filter(|r| r.status == 200).count();
        assert_eq!(winners, 1, "round {round}");
        for loser in responses.iter().filter(|r| r.status != 200) {
            assert_oauth_error(loser, 400, "invalid_grant");
        }
    }
    assert_eq!(a.count_rows("grants"), 3);
}

#[test]
fn a_person_signed_in_on_one_instance_approves_on_the_other() {
    let (a, b) = two_instances();
    a.add_user("alice");
    let codes = a.device_authorize("guest");
    // Signed in through A…
    let on_a = Browser::signed_in(&a, "alice");
    // …the same session cookie works on B: the session lives in the shared database.
    let on_b = Browser::new(&b);
    on_b.set_cookie(on_a.cookie());
    let consent = on_b.enter_code(&codes.user_code);
    assert_eq!(consent.status, 200, "{}", consent.body);
    let decided = on_b.decide(&codes.user_code, "approve");
    assert!(
        decided.status == 200 || decided.status == 303,
        "{}: {}",
        decided.status,
        decided.body
    );
    // The device polls A, which never saw the approval happen.
    let token = a.poll("guest", &codes.device_code);
    assert_eq!(token.status, 200, "{}", token.body);
    assert!(token.json()["access_token"].is_string());
}

#[test]
fn a_token_revoked_on_one_instance_is_inactive_on_the_other() {
    let (a, b) = two_instances();
    a.add_client("svc", Some("s3cret"), &[DEVICE_GRANT]);
    let tokens = a.login("alice");
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let introspect = |app: &TestApp, token: &str| {
        app.request(
            "POST",
            "/oauth/introspect",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", "Basic c3ZjOnMzY3JldA=="),
            ],
            Some(format!("token={token}").as_bytes()),
        )
    };
    let before = introspect(&b, access);
    assert_eq!(before.status, 200, "{}", before.body);
    assert_eq!(before.json()["active"], true);
    let revoked = a.post_form(
        "/oauth/revoke",
        &[("token", refresh), ("client_id", "guest")],
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    for app in [&a, &b] {
        let after = introspect(app, access);
        assert_eq!(after.status, 200);
        assert_eq!(after.json(), serde_json::json!({"active": false}));
    }
    assert_eq!(b.userinfo(access).status, 401);
}

#[test]
fn a_refresh_token_rotated_on_one_instance_is_reuse_on_the_other() {
    let (a, b) = two_instances();
    let tokens = a.login("alice");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let rotated = a.refresh("guest", refresh, None);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    // Past the grace period, presenting the old token on B is reuse: the grant ends.
    a.advance(3600.0);
    b.advance(3600.0);
    assert_oauth_error(&b.refresh("guest", refresh, None), 400, "invalid_grant");
    let successor = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_oauth_error(&a.refresh("guest", &successor, None), 400, "invalid_grant");
}

#[test]
fn both_sweepers_running_at_once_lose_nothing_that_is_live() {
    let (a, b) = two_instances();
    a.add_user("alice");
    // Codes that will expire, and logins that stay live.
    for _ in 0..30 {
        a.device_authorize("guest");
    }
    let live: Vec<Value> = (0..5).map(|_| b.login("alice")).collect();
    // Past every unapproved code's lifetime but well inside the tokens'.
    // (codes live 600 s and are kept 600 s after that).
    a.advance(1300.0);
    b.advance(1300.0);
    let fresh = a.device_authorize("guest");
    let sweeps: Vec<_> = [Arc::clone(&a), Arc::clone(&b)]
        .into_iter()
        .map(|app| {
            std::thread::spawn(move || {
                for _ in 0..5 {
                    app.handle().sweep_now().unwrap();
                }
            })
        })
        .collect();
    for s in sweeps {
        s.join().unwrap();
    }
    let counts = a.store().row_counts().unwrap();
    let codes = counts.iter().find(|(t, _)| *t == "device_codes").unwrap().1;
    // The fresh code, and the five redeemed ones (kept until their own expiry's sweep).
    let pending = a
        .store()
        .list_pending_device_codes(a.clock.now().secs())
        .unwrap();
    assert_eq!(pending.len(), 1, "only the fresh code is left pending");
    assert!(codes <= 6, "{codes} codes left after both sweeps");
    assert_eq!(
        a.store()
            .find_device_code_by_hash(&devicegate::secrets::hash_secret(&fresh.device_code))
            .unwrap()
            .map(|c| c.status),
        Some(DeviceCodeStatus::Pending)
    );
    for tokens in &live {
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(a.userinfo(access).status, 200);
        assert_eq!(b.userinfo(access).status, 200);
    }
}

fn start(db: &std::path::Path, listen: &str) -> Child {
    serve_binary(
        db,
        listen,
        &["--poll-interval", "1", "--log-level", "warn"],
        Stdio::null(),
    )
}

#[test]
fn sigkill_of_one_instance_while_the_other_serves_loses_nothing_and_redeems_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let (listen_a, listen_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (base_a, base_b) = (format!("http://{listen_a}"), format!("http://{listen_b}"));
    let victim = Arc::new(Mutex::new(start(&db, &listen_a)));
    let mut survivor = start(&db, &listen_b);
    let hash = devicegate::secrets::hash_password("password123").unwrap();
    let user = Store::open(&db)
        .unwrap()
        .create_user("crash", &hash, 0)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let approved: Arc<Mutex<Vec<String>>> = Arc::default();
    let tokens: Arc<Mutex<Vec<String>>> = Arc::default();
    let wins: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let db_path = db.to_path_buf();
    let devices: Vec<_> = (0..4)
        .map(|d| {
            let (base_a, base_b, db, stop) = (
                base_a.clone(),
                base_b.clone(),
                db_path.clone(),
                Arc::clone(&stop),
            );
            let (approved, tokens, wins) = (
                Arc::clone(&approved),
                Arc::clone(&tokens),
                Arc::clone(&wins),
            );
            std::thread::spawn(move || {
                // A load balancer's view: each request goes to either instance, and to the
                // other one when the first is down.
                let send = |n: usize, path: &str, form: &[(&str, &str)]| {
                    let (first, second) = if (n + d) % 2 == 0 {
                        (&base_a, &base_b)
                    } else {
                        (&base_b, &base_a)
                    };
                    post(first, path, form).or_else(|| post(second, path, form))
                };
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let Some((200, codes)) =
                        send(n, "/oauth/device_authorize", &[("client_id", "guest")])
                    else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let device_code = codes["device_code"].as_str().unwrap().to_string();
                    let user_code = codes["user_code"].as_str().unwrap().to_string();
                    let store = Store::open(&db).unwrap();
                    if devicegate::protocol::approval::decide(
                        &store,
                        &user_code,
                        devicegate::protocol::approval::Decision::Approve { user_id: user },
                        devicegate::protocol::approval::Actor::Operator,
                        Clock::system().now(),
                    )
                    .is_ok()
                    {
                        approved.lock().unwrap().push(user_code.clone());
                    }
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < deadline {
                        n += 1;
                        let poll = send(
                            n,
                            "/oauth/token",
                            &[
                                ("grant_type", DEVICE_GRANT),
                                ("client_id", "guest"),
                                ("device_code", &device_code),
                            ],
                        );
                        match poll {
                            Some((200, body)) => {
                                *wins.lock().unwrap().entry(device_code.clone()).or_default() += 1;
                                let access = body["access_token"].as_str().unwrap().to_string();
                                tokens.lock().unwrap().push(access);
                            }
                            Some((400, body))
                                if body["error"] == "authorization_pending"
                                    || body["error"] == "slow_down" => {}
                            Some(_) => break,
                            None => {}
                        }
                        std::thread::sleep(Duration::from_millis(1100));
                    }
                }
            })
        })
        .collect();
    let mut kills = 0;
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(
            300 + u64::from(rand::random::<u16>() % 900),
        ));
        let mut child = victim.lock().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        *child = start(&db, &listen_a);
    }
    stop.store(true, Ordering::SeqCst);
    for d in devices {
        d.join().unwrap();
    }
    assert!(kills >= 6);
    let tokens = tokens.lock().unwrap().clone();
    assert!(!tokens.is_empty(), "some logins completed between kills");
    // Every token a client received works on both instances.
    for access in &tokens {
        for base in [&base_a, &base_b] {
            let resp = ureq::get(&format!("{base}/oauth/userinfo"))
                .set("Authorization", &format!("Bearer {access}"))
                .call();
            assert!(resp.is_ok(), "a token a client received stopped working");
        }
    }
    assert!(
        wins.lock().unwrap().values().all(|n| *n == 1),
        "redeemed twice"
    );
    let store = Store::open(&db).unwrap();
    for user_code in approved.lock().unwrap().iter() {
        let code = store
            .find_device_code_by_user_code(&user_code.replace('-', ""))
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                code.status,
                DeviceCodeStatus::Approved | DeviceCodeStatus::Redeemed
            ),
            "approval of {user_code} lost: {:?}",
            code.status
        );
    }
    let mut child = victim.lock().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    survivor.kill().unwrap();
    survivor.wait().unwrap();
}
