//! Client side of the tunnels: a WebSocket carried over HTTP/3 extended CONNECT (RFC 9220)
//! and a plain CONNECT carried as an HTTP/3 CONNECT (RFC 9114 §4.4). For WebSocket, the
//! caller's HTTP/1.1 upgrade is checked (RFC 6455 §4.1) and turned into an extended CONNECT,
//! and the peer's `:status 200` turned into `101 Switching Protocols` once its
//! `Sec-WebSocket-Accept` matches the caller's key. A plain CONNECT's 2xx becomes the caller's
//! `200 Connection established`. Then the caller's bytes and the stream's DATA flow both ways.
//!
//! ```text
//! upgrade head --checked--> extended CONNECT --200, right accept--> 101, Open: bytes both ways
//!                                            --200, wrong accept--> 502, connection closed
//!                                            --other status------> relayed as a response
//! CONNECT head -----------> CONNECT          --2xx---------------> 200, Open: bytes both ways
//!                                            --other status------> relayed as a response
//! ```
//! The byte movers are the exchange's body pumps with until-close framing on both sides, so
//! the tunnel has the bodies' backpressure. The stream's FIN half-closes the caller's
//! connection (FIN), the caller's FIN ends the stream; a reset either way resets the other
//! side (the downstream's abort), so an aborted tunnel never looks like a clean end.

use std::time::{Duration, Instant};

use quiche::h3::NameValue;

use crate::bridge::answers::{self, Answer};
use crate::bridge::headers::Field;
use crate::bridge::websocket;
use crate::h1::body::BodyFraming;
use crate::h1::head::{has_connection_token, Header, RequestHead, Version};
use crate::metrics::Metrics;

use super::{Ctx, Downstream, DownstreamConn, Exchange, Phase};

/// What a tunnel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelKind {
    /// WebSocket, with the caller's `Sec-WebSocket-Key` (the peer's accept is checked
    /// against it).
    WebSocket { key: String },
    /// A plain CONNECT.
    Connect,
}

impl TunnelKind {
    /// The access line's name of the kind.
    fn name(&self) -> &'static str {
        match self {
            TunnelKind::WebSocket { .. } => "websocket",
            TunnelKind::Connect => "connect",
        }
    }
}

/// A tunnel's state while its exchange runs.
#[derive(Debug)]
pub(super) struct Tunnel {
    pub(super) kind: TunnelKind,
    /// When the peer accepted the upgrade; bytes flow from then on.
    opened: Option<Instant>,
    /// The stream's end was passed on as the caller connection's FIN.
    pub(super) write_closed: bool,
    /// When a byte last moved either way (the idle timeout runs from here).
    last_moved: Option<Instant>,
    /// Bytes already counted in the metrics: (to the peer, from the peer).
    counted: (u64, u64),
}

/// What the caller's head asks for, as far as upgrades go.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// No upgrade (or one any server may ignore, h2c): an ordinary request.
    None,
    /// A valid WebSocket handshake with this key.
    WebSocket(String),
}

/// Checks the upgrade `req` asks for. A real upgrade names "upgrade" in Connection (RFC 9110
/// §7.8); a stray Upgrade field is hop-by-hop and dropped, and h2c may be ignored. WebSocket
/// is carried when its handshake is valid (400 with the reason otherwise); any other
/// protocol gets 501.
pub fn upgrade_of(req: &RequestHead) -> Result<Upgrade, Answer> {
    // RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.
    if req.version != Version::Http11 || !has_connection_token(&req.headers, "upgrade") {
        return Ok(Upgrade::None);
    }
    let Some(protocol) = req.header("upgrade") else {
        return Ok(Upgrade::None);
    };
    if protocol.eq_ignore_ascii_case(b"h2c") {
        return Ok(Upgrade::None);
    }
    if !protocol
        .trim_ascii()
        .eq_ignore_ascii_case(websocket::PROTOCOL.as_bytes())
    {
        let protocol = String::from_utf8_lossy(protocol).into_owned();
        return Err(answers::bad_request(
            501,
            &format!("protocol upgrade to {protocol:?} is not supported"),
        ));
    }
    websocket_key(req)
        .map(Upgrade::WebSocket)
        .map_err(|reason| answers::bad_request(400, &format!("WebSocket handshake: {reason}")))
}

