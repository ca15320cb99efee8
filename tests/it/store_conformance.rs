//! The store conformance suite (issue #15): every store operation, and every race the
//! protocol relies on, against whichever backend this run uses (a SQLite file, or with
//! `DEVICEGATE_TEST_DATABASE` a fresh PostgreSQL database). Races use one `Store` per
//! thread, each with its own connection and its own write turn, as separate server
//! instances would: what serialises them is the database alone.

use std::sync::{Arc, Barrier};

use devicegate::store::{
    ClientChanges, GrantId, IssuedTokens, NewClient, NewDeviceCode, NewSigningKey, ProfileChanges,
    RedeemOutcome, RefreshOutcome, RefreshStep, Shared, Store, ThrottleWindow, UserId, UserProfile,
};

use crate::support::{test_database, TestDatabase};

const NOW: i64 = 1_800_000_000;

/// A fresh database (migrated), its guard, and a temporary directory for SQLite files.
fn fresh() -> (tempfile::TempDir, TestDatabase, Store) {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let store = Store::open(&db).unwrap();
    (dir, db, store)
}

/// A second store on the same database that shares nothing in-process with the first (as
/// another instance would).
fn instance(db: &TestDatabase) -> Store {
    Store::open_shared(db, Arc::new(Shared::default())).unwrap()
}

fn client(store: &Store, id: &str) {
    let scopes = ["read".to_string(), "openid".to_string()];
    let grants = ["urn:ietf:params:oauth:grant-type:device_code".to_string()];
    store
        .create_client(
            &NewClient {
                client_id: id,
                name: "Test client",
                secret_hash: None,
                scopes: &scopes,
                grant_types: &grants,
                device_code_ttl: Some(600),
                poll_interval: None,
            },
            NOW,
        )
        .unwrap();
}

fn code(user_code: &str, client_id: &str) -> NewDeviceCode {
    NewDeviceCode {
        device_code_hash: format!("hash-{user_code}"),
        user_code: user_code.into(),
        client_id: client_id.into(),
        scope: "read".into(),
        interval: 5,
        device_ip: "203.0.113.7".into(),
        device_user_agent: Some("curl/8".into()),
        created_at: NOW,
        expires_at: NOW + 600,
    }
}

fn tokens<'a>(access: &'a str, refresh: Option<&'a str>) -> IssuedTokens<'a> {
    IssuedTokens {
        access_hash: access,
        access_expires_at: NOW + 3600,
        refresh_hash: refresh,
        refresh_expires_at: NOW + 86_400,
    }
}

