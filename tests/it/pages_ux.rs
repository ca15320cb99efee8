//! Issue 13, items 8–10: the pages people read. Branding and help text (`--site-name`,
//! `--help-text`), lock-out pages that do not loop, WCAG 2.2 AA contrast of the stylesheet
//! in both colour schemes, and the account page (pending approvals to cancel, plain
//! words, what each device is, "Sign out everywhere").

use std::collections::BTreeMap;

use crate::support::{Browser, TestApp};

// ---------------------------------------------------------------------------------------
// Item 9: contrast, computed from the stylesheet itself.

/// The stylesheet as the server embeds it.
const STYLESHEET: &str = include_str!("../../src/pages/style.css");

/// Custom properties every page area is painted with: any text may sit on any of them.
const SURFACES: [&str; 3] = ["--bg", "--card", "--warn-bg"];
/// Custom properties that only separate non-interactive regions (cards, table rows, the
/// code box): WCAG 1.4.11 asks nothing of them. Rules for controls may not use them.
const DECORATIVE: [&str; 1] = ["--line"];
/// WCAG 2.2 SC 1.4.3 (normal text) and SC 1.4.11 (component boundaries, focus indicators).
const TEXT_MIN: f64 = 4.5;
const BOUNDARY_MIN: f64 = 3.0;

/// Properties whose value paints a colour.
const COLOUR_PROPERTIES: [&str; 13] = [
    "color",
    "background",
    "background-color",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "outline",
    "outline-color",
    "text-decoration-color",
    "caret-color",
];

#[derive(Debug)]
struct Rule {
    selector: String,
    declarations: Vec<(String, String)>,
}

/// Top-level rules, and the rules inside `@media (prefers-color-scheme: dark)`. Enough CSS
/// for our own small stylesheet; anything else (another at-rule) fails the test loudly.
fn parse_stylesheet(css: &str) -> (Vec<Rule>, Vec<Rule>) {
    let mut text = String::new();
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unclosed comment");
        rest = &rest[start + end + 2..];
    }
    text.push_str(rest);
    let (mut top, mut dark) = (Vec::new(), Vec::new());
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        let prelude = rest[..open].trim().to_string();
        if prelude.starts_with('@') {
            assert!(
                prelude.replace(' ', "") == "@media(prefers-color-scheme:dark)",
                "an at-rule the contrast test does not understand: {prelude}"
            );
            let mut depth = 0;
            let mut close = None;
            for (i, c) in rest[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(open + i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let close = close.expect("unclosed @media");
            let (inner, nested) = parse_stylesheet(&rest[open + 1..close]);
            assert!(nested.is_empty());
            dark.extend(inner);
            rest = &rest[close + 1..];
        } else {
            let close = open + rest[open..].find('}').expect("unclosed rule");
            let declarations = rest[open + 1..close]
                .split(';')
                .filter(|d| !d.trim().is_empty())
                .map(|d| {
                    let (name, value) = d.split_once(':').expect("a declaration");
                    (name.trim().to_string(), value.trim().to_string())
                })
                .collect();
            top.push(Rule {
                selector: prelude,
                declarations,
            });
            rest = &rest[close + 1..];
        }
    }
    assert!(rest.trim().is_empty(), "trailing CSS: {rest}");
    (top, dark)
}

