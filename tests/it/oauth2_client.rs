//! The device flow driven by a real client library: the Rust `oauth2` crate (sync, ureq).
//! Its sleep function moves the server's manual clock instead of sleeping.

use devicegate::protocol::approval::{Actor, Decision};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, DeviceAuthorizationUrl, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};

use crate::support::{oauth2_http, TestApp};

fn client(
    app: &TestApp,
) -> oauth2::basic::BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    BasicClient::new(ClientId::new("guest".into()))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(app.url("/oauth/device_authorize")).unwrap(),
        )
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap())
}

#[test]
fn oauth2_crate_completes_a_device_login() {
    let app = TestApp::spawn();
    let user = app.add_user("erin");
    let client = client(&app);
    let http = oauth2_http();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("read".into()))
        .request(&http)
        .unwrap();
    assert_eq!(details.interval(), Duration::from_secs(5));
    let sleeps = AtomicUsize::new(0);
    let token = client
        .exchange_device_access_token(&details)
        .request(
            &http,
            |wait: Duration| {
                // The crate polls at once, then sleeps: approve during its second sleep.
                if sleeps.fetch_add(1, Ordering::SeqCst) == 1 {
                    app.approve(details.user_code().secret(), user);
                }
                app.advance(wait.as_secs_f64());
            },
            // A real-time safety net: the manual clock makes the flow itself instant.
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    assert!(!token.access_token().secret().is_empty());
    assert!(token.refresh_token().is_some());
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
    assert_eq!(
        token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["read".to_string()])
    );
    assert_eq!(sleeps.load(Ordering::SeqCst), 2, "never told to slow down");
}

#[test]
fn oauth2_crate_reports_access_denied() {
    let app = TestApp::spawn();
    let client = client(&app);
    let http = oauth2_http();
    let details: StandardDeviceAuthorizationResponse =
        client.exchange_device_code().request(&http).unwrap();
    let result = client.exchange_device_access_token(&details).request(
        &http,
        |wait: Duration| {
            let _ = devicegate::protocol::approval::decide(
                &app.store(),
                details.user_code().secret(),
                Decision::Deny,
                Actor::Operator,
                app.clock.now(),
            );
            app.advance(wait.as_secs_f64());
        },
        Some(Duration::from_secs(60)),
    );
    match result {
        Err(RequestTokenError::ServerResponse(err)) => {
            assert_eq!(
                err.error(),
                &oauth2::DeviceCodeErrorResponseType::AccessDenied
            );
        }
        other => panic!("expected access_denied, got {other:?}"),
    }
}

#[test]
fn oauth2_crate_refreshes_and_revokes() {
    use oauth2::{RefreshToken, RevocationUrl, StandardRevocableToken};
    let app = TestApp::spawn();
    let tokens = app.login("ivy");
    let client =
        client(&app).set_revocation_url(RevocationUrl::new(app.url("/oauth/revoke")).unwrap());
    let http = oauth2_http();
    let refresh = RefreshToken::new(tokens["refresh_token"].as_str().unwrap().to_string());
    let renewed = client
        .exchange_refresh_token(&refresh)
        .request(&http)
        .unwrap();
    let new_refresh = renewed.refresh_token().unwrap().clone();
    assert_ne!(new_refresh.secret(), refresh.secret());
    assert_eq!(app.userinfo(renewed.access_token().secret()).status, 200);
    // oauth2-rs refuses to send a revocation to a non-https URL (RFC 7009 §2 requires TLS),
    // so over this test's plain-http loopback it stops before sending anything…
    let refused = client.revoke_token(StandardRevocableToken::RefreshToken(new_refresh.clone()));
    assert!(matches!(
        refused,
        Err(oauth2::ConfigurationError::InsecureUrl(_))
    ));
    // …and we send the very request it builds (RFC 7009 §2.1 form, public client_id).
    let resp = app.post_form(
        "/oauth/revoke",
        &[
            ("token", new_refresh.secret()),
            ("token_type_hint", "refresh_token"),
            ("client_id", "guest"),
        ],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(app.userinfo(renewed.access_token().secret()).status, 401);
    let after = client.exchange_refresh_token(&new_refresh).request(&http);
    assert!(matches!(after, Err(RequestTokenError::ServerResponse(_))));
}
