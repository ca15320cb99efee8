//! RFC 8414 metadata at both well-known paths, and `/healthz`.

use crate::support::TestApp;

#[test]
fn both_well_known_paths_serve_the_same_document() {
    let app = TestApp::spawn();
    let oauth = app.get("/.well-known/oauth-authorization-server");
    let oidc = app.get("/.well-known/openid-configuration");
    assert_eq!(oauth.status, 200);
    assert_eq!(oauth.header("content-type"), Some("application/json"));
    assert_eq!(oauth.body, oidc.body);
    let doc = oauth.json();
    assert_eq!(doc["issuer"], app.base);
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{}/oauth/device_authorize", app.base)
    );
    assert_eq!(doc["token_endpoint"], format!("{}/oauth/token", app.base));
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&"urn:ietf:params:oauth:grant-type:device_code".into()));
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for m in ["none", "client_secret_basic", "client_secret_post"] {
        assert!(methods.contains(&m.into()), "{m}");
    }
    // Every client's scopes and the OpenID Connect ones (`guest` allows all of them).
    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!([
            "email",
            "offline_access",
            "openid",
            "profile",
            "read",
            "write"
        ])
    );
    assert!(doc["response_types_supported"].is_array());
}

#[test]
fn issuer_is_exactly_as_configured() {
    let app = TestApp::spawn_with(|c| c.issuer = Some("https://auth.example.com/sub".into()));
    let doc = app.get("/.well-known/oauth-authorization-server").json();
    assert_eq!(doc["issuer"], "https://auth.example.com/sub");
    assert_eq!(
        doc["token_endpoint"],
        "https://auth.example.com/sub/oauth/token"
    );
    let codes = app.device_authorize("guest");
    assert_eq!(
        codes.body["verification_uri"],
        "https://auth.example.com/sub/oauth/device"
    );
}

#[test]
fn healthz_answers_ok() {
    let app = TestApp::spawn();
    let resp = app.get("/healthz");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["status"], "ok");
}
