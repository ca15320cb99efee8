//! OpenID Connect's signing half (issue #14): signing keys and the JWKS, ID tokens, RFC 9068
//! JWT access tokens, key rotation, and the bound on signatures at once. Every token is
//! verified by a JOSE library in the test (jsonwebtoken's verifier with the JWK fetched
//! from `/oauth/jwks`, and the `openidconnect` crate), never by the server's own code.

use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use devicegate::store::{ClientChanges, NewClient};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;

use crate::cli::run;
use crate::support::{
    assert_no_store, assert_oauth_error, oauth2_http, serve_binary, shared_signing_keys, sql_text,
    test_database, Browser, TestApp, TestDb, DEVICE_GRANT,
};

const CLIENT: &str = "kubelogin";

/// A public client allowed `openid profile read`, with the given ID token algorithm and
/// access token format.
fn oidc_client(app: &TestApp, client_id: &str, alg: &str, format: &str, audience: Option<&str>) {
    let scopes: Vec<String> = ["openid", "profile", "read"].map(String::from).to_vec();
    let grants = vec![DEVICE_GRANT.to_string(), "refresh_token".to_string()];
    let store = app.store();
    store
        .create_client(
            &NewClient {
                client_id,
                name: "OIDC test client",
                secret_hash: None,
                scopes: &scopes,
                grant_types: &grants,
                device_code_ttl: None,
                poll_interval: None,
            },
            0,
        )
        .unwrap();
    store
        .update_client(
            client_id,
            &ClientChanges {
                access_token_format: Some(format),
                access_token_audience: audience.map(Some),
                id_token_signed_response_alg: Some(alg),
                ..ClientChanges::default()
            },
        )
        .unwrap();
}

fn authorize(app: &TestApp, client_id: &str, scope: &str) -> (String, String) {
    let resp = app.post_form(
        "/oauth/device_authorize",
        &[("client_id", client_id), ("scope", scope)],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    (
        body["device_code"].as_str().unwrap().to_string(),
        body["user_code"].as_str().unwrap().to_string(),
    )
}

/// A device login approved by the operator for `username`: the token response.
fn login(app: &TestApp, client_id: &str, scope: &str, username: &str) -> Value {
    let user = app
        .store()
        .find_user_by_name(username)
        .unwrap()
        .map(|u| u.id)
        .unwrap_or_else(|| app.add_user(username));
    let (device_code, user_code) = authorize(app, client_id, scope);
    app.approve(&user_code, user);
    let resp = app.poll(client_id, &device_code);
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

fn subject(app: &TestApp, username: &str) -> String {
    app.store()
        .find_user_by_name(username)
        .unwrap()
        .unwrap()
        .subject
}

fn jwks(app: &TestApp) -> JwkSet {
    let resp = app.get("/oauth/jwks");
    assert_eq!(resp.status, 200, "{}", resp.body);
    serde_json::from_str(&resp.body).unwrap()
}

/// Verifies `token` with the JWK its `kid` names in the server's JWKS: the header and
/// the claims, or the library's error (a kid missing from the JWKS is `InvalidKeyFormat`).
fn verify(
    app: &TestApp,
    token: &str,
    alg: Algorithm,
    aud: &str,
) -> Result<(Header, Value), jsonwebtoken::errors::Error> {
    verify_with(&jwks(app), &app.base, token, alg, aud)
}

/// `verify` against a given JWK Set and issuer.
fn verify_with(
    set: &JwkSet,
    issuer: &str,
    token: &str,
    alg: Algorithm,
    aud: &str,
) -> Result<(Header, Value), jsonwebtoken::errors::Error> {
    let header = jsonwebtoken::decode_header(token)?;
    let Some(jwk) = header.kid.as_deref().and_then(|kid| set.find(kid)) else {
        return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into());
    };
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation)?;
    Ok((data.header, data.claims))
}

/// The `kid` in a JWT's header.
fn kid_of(token: &Value) -> Option<String> {
    jsonwebtoken::decode_header(token.as_str().unwrap())
        .unwrap()
        .kid
}

/// Moves the server's clock to an hour and a half before the real time, so tokens issued
/// now carry an `exp` that a verifier on the real clock sees in the past.
fn rewind_clock_to_the_real_past(app: &TestApp) {
    let real = jsonwebtoken::get_current_timestamp() as i64;
    let delta = (real - 5400) - app.clock.now().secs();
    app.clock.advance_millis(delta * 1000);
}

