//! The tunnel of an [`Exchange`], on a fresh upstream connection (never a pooled one, never
//! pooled after), then bytes both ways. Two kinds:
//! - an extended CONNECT with `:protocol websocket` (RFC 9220) carried to the service's
//!   upstream as an HTTP/1.1 upgrade;
//! - a plain CONNECT (RFC 9114 §4.4) to a destination the service's `connect_to` lists: a
//!   TCP connection to it, open as soon as it is connected.
//!
//! ```text
//! WebSocket: Awaiting --101--> Open: stream DATA <-> upstream bytes, FIN <-> half-close
//!                     --other final status--> a normal response (the stream ends; the
//!                                             caller's data is refused with STOP_SENDING)
//! CONNECT:   Awaiting --connected--> Open (the stream gets :status 200)
//!                     --connect failed or timed out--> 502/504
//! ```
//! The byte movers are the body pumps with until-close framing on both sides, so the tunnel has
//! the bodies' backpressure (bounded buffers, QUIC flow control, TCP). A broken upstream
//! connection (a reset, a write error) resets the stream: the caller never sees a clean end
//! for a tunnel that did not end cleanly. No byte moving either way for `http.tunnel_idle_timeout_ms`
//! resets it too.

use std::time::{Duration, Instant};

use quiche::h3::NameValue;

use crate::bridge::answers;
use crate::bridge::headers::{self, Field};
use crate::bridge::pump::H1ToH3;
use crate::bridge::websocket;
use crate::h1::body::BodyFraming;
use crate::h1::head::{headers_named, ResponseHead};
use crate::metrics::Metrics;
use crate::resolve::HostPort;

use super::port::UpstreamConn;
use super::{Ctx, Exchange, ExchangeTimer, Failure, Response};

/// What the tunnel carries.
#[derive(Debug)]
pub(super) enum TunnelKind {
    /// WebSocket, with the key the server made up because the caller sent none (RFC 8441
    /// §5): the upstream's accept is checked against it here and not relayed.
    WebSocket { generated_key: Option<String> },
    /// A plain CONNECT to this destination.
    Connect(HostPort),
}

/// A tunnel's state while its exchange runs.
#[derive(Debug)]
pub(super) struct Tunnel {
    pub(super) kind: TunnelKind,
    /// When the upstream accepted the upgrade (or the destination the connection); bytes
    /// flow from then on.
    opened: Option<Instant>,
    /// The stream's end was passed on as the upstream connection's FIN.
    write_closed: bool,
    idle_timeout: Duration,
    /// Bytes already counted in the metrics: (to the upstream, from the upstream).
    counted: (u64, u64),
}

impl Tunnel {
    pub(super) fn new(kind: TunnelKind) -> Self {
        Tunnel {
            kind,
            opened: None,
            write_closed: false,
            idle_timeout: Duration::ZERO,
            counted: (0, 0),
        }
    }

    /// The destination of a plain CONNECT.
    pub(super) fn destination(&self) -> Option<&HostPort> {
        match &self.kind {
            TunnelKind::Connect(d) => Some(d),
            TunnelKind::WebSocket { .. } => None,
        }
    }

    /// The access line's name of the kind.
    fn name(&self) -> &'static str {
        match self.kind {
            TunnelKind::WebSocket { .. } => "websocket",
            TunnelKind::Connect(_) => "connect",
        }
    }
}

impl Exchange {
    /// The upstream accepted the upgrade: bytes flow both ways.
    pub(super) fn tunnel_open(&self) -> bool {
        self.tunnel.as_ref().is_some_and(|t| t.opened.is_some())
    }

    /// Whether stream bytes may go to the upstream: always for a request, only once the
    /// upstream accepted the upgrade for a tunnel.
    pub(super) fn request_may_flow(&self) -> bool {
        self.tunnel.is_none() || self.tunnel_open()
    }

    /// A tunnel's both directions ended cleanly (or there is no open tunnel).
    pub(super) fn tunnel_ended(&self) -> bool {
        match &self.tunnel {
            Some(t) if t.opened.is_some() => self.request_done && t.write_closed,
            _ => true,
        }
    }