/// The custom properties a `:root` rule among `rules` sets.
fn palette(rules: &[Rule]) -> BTreeMap<String, String> {
    rules
        .iter()
        .filter(|r| r.selector == ":root")
        .flat_map(|r| r.declarations.iter())
        .filter(|(name, _)| name.starts_with("--"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// `#rgb` or `#rrggbb` as 0–1 channels.
fn hex_colour(value: &str) -> [f64; 3] {
    let hex = value
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("{value} is not a hex colour"));
    let hex: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_string(),
        _ => panic!("{value} is not #rgb or #rrggbb"),
    };
    let channel = |i: usize| f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
    [channel(0), channel(2), channel(4)]
}

/// WCAG 2.2 relative luminance.
fn luminance(value: &str) -> f64 {
    let linear = |c: f64| {
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let [r, g, b] = hex_colour(value);
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/// WCAG 2.2 contrast ratio, 1 to 21.
fn contrast(a: &str, b: &str) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// What the stylesheet's rules ask of the palette: pairs read from the rules themselves.
#[derive(Default)]
struct Uses {
    /// Text colours set without a background: they can land on any surface.
    texts: Vec<(String, String)>,
    /// (text, its own background, selector) set in one rule: a filled control.
    pairs: Vec<(String, String, String)>,
    /// Fills of controls, and non-decorative borders and outlines: 3:1 on every surface.
    boundaries: Vec<(String, String)>,
}

fn var_name(token: &str) -> Option<String> {
    token
        .strip_prefix("var(")
        .and_then(|t| t.strip_suffix(')'))
        .map(|t| t.trim().to_string())
}

fn is_control(selector: &str) -> bool {
    selector
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .any(|word| {
            ["input", "button", "select", "textarea", "a"].contains(&word)
                || word.contains("focus")
                || word == "placeholder"
        })
}

/// Every colour a rule paints, checked to come from the palette, sorted into roles.
fn uses(rules: &[Rule]) -> Uses {
    let mut found = Uses::default();
    for rule in rules.iter().filter(|r| r.selector != ":root") {
        let sel = &rule.selector;
        let (mut fg, mut bg) = (None, None);
        for (name, value) in &rule.declarations {
            let lowered = value.to_ascii_lowercase();
            assert!(
                !["#", "rgb", "hsl", "hwb", "lab(", "lch(", "color("]
                    .iter()
                    .any(|literal| lowered.contains(literal)),
                "`{sel} {{ {name}: {value} }}`: a colour outside the palette; add a custom property"
            );
            if !COLOUR_PROPERTIES.contains(&name.as_str()) {
                continue;
            }
            for token in value.split_whitespace() {
                if let Some(var) = var_name(token) {
                    match name.as_str() {
                        "color" => fg = Some(var),
                        "background" | "background-color" => bg = Some(var),
                        _ if DECORATIVE.contains(&var.as_str()) => assert!(
                            !is_control(sel),
                            "`{sel}` is a control: its `{name}` needs a 3:1 colour, not {var}"
                        ),
                        _ => found.boundaries.push((var, sel.clone())),
                    }
                    continue;
                }
                let keyword = [
                    "transparent",
                    "none",
                    "inherit",
                    "currentcolor",
                    "solid",
                    "dashed",
                    "dotted",
                    "double",
                    "0",
                ]
                .contains(&token.to_ascii_lowercase().as_str());
                let length = token.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                    && ["px", "rem", "em", "%"].iter().any(|u| token.ends_with(u));
                assert!(
                    keyword || length,
                    "`{sel} {{ {name}: {value} }}`: `{token}` is not a palette colour"
                );
            }
        }
        match (fg, bg) {
            (Some(fg), Some(bg)) => {
                if SURFACES.contains(&bg.as_str()) {
                    // A text colour set with a surface (`body`) is inherited by the other
                    // surfaces inside it (cards, warnings): check it on every surface.
                    found.texts.push((fg.clone(), sel.clone()));
                } else {
                    found.boundaries.push((bg.clone(), sel.clone()));
                }
                found.pairs.push((fg, bg, sel.clone()));
            }
            (Some(fg), None) => found.texts.push((fg, sel.clone())),
            (None, Some(bg)) => assert!(
                SURFACES.contains(&bg.as_str()),
                "`{sel}` paints {bg} without a text colour: make it a surface or set `color`"
            ),
            (None, None) => {}
        }
    }
    found
}

/// Every failing pair in one scheme, as sentences.
fn contrast_failures(scheme: &str, palette: &BTreeMap<String, String>, uses: &Uses) -> Vec<String> {
    let colour = |var: &str| {
        palette
            .get(var)
            .unwrap_or_else(|| panic!("{var} is not set in the {scheme} scheme"))
            .as_str()
    };
    let mut failures = Vec::new();
    let mut check = |what: String, a: &str, b: &str, min: f64| {
        let ratio = contrast(colour(a), colour(b));
        if ratio < min {
            failures.push(format!(
                "{scheme}: {what}: {a} on {b} is {ratio:.2}:1, needs {min}:1"
            ));
        }
    };
    for surface in SURFACES {
        for (text, sel) in &uses.texts {
            check(format!("text of `{sel}`"), text, surface, TEXT_MIN);
        }
        for (line, sel) in &uses.boundaries {
            check(format!("boundary of `{sel}`"), line, surface, BOUNDARY_MIN);
        }
    }
    for (text, fill, sel) in &uses.pairs {
        check(format!("text of `{sel}`"), text, fill, TEXT_MIN);
    }
    failures
}

#[test]
fn every_colour_pair_meets_wcag_aa_in_light_and_dark() {
    let (top, dark_rules) = parse_stylesheet(STYLESHEET);
    let light = palette(&top);
    let dark = palette(&dark_rules);
    assert!(light.len() >= 10, "{light:?}");
    assert_eq!(
        light.keys().collect::<Vec<_>>(),
        dark.keys().collect::<Vec<_>>(),
        "each custom property is set for both schemes"
    );
    assert!(
        dark_rules.iter().all(|r| r.selector == ":root"),
        "the dark scheme only changes the palette"
    );
    let used = uses(&top);
    // The roles the pages rely on are all there (a rule that moved is still checked).
    let texts: Vec<&str> = used.texts.iter().map(|(t, _)| t.as_str()).collect();
    for text in ["--text", "--muted", "--accent", "--danger", "--ok"] {
        assert!(texts.contains(&text), "{text} used as text: {texts:?}");
    }
    let lines: Vec<&str> = used.boundaries.iter().map(|(l, _)| l.as_str()).collect();
    for line in ["--control-line", "--focus", "--accent", "--danger"] {
        assert!(lines.contains(&line), "{line} as a boundary: {lines:?}");
    }
    assert!(used
        .pairs
        .iter()
        .any(|(t, f, _)| t == "--danger-text" && f == "--danger"));
    let mut failures = contrast_failures("light", &light, &used);
    failures.extend(contrast_failures("dark", &dark, &used));
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_contrast_check_catches_the_colours_issue_13_reported() {
    // The same computation on known values: it agrees with the issue's measurements.
    assert!((contrast("#ffffff", "#ff8a80") - 2.28).abs() < 0.01);
    assert!((contrast("#dde1e8", "#ffffff") - 1.31).abs() < 0.01);
    assert!((contrast("#ffbf47", "#ffffff") - 1.64).abs() < 0.01);
    assert!((contrast("#000000", "#ffffff") - 21.0).abs() < 1e-9);
    // And the rule scan refuses a literal colour or a decorative line on a control.
    let literal = std::panic::catch_unwind(|| {
        uses(&parse_stylesheet("button.danger { background: var(--danger); color: #fff; }").0)
    });
    assert!(literal.is_err());
    let faint = std::panic::catch_unwind(|| {
        uses(&parse_stylesheet("input[type=text] { border: 1px solid var(--line); }").0)
    });
    assert!(faint.is_err());
    let low = parse_stylesheet(
        ":root { --bg: #fff; --card: #fff; --warn-bg: #fff; --focus: #ffbf47; }
         :focus-visible { outline: 3px solid var(--focus); }",
    )
    .0;
    let failures = contrast_failures("light", &palette(&low), &uses(&low));
    assert_eq!(failures.len(), 3, "{failures:?}");
}

#[test]
fn the_served_stylesheet_is_the_checked_one() {
    let app = TestApp::spawn();
    let css = app.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.body, STYLESHEET);
}

// ---------------------------------------------------------------------------------------
// Item 8: branding, help text, lock-out pages without a loop.

const HELP: &str = "Locked out? Ask Ms. Rivera in room 12 <b>today</b>";
const HELP_ESCAPED: &str = "Locked out? Ask Ms. Rivera in room 12 &lt;b&gt;today&lt;/b&gt;";

fn branded() -> TestApp {
    TestApp::spawn_with(|c| {
        c.site_name = "Lincoln High & Co".into();
        c.help_text = Some(HELP.into());
        c.sign_in_failures_per_address = 2;
        c.code_failures_per_account = 1;
    })
}

/// The text of the page's `<title>`.
fn title(html: &str) -> &str {
    let start = html.find("<title>").expect("a title") + "<title>".len();
    let end = html[start..].find("</title>").expect("title closed");
    &html[start..start + end]
}

#[test]
fn the_site_name_is_in_every_header_and_title() {
    let app = branded();
    app.add_user("alice");
    let browser = Browser::new(&app);
    let sign_in = browser.get("/oauth/device");
    assert_eq!(title(&sign_in.body), "Sign in · Lincoln High &amp; Co");
    assert!(sign_in
        .body
        .contains("<header class=\"brand\">Lincoln High &amp; Co</header>"));
    assert!(!sign_in.body.contains("devicegate"), "{}", sign_in.body);
    let browser = Browser::signed_in(&app, "alice");
    for path in ["/oauth/device", "/account", "/auth/v1/account"] {
        let page = browser.get(path);
        assert_eq!(page.status, 200, "{path}");
        assert!(
            title(&page.body).ends_with(" · Lincoln High &amp; Co"),
            "{path}"
        );
        assert!(
            page.body.contains(">Lincoln High &amp; Co</header>"),
            "{path}"
        );
    }
    let unknown = browser.enter_code("BCDF-GHJK");
    assert_eq!(
        title(&unknown.body),
        "Connect a device · Lincoln High &amp; Co"
    );
    // The default stays devicegate.
    let plain = TestApp::spawn();
    assert_eq!(
        title(&plain.get("/oauth/device").body),
        "Sign in · devicegate"
    );
}

#[test]
fn the_help_text_is_shown_escaped_under_sign_in() {
    let app = branded();
    let page = Browser::new(&app).get("/oauth/device");
    assert_eq!(page.status, 200);
    let form_end = page.body.find("</form>").unwrap();
    let help = page
        .body
        .find(HELP_ESCAPED)
        .expect("help text shown, escaped");
    assert!(help > form_end, "under the form");
    assert!(!page.body.contains("<b>today"));
    // Without it, nothing is shown.
    let plain = TestApp::spawn();
    assert!(!plain.get("/oauth/device").body.contains("class=\"help\""));
}

#[test]
fn a_sign_in_lock_out_page_gives_help_and_no_way_back_into_the_wall() {
    let app = branded();
    app.add_user("alice");
    let browser = Browser::new(&app);
    for _ in 0..2 {
        assert_eq!(browser.sign_in("alice", "wrong-guess").status, 401);
    }
    let locked = browser.sign_in("alice", "password123");
    assert_eq!(locked.status, 429);
    assert_eq!(locked.header("retry-after"), Some("600"));
    assert_eq!(title(&locked.body), "Please wait · Lincoln High &amp; Co");
    assert_shows(&locked.body, "try again in 10 minutes");
    assert_shows(&locked.body, HELP_ESCAPED);
    // Before: "Enter a code" → /oauth/device, the sign-in form, locked again.
    assert!(
        !locked.body.contains("href=\"/oauth/device"),
        "{}",
        locked.body
    );
    assert!(!locked.body.contains("<form"), "{}", locked.body);
    // Without help text configured, it still says who can help, and still no loop.
    let plain = TestApp::spawn_with(|c| c.sign_in_failures_per_address = 1);
    let browser = Browser::new(&plain);
    assert_eq!(browser.sign_in("x", "wrong-guess").status, 401);
    let locked = browser.sign_in("x", "wrong-guess");
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("ask the person who runs this service"));
    assert!(!locked.body.contains("href=\"/oauth/device"));
}

#[test]
fn a_code_entry_lock_out_page_offers_the_account_page_not_the_code_form() {
    let app = branded();
    app.add_user("alice");
    let browser = Browser::signed_in(&app, "alice");
    assert_eq!(browser.enter_code("BCDF-GHJK").status, 404);
    let codes = app.device_authorize("guest");
    let locked = browser.enter_code(&codes.user_code);
    assert_eq!(locked.status, 429);
    assert_eq!(locked.header("retry-after"), Some("600"));
    assert_shows(&locked.body, HELP_ESCAPED);
    assert!(
        !locked.body.contains("href=\"/oauth/device"),
        "{}",
        locked.body
    );
    assert_shows(&locked.body, "href=\"/account\"");
    // The account page it offers works while code entry is locked.
    let account = browser.get("/account");
    assert_eq!(account.status, 200);
    assert!(account.body.contains("Your devices"));
}

#[test]
fn site_name_and_help_text_come_from_the_environment_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::new_database(dir.path());
    let listen = format!("127.0.0.1:{}", crate::support::free_port());
    let mut server = crate::support::devicegate()
        .args(["--db", db.to_str().unwrap(), "serve", "--listen", &listen])
        .env("DEVICEGATE_SITE_NAME", "Room 12 sign-in")
        .env("DEVICEGATE_HELP_TEXT", "Ask Ms. Rivera")
        .env("DEVICEGATE_LOG_LEVEL", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_until_healthy(&format!("http://{listen}"));
    let page = ureq::get(&format!("http://{listen}/oauth/device"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(title(&page), "Sign in · Room 12 sign-in");
    assert!(page.contains("Ask Ms. Rivera"));
    // Too long, or not one line: refused at start, naming the flag.
    let long = "x".repeat(501);
    let (code, _, err) = crate::cli::run(
        &db,
        &["check", "--help-text", &long, "--site-name", "two\nlines"],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--help-text: plain text on one line, at most 500 characters"));
    assert!(err.contains("--site-name: plain text on one line, at most 60 characters"));
    // Invisible characters that reorder or hide text are refused like line breaks.
    for sneaky in [
        "Room\u{202e}21",
        "Room\u{e0041}12",
        "Room\u{2066}12",
        "\u{115f}Room",
    ] {
        let (code, _, err) = crate::cli::run(&db, &["check", "--site-name", sneaky], None);
        assert_eq!(code, 2, "{sneaky:?}: {err}");
        assert!(err.contains("--site-name: plain text on one line"), "{err}");
    }
    // An empty variable (what `Environment=DEVICEGATE_SITE_NAME=` gives) means the default.
    let out = crate::support::devicegate()
        .args(["--db", db.to_str().unwrap(), "check", "--json"])
        .env("DEVICEGATE_SITE_NAME", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Item 10: the account page.

const FIREFOX_ANDROID: &str =
    "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0";

/// A device asks for a code with its own `User-Agent` (sent as raw bytes: ureq refuses
/// non-ASCII header values, devices do not): (device_code, user_code).
fn authorize_as(app: &TestApp, agent: &str) -> (String, String) {
    let body = "client_id=guest";
    let answer = crate::support::raw_http(
        app.base.trim_start_matches("http://"),
        format!(
            "POST /oauth/device_authorize HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             User-Agent: {agent}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body: serde_json::Value = serde_json::from_str(crate::support::raw_body(&answer)).unwrap();
    (
        body["device_code"].as_str().unwrap().to_string(),
        body["user_code"].as_str().unwrap().to_string(),
    )
}

/// The values of every hidden input named `name`, in page order.
fn hidden_values(html: &str, name: &str) -> Vec<String> {
    let marker = format!("name=\"{name}\" value=\"");
    html.match_indices(&marker)
        .map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_string())
        .collect()
}

fn user_id(app: &TestApp, name: &str) -> devicegate::store::UserId {
    app.store().find_user_by_name(name).unwrap().unwrap().id
}

fn introspect(app: &TestApp, token: &str) -> serde_json::Value {
    let resp = app.post_form(
        "/oauth/introspect",
        &[
            ("client_id", "rs"),
            ("client_secret", "rs-secret"),
            ("token", token),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

#[test]
fn an_approved_code_waits_on_the_account_page_and_cancelling_it_refuses_the_device() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice");
    let (device_code, user_code) = authorize_as(&app, FIREFOX_ANDROID);
    crate::support::assert_oauth_error(
        &app.poll("guest", &device_code),
        400,
        "authorization_pending",
    );
    app.approve(&user_code, alice);
    app.advance(125.0);
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.get("/account");
    assert_eq!(page.status, 200);
    assert_shows(&page.body, "Waiting to finish signing in");
    assert_shows(&page.body, "<dd>Firefox on Android</dd>");
    assert_shows(&page.body, "<dd>127.0.0.1</dd>");
    // Relative times, the exact UTC time in the element and on hover.
    assert_shows(
        &page.body,
        "<time datetime=\"2027-01-15T08:00:00Z\" title=\"2027-01-15 08:00:00 UTC\">\
             2 minutes ago</time>",
    );
    assert_shows(&page.body, ">in 7 minutes</time>");
    // The consent page's words for the scopes.
    assert_shows(&page.body, "<li>Read your data</li>");
    assert_shows(&page.body, "<li>Change your data</li>");
    let ids = hidden_values(&page.body, "code_id");
    assert_eq!(ids.len(), 1);
    let csrf = crate::support::csrf_token(&page.body);
    // Without the CSRF token: 403, and the device still gets its tokens later.
    let forged = browser.post("/account/cancel", &[("code_id", &ids[0])]);
    assert_eq!(forged.status, 403);
    assert!(browser.get("/account").body.contains("Waiting to finish"));
    let cancelled = browser.post(
        "/account/cancel",
        &[("csrf_token", &csrf), ("code_id", &ids[0])],
    );
    assert_eq!(cancelled.status, 303);
    assert_eq!(cancelled.header("location"), Some("/account"));
    // The device's next poll is refused.
    crate::support::assert_oauth_error(&app.poll("guest", &device_code), 400, "access_denied");
    let after = browser.get("/account");
    assert!(!after.body.contains("Waiting to finish"), "{}", after.body);
    assert!(hidden_values(&after.body, "code_id").is_empty());
    // Twice, or not a number: nothing to cancel.
    let again = browser.post(
        "/account/cancel",
        &[("csrf_token", &csrf), ("code_id", &ids[0])],
    );
    assert_eq!(again.status, 404);
    assert!(again.body.contains("Nothing to cancel"));
    let junk = browser.post(
        "/account/cancel",
        &[("csrf_token", &csrf), ("code_id", "x")],
    );
    assert_eq!(junk.status, 404);
    // Only POST.
    let get = app.get("/account/cancel");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
}

#[test]
fn another_persons_approval_cannot_be_cancelled() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let bob = app.add_user("bob");
    let (device_code, user_code) = authorize_as(&app, "curl/8.5.0");
    app.approve(&user_code, bob);
    let bobs_id = hidden_values(
        &Browser::signed_in(&app, "bob").get("/account").body,
        "code_id",
    );
    assert_eq!(bobs_id.len(), 1);
    let alice = Browser::signed_in(&app, "alice");
    let page = alice.get("/account");
    assert!(
        !page.body.contains("Waiting to finish"),
        "not alice's to see"
    );
    let csrf = crate::support::csrf_token(&page.body);
    let refused = alice.post(
        "/account/cancel",
        &[("csrf_token", &csrf), ("code_id", &bobs_id[0])],
    );
    assert_eq!(refused.status, 404);
    assert_eq!(
        refused.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    assert!(refused.body.contains("Nothing to cancel"));
    // Bob's device signs in as if nothing happened.
    let tokens = app.poll("guest", &device_code);
    assert_eq!(tokens.status, 200, "{}", tokens.body);
}

#[test]
fn each_device_says_what_it_is_where_it_asked_from_and_when_it_was_last_used() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice");
    let hostile = format!("Thing\u{202e}gnp.exe {}", "x".repeat(200));
    for agent in ["devicegate-login/0.1.0", FIREFOX_ANDROID, hostile.as_str()] {
        let (device_code, user_code) = authorize_as(&app, agent);
        app.approve(&user_code, alice);
        assert_eq!(app.poll("guest", &device_code).status, 200);
        app.advance(3600.0);
    }
    let page = Browser::signed_in(&app, "alice").get("/account");
    assert_eq!(page.status, 200);
    assert_shows(&page.body, "<dd>devicegate login</dd>");
    assert_shows(&page.body, "<dd>Firefox on Android</dd>");
    let shown = format!("<dd>Thinggnp.exe {}…</dd>", "x".repeat(46));
    assert_shows(&page.body, &shown);
    assert!(!page.body.contains('\u{202e}'));
    assert_eq!(
        page.body
            .matches("<dt>Address</dt><dd>127.0.0.1</dd>")
            .count(),
        3
    );
    // Last used, relative: the newest an hour ago, the oldest three.
    assert_shows(&page.body, ">1 hour ago</time>");
    assert_shows(&page.body, ">3 hours ago</time>");
    assert!(!page.body.contains("Unknown device"));
}

#[test]
fn sign_out_everywhere_ends_every_session_grant_and_waiting_approval() {
    let app = TestApp::spawn();
    app.add_client("rs", Some("rs-secret"), &[]);
    let laptop = app.login("alice");
    let phone = app.login("alice");
    let bobs = app.login("bob");
    let (waiting, user_code) = authorize_as(&app, FIREFOX_ANDROID);
    app.approve(&user_code, user_id(&app, "alice"));
    let here = Browser::signed_in(&app, "alice");
    let elsewhere = Browser::signed_in(&app, "alice");
    let bob = Browser::signed_in(&app, "bob");
    let here_cookie = here.cookie().unwrap();
    let page = here.get("/account");
    assert!(
        page.body
            .contains(">Sign out everywhere, devices too</button>"),
        "labelled so devices are known to go too: {}",
        page.body
    );
    let csrf = crate::support::csrf_token(&page.body);
    // Without the CSRF token: 403, nothing ended.
    let forged = here.post("/account/sign-out-everywhere", &[]);
    assert_eq!(forged.status, 403);
    assert_eq!(
        app.userinfo(laptop["access_token"].as_str().unwrap())
            .status,
        200
    );

    let done = here.post("/account/sign-out-everywhere", &[("csrf_token", &csrf)]);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.header("cache-control"), Some("no-store"));
    assert!(done.body.contains("Signed out everywhere"));
    let cleared = done.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("dg_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // This session and the other browser's: no longer signed in.
    let replayed = Browser::new(&app);
    replayed.set_cookie(Some(here_cookie));
    for browser in [&replayed, &elsewhere] {
        let account = browser.get("/account");
        assert_eq!(account.status, 200);
        assert!(
            account.body.contains("name=\"next\" value=\"/account\""),
            "sign-in form"
        );
        assert!(!account.body.contains("Signed in as"));
    }
    assert_eq!(app.count_rows("sessions"), 1, "only bob's");
    // Every grant: tokens inactive at introspection, refused at userinfo and refresh.
    for tokens in [&laptop, &phone] {
        for kind in ["access_token", "refresh_token"] {
            assert_eq!(
                introspect(&app, tokens[kind].as_str().unwrap())["active"],
                false
            );
        }
        assert_eq!(
            app.userinfo(tokens["access_token"].as_str().unwrap())
                .status,
            401
        );
        crate::support::assert_oauth_error(
            &app.refresh("guest", tokens["refresh_token"].as_str().unwrap(), None),
            400,
            "invalid_grant",
        );
    }
    // The approval no device had collected: refused.
    crate::support::assert_oauth_error(&app.poll("guest", &waiting), 400, "access_denied");
    // Bob is untouched.
    assert_eq!(
        introspect(&app, bobs["access_token"].as_str().unwrap())["active"],
        true
    );
    assert!(bob.get("/account").body.contains("Signed in as"));
    // Only POST.
    let get = app.get("/account/sign-out-everywhere");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
}

/// Waits until the browser's page shows `present` and not `absent` (a click's navigation
/// may still be under way when the click returns, and a page mid-load shows neither);
/// fails after 15 s.
fn wait_for_page(driver: &crate::browser::Driver, present: &str, absent: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let source = driver.source();
        if source.contains(present) && !source.contains(absent) {
            return source;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "page never showed {present:?} without {absent:?}: {source}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_person_cancels_an_approval_then_signs_out_everywhere_in_chromium() {
    let Some(driver) = crate::browser::Driver::start() else {
        return;
    };
    let app = TestApp::spawn();
    let alice = app.add_user("alice");
    let connected = app.login("alice");
    let (waiting, user_code) = authorize_as(&app, FIREFOX_ANDROID);
    app.approve(&user_code, alice);
    driver.goto(&app.url("/account"));
    // Opening the account page signed out asks to sign in for the account, not for a
    // device that is not waiting.
    let page = driver.wait_for("Sign in to see your devices");
    assert!(!page.contains("is waiting for you"), "{page}");
    crate::browser::sign_in(&driver);
    let page = driver.wait_for("Waiting to finish signing in");
    assert!(page.contains("Firefox on Android"), "{page}");
    driver.screenshot("10-account-waiting-approval");
    driver.click(r#"form[action$="/account/cancel"] button"#);
    wait_for_page(
        &driver,
        "Sign out everywhere",
        "Waiting to finish signing in",
    );
    crate::support::assert_oauth_error(&app.poll("guest", &waiting), 400, "access_denied");
    driver.screenshot("11-account-after-cancel");
    driver.click(r#"form[action$="/account/sign-out-everywhere"] button"#);
    driver.wait_for("You are signed out in every browser");
    driver.screenshot("12-signed-out-everywhere");
    let access = connected["access_token"].as_str().unwrap();
    assert_eq!(app.userinfo(access).status, 401);
    // The browser's session is gone too: the account page asks to sign in again.
    driver.goto(&app.url("/account"));
    // Opening the account page signed out asks to sign in for the account, not for a
    // device that is not waiting.
    let page = driver.wait_for("Sign in to see your devices");
    assert!(!page.contains("is waiting for you"), "{page}");
}

// ---------------------------------------------------------------------------------------
// Review fixes.

/// The device writes its own User-Agent: the consent page presents it as a claim, and
/// strips every invisible character from it.
#[test]
fn the_consent_page_presents_the_user_agent_as_the_devices_claim() {
    let app = TestApp::spawn();
    app.add_user("alice");
    let (_, user_code) = authorize_as(
        &app,
        "Your work laptop (verified by IT)\u{061c}\u{e0041}\u{fff9}",
    );
    let browser = Browser::signed_in(&app, "alice");
    let page = browser.enter_code(&user_code);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains("<dt>Says it is</dt><dd>Your work laptop (verified by IT)</dd>"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<dt>Device</dt>"));
}

#[test]
fn user_names_with_invisible_characters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::support::new_database(dir.path());
    for sneaky in ["eve\u{202e}", "e\u{200b}ve", "eve\u{e0041}", "\u{115f}eve"] {
        let (code, _, err) = crate::cli::run(&db, &["user", "add", sneaky], None);
        assert_eq!(code, 2, "{sneaky:?}: {err}");
        assert!(
            err.contains("without spaces or invisible characters"),
            "{err}"
        );
    }
}

/// When the code changes between the poll's read and its claim (the person cancels the
/// approval, or their account is disabled), the device hears what happened, not
/// "already used". The disabled approver is the case a test can make happen every time;
/// the cancel race takes the same path.
#[test]
fn an_approval_that_can_no_longer_be_claimed_is_a_denial_not_a_used_code() {
    let app = TestApp::spawn();
    let alice = app.add_user("alice");
    let codes = app.device_authorize("guest");
    app.approve(&codes.user_code, alice);
    assert!(app.store().set_user_disabled("alice", true).unwrap());
    let resp = app.poll("guest", &codes.device_code);
    crate::support::assert_oauth_error(&resp, 400, "access_denied");
}

/// The page shows `needle`; the whole page otherwise.
#[track_caller]
fn assert_shows(body: &str, needle: &str) {
    assert!(body.contains(needle), "{body}");
}
