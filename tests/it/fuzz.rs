//! Property test over the request edge: random methods, paths, headers, cookies and form or
//! JSON bodies (with real parameter names mixed in) never panic and never get a 5xx.

use proptest::prelude::*;

use crate::support::TestApp;

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("HEAD"),
        Just("DELETE")
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop_oneof![
        Just("/oauth/token"),
        Just("/oauth/device_authorize"),
        Just("/oauth/device"),
        Just("/oauth/device/decision"),
        Just("/auth/v1/oauth/device/authorize"),
        Just("/oauth/revoke"),
        Just("/oauth/introspect"),
        Just("/oauth/userinfo"),
        Just("/login"),
        Just("/logout"),
        Just("/account"),
        Just("/account/revoke"),
        Just("/metrics"),
    ];
    (known, "[a-zA-Z0-9%?=&_./-]{0,40}").prop_map(|(p, tail)| match tail.chars().next() {
        Some('?') | Some('/') => format!("{p}{tail}"),
        _ => p.to_string(),
    })
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("grant_type".to_string()),
        Just("client_id".to_string()),
        Just("client_secret".to_string()),
        Just("device_code".to_string()),
        Just("user_code".to_string()),
        Just("scope".to_string()),
        Just("token".to_string()),
        Just("refresh_token".to_string()),
        Just("csrf_token".to_string()),
        Just("decision".to_string()),
        "[a-z_]{1,12}",
    ]
}

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("guest".to_string()),
        Just("urn:ietf:params:oauth:grant-type:device_code".to_string()),
        Just("refresh_token".to_string()),
        Just("approve".to_string()),
        "\\PC{0,60}",
        "[A-Z2-9-]{0,12}",
    ]
}

fn body() -> impl Strategy<Value = (Option<&'static str>, Vec<u8>)> {
    let pairs = || prop::collection::vec((param_name(), param_value()), 0..6);
    prop_oneof![
        pairs().prop_map(|p| (
            Some("application/x-www-form-urlencoded"),
            serde_urlencoded::to_string(&p)
                .unwrap_or_default()
                .into_bytes()
        )),
        pairs().prop_map(|p| {
            let map: serde_json::Map<String, serde_json::Value> =
                p.into_iter().map(|(k, v)| (k, v.into())).collect();
            (
                Some("application/json"),
                serde_json::Value::Object(map).to_string().into_bytes(),
            )
        }),
        (
            prop::option::of(prop_oneof![
                Just("text/plain"),
                Just("application/json"),
                Just("multipart/form-data")
            ]),
            prop::collection::vec(any::<u8>(), 0..200)
        ),
    ]
}

fn header() -> impl Strategy<Value = (&'static str, String)> {
    let value = "[ -~]{0,60}";
    prop_oneof![
        value.prop_map(|v| ("Authorization", format!("Basic {v}"))),
        value.prop_map(|v| ("Authorization", format!("Bearer {v}"))),
        value.prop_map(|v| ("Cookie", format!("dg_session={v}"))),
        value.prop_map(|v| ("X-CSRF-Token", v)),
        value.prop_map(|v| ("X-Forwarded-For", v)),
        value.prop_map(|v| ("User-Agent", v)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_request_makes_the_server_panic_or_answer_5xx(
        method in method(),
        path in path(),
        (content_type, body) in body(),
        headers in prop::collection::vec(header(), 0..3),
    ) {
        let app = app();
        let mut all: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Some(ct) = content_type {
            all.push(("Content-Type", ct));
        }
        let sends_body = method != "GET" && method != "HEAD";
        let resp = app.request(method, &path, &all, sends_body.then_some(body.as_slice()));
        prop_assert!(resp.status < 500, "{method} {path} -> {}: {}", resp.status, resp.body);
    }
}

/// One server for all cases (started once; requests cannot break it).
fn app() -> &'static TestApp {
    static APP: std::sync::OnceLock<TestApp> = std::sync::OnceLock::new();
    APP.get_or_init(|| {
        let app = TestApp::spawn_with(|c| c.trust_proxy = true);
        app.add_user("fuzz");
        app
    })
}
