//! devicegate patch (CVE-2026-66753): which bytes may go on the wire as a header field.
//!
//! Upstream wrote `name: value\r\n` with whatever bytes a `Header` held, so a value carrying
//! CR or LF (say a redirect target taken from a form) ended the header line early and the
//! rest became headers of its own, or a body: response splitting. These checks are what the
//! response writer refuses (see `Response::raw_print`) and what `Header::from_bytes` refuses.

/// RFC 9110 §5.1: a field name is a token, one or more `tchar`.
pub fn is_field_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| is_tchar(b))
}

/// RFC 9110 §5.5: a field value is visible characters, SP, HTAB and obs-text (0x80–0xFF);
/// never CR, LF, NUL or any other control byte (0x00–0x1F except HTAB, and DEL).
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// RFC 9110 §5.6.2: `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::{is_field_name, is_field_value};

    #[test]
    fn names_are_tokens() {
        assert!(is_field_name(b"Set-Cookie"));
        assert!(is_field_name(b"X-Weird_but.ok~"));
        assert!(!is_field_name(b""));
        assert!(!is_field_name(b"Set-Cookie "));
        assert!(!is_field_name(b"Bad:Name"));
        assert!(!is_field_name(b"X\r\nInjected"));
        assert!(!is_field_name(b"X\nInjected"));
    }

    #[test]
    fn values_carry_no_control_bytes_but_htab() {
        assert!(is_field_value(b""));
        assert!(is_field_value(b"text/html; charset=utf-8"));
        assert!(is_field_value(b"a\tb c"));
        assert!(is_field_value("São Paulo".as_bytes()));
        for bad in [
            &b"a\r\nSet-Cookie: x=1"[..],
            b"a\rb",
            b"a\nb",
            b"a\0b",
            b"a\x1bb",
            b"a\x7fb",
        ] {
            assert!(!is_field_value(bad), "{:?}", bad);
        }
    }
}
