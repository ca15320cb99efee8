//! How `devicegate login` shows its codes: the URL and user code above and below a QR code
//! (so they stay on an 80×24 screen after the QR pushed the top off), the code in bold,
//! and a QR code that scans on light and dark terminals. No I/O here but reading the
//! environment: functions return the text to print.

use clap::ValueEnum;

use crate::logging::printable;

/// `--qr`: how to draw the QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QrMode {
    /// From `COLORFGBG` where the terminal sets it; else dark modules on an explicit white
    /// background (ANSI colours), or, without colours, as `dark`
    Auto,
    /// For a light background: dark modules drawn in the text colour
    Light,
    /// For a dark background: light modules drawn in the text colour
    Dark,
    /// No QR code
    Off,
}

/// What `Auto` resolves to, with the colours allowed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drawing {
    Light,
    Dark,
    /// Black on white whatever the terminal's own colours.
    Painted,
}

/// Whether to use escape sequences (bold, colours) on a stream: never with `NO_COLOR` set
/// (no-color.org), always with `CLICOLOR_FORCE` set (not `0`), else only on a terminal.
pub fn styled(is_terminal: bool) -> bool {
    styled_by(is_terminal, |name| std::env::var_os(name))
}

/// `styled`, with the environment given. `TERM=dumb` (Emacs' shell, some CI logs) shows
/// escapes as garbage: no styling there unless forced.
fn styled_by(is_terminal: bool, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if set("NO_COLOR") {
        false
    } else if set("CLICOLOR_FORCE") && env("CLICOLOR_FORCE").as_deref() != Some("0".as_ref()) {
        true
    } else {
        is_terminal && env("TERM").as_deref() != Some("dumb".as_ref())
    }
}

/// The terminal's background from `COLORFGBG` (`fg;bg` or `fg;default;bg`, as rxvt, Konsole
/// and others set it): `Some(true)` when dark (ANSI 0–6 or 8).
fn background_is_dark(colorfgbg: Option<&str>) -> Option<bool> {
    let bg: u8 = colorfgbg?.rsplit(';').next()?.trim().parse().ok()?;
    Some(matches!(bg, 0..=6 | 8))
}

fn drawing(mode: QrMode, colour: bool, colorfgbg: Option<&str>) -> Option<Drawing> {
    match mode {
        QrMode::Off => None,
        QrMode::Light => Some(Drawing::Light),
        QrMode::Dark => Some(Drawing::Dark),
        QrMode::Auto => Some(match background_is_dark(colorfgbg) {
            Some(true) => Drawing::Dark,
            Some(false) => Drawing::Light,
            None if colour => Drawing::Painted,
            None => Drawing::Dark,
        }),
    }
}

/// `url` as a QR code in Unicode half blocks with its 4-module quiet zone (ISO/IEC 18004),
/// drawn for `mode`; `None` for `Off` or a URL too long for a QR code.
pub fn qr_code(url: &str, mode: QrMode, colour: bool) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let colorfgbg = std::env::var("COLORFGBG").ok();
    let drawing = drawing(mode, colour, colorfgbg.as_deref())?;
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let (dark, light) = match drawing {
        Drawing::Light | Drawing::Painted => (Dense1x2::Dark, Dense1x2::Light),
        Drawing::Dark => (Dense1x2::Light, Dense1x2::Dark),
    };
    let text = code
        .render::<Dense1x2>()
        .dark_color(dark)
        .light_color(light)
        .quiet_zone(true)
        .build();
    Some(match drawing {
        // 256-colour black (16) on white (231): fixed values, unlike themed ANSI 0 and 7.
        Drawing::Painted => text
            .lines()
            .map(|line| format!("\x1b[38;5;16;48;5;231m{line}\x1b[0m"))
            .collect::<Vec<_>>()
            .join("\n"),
        Drawing::Light | Drawing::Dark => text,
    })
}

/// The two lines naming the page and the code; both come from the server and are escaped,
/// so a hostile server cannot drive the terminal. The code is bold when `colour`.
pub fn where_to_go(lead: &str, uri: &str, user_code: &str, colour: bool) -> String {
    let code = printable(user_code);
    let code = if colour {
        format!("\x1b[1m{code}\x1b[0m")
    } else {
        code.into_owned()
    };
    format!("  {lead}  {}\n  and enter the code  {code}", printable(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dumb_terminal_gets_no_escapes_unless_forced() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert!(styled_by(true, env(&[("TERM", "xterm-256color")])));
        assert!(!styled_by(true, env(&[("TERM", "dumb")])));
        assert!(styled_by(
            true,
            env(&[("TERM", "dumb"), ("CLICOLOR_FORCE", "1")])
        ));
        assert!(!styled_by(false, env(&[("TERM", "xterm")])));
    }

    #[test]
    fn colorfgbg_names_the_background() {
        assert_eq!(background_is_dark(Some("15;0")), Some(true));
        assert_eq!(background_is_dark(Some("0;default;15")), Some(false));
        assert_eq!(background_is_dark(Some("0;7")), Some(false));
        assert_eq!(background_is_dark(Some("7;8")), Some(true));
        assert_eq!(background_is_dark(Some("garbage")), None);
        assert_eq!(background_is_dark(None), None);
    }

    #[test]
    fn auto_paints_its_own_background_only_when_it_may_use_colour() {
        assert_eq!(drawing(QrMode::Auto, true, None), Some(Drawing::Painted));
        assert_eq!(drawing(QrMode::Auto, false, None), Some(Drawing::Dark));
        assert_eq!(
            drawing(QrMode::Auto, true, Some("0;15")),
            Some(Drawing::Light)
        );
        assert_eq!(drawing(QrMode::Off, true, None), None);
    }

    #[test]
    fn light_and_dark_are_inverses_with_a_quiet_zone() {
        let light = qr_code("https://a.example/x", QrMode::Light, false).expect("a short URL fits");
        let dark = qr_code("https://a.example/x", QrMode::Dark, false).expect("a short URL fits");
        assert_ne!(light, dark);
        // A 4-module quiet zone is two rows of half blocks: blank on light, full on dark.
        let light_rows: Vec<&str> = light.lines().collect();
        let dark_rows: Vec<&str> = dark.lines().collect();
        assert!(light_rows[..2].iter().all(|l| l.chars().all(|c| c == ' ')));
        assert!(dark_rows[..2].iter().all(|l| l.chars().all(|c| c == '█')));
        assert!(light_rows[2].starts_with("    "));
    }
}