/// The RFC 6455 §4.1 checks of a WebSocket upgrade request; its key when they pass.
fn websocket_key(req: &RequestHead) -> Result<String, &'static str> {
    if req.method != "GET" {
        return Err("the method must be GET");
    }
    if req.header("content-length").is_some() || req.header("transfer-encoding").is_some() {
        return Err("an upgrade request carries no body");
    }
    let mut keys = req.headers_named("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) if websocket::is_valid_key(k) => k,
        (None, _) => return Err("missing Sec-WebSocket-Key"),
        _ => return Err("Sec-WebSocket-Key must be one base64 value of 16 bytes"),
    };
    let mut versions = req.headers_named("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.trim_ascii() == websocket::VERSION.as_bytes() => {}
        _ => return Err("Sec-WebSocket-Version must be 13"),
    }
    // The key's characters are all base64 (checked above).
    Ok(String::from_utf8_lossy(key).into_owned())
}

/// The request body framing of a tunnel: the caller's bytes until its FIN.
pub const FRAMING: BodyFraming = BodyFraming::UntilClose;

/// Turns the HTTP/3 form of a GET upgrade (hop-by-hop fields already removed) into the
/// extended CONNECT for WebSocket: `:method CONNECT` and `:protocol websocket`, the other
/// pseudo-headers and end-to-end fields as they are.
pub fn extended_connect(fields: &mut Vec<Field>) {
    for f in fields.iter_mut() {
        if f.name() == b":method" {
            *f = Field::fixed(b":method", b"CONNECT");
        }
    }
    fields.insert(
        1,
        Field::fixed(b":protocol", websocket::PROTOCOL.as_bytes()),
    );
}

/// The peer did not enable extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL).
pub fn not_carried_by_peer() -> Answer {
    Answer::new(
        answers::Side::Client,
        501,
        "http_request_denied",
        "the peer proxy does not carry WebSocket (no SETTINGS_ENABLE_CONNECT_PROTOCOL)",
    )
}

/// The fields of the `101 Switching Protocols` for the peer's 200 (`fields`: its end-to-end
/// fields), after checking its one `Sec-WebSocket-Accept` against the caller's `key`.
pub fn switching_protocols_fields(
    key: &str,
    mut fields: Vec<Header>,
) -> Result<Vec<Header>, Answer> {
    let expected = websocket::accept_for(key.as_bytes());
    let mut accepts = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("sec-websocket-accept"));
    let right = accepts
        .next()
        .is_some_and(|f| f.value == expected.as_bytes());
    if !right || accepts.next().is_some() {
        return Err(answers::bad_peer_response(
            "Sec-WebSocket-Accept does not match the key sent",
        ));
    }
    fields.retain(|f| !f.name.eq_ignore_ascii_case("content-length"));
    let field = |name: &str, value: &str| Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    };
    fields.push(field("upgrade", websocket::PROTOCOL));
    fields.push(field("connection", "Upgrade"));
    Ok(fields)
}

impl Tunnel {
    pub(super) fn new(kind: TunnelKind) -> Self {
        Tunnel {
            kind,
            opened: None,
            write_closed: false,
            last_moved: None,
            counted: (0, 0),
        }
    }

    /// The caller's head for the peer's 2xx (`status`, end-to-end `fields`) accepting the
    /// tunnel: `101` for WebSocket (once the accept matches), `200` for CONNECT.
    pub(super) fn accepted_head(
        &self,
        status: u16,
        mut fields: Vec<Header>,
    ) -> Result<(u16, Vec<Header>), Answer> {
        match &self.kind {
            TunnelKind::WebSocket { key } if status == 200 => {
                Ok((101, switching_protocols_fields(key, fields)?))
            }
            TunnelKind::WebSocket { .. } => Err(answers::bad_peer_response(
                "the peer accepted the WebSocket with a status other than 200",
            )),
            TunnelKind::Connect => {
                // RFC 9110 §9.3.6: no framing fields in a 2xx to CONNECT.
                fields.retain(|f| {
                    !f.name.eq_ignore_ascii_case("content-length")
                        && !f.name.eq_ignore_ascii_case("transfer-encoding")
                });
                Ok((200, fields))
            }
        }
    }

    /// Whether `status` from the peer accepts the tunnel (a 2xx; WebSocket's must be 200,
    /// anything else 2xx is refused as invalid by [`Tunnel::accepted_head`]).
    pub(super) fn accepts(status: u16) -> bool {
        (200..300).contains(&status)
    }

