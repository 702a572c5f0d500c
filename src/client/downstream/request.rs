//! Client side: what a request from a local service must satisfy before it is forwarded, and
//! how it is shaped for the peer (HTTP/3 fields with the forwarding fields added).
//!
//! Refusals carry the status RFC 9110/9112 asks for: 400 for malformed framing or Host,
//! 413 for a body over `http.max_body_bytes`, 501 for upgrades to protocols other than
//! WebSocket (whose handshake `tunnel` checks), 414/431/505 come from the head parser itself.
//! A plain CONNECT (authority-form, checked by the parser) goes to the peer as an HTTP/3
//! CONNECT; whether its destination may be reached is the server's decision.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use quiche::h3::NameValue;

use super::tunnel::TunnelKind;
use crate::bridge::answers::{self, Answer};
use crate::bridge::headers::forwarding::Completion;
use crate::bridge::headers::{self, connect, Field};
use crate::config::{ClientHttpConfig, ListenerRules};
use crate::h1::body::{self, BodyFraming};
use crate::h1::head::{RequestHead, Version};

/// A request accepted for forwarding.
pub struct Prepared {
    pub fields: Vec<Field>,
    pub framing: BodyFraming,
    /// The client sent `Expect: 100-continue` for a body: we answer the interim response
    /// ourselves (and do not forward the expectation), so no side waits for the other.
    pub continue_now: bool,
    /// The peers its route may use (`None`: any, failover).
    pub peers: Option<crate::config::PeerGroup>,
    /// A WebSocket upgrade (sent as an extended CONNECT) or a plain CONNECT.
    pub tunnel: Option<TunnelKind>,
    /// Its route compresses request bodies on the link (when the session negotiated it).
    pub compress: bool,
    /// What of its forwarding fields a completing server end may write instead (`None`: it
    /// cannot, the fields go complete).
    pub forwarding: Option<Completion>,
}

impl Prepared {
    pub fn has_body(&self) -> bool {
        !matches!(
            self.framing,
            BodyFraming::None | BodyFraming::ContentLength(0)
        )
    }
}

/// Validates `req` from `peer` and builds its HTTP/3 form.
pub fn prepare(
    req: &RequestHead,
    peer: SocketAddr,
    http: &ClientHttpConfig,
    default_authority: &str,
    rules: Option<&ListenerRules>,
) -> Result<Prepared, Answer> {
    let bad = answers::bad_request;
    if req.method == "CONNECT" {
        return prepare_connect(req, peer, http, rules);
    }
    let websocket_key = match super::tunnel::upgrade_of(req)? {
        super::tunnel::Upgrade::WebSocket(key) => Some(key),
        super::tunnel::Upgrade::None => None,
    };
    let framing = match websocket_key {
        Some(_) => super::tunnel::FRAMING,
        None => body::request_framing(req).map_err(|e| bad(e.status, e.reason))?,
    };
    if let (BodyFraming::ContentLength(n), Some(max)) = (framing, http.max_body_bytes) {
        if n > max {
            return Err(body_too_large(max));
        }
    }
    let (authority, path) = target_parts(req, default_authority).map_err(|r| bad(400, r))?;
    let expects_continue = req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    // The head as forwarded: without the expectation we answer ourselves (a copy only then).
    let shaped = if expects_continue {
        let mut without = req.clone();
        without
            .headers
            .retain(|h| !h.name.eq_ignore_ascii_case("expect"));
        std::borrow::Cow::Owned(without)
    } else {
        std::borrow::Cow::Borrowed(req)
    };
    // Hop-by-hop removal first: a client must not be able to drop the fields we add by naming
    // them in `Connection` (the CVE-2022-31813 class).
    let mut fields = headers::request_to_h3(&shaped, authority, &path);
    if websocket_key.is_some() {
        super::tunnel::extended_connect(&mut fields);
    }
    let host = std::str::from_utf8(authority).ok();
    let peers = finish_fields(&mut fields, req.version, peer, http, rules, host);
    let default = http.compression.enabled;
    let prepared = Prepared {
        fields,
        framing,
        continue_now: false,
        peers,
        tunnel: websocket_key.map(|key| TunnelKind::WebSocket { key }),
        compress: rules.map_or(default, |r| r.compresses(host, default)),
        forwarding: left_to_server(req.version, http),
    };
    let continue_now = expects_continue && prepared.has_body() && req.version == Version::Http11;
    Ok(Prepared {
        continue_now,
        ..prepared
    })
}

