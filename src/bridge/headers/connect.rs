//! The CONNECT forms of an HTTP/3 request, decided in one place: plain CONNECT (RFC 9114 §4.4)
//! and extended CONNECT (the `:protocol` pseudo-header, RFC 8441 §4 as RFC 9220 carries it to
//! HTTP/3), and the HTTP/1.1 upgrade request an extended CONNECT for WebSocket becomes.
//!
//! A request stream breaking these rules is malformed (the server resets it with
//! H3_MESSAGE_ERROR, nothing reaches an upstream):
//! - `:protocol` only with `:method CONNECT`, and only when this side enabled
//!   SETTINGS_ENABLE_CONNECT_PROTOCOL;
//! - an extended CONNECT carries `:scheme` (`http` or `https`), `:path` (origin-form) and
//!   `:authority`;
//! - a plain CONNECT carries `:authority` (host and port) and neither `:scheme` nor `:path`.
//!
//! A well-formed request is not necessarily one ptproxy carries: which protocols and forms it
//! serves is the caller's decision.

use quiche::h3::{Header as H3Header, NameValue};

use super::{request_from_h3, FieldError};
use crate::bridge::websocket;
use crate::h1::{head, Header, RequestHead};

/// What a well-formed request stream asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestForm<'a> {
    /// Not a CONNECT: an ordinary request (its conversion checks the rest).
    Plain,
    /// A plain CONNECT: a TCP tunnel to `:authority`.
    Connect,
    /// An extended CONNECT for this protocol (the `:protocol` value).
    Extended(&'a [u8]),
}

/// The first value of pseudo-header `name` (duplicates are the conversion's to refuse).
fn pseudo<'a>(list: &'a [H3Header], name: &[u8]) -> Option<&'a [u8]> {
    list.iter().find(|h| h.name() == name).map(|h| h.value())
}

/// The form of request fields `list`; `extended_connect` says whether this side enabled
/// SETTINGS_ENABLE_CONNECT_PROTOCOL. Errors are malformed requests.
pub fn request_form(
    list: &[H3Header],
    extended_connect: bool,
) -> Result<RequestForm<'_>, FieldError> {
    let connect = pseudo(list, b":method") == Some(b"CONNECT");
    let (scheme, path, authority) = (
        pseudo(list, b":scheme"),
        pseudo(list, b":path"),
        pseudo(list, b":authority"),
    );
    match (connect, pseudo(list, b":protocol")) {
        (false, None) => Ok(RequestForm::Plain),
        (false, Some(_)) => Err(FieldError(":protocol on a request that is not CONNECT")),
        (true, Some(_)) if !extended_connect => Err(FieldError(
            ":protocol without SETTINGS_ENABLE_CONNECT_PROTOCOL",
        )),
        (true, Some(protocol)) => {
            if protocol.is_empty() || !crate::h1::syntax::is_token(protocol) {
                return Err(FieldError("invalid :protocol"));
            }
            match scheme {
                None => return Err(FieldError("extended CONNECT without :scheme")),
                Some(b"http" | b"https") => {}
                Some(_) => return Err(FieldError(":scheme is neither http nor https")),
            }
            match path {
                None => return Err(FieldError("extended CONNECT without :path")),
                Some(p) if p.first() != Some(&b'/') => {
                    return Err(FieldError("invalid :path"));
                }
                Some(_) => {}
            }
            match authority {
                None => Err(FieldError("extended CONNECT without :authority")),
                Some(a) if !head::is_valid_authority(a, false) => {
                    Err(FieldError("invalid :authority"))
                }
                Some(_) => Ok(RequestForm::Extended(protocol)),
            }
        }
        (true, None) => {
            if scheme.is_some() || path.is_some() {
                return Err(FieldError("CONNECT with :scheme or :path but no :protocol"));
            }
            match authority {
                Some(a) if head::is_valid_authority(a, true) => Ok(RequestForm::Connect),
                Some(_) => Err(FieldError("invalid :authority")),
                None => Err(FieldError("CONNECT without :authority")),
            }
        }
    }
}