/// Runs `f(i, store)` on `n` threads at once, each with its own store on `db`.
fn race<T: Send + 'static>(
    db: &TestDatabase,
    n: usize,
    f: impl Fn(usize, &mut Store) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let stores: Vec<Store> = (0..n).map(|_| instance(db)).collect();
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let threads: Vec<_> = stores
        .into_iter()
        .enumerate()
        .map(|(i, mut store)| {
            let (barrier, f) = (Arc::clone(&barrier), Arc::clone(&f));
            std::thread::spawn(move || {
                barrier.wait();
                f(i, &mut store)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn users_are_created_found_changed_and_deleted() {
    let (_dir, _db, store) = fresh();
    assert_eq!(store.count_users().unwrap(), 0);
    let alice = store.create_user("alice", "hash-a", NOW).unwrap();
    let conflict = store.create_user("alice", "hash-b", NOW);
    assert!(
        matches!(conflict, Err(devicegate::store::Error::Conflict(_))),
        "{conflict:?}"
    );
    let bob = store
        .create_user_with_profile(
            "bob",
            "hash-b",
            &UserProfile {
                display_name: Some("Bob B."),
                email: Some("bob@example.com"),
                email_verified: true,
            },
            NOW,
        )
        .unwrap();
    assert_ne!(alice, bob);
    let found = store.find_user_by_name("bob").unwrap().unwrap();
    assert_eq!(found.id, bob);
    assert_eq!(found.display_name.as_deref(), Some("Bob B."));
    assert!(found.email_verified);
    assert_eq!(found.subject.len(), 26);
    assert_ne!(
        found.subject,
        store.find_user(alice).unwrap().unwrap().subject
    );
    // Clearing the email clears its verification; the rest stays.
    assert!(store
        .update_user_profile(
            "bob",
            &ProfileChanges {
                email: Some(None),
                ..Default::default()
            }
        )
        .unwrap());
    let changed = store.find_user(bob).unwrap().unwrap();
    assert_eq!(changed.email, None);
    assert!(!changed.email_verified);
    assert_eq!(changed.display_name.as_deref(), Some("Bob B."));
    assert!(store
        .update_user_profile(
            "bob",
            &ProfileChanges {
                email: Some(Some("b@example.com")),
                email_verified: Some(true),
                display_name: Some(None),
            }
        )
        .unwrap());
    let changed = store.find_user(bob).unwrap().unwrap();
    assert_eq!(changed.email.as_deref(), Some("b@example.com"));
    assert!(changed.email_verified);
    assert_eq!(changed.display_name, None);
    assert!(!store
        .update_user_profile("nobody", &ProfileChanges::default())
        .unwrap());
    assert!(store.set_user_password("alice", "hash-a2").unwrap());
    assert!(store.set_user_disabled("alice", true).unwrap());
    let alice_row = store.find_user_by_name("alice").unwrap().unwrap();
    assert_eq!(
        (alice_row.password_hash.as_str(), alice_row.disabled),
        ("hash-a2", true)
    );
    assert!(!store.set_user_disabled("nobody", true).unwrap());
    let names: Vec<String> = store
        .list_users()
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(store.delete_user("alice").unwrap());
    assert!(!store.delete_user("alice").unwrap());
    assert_eq!(store.count_users().unwrap(), 1);
}

#[test]
fn clients_are_created_once_changed_field_by_field_and_deleted_with_their_codes() {
    let (_dir, _db, store) = fresh();
    client(&store, "cli");
    let scopes = ["read".to_string()];
    let again = NewClient {
        client_id: "cli",
        name: "Other",
        secret_hash: None,
        scopes: &scopes,
        grant_types: &scopes,
        device_code_ttl: None,
        poll_interval: None,
    };
    assert!(!store.create_client_if_missing(&again, NOW).unwrap());
    assert!(matches!(
        store.create_client(&again, NOW),
        Err(devicegate::store::Error::Conflict(_))
    ));
    let new_scopes = ["read".to_string(), "write".to_string()];
    assert!(store
        .update_client(
            "cli",
            &ClientChanges {
                scopes: Some(&new_scopes),
                device_code_ttl: Some(None),
                poll_interval: Some(Some(7)),
                refresh_requires_offline_access: Some(true),
                access_token_format: Some("jwt"),
                access_token_audience: Some(Some("https://api.example")),
                ..Default::default()
            }
        )
        .unwrap());
    let found = store.find_client("cli").unwrap().unwrap();
    assert_eq!(found.name, "Test client");
    assert_eq!(found.scopes, new_scopes);
    assert_eq!(found.device_code_ttl, None);
    assert_eq!(found.poll_interval, Some(7));
    assert!(found.refresh_requires_offline_access);
    assert_eq!(found.access_token_format, "jwt");
    assert_eq!(
        found.access_token_audience.as_deref(),
        Some("https://api.example")
    );
    assert!(!store
        .update_client("nope", &ClientChanges::default())
        .unwrap());
    assert!(!store.rename_client_if_named("cli", "Wrong", "X").unwrap());
    assert!(store
        .rename_client_if_named("cli", "Test client", "Renamed")
        .unwrap());
    assert!(store.set_client_secret("cli", "secret-hash").unwrap());
    let found = store.find_client("cli").unwrap().unwrap();
    assert_eq!(found.name, "Renamed");
    assert!(found.is_confidential());
    assert_eq!(store.list_clients().unwrap().len(), 1);
    assert!(store.create_device_code(code("AAAABBBB", "cli")).unwrap());
    assert!(store.delete_client("cli").unwrap());
    assert!(store.find_client("cli").unwrap().is_none());
    // ON DELETE CASCADE on either backend.
    assert!(store
        .find_device_code_by_user_code("AAAABBBB")
        .unwrap()
        .is_none());
}

#[test]
fn device_codes_go_from_pending_to_decided_to_swept() {
    let (_dir, _db, store) = fresh();
    client(&store, "cli");
    let alice = store.create_user("alice", "h", NOW).unwrap();
    assert!(store.create_device_code(code("AAAABBBB", "cli")).unwrap());
    // A taken user code is refused without an error: the caller draws another.
    let mut taken = code("AAAABBBB", "cli");
    taken.device_code_hash = "other-hash".into();
    assert!(!store.create_device_code(taken).unwrap());
    assert!(store.create_device_code(code("CCCCDDDD", "cli")).unwrap());
    let pending = store
        .find_device_code_by_hash("hash-AAAABBBB")
        .unwrap()
        .unwrap();
    assert_eq!(pending.user_code, "AAAABBBB");
    assert_eq!(pending.interval, 5);
    assert_eq!(pending.device_user_agent.as_deref(), Some("curl/8"));
    assert_eq!(store.list_pending_device_codes(NOW).unwrap().len(), 2);
    let before = store.decisions_so_far();
    assert!(store
        .decide_device_code("AAAABBBB", Some(alice), Some(NOW - 5), "198.51.100.1", NOW)
        .unwrap());
    assert_eq!(store.decisions_so_far(), before + 1);
    // Decided once: a second decision finds it no longer pending.
    assert!(!store
        .decide_device_code("AAAABBBB", None, None, "198.51.100.1", NOW)
        .unwrap());
    assert!(store
        .decide_device_code("CCCCDDDD", None, None, "198.51.100.1", NOW)
        .unwrap());
    let approved = store.list_approved_device_codes(alice, NOW).unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].client_name, "Test client");
    let counts = store.count_device_codes_by_state(NOW).unwrap();
    assert_eq!(
        counts,
        [("approved".to_string(), 1), ("denied".to_string(), 1)]
    );
    assert!(store
        .cancel_approved_device_code(approved[0].id, alice, NOW)
        .unwrap());
    assert!(!store
        .cancel_approved_device_code(approved[0].id, alice, NOW)
        .unwrap());
    assert_eq!(store.delete_expired_device_codes(NOW + 601, 1).unwrap(), 1);
    assert_eq!(store.delete_expired_device_codes(NOW + 601, 10).unwrap(), 1);
    assert_eq!(store.delete_expired_device_codes(NOW + 601, 10).unwrap(), 0);
}

#[test]
fn approve_and_deny_racing_on_one_code_leave_exactly_one_decision() {
    let (_dir, db, store) = fresh();
    client(&store, "cli");
    let alice = store.create_user("alice", "h", NOW).unwrap();
    assert!(store.create_device_code(code("AAAABBBB", "cli")).unwrap());
    let wins = race(&db, 8, move |i, store| {
        let approver = (i % 2 == 0).then_some(alice);
        store
            .decide_device_code("AAAABBBB", approver, Some(NOW), "198.51.100.1", NOW)
            .unwrap()
    });
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
}

#[test]
fn sixteen_redemptions_of_one_approved_code_make_one_grant() {
    let (_dir, db, store) = fresh();
    client(&store, "cli");
    let alice = store.create_user("alice", "h", NOW).unwrap();
    assert!(store.create_device_code(code("AAAABBBB", "cli")).unwrap());
    assert!(store
        .decide_device_code("AAAABBBB", Some(alice), Some(NOW), "198.51.100.1", NOW)
        .unwrap());
    let id = store
        .find_device_code_by_user_code("AAAABBBB")
        .unwrap()
        .unwrap()
        .id;
    let outcomes = race(&db, 16, move |i, store| {
        let access = format!("access-{i}");
        let refresh = format!("refresh-{i}");
        store
            .redeem_device_code(id, &tokens(&access, Some(&refresh)), NOW)
            .unwrap()
    });
    let won: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, RedeemOutcome::Redeemed { .. }))
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert_eq!(store.list_active_grants(None, NOW).unwrap().len(), 1);
    let counts = store.row_counts().unwrap();
    let rows = |table: &str| counts.iter().find(|(t, _)| *t == table).unwrap().1;
    assert_eq!(
        (
            rows("grants"),
            rows("access_tokens"),
            rows("refresh_tokens")
        ),
        (1, 1, 1)
    );
}

