//! Every response ptproxy makes up itself, in one place.
//!
//! Each answer says which side produced it twice: in a `Proxy-Status` field (RFC 9209) with the
//! error type, and in a one-line `text/plain` body starting `ptproxy client:` or
//! `ptproxy server:`. The client side writes answers as HTTP/1.1, the server side as HTTP/3.

use crate::bridge::headers::Field;

use crate::h1::{self, Header};

/// Which ptproxy instance made the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    fn proxy_name(self) -> &'static str {
        match self {
            Side::Client => "ptproxy-client",
            Side::Server => "ptproxy-server",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Side::Client => "ptproxy client",
            Side::Server => "ptproxy server",
        }
    }
}

/// A synthesized response: status, RFC 9209 error type and a human sentence.
#[derive(Debug, Clone)]
pub struct Answer {
    pub side: Side,
    pub status: u16,
    /// Proxy-Status error type, e.g. `destination_unavailable`.
    pub error: &'static str,
    pub details: String,
}

impl Answer {
    pub fn new(side: Side, status: u16, error: &'static str, details: impl Into<String>) -> Self {
        Answer {
            side,
            status,
            error,
            details: details.into(),
        }
    }

    fn body(&self) -> String {
        format!("{}: {}\n", self.side.prefix(), self.details)
    }

    fn proxy_status(&self) -> String {
        let details = self.details.replace(['"', '\\'], "'");
        format!(
            "{}; error={}; details=\"{details}\"",
            self.side.proxy_name(),
            self.error
        )
    }

    /// The answer as HTTP/1.1 bytes; `close` adds `Connection: close`.
    pub fn to_h1(&self, close: bool, head_only: bool) -> Vec<u8> {
        let body = self.body();
        let mut headers = vec![
            header("Content-Type", "text/plain; charset=utf-8"),
            header("Content-Length", &body.len().to_string()),
            header("Proxy-Status", &self.proxy_status()),
        ];
        if close {
            headers.push(header("Connection", "close"));
        }
        let mut out = Vec::with_capacity(256);
        h1::write::write_status_head(self.status, headers, &mut out);
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }

    /// The answer as an HTTP/3 field section plus body.
    pub fn to_h3(&self) -> (Vec<Field>, Vec<u8>) {
        let body = self.body().into_bytes();
        let fields = vec![
            Field::status(self.status),
            Field::fixed(b"content-type", b"text/plain; charset=utf-8"),
            Field::named(b"content-length", body.len().to_string().into_bytes()),
            Field::named(b"proxy-status", self.proxy_status().into_bytes()),
        ];
        (fields, body)
    }
}

fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.as_bytes().to_vec(),
    }
}

/// Client side: no usable session to the peer within `session_wait`; `why` names the peer and
/// the reason (`PEER (REASON)`).
pub fn session_unavailable(waited_ms: u128, why: &str) -> Answer {
    Answer::new(
        Side::Client,
        503,
        "destination_unavailable",
        format!("no session to the peer proxy {why} (waited {waited_ms} ms)"),
    )
}

/// Why a usable session had no room for a new request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The connection's send capacity (flow-control credit, congestion window) stayed too small
    /// for the request head.
    Credit,
    /// The peer's limit on concurrent streams stayed reached.
    Streams,
}

/// Client side: the session is up but had no room for the request within `session_wait`.
pub fn session_busy(waited_ms: u128, why: Busy) -> Answer {
    let room = match why {
        Busy::Credit => "no send credit for the request head (requests in flight hold the window)",
        Busy::Streams => "the peer's limit on concurrent streams is reached",
    };
    Answer::new(
        Side::Client,
        503,
        "connection_limit_reached",
        format!("the session to the peer proxy is up but had no room for the request within {waited_ms} ms: {room}"),
    )
}

/// Client side: the process stops (drain deadline passed, or a second stop signal) before the
/// response head arrived.
pub fn shutting_down() -> Answer {
    Answer::new(
        Side::Client,
        503,
        "proxy_internal_error",
        "the client proxy is shutting down and gave up on the request before its response began",
    )
}

/// Client side: the session died before the response head arrived.
pub fn session_lost() -> Answer {
    Answer::new(
        Side::Client,
        503,
        "destination_unavailable",
        "the session to the peer proxy was lost",
    )
}

/// Client side: the peer reset the stream before a response head.
pub fn peer_reset(code: u64) -> Answer {
    Answer::new(
        Side::Client,
        502,
        "proxy_internal_response",
        format!("the peer proxy reset the stream (code {code:#x})"),
    )
}