/// A plain HTTP/1.1 CONNECT (authority-form target, checked by the head parser) -> the HTTP/3
/// CONNECT: `:method CONNECT`, `:authority` the target, no `:scheme` or `:path` (RFC 9114
/// §4.4), and the end-to-end fields.
pub fn connect_from_h1(head: &RequestHead) -> Vec<super::Field> {
    let mut out = vec![
        super::Field::fixed(b":method", b"CONNECT"),
        super::Field::named_copy(b":authority", head.target.as_bytes()),
    ];
    super::end_to_end(&head.headers, &["host", super::SERVICE_FIELD], &mut out);
    out
}

/// Fields of the extended CONNECT that describe the HTTP/2-3 form only, or that the upgrade
/// request sets itself.
const NOT_UPGRADE_FIELDS: &[&str] = &["content-length", "sec-websocket-version"];

/// The HTTP/1.1 upgrade request (RFC 6455 §4.1) for an extended CONNECT with `:protocol
/// websocket` (already checked by [`request_form`]): `GET :path`, `Host` from `:authority`,
/// `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13` and the request's
/// end-to-end fields (`Sec-WebSocket-Protocol`, `-Extensions`, `Origin`, cookies, ...). The
/// request's own `Sec-WebSocket-Key` is kept (a ptproxy client carries its caller's); when it
/// has none (RFC 8441 §5), `fresh_key` is used and also returned, so the caller can check the
/// upstream's accept against it.
pub fn websocket_upgrade_from_h3(
    list: &[H3Header],
    fresh_key: impl FnOnce() -> String,
) -> Result<(RequestHead, Option<String>), FieldError> {
    let as_get: Vec<H3Header> = list
        .iter()
        .filter(|h| h.name() != b":protocol")
        .map(|h| match h.name() {
            b":method" => H3Header::new(b":method", b"GET"),
            _ => h.clone(),
        })
        .collect();
    let mut head = request_from_h3(&as_get)?;
    head.headers
        .retain(|h| !NOT_UPGRADE_FIELDS.contains(&h.name.as_str()));
    let keys = head
        .headers
        .iter()
        .filter(|h| h.name == "sec-websocket-key")
        .count();
    let generated = match keys {
        0 => Some(fresh_key()),
        1 => None,
        _ => return Err(FieldError("more than one sec-websocket-key")),
    };
    let field = |name: &str, value: &str| Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    };
    if let Some(key) = &generated {
        head.headers.push(field("sec-websocket-key", key));
    }
    head.headers.push(field("connection", "Upgrade"));
    head.headers.push(field("upgrade", websocket::PROTOCOL));
    head.headers
        .push(field("sec-websocket-version", websocket::VERSION));
    Ok((head, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<H3Header> {
        pairs
            .iter()
            .map(|(n, v)| H3Header::new(n.as_bytes(), v.as_bytes()))
            .collect()
    }

    const WS: &[(&str, &str)] = &[
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":authority", "chat.example"),
        (":path", "/chat?room=1"),
    ];

    fn without(
        base: &[(&'static str, &'static str)],
        name: &str,
    ) -> Vec<(&'static str, &'static str)> {
        base.iter().copied().filter(|(n, _)| *n != name).collect()
    }

    fn replaced(
        base: &[(&'static str, &'static str)],
        name: &str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        base.iter()
            .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
            .collect()
    }

    #[test]
    fn well_formed_forms() {
        let ws = fields(WS);
        assert_eq!(
            request_form(&ws, true),
            Ok(RequestForm::Extended(b"websocket"))
        );
        let other = fields(&replaced(WS, ":protocol", "connect-udp"));
        assert_eq!(
            request_form(&other, true),
            Ok(RequestForm::Extended(b"connect-udp"))
        );
        let plain = fields(&[(":method", "CONNECT"), (":authority", "db.internal:5432")]);
        assert_eq!(request_form(&plain, true), Ok(RequestForm::Connect));
        let get = fields(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "/"),
        ]);
        assert_eq!(request_form(&get, false), Ok(RequestForm::Plain));
    }

    #[test]
    fn the_malformed_table() {
        // (fields, extended CONNECT enabled, the reason given)
        type Case = (Vec<(&'static str, &'static str)>, bool, &'static str);
        let cases: Vec<Case> = vec![
            (
                WS.to_vec(),
                false,
                "without SETTINGS_ENABLE_CONNECT_PROTOCOL",
            ),
            (replaced(WS, ":method", "GET"), true, "not CONNECT"),
            (without(WS, ":scheme"), true, "without :scheme"),
            (without(WS, ":path"), true, "without :path"),
            (without(WS, ":authority"), true, "without :authority"),
            (
                replaced(WS, ":scheme", "ftp"),
                true,
                "neither http nor https",
            ),
            (replaced(WS, ":path", "chat"), true, "invalid :path"),
            (replaced(WS, ":path", ""), true, "invalid :path"),
            (
                replaced(WS, ":authority", "a b"),
                true,
                "invalid :authority",
            ),
            (replaced(WS, ":protocol", ""), true, "invalid :protocol"),
            (
                replaced(WS, ":protocol", "web socket"),
                true,
                "invalid :protocol",
            ),
            (without(WS, ":protocol"), true, "but no :protocol"),
            (
                without(&without(WS, ":protocol"), ":path"),
                true,
                "but no :protocol",
            ),
            (
                vec![(":method", "CONNECT"), (":authority", "db.internal")],
                true,
                "invalid :authority",
            ),
            (
                vec![(":method", "CONNECT")],
                true,
                "CONNECT without :authority",
            ),
        ];
        for (pairs, enabled, why) in cases {
            let list = fields(&pairs);
            let got = request_form(&list, enabled);
            match got {
                Err(FieldError(reason)) => assert!(reason.contains(why), "{pairs:?}: {reason}"),
                Ok(form) => panic!("{pairs:?} accepted as {form:?}"),
            }
        }
    }

    fn field<'a>(head: &'a RequestHead, name: &str) -> Vec<&'a [u8]> {
        head.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
            .collect()
    }

    #[test]
    fn the_upgrade_request_carries_the_end_to_end_fields() {
        let mut pairs = WS.to_vec();
        pairs.extend([
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("origin", "https://chat.example"),
        ]);
        let (head, generated) =
            websocket_upgrade_from_h3(&fields(&pairs), || panic!("a key was given")).unwrap();
        assert_eq!(generated, None);
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/chat?room=1")
        );
        assert_eq!(field(&head, "host"), [b"chat.example"]);
        assert_eq!(field(&head, "connection"), [b"Upgrade"]);
        assert_eq!(field(&head, "upgrade"), [b"websocket"]);
        assert_eq!(field(&head, "sec-websocket-version"), [b"13"]);
        assert_eq!(
            field(&head, "sec-websocket-key"),
            [b"dGhlIHNhbXBsZSBub25jZQ=="]
        );
        assert_eq!(field(&head, "sec-websocket-protocol"), [b"chat, superchat"]);
        assert_eq!(
            field(&head, "sec-websocket-extensions"),
            [b"permessage-deflate"]
        );
        assert_eq!(field(&head, "origin"), [b"https://chat.example"]);
    }

    #[test]
    fn an_upgrade_without_a_key_gets_a_fresh_one() {
        let (head, generated) =
            websocket_upgrade_from_h3(&fields(WS), || "AAAAAAAAAAAAAAAAAAAAAA==".into()).unwrap();
        assert_eq!(generated.as_deref(), Some("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert_eq!(
            field(&head, "sec-websocket-key"),
            [b"AAAAAAAAAAAAAAAAAAAAAA=="]
        );
        let mut two = WS.to_vec();
        two.extend([("sec-websocket-key", "a"), ("sec-websocket-key", "b")]);
        assert!(websocket_upgrade_from_h3(&fields(&two), String::new).is_err());
    }
}