    /// The upstream's `101 Switching Protocols`: the stream gets `:status 200` with the
    /// upstream's end-to-end fields (`Sec-WebSocket-Protocol`, `-Extensions`, `-Accept` unless
    /// the key was ours), and the tunnel opens.
    pub(super) fn open_tunnel(
        &mut self,
        ctx: &mut Ctx<'_>,
        resp: &ResponseHead,
    ) -> Result<bool, Failure> {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return Err(Failure::Answer(answers::upstream_invalid(
                "101 Switching Protocols to a request that asked for no upgrade",
            )));
        };
        let upgraded_to_websocket = headers_named(&resp.headers, "upgrade").any(|v| {
            v.trim_ascii()
                .eq_ignore_ascii_case(websocket::PROTOCOL.as_bytes())
        });
        if !upgraded_to_websocket {
            return Err(Failure::Answer(answers::upstream_invalid(
                "101 Switching Protocols without Upgrade: websocket",
            )));
        }
        let mut fields = headers::response_to_h3(resp);
        fields[0] = Field::status(200);
        if let TunnelKind::WebSocket {
            generated_key: Some(key),
        } = &tunnel.kind
        {
            let expected = websocket::accept_for(key.as_bytes());
            let mut accepts = headers_named(&resp.headers, "sec-websocket-accept");
            if accepts.next() != Some(expected.as_bytes()) || accepts.next().is_some() {
                return Err(Failure::Answer(answers::upstream_bad_accept()));
            }
            fields.retain(|f| f.name() != b"sec-websocket-accept");
        }
        self.start_tunnel(ctx, fields);
        Ok(true)
    }

    /// A plain CONNECT's connection to its destination is up: the stream gets `:status 200`
    /// and the tunnel opens. Whether it did (once, when the connection is new).
    pub(super) fn open_connect_tunnel(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let awaiting = self
            .tunnel
            .as_ref()
            .is_some_and(|t| t.opened.is_none() && t.destination().is_some());
        if !awaiting || !matches!(self.response, Response::AwaitHead) {
            return false;
        }
        self.start_tunnel(ctx, vec![Field::status(200)]);
        true
    }

    /// The tunnel opens: the stream's head is `fields`, bytes flow both ways from now on.
    fn start_tunnel(&mut self, ctx: &mut Ctx<'_>, fields: Vec<Field>) {
        let Some(tunnel) = self.tunnel.as_mut() else {
            return;
        };
        tunnel.opened = Some(ctx.now);
        tunnel.idle_timeout = ctx.tunnel_idle_timeout;
        log::debug!("stream {}: {} tunnel open", self.stream, tunnel.name());
        ctx.metrics.record_tunnel_opened();
        self.status = 200;
        self.response_body = Some(H1ToH3::new(BodyFraming::UntilClose, None));
        self.response = Response::HeadReady {
            fields,
            fin: false,
            interim: false,
        };
        self.timers.clear(ExchangeTimer::Response);
        self.timers
            .arm(ExchangeTimer::Idle, ctx.now + ctx.tunnel_idle_timeout);
    }

    /// The upstream answered the upgrade with a final response instead: it is relayed as a
    /// normal response, and the caller's tunnel bytes are refused.
    pub(super) fn tunnel_refused(&mut self, ctx: &mut Ctx<'_>) {
        if self.tunnel.take().is_some() {
            self.stop_request(ctx);
        }
    }

    /// An open tunnel whose upstream connection failed is reset, before its until-close
    /// framing could turn the failure into a clean end.
    pub(super) fn check_tunnel_upstream(&self, up: &dyn UpstreamConn) -> Result<(), Failure> {
        if self.tunnel_open() && up.is_broken() {
            return Err(Failure::Reset(
                "the upstream connection of the tunnel failed",
            ));
        }
        Ok(())
    }

    /// The stream was reset: an open tunnel's upstream connection is reset too (RST), so the
    /// upstream never takes an aborted tunnel for a clean end.
    pub(super) fn abort_tunnel_upstream(&self, ctx: &mut Ctx<'_>, key: usize) {
        if self.tunnel_open() {
            if let Some(up) = ctx.pool.conn(key) {
                up.abort_on_close();
            }
        }
    }

    /// The stream's end was written to the upstream: its connection is half-closed (FIN)
    /// once the queued bytes are out.
    pub(super) fn half_close_tunnel(&mut self, up: &mut dyn UpstreamConn) -> bool {
        let request_done = self.request_done;
        match self.tunnel.as_mut() {
            Some(t) if t.opened.is_some() && request_done && !t.write_closed => {
                t.write_closed = up.close_write();
                t.write_closed
            }
            _ => false,
        }
    }

    /// Counts the bytes moved since the last count (both ways) and, when any moved, starts
    /// the idle timeout again.
    pub(super) fn count_tunnel_bytes(&mut self, now: Instant, metrics: &mut Metrics) {
        if let Some(idle) = self.record_tunnel_bytes(metrics) {
            self.timers.arm(ExchangeTimer::Idle, now + idle);
        }
    }

    /// Records the bytes an open tunnel moved since the last count; its idle timeout when
    /// any moved.
    fn record_tunnel_bytes(&mut self, metrics: &mut Metrics) -> Option<Duration> {
        let moved = (
            self.request_body.received,
            self.response_body.as_ref().map_or(0, |b| b.sent),
        );
        let t = self.tunnel.as_mut().filter(|t| t.opened.is_some())?;
        if moved == t.counted {
            return None;
        }
        metrics.record_tunnel_bytes(moved.0 - t.counted.0, moved.1 - t.counted.1);
        t.counted = moved;
        Some(t.idle_timeout)
    }

    /// The exchange ended (any way, its session's loss included): the last bytes are counted
    /// and an open tunnel is no longer counted as open. Returns whether a tunnel was open.
    pub fn close_tunnel(&mut self, metrics: &mut Metrics) -> bool {
        self.record_tunnel_bytes(metrics);
        let was_open = self
            .tunnel
            .as_mut()
            .is_some_and(|t| t.opened.take().is_some());
        if was_open {
            metrics.record_tunnel_closed();
        }
        was_open
    }

    /// The access line's mark for a tunnel: how long it was open.
    pub(super) fn tunnel_note(&self, now: Instant) -> String {
        match self
            .tunnel
            .as_ref()
            .and_then(|t| Some((t.name(), t.opened?)))
        {
            Some((name, opened)) => format!(
                " tunnel={name} open={:.1}ms",
                now.saturating_duration_since(opened).as_secs_f64() * 1000.0
            ),
            None => String::new(),
        }
    }
}
