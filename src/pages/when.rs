//! Times as people say them ("5 minutes ago", "in 3 minutes"), with the exact UTC time in a
//! `<time datetime>` and its `title` (shown on hover).

use maud::{html, Markup};

use crate::clock::Timestamp;

/// `then` relative to `now`, in whole minutes, hours, days, months (30 days, from 60 days
/// on) or years (365 days), rounded down.
pub fn relative(now: Timestamp, then: Timestamp) -> String {
    let diff = then.secs() - now.secs();
    let (amount, unit) = match diff.unsigned_abs() {
        0..=59 => {
            return if diff <= 0 {
                "just now".into()
            } else {
                "in less than a minute".into()
            }
        }
        secs @ 60..=3599 => (secs / 60, "minute"),
        secs @ 3600..=86_399 => (secs / 3600, "hour"),
        secs @ 86_400..=5_183_999 => (secs / 86_400, "day"),
        secs @ 5_184_000..=31_535_999 => (secs / 2_592_000, "month"),
        secs => (secs / 31_536_000, "year"),
    };
    let plural = if amount == 1 { "" } else { "s" };
    if diff < 0 {
        format!("{amount} {unit}{plural} ago")
    } else {
        format!("in {amount} {unit}{plural}")
    }
}

/// `<time datetime="2027-01-15T08:00:00Z" title="2027-01-15 08:00:00 UTC">5 minutes ago</time>`.
pub fn time(now: Timestamp, then: Timestamp) -> Markup {
    let exact = then.utc_string();
    let title = format!("{} UTC", exact.trim_end_matches('Z').replace('T', " "));
    html! { time datetime=(exact) title=(title) { (relative(now, then)) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_and_future_in_words() {
        let now = Timestamp::from_secs(1_800_000_000);
        let at = |delta: i64| relative(now, Timestamp::from_secs(1_800_000_000 + delta));
        assert_eq!(at(0), "just now");
        assert_eq!(at(-59), "just now");
        assert_eq!(at(-60), "1 minute ago");
        assert_eq!(at(-5 * 60 - 30), "5 minutes ago");
        assert_eq!(at(-3600), "1 hour ago");
        assert_eq!(at(-3 * 86_400), "3 days ago");
        assert_eq!(at(30), "in less than a minute");
        assert_eq!(at(3 * 60), "in 3 minutes");
        assert_eq!(at(2 * 3600 + 5), "in 2 hours");
        assert_eq!(at(86_400), "in 1 day");
        assert_eq!(at(-59 * 86_400), "59 days ago");
        assert_eq!(at(-60 * 86_400), "2 months ago");
        assert_eq!(at(-364 * 86_400), "12 months ago");
        assert_eq!(at(-365 * 86_400), "1 year ago");
        assert_eq!(at(-1_800_000_000), "57 years ago");
    }

    #[test]
    fn the_exact_time_is_machine_readable_and_on_hover() {
        let now = Timestamp::from_secs(1_800_000_300);
        let markup = time(now, Timestamp::from_secs(1_800_000_000)).into_string();
        assert_eq!(
            markup,
            "<time datetime=\"2027-01-15T08:00:00Z\" title=\"2027-01-15 08:00:00 UTC\">\
             5 minutes ago</time>"
        );
    }
}
