//! Byte classes and list splitting from the HTTP grammar (RFC 9110 / 9112).
//!
//! Inputs: single bytes or byte slices taken from the wire. Outputs: plain
//! booleans or sub-slices; nothing allocates. Shared by the head parser, the
//! chunked decoder and the writers so that all of them agree on what a token
//! or a field value is.

/// `tchar` from RFC 9110 5.6.2: the characters allowed in a token.
pub(crate) fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A non-empty run of `tchar`.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Optional whitespace (`OWS`): space or horizontal tab.
pub(crate) fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// A byte allowed inside a field value, reason phrase or chunk extension:
/// HTAB, SP, VCHAR or obs-text. Rejects NUL, CR, LF, DEL and every other CTL.
pub(crate) fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || (0x21..=0x7e).contains(&byte) || byte >= 0x80
}

/// Strips leading and trailing optional whitespace.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ows(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_ows(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Splits a comma-separated field value into trimmed elements. Empty
/// elements are kept so that callers can decide whether they are an error.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Converts bytes already checked to be ASCII into a `String`.
pub(crate) fn ascii_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        for (byte, tchar, field) in [
            (b'a', true, true),
            (b'~', true, true),
            (b' ', false, true),
            (b'\t', false, true),
            (b':', false, true),
            (b'"', false, true),
            (0x80, false, true),
            (0x00, false, false),
            (b'\r', false, false),
            (b'\n', false, false),
            (0x0b, false, false),
            (0x7f, false, false),
        ] {
            assert_eq!(is_tchar(byte), tchar, "tchar {byte:#x}");
            assert_eq!(is_field_byte(byte), field, "field {byte:#x}");
        }
    }

    #[test]
    fn trimming_and_lists() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let elements: Vec<&[u8]> = list_elements(b" a ,, b\t,").collect();
        assert_eq!(elements, [&b"a"[..], b"", b"b", b""]);
        assert!(is_token(b"GET") && !is_token(b"") && !is_token(b"G T"));
    }
}