/// A grant for alice through a redeemed code; returns (store, db guard, grant id).
fn granted() -> (tempfile::TempDir, TestDatabase, Store, GrantId) {
    let (dir, db, mut store) = fresh();
    client(&store, "cli");
    let alice = store.create_user("alice", "h", NOW).unwrap();
    assert!(store.create_device_code(code("AAAABBBB", "cli")).unwrap());
    assert!(store
        .decide_device_code("AAAABBBB", Some(alice), Some(NOW - 9), "198.51.100.1", NOW)
        .unwrap());
    let id = store
        .find_device_code_by_user_code("AAAABBBB")
        .unwrap()
        .unwrap()
        .id;
    let RedeemOutcome::Redeemed { grant_id, user_id } = store
        .redeem_device_code(id, &tokens("access-0", Some("refresh-0")), NOW)
        .unwrap()
    else {
        panic!("not redeemed");
    };
    assert_eq!(user_id, alice);
    (dir, db, store, grant_id)
}

#[test]
fn tokens_are_found_by_hash_until_revoked() {
    let (_dir, _db, mut store, grant_id) = granted();
    let access = store.find_access_token("access-0", NOW).unwrap().unwrap();
    assert_eq!(
        (access.grant_id, access.username.as_str()),
        (grant_id, "alice")
    );
    assert!(store
        .find_access_token("access-0", NOW + 3600)
        .unwrap()
        .is_none());
    let refresh = store.find_refresh_token("refresh-0").unwrap().unwrap();
    assert_eq!(refresh.auth_time, NOW - 9);
    assert!(!refresh.grant_revoked && !refresh.user_disabled);
    assert_eq!(
        store.access_token_client("access-0").unwrap().as_deref(),
        Some("cli")
    );
    store.touch_grant(grant_id, NOW + 5).unwrap();
    assert_eq!(
        store.list_active_grants(None, NOW).unwrap()[0].last_used_at,
        NOW + 5
    );
    store.delete_access_token("access-0").unwrap();
    assert!(store.find_access_token("access-0", NOW).unwrap().is_none());
    let owner = refresh.user_id;
    assert!(!store
        .revoke_grant(grant_id, Some(UserId::new(owner.get() + 1)), NOW)
        .unwrap());
    assert!(store.revoke_grant(grant_id, Some(owner), NOW).unwrap());
    assert!(!store.revoke_grant(grant_id, None, NOW).unwrap());
    assert!(store.find_refresh_token("refresh-0").unwrap().is_none());
    assert!(store
        .list_active_grants(Some(owner), NOW)
        .unwrap()
        .is_empty());
}

