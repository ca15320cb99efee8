//! Crashes, races and disk trouble: nothing approved is lost, nothing is redeemed twice,
//! nothing is half-written, and the server recovers when the fault clears.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use devicegate::protocol::approval::{self, Actor, Decision};
use devicegate::store::{DeviceCodeStatus, Store};
use devicegate::Clock;

use crate::support::{
    free_port, post_form_or_gone as post, serve_binary, Browser, TestApp, DEVICE_GRANT,
};

fn start(db: &std::path::Path, listen: &str, extra: &[&str]) -> Child {
    let args = [&["--poll-interval", "1", "--log-level", "warn"], extra].concat();
    serve_binary(db, listen, &args, Stdio::piped())
}

#[test]
fn sigkill_at_random_moments_loses_no_approval_and_redeems_no_code_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::test_database_named(dir.path(), "crash.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let server = Arc::new(Mutex::new(start(&db, &listen, &[])));
    let hash = devicegate::secrets::hash_password("password123").unwrap();
    let user = Store::open(&db)
        .unwrap()
        .create_user("crash", &hash, 0)
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let approved: Arc<Mutex<Vec<String>>> = Arc::default();
    let tokens: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let wins: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let devices: Vec<_> = (0..6)
        .map(|_| {
            let (base, db, stop) = (base.clone(), db.to_path_buf(), Arc::clone(&stop));
            let (approved, tokens, wins) = (
                Arc::clone(&approved),
                Arc::clone(&tokens),
                Arc::clone(&wins),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some((200, codes)) =
                        post(&base, "/oauth/device_authorize", &[("client_id", "guest")])
                    else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    let device_code = codes["device_code"].as_str().unwrap().to_string();
                    let user_code = codes["user_code"].as_str().unwrap().to_string();
                    let store = Store::open(&db).unwrap();
                    let decision = Decision::Approve { user_id: user };
                    if approval::decide(
                        &store,
                        &user_code,
                        decision,
                        Actor::Operator,
                        Clock::system().now(),
                    )
                    .is_ok()
                    {
                        approved.lock().unwrap().push(user_code.clone());
                    }
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while Instant::now() < deadline {
                        let poll = post(
                            &base,
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
                                tokens.lock().unwrap().push((device_code.clone(), access));
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
    // The killer: SIGKILL at random moments, restart on the same file.
    let mut kills = 0;
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300 + (rand_u64() % 900)));
        let mut child = server.lock().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        *child = start(&db, &listen, &[]);
    }
    stop.store(true, Ordering::SeqCst);
    for d in devices {
        d.join().unwrap();
    }
    assert!(kills >= 8);

    // Every token a client received still works.
    let tokens = tokens.lock().unwrap().clone();
    assert!(!tokens.is_empty(), "some logins completed between kills");
    for (_, access) in &tokens {
        let resp = ureq::get(&format!("{base}/oauth/userinfo"))
            .set("Authorization", &format!("Bearer {access}"))
            .call();
        assert!(resp.is_ok(), "a token a client received stopped working");
    }
    // No device code was redeemed twice.
    assert!(wins.lock().unwrap().values().all(|n| *n == 1));
    let store = Store::open(&db).unwrap();
    // No approval that returned success was lost.
    for user_code in approved.lock().unwrap().iter() {
        let normalised = user_code.replace('-', "");
        let code = store
            .find_device_code_by_user_code(&normalised)
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
    let grants = store
        .list_active_grants(None, Clock::system().now().secs())
        .unwrap();
    let redeemed: HashSet<&String> = tokens.iter().map(|(d, _)| d).collect();
    assert!(grants.len() >= redeemed.len());
    if !crate::support::on_postgres() {
        // SQLite's file-level check; PostgreSQL keeps its own pages consistent.
        assert_eq!(store.integrity_check().unwrap(), vec!["ok".to_string()]);
    }
    let mut child = server.lock().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

fn rand_u64() -> u64 {
    u64::from_str_radix(&devicegate::secrets::random_id(8), 36).unwrap_or(7)
}

#[test]
fn approve_and_deny_at_the_same_moment_have_one_outcome_told_to_the_device() {
    let app = Arc::new(TestApp::spawn_with(|c| c.workers = 8));
    app.add_user("alice");
    app.add_user("bob");
    let alice = Browser::signed_in(&app, "alice");
    let bob = Browser::signed_in(&app, "bob");
    let (alice_cookie, bob_cookie) = (alice.cookie().unwrap(), bob.cookie().unwrap());
    let (alice_csrf, bob_csrf) = (alice.csrf(), bob.csrf());
    for _ in 0..10 {
        let codes = app.device_authorize("guest");
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [
            ("approve", alice_cookie.clone(), alice_csrf.clone()),
            ("deny", bob_cookie.clone(), bob_csrf.clone()),
        ]
        .into_iter()
        .map(|(decision, cookie, csrf)| {
            let (app, barrier, user_code) = (
                Arc::clone(&app),
                Arc::clone(&barrier),
                codes.user_code.clone(),
            );
            std::thread::spawn(move || {
                let cookie = format!("dg_session={cookie}");
                barrier.wait();
                let resp = app.post_form_with(
                    "/oauth/device/decision",
                    &[
                        ("csrf_token", &csrf),
                        ("user_code", &user_code),
                        ("decision", decision),
                    ],
                    &[("Cookie", &cookie)],
                );
                (decision, resp.status)
            })
        })
        .collect();
        let outcomes: Vec<(&str, u16)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
        let winners: Vec<_> = outcomes.iter().filter(|(_, s)| *s == 200).collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        assert!(outcomes.iter().any(|(_, s)| *s == 409), "{outcomes:?}");
        let poll = app.poll("guest", &codes.device_code);
        match winners[0].0 {
            "approve" => assert_eq!(poll.status, 200),
            _ => assert_eq!(poll.json()["error"], "access_denied"),
        }
    }
}

#[test]
fn a_read_only_database_gets_503_and_the_server_recovers() {
    // The fault is made with `chattr +i` on the SQLite file and its WAL.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    let count = || app.count_rows("device_codes");
    app.device_authorize("guest");
    let before = count();
    let wal = format!("{}-wal", app.db_path.display());
    let lock = |flag: &str| {
        for file in [app.db_path.to_str().unwrap(), wal.as_str()] {
            let ok = Command::new("chattr")
                .args([flag, file])
                .status()
                .unwrap()
                .success();
            assert!(
                ok,
                "chattr {flag} {file} (needs root on ext4-like filesystems)"
            );
        }
    };
    lock("+i");
    let failing = app.post_form("/oauth/device_authorize", &[("client_id", "guest")]);
    lock("-i");
    assert_eq!(failing.status, 503, "{}", failing.body);
    assert_eq!(failing.json()["error"], "temporarily_unavailable");
    assert_eq!(failing.header("retry-after"), Some("1"));
    assert_eq!(count(), before, "nothing half-written");
    // The fault cleared: writes work again.
    let codes = app.device_authorize("guest");
    assert_eq!(count(), before + 1);
    assert_eq!(
        app.poll("guest", &codes.device_code).json()["error"],
        "authorization_pending"
    );
    assert_eq!(
        app.store().integrity_check().unwrap(),
        vec!["ok".to_string()]
    );
}

#[test]
fn a_full_disk_gets_503_with_a_clear_log_line_and_the_server_recovers() {
    // The fault is a file-size limit on the SQLite file: a file in both runs, on purpose.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let child = start(&db, &listen, &[]);
    // Fill the WAL a little, then cap the server's file size just above what exists.
    for _ in 0..20 {
        post(&base, "/oauth/device_authorize", &[("client_id", "guest")]).unwrap();
    }
    let size = |suffix: &str| {
        std::fs::metadata(format!("{}{suffix}", db.display()))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let cap = size("").max(size("-wal")) + 4096;
    let pid = child.id().to_string();
    assert!(Command::new("prlimit")
        .args(["--pid", &pid, &format!("--fsize={cap}:unlimited")])
        .status()
        .unwrap()
        .success());
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let (status, _) = post(&base, "/oauth/device_authorize", &[("client_id", "guest")])
            .expect("server alive");
        statuses.push(status);
        if status == 503 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503));
    // Reads still work while writes fail.
    assert!(ureq::get(&format!("{base}/healthz")).call().is_ok());
    assert!(Command::new("prlimit")
        .args(["--pid", &pid, "--fsize=unlimited:unlimited"])
        .status()
        .unwrap()
        .success());
    let (status, _) = post(&base, "/oauth/device_authorize", &[("client_id", "guest")]).unwrap();
    assert_eq!(status, 200, "recovers once the fault clears");
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("database unavailable"), "{log}");
    assert_eq!(
        Store::open(&db).unwrap().integrity_check().unwrap(),
        vec!["ok".to_string()]
    );
}
