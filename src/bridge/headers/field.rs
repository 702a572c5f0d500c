//! An HTTP/3 field as ptproxy sends it: quiche takes any `NameValue` slice, so the names and
//! values ptproxy knows in advance (pseudo-header names, `:scheme http`, common methods, status
//! codes, the fields it adds) are borrowed statics, and only what came from the other side is
//! copied (quiche's own `Header` copies both name and value, two allocations per field).

use std::borrow::Cow;

use quiche::h3::NameValue;

/// One field of a section to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Field {
    name: Cow<'static, [u8]>,
    value: Cow<'static, [u8]>,
}

impl Field {
    /// A field whose name and value are both copied.
    pub fn new(name: &[u8], value: &[u8]) -> Self {
        Field {
            name: Cow::Owned(name.to_vec()),
            value: Cow::Owned(value.to_vec()),
        }
    }

    /// A field known in advance: nothing copied.
    pub const fn fixed(name: &'static [u8], value: &'static [u8]) -> Self {
        Field {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
        }
    }

    /// A field with a name known in advance and a value of its own.
    pub fn named(name: &'static [u8], value: Vec<u8>) -> Self {
        Field {
            name: Cow::Borrowed(name),
            value: Cow::Owned(value),
        }
    }

    /// A field with a name known in advance and a copied value.
    pub fn named_copy(name: &'static [u8], value: &[u8]) -> Self {
        Self::named(name, value.to_vec())
    }

    /// The value to change in place (copied first if it was borrowed).
    pub fn value_mut(&mut self) -> &mut Vec<u8> {
        self.value.to_mut()
    }

    /// `:method`, borrowed for the methods of RFC 9110 §9.
    pub fn method(method: &str) -> Self {
        const KNOWN: &[&str] = &[
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        match KNOWN.iter().find(|m| **m == method) {
            Some(m) => Self::fixed(b":method", m.as_bytes()),
            None => Self::named_copy(b":method", method.as_bytes()),
        }
    }

    /// `:status` with its three digits, borrowed from a table (callers pass 100..=999).
    pub fn status(code: u16) -> Self {
        match STATUS_DIGITS.get(usize::from(code).wrapping_sub(100)) {
            Some(digits) => Self::fixed(b":status", digits),
            None => Self::named(b":status", code.to_string().into_bytes()),
        }
    }
}

/// The digits of 100..=999, for `:status`.
static STATUS_DIGITS: [[u8; 3]; 900] = {
    let mut table = [[0u8; 3]; 900];
    let mut i = 0;
    while i < 900 {
        let n = i + 100;
        table[i] = [
            b'0' + (n / 100) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ];
        i += 1;
    }
    table
};

impl NameValue for Field {
    fn name(&self) -> &[u8] {
        &self.name
    }

    fn value(&self) -> &[u8] {
        &self.value
    }
}

impl std::fmt::Debug for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: {:?}",
            String::from_utf8_lossy(&self.name),
            String::from_utf8_lossy(&self.value)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_methods_are_their_bytes() {
        for code in [100u16, 101, 200, 204, 404, 599, 999, 0, 99, 1000, u16::MAX] {
            let f = Field::status(code);
            assert_eq!(f.name(), b":status");
            assert_eq!(f.value(), code.to_string().as_bytes());
        }
        for method in ["GET", "PATCH", "PROPFIND", "get"] {
            let f = Field::method(method);
            assert_eq!((f.name(), f.value()), (&b":method"[..], method.as_bytes()));
        }
        assert_eq!(Field::fixed(b"a", b"b"), Field::new(b"a", b"b"));
    }
}