    /// Whether the peer must have enabled extended CONNECT for it.
    pub(super) fn needs_extended_connect(&self) -> bool {
        matches!(self.kind, TunnelKind::WebSocket { .. })
    }
}

impl Exchange {
    /// The peer accepted the upgrade: bytes flow both ways.
    pub(super) fn tunnel_open(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| t.opened.is_some())
    }

    /// Whether the caller's bytes may go to the stream: always for a request, only once the
    /// peer accepted the upgrade for a tunnel.
    pub(super) fn request_may_flow(&self) -> bool {
        self.tunnel.is_none() || self.tunnel_open()
    }

    /// The 101 went out: the tunnel is open (and counted).
    pub(super) fn open_tunnel(&mut self, now: Instant, metrics: &mut Metrics) {
        if let Some(t) = self.tunnel.as_mut() {
            t.opened = Some(now);
            t.last_moved = Some(now);
            metrics.record_tunnel_opened();
            log::debug!("stream {:?}: {} tunnel open", self.stream, t.kind.name());
        }
    }

    /// Counts the bytes an open tunnel moved since the last count; any byte restarts the
    /// idle timeout.
    pub(super) fn count_tunnel_bytes(&mut self, now: Instant, metrics: &mut Metrics) {
        let moved = (self.req_bytes, self.resp_bytes);
        let Some(t) = self.tunnel.as_mut().filter(|t| t.opened.is_some()) else {
            return;
        };
        if moved != t.counted {
            metrics.record_tunnel_bytes(
                moved.0.saturating_sub(t.counted.0),
                moved.1.saturating_sub(t.counted.1),
            );
            t.counted = moved;
            t.last_moved = Some(now);
        }
    }

    /// When an open tunnel is given up if no byte moves (`http.tunnel_idle_timeout_ms`).
    pub(super) fn tunnel_idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        let t = self.tunnel.as_ref().filter(|t| t.opened.is_some())?;
        t.last_moved.map(|at| at + timeout)
    }

    /// The exchange ended (any way): the last bytes are counted and an open tunnel is no
    /// longer counted as open. Returns the access line's mark (how long it was open).
    pub(super) fn close_tunnel(&mut self, now: Instant, metrics: &mut Metrics) -> String {
        self.count_tunnel_bytes(now, metrics);
        match self
            .tunnel
            .as_mut()
            .and_then(|t| Some((t.kind.name(), t.opened.take()?)))
        {
            Some((name, opened)) => {
                metrics.record_tunnel_closed();
                format!(
                    " tunnel={name} open={:.1}ms",
                    now.saturating_duration_since(opened).as_secs_f64() * 1000.0
                )
            }
            None => String::new(),
        }
    }
}