#[test]
fn concurrent_exchanges_of_one_refresh_token_rotate_it_once() {
    let (_dir, db, _store, _grant) = granted();
    let outcomes = race(&db, 8, |i, store| {
        let access = format!("access-r{i}");
        let refresh = format!("refresh-r{i}");
        store
            .refresh_grant(
                "refresh-0",
                "read",
                &tokens(&access, Some(&refresh)),
                NOW + 1,
                // Rotate a fresh token; anything already exchanged is refused.
                |facts| match facts.rotated_at {
                    None => RefreshStep::Rotate,
                    Some(_) => RefreshStep::Refuse,
                },
            )
            .unwrap()
    });
    let rotated = outcomes
        .iter()
        .filter(|o| **o == RefreshOutcome::Rotated)
        .count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, RefreshOutcome::Rotated | RefreshOutcome::Refused)));
}

#[test]
fn refresh_steps_retry_and_revoke_as_protocol_decides() {
    let (_dir, _db, mut store, grant_id) = granted();
    let rotate = |_: &devicegate::store::RefreshFacts| RefreshStep::Rotate;
    assert_eq!(
        store
            .refresh_grant(
                "refresh-0",
                "read",
                &tokens("a1", Some("r1")),
                NOW + 1,
                rotate
            )
            .unwrap(),
        RefreshOutcome::Rotated
    );
    // The facts of a replayed token: exchanged once, no retries, successor not yet used.
    let seen = std::sync::Mutex::new(None);
    let outcome = store
        .refresh_grant(
            "refresh-0",
            "read",
            &tokens("a2", Some("r2")),
            NOW + 2,
            |facts| {
                *seen.lock().unwrap() = Some(*facts);
                RefreshStep::Retry
            },
        )
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::Retried);
    let facts = seen.lock().unwrap().unwrap();
    assert_eq!(
        (
            facts.grant_id,
            facts.rotated_at,
            facts.grace_retries,
            facts.successor_rotated
        ),
        (grant_id, Some(NOW + 1), 0, false)
    );
    assert_eq!(
        store
            .refresh_grant("r1", "read", &tokens("a3", Some("r3")), NOW + 3, rotate)
            .unwrap(),
        RefreshOutcome::Rotated
    );
    let outcome = store
        .refresh_grant(
            "refresh-0",
            "read",
            &tokens("a4", Some("r4")),
            NOW + 4,
            |facts| {
                *seen.lock().unwrap() = Some(*facts);
                RefreshStep::Revoke
            },
        )
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::Revoked);
    let facts = seen.lock().unwrap().unwrap();
    assert_eq!((facts.grace_retries, facts.successor_rotated), (1, true));
    // Revoked: every token of the grant is gone, and nothing more is issued.
    for hash in ["r1", "r2", "r3"] {
        assert!(store.find_refresh_token(hash).unwrap().is_none(), "{hash}");
    }
    assert_eq!(
        store
            .refresh_grant("r3", "read", &tokens("a5", Some("r5")), NOW + 5, rotate)
            .unwrap(),
        RefreshOutcome::Invalid
    );
}