fn wait_for_key_cache() {
    std::thread::sleep(devicegate::keys::KEY_CACHE_TTL + Duration::from_millis(150));
}

#[test]
fn an_id_token_verifies_against_the_jwks_with_every_required_claim() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    app.add_user("alice");
    // The person signs in, then enters the code two minutes later: `auth_time` is the
    // sign-in, not the approval.
    let browser = Browser::signed_in(&app, "alice");
    let signed_in_at = app.clock.now().secs();
    app.advance(120.0);
    let (device_code, user_code) = authorize(&app, CLIENT, "openid profile read");
    let consent = browser.enter_code(&user_code);
    assert_eq!(consent.status, 200, "{}", consent.body);
    let approved = browser.decide(&user_code, "approve");
    assert_eq!(approved.status, 200, "{}", approved.body);
    let resp = app.poll(CLIENT, &device_code);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_no_store(&resp);
    let body = resp.json();
    assert_eq!(body["scope"], "openid profile read");
    let id_token = body["id_token"].as_str().expect("an id_token");

    let (header, claims) = verify(&app, id_token, Algorithm::RS256, CLIENT).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let now = app.clock.now().secs();
    assert_eq!(claims["iss"], app.base.as_str(), "exactly the issuer");
    assert_eq!(claims["sub"], subject(&app, "alice").as_str());
    assert_ne!(claims["sub"], "alice", "sub is opaque, not the user name");
    assert_eq!(claims["aud"], CLIENT);
    assert_eq!(claims["azp"], CLIENT);
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 3600);
    assert_eq!(claims["auth_time"], signed_in_at);
    assert_eq!(claims["preferred_username"], "alice");
    // The access token stays opaque for this client.
    assert!(!body["access_token"].as_str().unwrap().contains('.'));
    // Another audience is refused by the verifier.
    let err = verify(&app, id_token, Algorithm::RS256, "someone-else").unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
}

#[test]
fn an_eddsa_client_gets_an_eddsa_id_token_and_a_refresh_keeps_the_subject() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "EdDSA", "opaque", None);
    let first = login(&app, CLIENT, "openid read", "bob");
    let (header, claims) = verify(
        &app,
        first["id_token"].as_str().unwrap(),
        Algorithm::EdDSA,
        CLIENT,
    )
    .unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let jwk: Jwk = jwks(&app)
        .find(header.kid.as_deref().unwrap())
        .cloned()
        .expect("kid in the JWKS");
    assert!(matches!(
        jwk.algorithm,
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_)
    ));
    assert!(
        claims.get("preferred_username").is_none(),
        "no profile scope"
    );

    app.advance(600.0);
    let resp = app.refresh(CLIENT, first["refresh_token"].as_str().unwrap(), None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let again = resp.json();
    let (_, refreshed) = verify(
        &app,
        again["id_token"].as_str().unwrap(),
        Algorithm::EdDSA,
        CLIENT,
    )
    .unwrap();
    assert_eq!(refreshed["sub"], claims["sub"]);
    assert_eq!(
        refreshed["auth_time"], claims["auth_time"],
        "the same sign-in"
    );
    assert_eq!(refreshed["iat"], claims["iat"].as_i64().unwrap() + 600);
    // A refresh narrowed to leave `openid` out gets no ID token.
    let resp = app.refresh(
        CLIENT,
        again["refresh_token"].as_str().unwrap(),
        Some("read"),
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.json().get("id_token").is_none(), "{}", resp.body);
}

#[test]
fn without_openid_there_is_no_id_token() {
    let app = TestApp::spawn();
    let body = app.login("carol");
    assert!(body.get("id_token").is_none(), "{body}");
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let body = login(&app, CLIENT, "read", "carol");
    assert!(body.get("id_token").is_none(), "{body}");
}

