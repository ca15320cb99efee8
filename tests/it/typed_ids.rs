//! Typed row ids (issue #15, `store::{UserId, GrantId, DeviceCodeId}`): where an id crosses
//! a text boundary (a CLI argument, `--json` output, an HTML form field) it looks exactly
//! as the bare integer did, and a value that is not one is refused as before.

use crate::cli::run;
use crate::support::{csrf_token, Browser, TestApp};

/// The `value` of every `<input name="{name}">` on a page.
fn field_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_string())
        .collect()
}

#[test]
fn grant_ids_cross_the_terminal_as_plain_integers() {
    let app = TestApp::spawn();
    let alice = app.login("alice");
    let (code, out, err) = run(&app.db_path, &["grant", "list", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let grants: serde_json::Value = serde_json::from_str(&out).unwrap();
    // A JSON number, not a string or an object.
    let id = grants[0]["id"].as_i64().expect("a JSON integer");
    assert!(out.contains(&format!("\"id\": {id},")), "{out}");
    let (_, text, _) = run(&app.db_path, &["grant", "list"], None);
    assert_eq!(text.split('\t').next(), Some(id.to_string().as_str()));

    // What is not an integer is clap's usage error (exit 2), as for an `i64` argument.
    for bad in ["x", "1.0", " 1", "", "99999999999999999999"] {
        let (code, _, err) = run(&app.db_path, &["grant", "revoke", bad], None);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(
            err.starts_with(&format!("error: invalid value '{bad}' for '<ID>': ")),
            "{err}"
        );
    }
    assert_eq!(
        app.userinfo(alice["access_token"].as_str().unwrap()).status,
        200
    );

    let (code, out, _) = run(&app.db_path, &["grant", "revoke", &id.to_string()], None);
    assert_eq!(code, 0);
    assert_eq!(out, format!("revoked grant {id}\n"));
    assert_eq!(
        app.userinfo(alice["access_token"].as_str().unwrap()).status,
        401
    );
}

#[test]
fn account_form_ids_are_plain_integers_and_junk_is_not_found() {
    let app = TestApp::spawn();
    let alice = app.login("alice");
    let user = app.store().find_user_by_name("alice").unwrap().unwrap().id;
    let waiting = app.device_authorize("guest");
    app.approve(&waiting.user_code, user);

    let store = app.store();
    let now = app.clock.now().secs();
    let grant = store.list_active_grants(Some(user), now).unwrap()[0].id;
    let code = store.list_approved_device_codes(user, now).unwrap()[0].id;
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.get("/account");
    assert_eq!(page.status, 200);
    assert_eq!(field_values(&page.body, "grant_id"), [grant.to_string()]);
    assert_eq!(field_values(&page.body, "code_id"), [code.to_string()]);
    assert_eq!(grant.to_string(), grant.get().to_string());

    let csrf = csrf_token(&page.body);
    for bad in ["x", "1.0", " 1", "", "99999999999999999999", "-1"] {
        let revoke = browser.post(
            "/account/revoke",
            &[("csrf_token", &csrf), ("grant_id", bad)],
        );
        assert_eq!(revoke.status, 404, "{bad:?}");
        assert_eq!(
            revoke.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(revoke.header("cache-control"), Some("no-store"));
        assert!(revoke.body.contains("Nothing to revoke"), "{bad:?}");
        let cancel = browser.post(
            "/account/cancel",
            &[("csrf_token", &csrf), ("code_id", bad)],
        );
        assert_eq!(cancel.status, 404, "{bad:?}");
        assert!(cancel.body.contains("Nothing to cancel"), "{bad:?}");
    }
    // Nothing above touched either.
    assert_eq!(
        app.userinfo(alice["access_token"].as_str().unwrap()).status,
        200
    );
    let page = browser.get("/account");
    assert_eq!(field_values(&page.body, "code_id"), [code.to_string()]);

    // The values the page gave work.
    let cancel = browser.post(
        "/account/cancel",
        &[("csrf_token", &csrf), ("code_id", &code.to_string())],
    );
    assert_eq!(cancel.status, 303);
    let revoke = browser.post(
        "/account/revoke",
        &[("csrf_token", &csrf), ("grant_id", &grant.to_string())],
    );
    assert_eq!(revoke.status, 303);
    assert_eq!(
        app.userinfo(alice["access_token"].as_str().unwrap()).status,
        401
    );
}