#[test]
fn signing_out_everywhere_ends_sessions_grants_and_waiting_approvals() {
    let (_dir, _db, mut store, _grant) = granted();
    let alice = store.find_user_by_name("alice").unwrap().unwrap().id;
    store
        .create_session("s1", Some(alice), "csrf", NOW)
        .unwrap();
    assert!(store.create_device_code(code("EEEEFFFF", "cli")).unwrap());
    assert!(store
        .decide_device_code("EEEEFFFF", Some(alice), Some(NOW), "198.51.100.1", NOW)
        .unwrap());
    let out = store.sign_out_user_everywhere(alice, NOW).unwrap();
    assert_eq!((out.sessions, out.grants, out.codes), (1, 1, 1));
    assert!(store.find_session("s1", 0, 0).unwrap().is_none());
}

#[test]
fn sessions_live_between_their_idle_and_absolute_limits() {
    let (_dir, _db, store) = fresh();
    let alice = store.create_user("alice", "h", NOW).unwrap();
    store
        .create_session("s1", Some(alice), "csrf", NOW)
        .unwrap();
    store.create_session("s2", None, "csrf2", NOW).unwrap();
    let found = store.find_session("s1", NOW - 1, NOW - 1).unwrap().unwrap();
    assert_eq!(found.username.as_deref(), Some("alice"));
    assert!(store.find_session("s1", NOW, NOW - 1).unwrap().is_none());
    store.touch_session("s1", NOW + 10).unwrap();
    assert!(store
        .find_session("s1", NOW + 5, NOW - 1)
        .unwrap()
        .is_some());
    assert!(store.set_user_disabled("alice", true).unwrap());
    assert!(store
        .find_session("s1", NOW - 1, NOW - 1)
        .unwrap()
        .is_none());
    assert_eq!(store.delete_expired_sessions(NOW + 1, 0, 10).unwrap(), 1);
    assert_eq!(store.delete_user_sessions(alice).unwrap(), 1);
    store.delete_session("s2").unwrap();
}