#[test]
fn expired_tokens_fail_verification() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "jwt", None);
    // Issued at a time whose `exp` has passed on the verifier's (real) clock.
    rewind_clock_to_the_real_past(&app);
    let old = login(&app, CLIENT, "openid read", "dave");
    for token in [&old["id_token"], &old["access_token"]] {
        let err = verify(&app, token.as_str().unwrap(), Algorithm::RS256, CLIENT).unwrap_err();
        assert_eq!(
            err.kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
    }
    // The server agrees once its own clock passes `exp`.
    let resp = app.userinfo(old["access_token"].as_str().unwrap());
    assert_eq!(
        resp.status, 200,
        "still live on the server's clock: {}",
        resp.body
    );
    app.advance(3600.0);
    let resp = app.userinfo(old["access_token"].as_str().unwrap());
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(resp.json()["error"], "invalid_token");
}

#[test]
fn a_jwt_access_token_follows_rfc_9068_and_introspection_userinfo_and_revocation_work() {
    let app = TestApp::spawn();
    oidc_client(
        &app,
        CLIENT,
        "RS256",
        "jwt",
        Some("https://api.example.com"),
    );
    app.add_client("resource-server", Some("rs-secret-123456"), &[]);
    let body = login(&app, CLIENT, "openid read", "erin");
    let access = body["access_token"].as_str().unwrap();
    assert!(access.len() > 500, "a JWT is long: {} bytes", access.len());

    let (header, claims) =
        verify(&app, access, Algorithm::RS256, "https://api.example.com").unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "RFC 9068 §2.1");
    let now = app.clock.now().secs();
    assert_eq!(claims["iss"], app.base.as_str());
    assert_eq!(claims["sub"], subject(&app, "erin").as_str());
    assert_eq!(claims["aud"], "https://api.example.com");
    assert_eq!(claims["client_id"], CLIENT);
    assert_eq!(claims["scope"], "openid read");
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 3600);
    assert_eq!(body["expires_in"], 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 32));
    // Only the jti's hash is stored, never the token, marked apart from opaque tokens.
    let jti = claims["jti"].as_str().unwrap();
    let stored = format!("jwt:{}", devicegate::secrets::hash_secret(jti));
    let found = app.db().query_i64(&format!(
        "SELECT COUNT(*) FROM access_tokens WHERE token_hash = {}",
        sql_text(&stored)
    ));
    assert_eq!(found, 1);

    // Found in review: the bare jti looks like an opaque token; it is none.
    assert_eq!(app.userinfo(jti).status, 401);

    // userinfo accepts it in the Authorization header.
    let resp = app.userinfo(access);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["client_id"], CLIENT);
    // Introspection (RFC 7662) by a resource server: active, then revoked → inactive.
    let introspect = |token: &str| {
        app.post_form(
            "/oauth/introspect",
            &[
                ("token", token),
                ("client_id", "resource-server"),
                ("client_secret", "rs-secret-123456"),
            ],
        )
    };
    let resp = introspect(access);
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.json()["active"], true);
    assert_eq!(resp.json()["scope"], "openid read");
    // A token with a tampered payload (same jti, wider scope) is not recognised.
    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    let mut payload = claims.clone();
    payload["scope"] = "openid read write admin".into();
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    let forged = parts.join(".");
    assert_eq!(introspect(&forged).json()["active"], false);
    assert_eq!(app.userinfo(&forged).status, 401);
    // RFC 7009 revocation with the JWT in the body.
    let resp = app.post_form(
        "/oauth/revoke",
        &[
            ("token", access),
            ("client_id", CLIENT),
            ("token_type_hint", "access_token"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(introspect(access).json()["active"], false);
    let resp = app.userinfo(access);
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(resp.json()["error"], "invalid_token");
}

#[test]
fn the_first_start_makes_one_key_per_algorithm_and_the_jwks_publishes_them() {
    let app = TestApp::spawn_with_own_keys(|_| {});
    let resp = app.get("/oauth/jwks");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("public, max-age=3600"));
    let set: JwkSet = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(set.keys.len(), 2, "{}", resp.body);
    let kinds: Vec<&str> = set
        .keys
        .iter()
        .map(|k| match &k.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => "RSA",
            jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(_) => "OKP",
            _ => "other",
        })
        .collect();
    assert!(
        kinds.contains(&"RSA") && kinds.contains(&"OKP"),
        "{kinds:?}"
    );
    let shared: Vec<&str> = shared_signing_keys()
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    for key in &set.keys {
        let kid = key.common.key_id.as_deref().unwrap();
        assert!(
            !shared.contains(&kid),
            "made by this server, not the tests' shared keys"
        );
        // The public half only: no private members (RFC 7518 §6.3.2, RFC 8037 §2).
        let raw: Value = serde_json::to_value(key).unwrap();
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(raw.get(private).is_none(), "{raw}");
        }
    }
    // The keys it made sign: an ID token verifies against them.
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let body = login(&app, CLIENT, "openid", "frank");
    verify(
        &app,
        body["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap();
    // Another start on the same database makes no new keys.
    let db = app.db_path.clone();
    let again = TestApp::spawn_with_own_keys(|c| c.db_path = db);
    let set_again = jwks(&again);
    assert_eq!(set_again.keys, set.keys);
}

#[test]
fn discovery_names_the_jwks_and_its_cache_lifetime_follows_the_rotation_delay() {
    let app = TestApp::spawn_with(|c| c.key_rotation_delay = 600);
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc = app.get(path).json();
        assert_eq!(doc["jwks_uri"], app.url("/oauth/jwks"), "{path}");
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256", "EdDSA"]),
            "{path}"
        );
    }
    let resp = app.get("/oauth/jwks");
    assert_eq!(resp.header("cache-control"), Some("public, max-age=600"));
    let head = app.request("HEAD", "/oauth/jwks", &[], None);
    assert_eq!(head.status, 200);
    let post = app.post_form("/oauth/jwks", &[]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let zero = TestApp::spawn_with(|c| c.key_rotation_delay = 0);
    assert_eq!(
        zero.get("/oauth/jwks").header("cache-control"),
        Some("public, max-age=0")
    );
}