/// A plain CONNECT (its authority-form target checked by the head parser): the HTTP/3
/// CONNECT with `:authority` only, routed by the target's host. It carries no content (RFC
/// 9110 §9.3.6): a body framing field is refused, never guessed at.
fn prepare_connect(
    req: &RequestHead,
    peer: SocketAddr,
    http: &ClientHttpConfig,
    rules: Option<&ListenerRules>,
) -> Result<Prepared, Answer> {
    if req.header("content-length").is_some() || req.header("transfer-encoding").is_some() {
        return Err(answers::bad_request(
            400,
            "a CONNECT request carries no body",
        ));
    }
    let mut fields = connect::connect_from_h1(req);
    let peers = finish_fields(
        &mut fields,
        req.version,
        peer,
        http,
        rules,
        Some(&req.target),
    );
    Ok(Prepared {
        fields,
        framing: super::tunnel::FRAMING,
        continue_now: false,
        peers,
        tunnel: Some(TunnelKind::Connect),
        compress: false,
        forwarding: left_to_server(req.version, http),
    })
}

/// What of the forwarding fields [`add_forwarding`] wrote a completing server end writes the
/// same (`bridge::headers::forwarding`): all it adds for an HTTP/1.1 caller; for an HTTP/1.0
/// caller none (its `Via` says 1.0).
fn left_to_server(version: Version, http: &ClientHttpConfig) -> Option<Completion> {
    (version == Version::Http11).then(|| Completion::left_by(&http.forwarding))
}

/// Adds the forwarding fields and, last, the service field of the route `host` takes (after
/// the caller's copies were removed with the hop-by-hop ones); the peers that route may use.
fn finish_fields(
    fields: &mut Vec<Field>,
    version: Version,
    peer: SocketAddr,
    http: &ClientHttpConfig,
    rules: Option<&ListenerRules>,
    host: Option<&str>,
) -> Option<crate::config::PeerGroup> {
    add_forwarding(fields, version, peer, http);
    if let Some(service) = rules.and_then(|r| r.route(host)) {
        fields.push(Field::named_copy(
            headers::SERVICE_FIELD.as_bytes(),
            service.as_bytes(),
        ));
    }
    rules.and_then(|r| r.peers(host)).cloned()
}

/// The 413 answer for a body over the limit.
pub fn body_too_large(max: u64) -> Answer {
    answers::bad_request(
        413,
        &format!("request body larger than http.max_body_bytes ({max} bytes)"),
    )
}

/// Adds `Forwarded` (RFC 7239), `Via` (RFC 9110 §7.6.3) and `X-Forwarded-For` as configured
/// to the HTTP/3 fields, which hold only end-to-end fields by now.
fn add_forwarding(
    fields: &mut Vec<Field>,
    version: Version,
    peer: SocketAddr,
    http: &ClientHttpConfig,
) {
    let f = http.forwarding;
    let ip = peer.ip();
    if f.forwarded {
        // Written once into its field's value (no String per part).
        let mut value = Vec::with_capacity(64);
        let _ = match ip {
            IpAddr::V4(v4) => write!(value, "for={v4};proto=http"),
            IpAddr::V6(v6) => write!(value, "for=\"[{v6}]\";proto=http"),
        };
        fields.push(Field::named(b"forwarded", value));
    }
    if f.via {
        let value: &'static [u8] = if version == Version::Http10 {
            b"1.0 ptproxy"
        } else {
            b"1.1 ptproxy"
        };
        fields.push(Field::fixed(b"via", value));
    }
    if f.x_forwarded_for {
        let existing = fields.iter().rposition(|h| h.name() == b"x-forwarded-for");
        match existing {
            Some(i) => {
                let mut value = fields[i].value().to_vec();
                value.extend_from_slice(format!(", {ip}").as_bytes());
                fields[i] = Field::named(b"x-forwarded-for", value);
            }
            None => fields.push(Field::named(
                b"x-forwarded-for",
                ip.to_string().into_bytes(),
            )),
        }
    }
}

/// Splits the request target into (authority, path) per RFC 9112 §3.2: absolute-form carries
/// the authority itself; origin-form takes it from Host (required in HTTP/1.1, exactly once).
/// Both borrow from the request (or the default) unless the path needs its leading `/`.
fn target_parts<'a>(
    req: &'a RequestHead,
    default_authority: &'a str,
) -> Result<(&'a [u8], Cow<'a, str>), &'static str> {
    let mut hosts = req.headers_named("host");
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host field");
    }
    if req.version == Version::Http11 && host.is_none() {
        return Err("missing Host field");
    }
    if let Some(rest) = strip_scheme(&req.target) {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => {
                (&rest[..i], Cow::Owned(format!("/{}", &rest[i..])))
            }
            Some(i) => (&rest[..i], Cow::Borrowed(&rest[i..])),
            None => (rest, Cow::Borrowed("/")),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("invalid authority in the request target");
        }
        return Ok((authority.as_bytes(), path));
    }
    let authority = match host {
        Some(h) if !h.is_empty() && h.iter().all(|b| b.is_ascii_graphic()) => h,
        Some(_) => return Err("invalid Host field"),
        None => default_authority.as_bytes(),
    };
    Ok((authority, Cow::Borrowed(&req.target)))
}