#[test]
fn throttle_reservations_racing_from_many_instances_never_exceed_the_limit() {
    let (_dir, db, store) = fresh();
    const LIMIT: u32 = 5;
    let allowed = race(&db, 12, |_, store| {
        store
            .reserve_throttle_attempt(&[("k:x".to_string(), 60)], NOW, |w: &[ThrottleWindow]| {
                if w[0].failures < LIMIT {
                    Ok(())
                } else {
                    Err("locked")
                }
            })
            .unwrap()
            .is_ok()
    });
    assert_eq!(allowed.iter().filter(|a| **a).count(), LIMIT as usize);
    let window = store.throttle_window("k:x", NOW, 60).unwrap().unwrap();
    assert_eq!(window.failures, LIMIT);
    store.refund_throttle_attempt(&["k:x".to_string()]).unwrap();
    assert_eq!(
        store
            .throttle_window("k:x", NOW, 60)
            .unwrap()
            .unwrap()
            .failures,
        LIMIT - 1
    );
}

#[test]
fn throttle_failures_count_in_windows_and_are_listed_and_cleared() {
    let (_dir, db, store) = fresh();
    let counts = race(&db, 6, |_, store| {
        store.record_throttle_failure("k:y", NOW, 60).unwrap()
    });
    let mut counts = counts;
    counts.sort_unstable();
    assert_eq!(counts, [1, 2, 3, 4, 5, 6]);
    // A new window starts over.
    assert_eq!(
        store.record_throttle_failure("k:y", NOW + 60, 60).unwrap(),
        1
    );
    store.record_throttle_failure("k:z", NOW, 60).unwrap();
    store.record_throttle_failure("other:z", NOW, 60).unwrap();
    assert_eq!(store.list_throttle_keys("k:").unwrap(), ["k:y", "k:z"]);
    // `%` and `_` are not patterns.
    assert!(store.list_throttle_keys("k%").unwrap().is_empty());
    store.clear_throttle("k:z").unwrap();
    assert_eq!(
        store
            .delete_throttles(&["k:y".to_string(), "k:none".to_string()])
            .unwrap(),
        1
    );
    assert_eq!(store.delete_old_throttles(NOW, 10).unwrap(), 1);
    assert!(store.throttle_window("other:z", NOW, 60).unwrap().is_none());
}

#[test]
fn first_signing_keys_racing_from_many_instances_leave_one_per_algorithm() {
    let (_dir, db, store) = fresh();
    let added = race(&db, 6, |i, store| {
        let kid = format!("kid-{i}");
        store
            .create_first_signing_key(
                &NewSigningKey {
                    kid: &kid,
                    alg: "EdDSA",
                    private_key: "cHJpdmF0ZQ==",
                    public_jwk: "{}",
                },
                NOW,
            )
            .unwrap()
    });
    assert_eq!(added.iter().filter(|a| **a).count(), 1, "{added:?}");
    assert_eq!(store.signing_key_algs().unwrap(), ["EdDSA"]);
    store
        .create_signing_key(
            &NewSigningKey {
                kid: "kid-next",
                alg: "EdDSA",
                private_key: "cHJpdmF0ZQ==",
                public_jwk: "{}",
            },
            NOW + 1,
        )
        .unwrap();
    let keys = store.list_signing_keys().unwrap();
    assert_eq!(keys.len(), 2);
    let first = keys[0].kid.clone();
    assert!(store
        .set_signing_key_retire_after(&first, NOW + 99)
        .unwrap());
    assert!(!store.set_signing_key_retire_after(&first, NOW + 5).unwrap());
    assert_eq!(
        store.list_signing_keys().unwrap()[0].retire_after,
        Some(NOW + 99)
    );
    assert!(store.clear_signing_key_retire_after(&first).unwrap());
    assert!(store.delete_signing_key(&first).unwrap());
    assert!(!store.delete_signing_key(&first).unwrap());
}

#[test]
fn sweepers_on_every_instance_at_once_delete_only_what_expired() {
    let (_dir, db, store) = fresh();
    client(&store, "cli");
    for i in 0..40 {
        let mut c = code(&format!("CODE{i:04}"), "cli");
        // Half expired an hour ago, half live.
        if i % 2 == 0 {
            c.expires_at = NOW - 3600;
        }
        assert!(store.create_device_code(c).unwrap());
    }
    let deleted = race(&db, 4, |_, store| {
        let mut total = 0;
        loop {
            let n = store.delete_expired_device_codes(NOW, 3).unwrap();
            if n == 0 {
                return total;
            }
            total += n;
        }
    });
    assert_eq!(deleted.iter().sum::<usize>(), 20, "{deleted:?}");
    assert_eq!(store.list_pending_device_codes(NOW).unwrap().len(), 20);
}

