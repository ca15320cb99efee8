//! What a device is, in a few words, from the `User-Agent` it sent when it asked for a code
//! (RFC 9110 §10.1.5): "Firefox on Android", "devicegate login", "curl". Shown on the
//! account page so a person can tell their devices apart.
//!
//! A small, bounded decision on purpose: a dozen substring rules over at most
//! `MAX_SCANNED_BYTES`, no regular expressions. A full user-agent database (woothee,
//! uap-core) knows thousands of crawlers and TVs, and would pull a regex engine into the
//! server for a label. Anything not recognised is shown as sent, without control or
//! bidirectional-formatting characters and cut to `MAX_RAW_CHARS`.

/// Characters of an unrecognised `User-Agent` shown before it is cut with "…".
pub const MAX_RAW_CHARS: usize = 60;
/// Bytes of a `User-Agent` looked at; the rest is ignored.
pub const MAX_SCANNED_BYTES: usize = 512;

/// A short description of the device behind `user_agent`; `None` or blank: "Unknown device".
pub fn describe_device(user_agent: Option<&str>) -> String {
    let agent = user_agent.map(str::trim).unwrap_or_default();
    let agent = truncate_bytes(agent, MAX_SCANNED_BYTES);
    if agent.is_empty() {
        return "Unknown device".into();
    }
    if let Some(program) = program(agent) {
        return program.into();
    }
    match (browser(agent), system(agent)) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.into(),
        (None, Some(system)) => format!("{system} device"),
        (None, None) => printable_truncated(agent, MAX_RAW_CHARS),
    }
}

/// Command-line programs and HTTP libraries, named by their product token (RFC 9110
/// §10.1.5: the first `product/version`).
fn program(agent: &str) -> Option<&'static str> {
    let product = agent
        .split(['/', ' '])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Some(match product.as_str() {
        "devicegate-login" => "devicegate login",
        "curl" => "curl",
        "wget" => "Wget",
        "python-requests" | "python-urllib" | "python-httpx" => "a Python program",
        "go-http-client" => "a Go program",
        "ureq" | "reqwest" => "a Rust program",
        "okhttp" => "an Android app",
        "node-fetch" | "undici" | "axios" => "a Node.js program",
        "git" => "git",
        _ => return None,
    })
}

/// Browsers, most specific first: Edge, Opera and Samsung Internet also say "Chrome", and
/// Chrome also says "Safari".
fn browser(agent: &str) -> Option<&'static str> {
    const RULES: [(&[&str], &str); 6] = [
        (&["Edg/", "EdgA/", "EdgiOS/"], "Edge"),
        (&["OPR/", "Opera/"], "Opera"),
        (&["SamsungBrowser/"], "Samsung Internet"),
        (&["Firefox/", "FxiOS/"], "Firefox"),
        (&["Chrome/", "CriOS/", "Chromium/"], "Chrome"),
        (&["Safari/"], "Safari"),
    ];
    RULES
        .iter()
        .find(|(tokens, _)| tokens.iter().any(|t| agent.contains(t)))
        .map(|(_, name)| *name)
}

/// Operating systems, most specific first: Android and ChromeOS also say "Linux", and
/// iPhones say "like Mac OS X".
fn system(agent: &str) -> Option<&'static str> {
    const RULES: [(&str, &str); 7] = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ];
    RULES
        .iter()
        .find(|(token, _)| agent.contains(token))
        .map(|(_, name)| *name)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` without control or bidirectional-formatting characters, runs of spaces as one,
/// at most `max` characters (then "…").
fn printable_truncated(text: &str, max: usize) -> String {
    let cleaned: Vec<char> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !crate::logging::needs_escape(*c))
        .collect();
    if cleaned.len() <= max {
        cleaned.into_iter().collect()
    } else {
        let mut cut: String = cleaned[..max - 1].iter().collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_on_systems() {
        let cases = [
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
                "Firefox on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like \
                 Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, \
                 like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            (
                "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A)",
                "Android device",
            ),
        ];
        for (agent, expected) in cases {
            assert_eq!(describe_device(Some(agent)), expected, "{agent}");
        }
    }

    #[test]
    fn programs_by_their_product_token() {
        assert_eq!(
            describe_device(Some("devicegate-login/0.1.0")),
            "devicegate login"
        );
        assert_eq!(describe_device(Some("curl/8.5.0")), "curl");
        assert_eq!(describe_device(Some("ureq/2.12.1")), "a Rust program");
        assert_eq!(describe_device(Some("Go-http-client/2.0")), "a Go program");
        assert_eq!(
            describe_device(Some("python-requests/2.32.3")),
            "a Python program"
        );
    }

    #[test]
    fn unknown_agents_are_shown_cleaned_and_cut() {
        assert_eq!(describe_device(None), "Unknown device");
        assert_eq!(describe_device(Some("   ")), "Unknown device");
        assert_eq!(describe_device(Some("ThermostatOS/3")), "ThermostatOS/3");
        assert_eq!(
            describe_device(Some("evil\u{1b}[31m \u{202e}gnp.exe\u{7}  x")),
            "evil[31m gnp.exe x"
        );
        // Every kind of invisible character: Arabic letter mark, tag characters, the
        // interlinear annotation controls, a Hangul filler.
        assert_eq!(
            describe_device(Some(
                "a\u{061c}b\u{e0041}\u{e007f}c\u{fff9}d\u{fffb}e\u{115f}f\u{2067}g"
            )),
            "abcdefg"
        );
        let long = "A".repeat(5000);
        let shown = describe_device(Some(&long));
        assert_eq!(shown.chars().count(), MAX_RAW_CHARS);
        assert!(shown.ends_with('…'));
        // Cutting never splits a character.
        let wide = "é".repeat(400);
        assert_eq!(describe_device(Some(&wide)).chars().count(), MAX_RAW_CHARS);
    }
}
