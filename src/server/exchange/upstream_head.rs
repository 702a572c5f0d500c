//! Server role: checks of an upstream's final response head before it may cross to HTTP/3,
//! beyond what HTTP/1.1 parsing already refused.
//!
//! Transfer codings are hop-by-hop (RFC 9112 §6.1) and HTTP/3 has no `Transfer-Encoding`: the
//! server removes `chunked` and re-frames the body as DATA, but any other coding (`gzip`,
//! `deflate`, ...) would reach the caller as coded bytes with nothing saying so. Turning it into
//! a `Content-Encoding` would change the representation (validators, ranges, caches), and
//! ptproxy never offers such codings (it sends no `TE` but `trailers`), so such a response is
//! answered 502 with the coding named.

use crate::bridge::answers::{self, Answer};
use crate::h1::head::headers_named;
use crate::h1::Header;

/// A 502 when the response uses a transfer coding other than `chunked`.
pub fn check_transfer_codings(headers: &[Header]) -> Result<(), Answer> {
    let foreign: Vec<String> = headers_named(headers, "transfer-encoding")
        .flat_map(|v| v.split(|b| *b == b','))
        .map(|c| String::from_utf8_lossy(c.trim_ascii()).into_owned())
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked"))
        .collect();
    if foreign.is_empty() {
        return Ok(());
    }
    Err(answers::upstream_invalid(&format!(
        "the upstream used transfer coding {}, which cannot cross HTTP/3 (only chunked is \
         offered; transfer codings are hop-by-hop)",
        foreign.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn te(value: &str) -> Vec<Header> {
        vec![Header {
            name: "Transfer-Encoding".into(),
            value: value.as_bytes().to_vec(),
        }]
    }

    #[test]
    fn only_chunked_crosses() {
        assert!(check_transfer_codings(&te("chunked")).is_ok());
        assert!(check_transfer_codings(&[]).is_ok());
        let refused = check_transfer_codings(&te("gzip, chunked")).unwrap_err();
        assert_eq!(refused.status, 502);
        assert!(
            refused.details.contains("transfer coding gzip,"),
            "{}",
            refused.details
        );
        assert!(check_transfer_codings(&te("Deflate")).is_err());
    }
}