/// Client side: the peer sent a response head that cannot be HTTP/1.1.
pub fn bad_peer_response(reason: &str) -> Answer {
    Answer::new(
        Side::Client,
        502,
        "http_protocol_error",
        format!("invalid response from the peer proxy: {reason}"),
    )
}

/// Client side: the request could not be parsed or is not acceptable.
pub fn bad_request(status: u16, reason: &str) -> Answer {
    Answer::new(
        Side::Client,
        status,
        "http_request_error",
        format!("bad request: {reason}"),
    )
}

/// The request names a service the server does not have (nothing reached any upstream).
pub fn unknown_service(name: Option<&str>) -> Answer {
    let details = match name {
        Some(name) => format!("no service named {name:?} here"),
        None => "the request names no service and there is no default one".to_string(),
    };
    Answer::new(Side::Server, 404, "destination_not_found", details)
}

/// The caller's identity may not make this request to this service (RFC 9209
/// `http_request_denied`).
pub fn access_denied(identity: &str, service: &str) -> Answer {
    Answer::new(
        Side::Server,
        403,
        "http_request_denied",
        format!("{identity} may not make this request to service {service:?}"),
    )
}

/// A caller from an address the client listener does not admit.
pub fn source_denied(addr: std::net::IpAddr) -> Answer {
    Answer::new(
        Side::Client,
        403,
        "http_request_denied",
        format!("callers from {addr} may not use this listener"),
    )
}

/// Server side: the request fields from the peer cannot become HTTP/1.1.
pub fn bad_h3_request(reason: &str) -> Answer {
    Answer::new(
        Side::Server,
        400,
        "http_request_error",
        format!("bad request: {reason}"),
    )
}

/// Server side: a well-formed CONNECT the server does not carry (`what`: a plain CONNECT, or an
/// extended CONNECT for a protocol other than WebSocket); nothing reached the upstream.
pub fn tunnel_not_carried(what: &str) -> Answer {
    Answer::new(
        Side::Server,
        501,
        "http_request_denied",
        format!("{what} is not carried (only :protocol websocket is)"),
    )
}

/// Server side: a plain CONNECT through a service without `connect_to` (CONNECT is off).
pub fn connect_off(service: &str) -> Answer {
    Answer::new(
        Side::Server,
        501,
        "http_request_denied",
        format!("a plain CONNECT is not carried: service {service:?} has no connect_to"),
    )
}

/// Server side: a plain CONNECT to a destination its service's `connect_to` does not list.
pub fn connect_denied(destination: &str, service: &str) -> Answer {
    Answer::new(
        Side::Server,
        403,
        "destination_ip_prohibited",
        format!("CONNECT to {destination} is not allowed: service {service:?} does not list it in connect_to"),
    )
}

/// Server side: the upstream accepted a WebSocket upgrade with a `Sec-WebSocket-Accept` that
/// does not match the key the server sent.
pub fn upstream_bad_accept() -> Answer {
    upstream_invalid("Sec-WebSocket-Accept does not match the key sent")
}

/// Server side: cannot connect to the upstream.
pub fn upstream_unreachable(err: &std::io::Error) -> Answer {
    Answer::new(
        Side::Server,
        502,
        "connection_refused",
        format!("cannot connect to the upstream: {err}"),
    )
}

/// Server side: the upstream closed or broke the connection before a complete response head.
pub fn upstream_closed() -> Answer {
    Answer::new(
        Side::Server,
        502,
        "connection_terminated",
        "the upstream closed the connection without a response",
    )
}

/// Server side: the upstream's response head is not valid HTTP/1.1.
pub fn upstream_invalid(reason: &str) -> Answer {
    Answer::new(
        Side::Server,
        502,
        "http_response_incomplete",
        format!("invalid response from the upstream: {reason}"),
    )
}

/// Server side: the upstream did not connect in time.
pub fn upstream_connect_timeout(ms: u128) -> Answer {
    Answer::new(
        Side::Server,
        504,
        "connection_timeout",
        format!("the upstream did not accept the connection within {ms} ms"),
    )
}

/// Server side: the upstream did not answer in time.
pub fn upstream_timeout(ms: u128) -> Answer {
    Answer::new(
        Side::Server,
        504,
        "http_response_timeout",
        format!("the upstream did not answer within {ms} ms"),
    )
}