/// The rest of an absolute-form target after `http://` or `https://` (schemes are
/// case-insensitive, RFC 3986 §3.1).
fn strip_scheme(target: &str) -> Option<&str> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let head = target.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &target[scheme.len()..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Forwarding;
    use crate::h1::head::Header;
    use std::time::Duration;

    fn http(forwarding: Forwarding, max_body_bytes: Option<u64>) -> ClientHttpConfig {
        ClientHttpConfig {
            session_wait: Duration::from_secs(1),
            max_connections: 10,
            head_timeout: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
            max_head_bytes: 65536,
            max_body_bytes,
            access_log: false,
            forwarding,
            early_data_methods: vec!["GET".into()],
            body_timeout: Duration::from_secs(1),
            tunnel_idle_timeout: Duration::from_secs(1),
            compression: Default::default(),
        }
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "POST".into(),
            target: target.into(),
            version: Version::Http11,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    fn field<'a>(p: &'a Prepared, name: &str) -> Vec<&'a [u8]> {
        p.fields
            .iter()
            .filter(|f| f.name() == name.as_bytes())
            .map(|f| f.value())
            .collect()
    }

    const ALL: Forwarding = Forwarding {
        forwarded: true,
        via: true,
        x_forwarded_for: true,
    };
    const NONE: Forwarding = Forwarding {
        forwarded: false,
        via: false,
        x_forwarded_for: false,
    };

    #[test]
    fn forwarding_fields_follow_the_config() {
        let v6: SocketAddr = "[::1]:9".parse().unwrap_or_else(|_| unreachable!());
        let r = req(
            "/",
            &[
                ("Host", "b"),
                ("X-Forwarded-For", "10.0.0.1"),
                ("Content-Length", "0"),
            ],
        );
        let p = prepare(&r, v6, &http(ALL, None), "d", None)
            .map_err(|a| a.details)
            .expect("accepted");
        assert_eq!(
            field(&p, "forwarded"),
            vec![&b"for=\"[::1]\";proto=http"[..]]
        );
        assert_eq!(field(&p, "via"), vec![&b"1.1 ptproxy"[..]]);
        assert_eq!(field(&p, "x-forwarded-for"), vec![&b"10.0.0.1, ::1"[..]]);
        let p = prepare(&r, v6, &http(NONE, None), "d", None)
            .map_err(|a| a.details)
            .expect("accepted");
        assert!(field(&p, "forwarded").is_empty() && field(&p, "via").is_empty());
        assert_eq!(field(&p, "x-forwarded-for"), vec![&b"10.0.0.1"[..]]);
    }

    #[test]
    fn connection_cannot_remove_the_forwarding_fields() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let r = req(
            "/",
            &[
                ("Host", "b"),
                ("Connection", "forwarded, via, x-forwarded-for"),
                ("Forwarded", "for=192.0.2.1"),
                ("X-Forwarded-For", "192.0.2.1"),
                ("Content-Length", "0"),
            ],
        );
        let p = prepare(&r, peer, &http(ALL, None), "d", None)
            .map_err(|a| a.details)
            .expect("accepted");
        // The client's own copies were hop-by-hop (named in Connection); ours are added after.
        assert_eq!(
            field(&p, "forwarded"),
            vec![&b"for=127.0.0.1;proto=http"[..]]
        );
        assert_eq!(field(&p, "via"), vec![&b"1.1 ptproxy"[..]]);
        assert_eq!(field(&p, "x-forwarded-for"), vec![&b"127.0.0.1"[..]]);
    }

    #[test]
    fn a_connect_becomes_an_h3_connect_with_only_its_authority_routed_by_its_host() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let r = RequestHead {
            method: "CONNECT".into(),
            ..req(
                "db.test:5432",
                &[("Host", "db.test:5432"), ("X-Trace", "7")],
            )
        };
        let rules = ListenerRules {
            routes: vec![crate::config::Route {
                host: Some("db.test".into()),
                service: "db".into(),
                peers: None,
                compression: None,
            }],
            ..ListenerRules::default()
        };
        let p = match prepare(&r, peer, &http(NONE, None), "d", Some(&rules)) {
            Ok(p) => p,
            Err(a) => panic!("refused: {}", a.details),
        };
        let names: Vec<&[u8]> = p.fields.iter().map(|f| f.name()).collect();
        assert_eq!(&names[..2], &[&b":method"[..], &b":authority"[..]]);
        assert!(!names.contains(&&b":scheme"[..]) && !names.contains(&&b":path"[..]));
        assert!(!names.contains(&&b"host"[..]));
        assert_eq!(field(&p, ":method"), vec![&b"CONNECT"[..]]);
        assert_eq!(field(&p, ":authority"), vec![&b"db.test:5432"[..]]);
        assert_eq!(field(&p, "x-trace"), vec![&b"7"[..]]);
        assert_eq!(field(&p, headers::SERVICE_FIELD), vec![&b"db"[..]]);
        assert_eq!(p.tunnel, Some(TunnelKind::Connect));
        assert_eq!(p.framing, super::super::tunnel::FRAMING);
    }

    #[test]
    fn refusals_carry_the_right_status() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let cases: &[(RequestHead, u16)] = &[
            (
                RequestHead {
                    method: "CONNECT".into(),
                    ..req("b:443", &[("Host", "b:443"), ("Content-Length", "2")])
                },
                400,
            ),
            (
                req(
                    "/",
                    &[
                        ("Host", "b"),
                        ("Connection", "upgrade"),
                        ("Upgrade", "websocket"),
                    ],
                ),
                400, // a POST without a key: not a WebSocket handshake
            ),
            (
                req(
                    "/",
                    &[
                        ("Host", "b"),
                        ("Connection", "upgrade"),
                        ("Upgrade", "IRC/6.9"),
                    ],
                ),
                501,
            ),
            (req("/", &[("Host", "b"), ("Content-Length", "11")]), 413),
            (req("/", &[]), 400),
            (req("/", &[("Host", "a"), ("Host", "b")]), 400),
            (
                req(
                    "/",
                    &[
                        ("Host", "b"),
                        ("Content-Length", "1"),
                        ("Transfer-Encoding", "chunked"),
                    ],
                ),
                400,
            ),
        ];
        for (r, status) in cases {
            let got = prepare(r, peer, &http(NONE, Some(10)), "d", None)
                .err()
                .map(|a| a.status);
            assert_eq!(got, Some(*status), "{r:?}");
        }
        for ignored in [
            req(
                "/",
                &[("Host", "b"), ("Connection", "upgrade"), ("Upgrade", "h2c")],
            ),
            req("/", &[("Host", "b"), ("Upgrade", "websocket")]),
        ] {
            let got = prepare(&ignored, peer, &http(NONE, None), "d", None);
            assert!(got.is_ok(), "{ignored:?} is not an upgrade to refuse");
        }
    }

    #[test]
    fn absolute_form_takes_the_authority_from_the_target() {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        for (target, authority, path) in [
            ("http://svc:81/a?b", "svc:81", "/a?b"),
            ("http://svc", "svc", "/"),
            ("http://svc?q=1", "svc", "/?q=1"),
            ("HTTP://Svc/x", "Svc", "/x"),
        ] {
            let p = prepare(
                &req(target, &[("Host", "other")]),
                peer,
                &http(NONE, None),
                "d",
                None,
            )
            .map_err(|a| a.details)
            .expect("ok");
            assert_eq!(
                field(&p, ":authority"),
                vec![authority.as_bytes()],
                "{target}"
            );
            assert_eq!(field(&p, ":path"), vec![path.as_bytes()], "{target}");
        }
    }

    #[test]
    fn the_listener_route_names_the_service_and_a_caller_cannot() {
        use crate::config::{ListenerRules, Route};
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let rules = ListenerRules {
            routes: vec![
                Route {
                    host: Some("orders.example".into()),
                    service: "orders".into(),
                    peers: None,
                    compression: Some(true),
                },
                Route {
                    host: None,
                    service: "billing".into(),
                    peers: None,
                    compression: None,
                },
            ],
            allow_sources: None,
            peers: None,
        };
        let forged = [
            ("Host", "orders.example:8080"),
            ("ptproxy-service", "admin"),
        ];
        let services = |p: &Prepared| -> Vec<String> {
            p.fields
                .iter()
                .filter(|f| f.name() == headers::SERVICE_FIELD.as_bytes())
                .map(|f| String::from_utf8_lossy(f.value()).into_owned())
                .collect()
        };
        let routed = prepare(
            &req("/", &forged),
            peer,
            &http(NONE, None),
            "d",
            Some(&rules),
        );
        let routed = routed.map_err(|a| a.details).expect("ok");
        assert_eq!(services(&routed), ["orders"]);
        assert!(
            routed.compress,
            "the orders route compresses request bodies"
        );
        let other = [("Host", "x.example"), ("ptproxy-service", "admin")];
        let routed = prepare(
            &req("/", &other),
            peer,
            &http(NONE, None),
            "d",
            Some(&rules),
        );
        let routed = routed.map_err(|a| a.details).expect("ok");
        assert_eq!(services(&routed), ["billing"]);
        assert!(
            !routed.compress,
            "billing follows http.compression.enabled (off)"
        );
        let unrouted = prepare(&req("/", &forged), peer, &http(NONE, None), "d", None);
        assert!(services(&unrouted.map_err(|a| a.details).expect("ok")).is_empty());
    }
}