impl<T: DownstreamConn> Downstream<T> {
    /// The idle timeout of an open tunnel ran out: unless a byte moved meanwhile (input of
    /// this turn is read first, so it counts), the stream and the caller's connection are
    /// reset (an abandoned tunnel must not look like a clean end).
    pub(super) fn tunnel_idle_over(&mut self, ctx: &mut Ctx<'_>) {
        self.drive(ctx);
        let timeout = ctx.http.tunnel_idle_timeout;
        let Phase::Exchange(ex) = &self.phase else {
            return;
        };
        if ex
            .tunnel_idle_deadline(timeout)
            .is_some_and(|at| at <= ctx.now)
        {
            log::info!(
                "tunnel from {}: reset, the tunnel moved no byte for {} ms (http.tunnel_idle_timeout_ms)",
                self.peer,
                timeout.as_millis()
            );
            self.abort(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(method: &str, version: Version, fields: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: "/chat".into(),
            version,
            headers: fields
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        }
    }

    const GOOD: &[(&str, &str)] = &[
        ("Host", "b"),
        ("Connection", "keep-alive, Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ];

    fn with(name: &str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = GOOD
            .iter()
            .copied()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name))
            .collect();
        if let Some(value) = value {
            let name = GOOD
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map_or("Content-Length", |(n, _)| n);
            v.push((name, value));
        }
        v
    }

    #[test]
    fn a_valid_handshake_is_a_websocket_upgrade() {
        let got = upgrade_of(&head("GET", Version::Http11, GOOD)).map_err(|a| a.details);
        assert_eq!(got, Ok(Upgrade::WebSocket(KEY.into())));
    }

    #[test]
    fn no_upgrade_stray_upgrade_h2c_and_http10_are_ordinary_requests() {
        let http10 = upgrade_of(&head("GET", Version::Http10, GOOD)).map_err(|a| a.details);
        assert_eq!(http10, Ok(Upgrade::None));
        for fields in [
            vec![("Host", "b")],
            vec![("Host", "b"), ("Upgrade", "websocket")],
            vec![("Host", "b"), ("Connection", "upgrade"), ("Upgrade", "h2c")],
        ] {
            let got = upgrade_of(&head("GET", Version::Http11, &fields)).map_err(|a| a.details);
            assert_eq!(got, Ok(Upgrade::None), "{fields:?}");
        }
    }

    #[test]
    fn other_protocols_get_501() {
        let fields = [
            ("Host", "b"),
            ("Connection", "upgrade"),
            ("Upgrade", "IRC/6.9"),
        ];
        let got = upgrade_of(&head("GET", Version::Http11, &fields));
        assert_eq!(got.map_err(|a| a.status), Err(501));
    }

    #[test]
    fn broken_handshakes_get_400_with_the_reason() {
        // (method, version, fields, the reason given)
        type Case = (
            &'static str,
            Version,
            Vec<(&'static str, &'static str)>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("POST", Version::Http11, GOOD.to_vec(), "GET"),
            (
                "GET",
                Version::Http11,
                with("Sec-WebSocket-Key", None),
                "missing",
            ),
            (
                "GET",
                Version::Http11,
                with("Sec-WebSocket-Key", Some("c2hvcnQ=")),
                "16 bytes",
            ),
            (
                "GET",
                Version::Http11,
                [GOOD, &[("Sec-WebSocket-Key", KEY)]].concat(),
                "16 bytes",
            ),
            (
                "GET",
                Version::Http11,
                with("Sec-WebSocket-Version", None),
                "13",
            ),
            (
                "GET",
                Version::Http11,
                with("Sec-WebSocket-Version", Some("8")),
                "13",
            ),
            (
                "GET",
                Version::Http11,
                with("Content-Length", Some("5")),
                "no body",
            ),
        ];
        for (method, version, fields, why) in cases {
            match upgrade_of(&head(method, version, &fields)) {
                Err(a) => {
                    assert_eq!(a.status, 400, "{fields:?}");
                    assert!(a.details.contains(why), "{fields:?}: {}", a.details);
                }
                Ok(u) => panic!("{method} {fields:?} accepted as {u:?}"),
            }
        }
    }

    #[test]
    fn the_get_becomes_an_extended_connect() {
        let mut fields = vec![
            Field::new(b":method", b"GET"),
            Field::new(b":scheme", b"http"),
            Field::new(b":authority", b"b"),
            Field::new(b":path", b"/chat"),
            Field::new(b"sec-websocket-key", KEY.as_bytes()),
        ];
        extended_connect(&mut fields);
        let pairs: Vec<(&[u8], &[u8])> = fields.iter().map(|f| (f.name(), f.value())).collect();
        assert_eq!(
            pairs,
            [
                (&b":method"[..], &b"CONNECT"[..]),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":authority", b"b"),
                (b":path", b"/chat"),
                (b"sec-websocket-key", KEY.as_bytes()),
            ]
        );
    }

    fn field(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_101_needs_the_accept_of_the_key() {
        let right = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
        let ok = switching_protocols_fields(
            KEY,
            vec![
                field("sec-websocket-accept", right),
                field("sec-websocket-protocol", "chat"),
            ],
        )
        .map_err(|a| a.details);
        let names: Vec<String> = ok.unwrap_or_default().into_iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "sec-websocket-accept",
                "sec-websocket-protocol",
                "upgrade",
                "connection"
            ]
        );
        for bad in [
            vec![],
            vec![field(
                "sec-websocket-accept",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            )],
            vec![
                field("sec-websocket-accept", right),
                field("sec-websocket-accept", right),
            ],
        ] {
            let got = switching_protocols_fields(KEY, bad.clone()).map_err(|a| a.status);
            assert_eq!(got.map(|_| ()), Err(502), "{bad:?}");
        }
    }
}