#[test]
fn every_row_survives_a_copy_into_this_backend() {
    // The source is a SQLite file whatever this run's backend: `migrate`'s direction.
    let dir = tempfile::tempdir().unwrap();
    let source_path = dir.path().join("source.db");
    let source = Store::open(&source_path).unwrap();
    client(&source, "cli");
    let alice = source.create_user("alice", "h", NOW).unwrap();
    assert!(source.create_device_code(code("AAAABBBB", "cli")).unwrap());
    assert!(source
        .decide_device_code("AAAABBBB", Some(alice), Some(NOW), "198.51.100.1", NOW)
        .unwrap());
    let id = source
        .find_device_code_by_user_code("AAAABBBB")
        .unwrap()
        .unwrap()
        .id;
    let mut source = source;
    source
        .redeem_device_code(id, &tokens("access-0", Some("refresh-0")), NOW)
        .unwrap();
    assert!(source.create_device_code(code("CCCCDDDD", "cli")).unwrap());
    source
        .create_session("s1", Some(alice), "csrf", NOW)
        .unwrap();
    source.record_throttle_failure("k:x", NOW, 60).unwrap();

    let (_dir2, _db, target) = fresh();
    let counts = target.copy_from(&source, false).unwrap();
    assert_eq!(counts, source.row_counts().unwrap());
    // Refused the second time: the target is no longer empty.
    assert!(matches!(
        target.copy_from(&source, false),
        Err(devicegate::store::Error::Conflict(_))
    ));
    assert_eq!(target.copy_from(&source, true).unwrap(), counts);
    let copied = target.find_access_token("access-0", NOW).unwrap().unwrap();
    assert_eq!(copied.username, "alice");
    assert!(target
        .find_device_code_by_user_code("CCCCDDDD")
        .unwrap()
        .is_some());
    // New rows continue after the copied ids.
    let bob = target.create_user("bob", "h", NOW).unwrap();
    assert!(bob > alice, "{bob:?} after {alice:?}");
}

#[test]
fn both_schemas_have_the_same_tables_columns_and_nullability() {
    if !crate::support::on_postgres() {
        return; // Needs both backends.
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("schema.db");
    drop(Store::open(&file).unwrap());
    let sqlite = crate::support::TestDb::open(&file).query_strings(
        "SELECT m.name || '.' || p.name || ':' || \
         CASE WHEN p.\"notnull\" = 1 OR p.pk > 0 THEN 'not null' ELSE 'null' END \
         FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' ORDER BY 1",
    );
    let (_dir, db, _store) = fresh();
    let postgres = crate::support::TestDb::open(&db).query_strings(
        "SELECT table_name || '.' || column_name || ':' || \
         CASE WHEN is_nullable = 'NO' THEN 'not null' ELSE 'null' END \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> 'devicegate_schema' ORDER BY 1",
    );
    // Sorted here: the two databases' collations may differ.
    let (mut sqlite, mut postgres) = (sqlite, postgres);
    sqlite.sort();
    postgres.sort();
    assert!(sqlite.len() > 60, "{sqlite:?}");
    assert_eq!(sqlite, postgres);
}

#[test]
fn instances_opening_an_empty_database_at_once_apply_the_schema_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let barrier = Arc::new(Barrier::new(6));
    let path = db.to_path_buf();
    let opened: Vec<_> = (0..6)
        .map(|_| {
            let (barrier, path) = (Arc::clone(&barrier), path.clone());
            std::thread::spawn(move || {
                barrier.wait();
                Store::open_shared(&path, Arc::new(Shared::default())).map(|_| ())
            })
        })
        .collect();
    for opening in opened {
        // On PostgreSQL, without the advisory lock, concurrent CREATE TABLEs collide.
        opening.join().unwrap().unwrap();
    }
    let store = Store::open(&db).unwrap();
    assert_eq!(store.count_users().unwrap(), 0);
    client(&store, "cli");
    assert_eq!(store.list_clients().unwrap().len(), 1);
}