#[test]
fn a_rotated_key_verifies_old_tokens_until_it_is_retired() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "jwt", None);
    let old = login(&app, CLIENT, "openid read", "gina");
    let old_kid = kid_of(&old["id_token"]).unwrap();

    // Rotate (as `key rotate` does, at the server's clock): published at once, not signing.
    let new_key = devicegate::keys::generate(devicegate::keys::Alg::Rs256).unwrap();
    app.store()
        .create_signing_key(&new_key.as_new(), app.clock.now().secs())
        .unwrap();
    wait_for_key_cache();
    let kids: Vec<String> = jwks(&app)
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert!(
        kids.contains(&new_key.kid) && kids.contains(&old_kid),
        "{kids:?}"
    );
    let during = login(&app, CLIENT, "openid read", "gina");
    assert_eq!(
        kid_of(&during["id_token"]),
        Some(old_kid.clone()),
        "still the old key"
    );

    // After the rotation delay (a day by default, plus `keys::PUBLISH_MARGIN` seconds) the
    // new key signs; the old still verifies.
    app.advance(86_400.0 + devicegate::keys::PUBLISH_MARGIN as f64);
    let after = login(&app, CLIENT, "openid read", "gina");
    assert_eq!(kid_of(&after["id_token"]), Some(new_key.kid.clone()));
    assert_eq!(kid_of(&after["access_token"]), Some(new_key.kid.clone()));
    verify(
        &app,
        after["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap();
    verify(
        &app,
        during["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap();

    // The sweep notes when the old key's last token expires; retiring earlier is refused.
    app.handle().sweep_now().unwrap();
    let (code, _, err) = run(&app.db_path, &["key", "retire", &old_kid], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("may be live until"), "{err}");
    wait_for_key_cache();
    verify(
        &app,
        during["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap();

    // Once every token it signed has expired, the sweep retires it: gone from the JWKS,
    // and its tokens no longer verify.
    app.advance(3600.0 + 5.0);
    app.handle().sweep_now().unwrap();
    wait_for_key_cache();
    assert!(jwks(&app).find(&old_kid).is_none());
    let err = verify(
        &app,
        during["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap_err();
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidKeyFormat,
        "kid not in the JWKS"
    );
    verify(
        &app,
        after["id_token"].as_str().unwrap(),
        Algorithm::RS256,
        CLIENT,
    )
    .unwrap();
    // The EdDSA key was never rotated: still there.
    assert_eq!(jwks(&app).keys.len(), 2);
}

#[test]
fn key_commands_rotate_and_force_retire_and_never_print_a_private_key() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "jwt", None);
    let before = login(&app, CLIENT, "openid read", "hank");
    let old_kid = kid_of(&before["access_token"]).unwrap();

    let (code, out, err) = run(&app.db_path, &["key", "rotate", "--alg", "RS256"], None);
    assert_eq!(code, 0, "{err}");
    let new_kid = out.split('\t').next().unwrap().to_string();
    assert!(out.trim_end().ends_with("\tRS256"), "{out}");
    assert!(err.contains("audit: key rotate: new RS256 key"), "{err}");
    let (code, out, _) = run(&app.db_path, &["key", "list"], None);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("{old_kid}\tRS256")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(&new_kid) && l.contains("next")),
        "{out}"
    );
    let (_, json, _) = run(&app.db_path, &["key", "list", "--json"], None);
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // Retiring the key that still signs needs --force; the only EdDSA key never goes.
    let (code, _, err) = run(&app.db_path, &["key", "retire", &old_kid], None);
    assert_eq!(code, 1);
    assert!(err.contains("still signs"), "{err}");
    let eddsa = shared_signing_keys()[1].kid.clone();
    let (code, _, err) = run(&app.db_path, &["key", "retire", &eddsa, "--force"], None);
    assert_eq!(code, 1);
    assert!(err.contains("only key of its algorithm"), "{err}");
    let (code, _, err) = run(&app.db_path, &["key", "rotate", "--alg", "HS256"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("use RS256 or EdDSA"), "{err}");
    for (flag, value) in [
        ("--access-token-format", "paseto"),
        ("--id-token-alg", "none"),
        ("--access-token-audience", "two words"),
    ] {
        let (code, _, err) = run(&app.db_path, &["client", "edit", CLIENT, flag, value], None);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(flag), "{err}");
    }
    let (code, _, err) = run(&app.db_path, &["key", "retire", "no-such-kid"], None);
    assert_eq!(code, 1);
    assert!(err.contains("no signing key `no-such-kid`"), "{err}");
    // A kid is base64url: one in 64 starts with `-`, and is a kid, not an option.
    let (code, _, err) = run(&app.db_path, &["key", "retire", "-Xno-such-kid"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no signing key `-Xno-such-kid`"), "{err}");
    let (code, out, err) = run(&app.db_path, &["key", "retire", &old_kid, "--force"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no longer in the JWKS"), "{out}");
    assert!(
        err.contains(&format!("audit: key retire {old_kid} (forced)")),
        "{err}"
    );

    // A compromised key, retired by force: its live tokens stop working at once, and the
    // successor signs (nothing older is left).
    wait_for_key_cache();
    let access = before["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).status, 401);
    let after = login(&app, CLIENT, "openid read", "hank");
    assert_eq!(
        kid_of(&after["id_token"]).as_deref(),
        Some(new_kid.as_str())
    );

    // No output above, and no `key list`, carries a private key.
    let secrets = app
        .db()
        .query_strings("SELECT private_key FROM signing_keys");
    assert_eq!(secrets.len(), 2);
    let (_, list, list_err) = run(&app.db_path, &["key", "list", "--json"], None);
    let (_, shown, _) = run(&app.db_path, &["client", "show", CLIENT, "--json"], None);
    for secret in &secrets {
        for text in [&list, &list_err, &shown, &jwks_text(&app)] {
            assert!(!text.contains(secret.as_str()));
            assert!(!text.contains(&secret[..40]));
        }
    }
}

#[test]
fn a_backup_carries_the_signing_keys_so_a_restore_keeps_verifying() {
    // `backup` writes a SQLite file; on PostgreSQL it points to pg_dump instead.
    if crate::support::on_postgres() {
        return;
    }
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let body = login(&app, CLIENT, "openid", "lena");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    let (code, _, err) = run(&app.db_path, &["backup", copy.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let keys = |path: &std::path::Path| -> Vec<(String, String)> {
        rusqlite::Connection::open(path)
            .unwrap()
            .prepare("SELECT kid, private_key FROM signing_keys ORDER BY kid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(keys(&copy), keys(&app.db_path));
    // A server restored from the copy makes no keys of its own, and its JWKS verifies
    // the tokens already out.
    let restored = TestApp::spawn_with_own_keys(|c| c.db_path = copy.clone());
    let token = body["id_token"].as_str().unwrap();
    verify_with(&jwks(&restored), &app.base, token, Algorithm::RS256, CLIENT).unwrap();
}

fn jwks_text(app: &TestApp) -> String {
    app.get("/oauth/jwks").body
}

#[test]
fn the_server_log_never_shows_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = test_database(dir.path());
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let child = serve_binary(&db, &listen, &["--log-level", "debug"], Stdio::piped());
    let base = format!("http://{listen}");
    let (code, _, err) = run(
        &db,
        &[
            "client",
            "add",
            "CLI",
            "--id",
            CLIENT,
            "--scope",
            "openid read",
            "--id-token-alg",
            "EdDSA",
            "--access-token-format",
            "jwt",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("JWT access tokens, ID token algorithm"),
        "{err}"
    );
    std::thread::sleep(devicegate::store::CLIENT_CACHE_TTL + Duration::from_millis(100));
    let authorized: Value = ureq::post(&format!("{base}/oauth/device_authorize"))
        .send_form(&[("client_id", CLIENT), ("scope", "openid read")])
        .unwrap()
        .into_json()
        .unwrap();
    let user_code = authorized["user_code"].as_str().unwrap();
    let (code, _, err) = run(&db, &["approve", user_code, "--user", "admin"], None);
    assert_eq!(code, 0, "{err}");
    let tokens: Value = ureq::post(&format!("{base}/oauth/token"))
        .send_form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLIENT),
            ("device_code", authorized["device_code"].as_str().unwrap()),
        ])
        .unwrap()
        .into_json()
        .unwrap();
    let header = jsonwebtoken::decode_header(tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    let _ = ureq::get(&format!("{base}/oauth/jwks")).call().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("first start: made signing key"), "{log}");
    let secrets = TestDb::open(&db).query_strings("SELECT private_key FROM signing_keys");
    assert_eq!(secrets.len(), 2);
    for secret in secrets {
        assert!(!log.contains(&secret[..40]), "a private key in the log");
    }
}

/// Found in review: one damaged row took every signature and the JWKS down, and let any
/// stranger's bearer JWT naming it cause a 500. A damaged row is left out (and logged);
/// only an algorithm left with no usable key cannot sign (500, the code not spent).
#[test]
fn a_damaged_key_is_left_out_and_only_an_algorithm_without_keys_fails() {
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let fine = login(&app, CLIENT, "openid read", "kate");
    // A key the server has not loaded yet (as from a damaged file or a bad restore).
    app.db().execute(
        "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, created_at) \
         VALUES ('damaged', 'RS256', 'AAAA', '{', 0)",
    );
    wait_for_key_cache();
    let resp = app.get("/oauth/jwks");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let kids: Vec<String> = resp.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert!(!kids.contains(&"damaged".to_string()));
    // The healthy keys still sign.
    let again = login(&app, CLIENT, "openid read", "kate");
    assert!(again["id_token"].is_string());
    // A stranger's bearer JWT naming the damaged key: 401, not 500.
    let header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"typ":"at+jwt","alg":"RS256","kid":"damaged"}"#,
    );
    let forged = format!("{header}.e30.AAAA");
    let resp = app.userinfo(&forged);
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(
        app.userinfo(fine["access_token"].as_str().unwrap()).status,
        200
    );

    // The only RS256 key damaged before the server ever read it: RS256 cannot sign.
    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let user = app.add_user("kate");
    app.db()
        .execute("UPDATE signing_keys SET private_key = 'AAAA' WHERE alg = 'RS256'");
    let (device_code, user_code) = authorize(&app, CLIENT, "openid read");
    app.approve(&user_code, user);
    let resp = app.poll(CLIENT, &device_code);
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert_eq!(resp.json()["error"], "server_error");
    assert_no_store(&resp);
    // The code was not spent; EdDSA keys are still published.
    let code = app
        .store()
        .find_device_code_by_user_code(
            &devicegate::secrets::normalize_user_code(&user_code).unwrap(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(code.status, devicegate::store::DeviceCodeStatus::Approved);
    let jwks = app.get("/oauth/jwks");
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.json()["keys"].as_array().unwrap().len(), 1);
}

use std::process::Command;

#[test]
fn signatures_are_bounded_and_a_refused_redemption_keeps_its_code() {
    // One signature at once and no wait: concurrent redemptions meet the bound.
    let app = TestApp::spawn_with(|c| {
        c.workers = 8;
        c.signing_concurrency = 1;
        c.signing_wait_ms = 0;
        c.authorize_limit_per_address = 10_000;
        c.authorize_limit_per_client = 10_000;
    });
    oidc_client(&app, CLIENT, "RS256", "jwt", None);
    let user = app.add_user("ivan");
    let app = Arc::new(app);
    let mut busy_seen = 0;
    for _round in 0..10 {
        let approved: Vec<String> = (0..10)
            .map(|_| {
                let (device_code, user_code) = authorize(&app, CLIENT, "openid read");
                app.approve(&user_code, user);
                device_code
            })
            .collect();
        let pending: Vec<String> = (0..4)
            .map(|_| authorize(&app, CLIENT, "openid").0)
            .collect();
        let barrier = Arc::new(Barrier::new(approved.len() + pending.len()));
        let threads: Vec<_> = approved
            .iter()
            .chain(&pending)
            .cloned()
            .map(|code| {
                let (app, barrier) = (Arc::clone(&app), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    (code.clone(), app.poll(CLIENT, &code))
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (code, resp) in &results {
            if pending.contains(code) {
                // Pending polls never sign, so the bound never refuses them.
                assert_oauth_error(resp, 400, "authorization_pending");
            } else if resp.status == 400 {
                // No signing turn: RFC 8628 §3.5's slow_down, which every device client
                // honours (a 503 few would retry), with the interval 5 s longer.
                busy_seen += 1;
                assert_oauth_error(resp, 400, "slow_down");
                assert_eq!(resp.json()["interval"], 10, "{}", resp.body);
                // Nothing was spent: the device's next poll gets its tokens.
                let again = app.poll(CLIENT, code);
                assert_eq!(again.status, 200, "{}", again.body);
                assert!(again.json()["id_token"].is_string());
            } else {
                assert_eq!(resp.status, 200, "{}", resp.body);
            }
        }
        if busy_seen > 0 {
            break;
        }
        app.advance(10.0);
    }
    assert!(
        busy_seen > 0,
        "ten bursts of ten redemptions never met the bound of one"
    );
}

#[test]
fn the_openidconnect_crate_runs_the_device_flow_and_validates_the_id_token() {
    use openidconnect::core::{CoreClient, CoreDeviceAuthorizationResponse, CoreJsonWebKeySet};
    use openidconnect::{
        ClientId, DeviceAuthorizationUrl, IssuerUrl, JsonWebKeySetUrl, Nonce, Scope, TokenUrl,
    };
    use openidconnect::{OAuth2TokenResponse, TokenResponse as _};

    let app = TestApp::spawn();
    oidc_client(&app, CLIENT, "RS256", "opaque", None);
    let user = app.add_user("judy");
    let http = oauth2_http();
    let jwks = CoreJsonWebKeySet::fetch(
        &JsonWebKeySetUrl::new(app.url("/oauth/jwks")).unwrap(),
        &http,
    )
    .unwrap();
    let client = CoreClient::new(
        ClientId::new(CLIENT.into()),
        IssuerUrl::new(app.base.clone()).unwrap(),
        jwks,
    )
    .set_device_authorization_url(
        DeviceAuthorizationUrl::new(app.url("/oauth/device_authorize")).unwrap(),
    )
    .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap());
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("openid".into()))
        .add_scope(Scope::new("profile".into()))
        .request(&http)
        .unwrap();
    app.approve(details.user_code().secret(), user);
    let token = client
        .exchange_device_access_token(&details)
        .request(
            &http,
            |wait: Duration| app.advance(wait.as_secs_f64()),
            None,
        )
        .unwrap();
    let id_token = token.id_token().expect("an ID token");
    // The device flow has no nonce (no authorization request to carry one).
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .unwrap();
    assert_eq!(claims.subject().as_str(), subject(&app, "judy"));
    assert_eq!(claims.issuer().as_str(), app.base);
    assert_eq!(
        claims.preferred_username().map(|u| u.as_str()),
        Some("judy")
    );
    assert!(claims.auth_time().is_some());
    assert!(!token.access_token().secret().is_empty());
}
