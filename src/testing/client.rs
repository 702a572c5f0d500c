//! Doubles of a downstream's ports: the session ([`MemSession`]; service A's connection is a
//! [`MemConn`]); and [`ClientRig`], one [`Downstream`] wired to them with a manual clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quiche::h3::{Header as H3Header, NameValue};

use super::{Clocked, MemConn, MAX_YIELDS};
use crate::bridge::headers::Field;
use crate::bridge::stream::{OpenRefused, SessionPort, StreamFailed};
use crate::client::downstream::{Ctx, Downstream};
use crate::client::downstreams::Links;
use crate::client::peers::choice::{pick, Health};
use crate::client::stream_routes::StreamRoutes;
use crate::config::{ClientHttpConfig, Forwarding, PeerGroup, Policy};
use crate::metrics::Metrics;
use crate::quic::session::Session;

/// The session: opens streams (or refuses with `refuse`), records what they carry and serves
/// the peer's response bodies from `incoming`.
#[derive(Default)]
pub struct MemSession {
    pub refuse: Option<OpenRefused>,
    /// The peer did not enable extended CONNECT.
    pub no_extended_connect: bool,
    /// The peer's SETTINGS did not arrive yet.
    pub settings_pending: bool,
    /// The next stream id.
    pub next: u64,
    /// The field sections of the streams opened, with their FIN flag.
    pub opened: Vec<(Vec<H3Header>, bool)>,
    /// Request body bytes sent, per stream.
    pub body: HashMap<u64, Vec<u8>>,
    /// Response body bytes the peer sent, not read yet, per stream.
    pub incoming: HashMap<u64, Vec<u8>>,
}

impl SessionPort for MemSession {
    fn accepts(&self, _fields: &[Field]) -> bool {
        true
    }
    fn extended_connect(&self) -> Option<bool> {
        (!self.settings_pending).then_some(!self.no_extended_connect)
    }
    fn open_request(&mut self, fields: &[Field], fin: bool) -> Result<u64, OpenRefused> {
        if let Some(why) = &self.refuse {
            return Err(why.clone());
        }
        let fields = fields.iter().map(|f| H3Header::new(f.name(), f.value()));
        self.opened.push((fields.collect(), fin));
        let id = self.next;
        self.next += 4;
        Ok(id)
    }
    fn send_body(
        &mut self,
        id: u64,
        data: &[u8],
        _fin: bool,
    ) -> Result<Option<usize>, StreamFailed> {
        self.body.entry(id).or_default().extend_from_slice(data);
        Ok(Some(data.len()))
    }
    fn send_trailers(&mut self, _id: u64, _fields: &[H3Header]) -> Result<bool, StreamFailed> {
        Ok(true)
    }
    fn recv_body(&mut self, id: u64, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let data = self.incoming.entry(id).or_default();
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        data.drain(..n);
        Ok(n)
    }
    fn stop_sending(&mut self, _id: u64, _code: u64) {}
    fn reset(&mut self, _id: u64, _code: u64) {}
}

/// The links of the rig: link 0, its [`MemSession`] up while `up` (and silent while
/// `suspect`), and optionally a second peer (link 1).
pub struct MemLink {
    pub session: MemSession,
    pub up: bool,
    pub suspect: bool,
    pub spare: Option<MemPeer>,
}

/// The rig's second peer.
#[derive(Default)]
pub struct MemPeer {
    pub session: MemSession,
    pub up: bool,
}

impl MemLink {
    /// The session of `link`.
    pub fn session_of(&mut self, link: usize) -> Option<&mut MemSession> {
        match link {
            0 => Some(&mut self.session),
            1 => self.spare.as_mut().map(|p| &mut p.session),
            _ => None,
        }
    }

    fn health(&self, link: usize) -> Health {
        match link {
            0 if self.up && !self.suspect => Health::Healthy,
            0 if self.up => Health::Suspect,
            1 if self.spare.as_ref().is_some_and(|p| p.up) => Health::Healthy,
            _ => Health::Down,
        }
    }
}

impl Links for MemLink {
    fn key_bound(&self) -> usize {
        2
    }
    fn session_mut(&mut self, _link: usize) -> Option<&mut Session> {
        None
    }
    fn usable(&mut self, _link: usize) -> Option<&mut Session> {
        None
    }
    fn accepts_requests(&self, link: usize) -> bool {
        self.health(link) != Health::Down
    }
    fn in_early_data(&self, _link: usize) -> bool {
        false
    }
    fn on_goaway(&mut self, _link: usize) {}
    fn cwnd(&self, _link: usize) -> usize {
        0
    }
    fn choose(&self, _group: Option<&PeerGroup>, load: &dyn Fn(usize) -> usize) -> Option<usize> {
        let candidates = [(0, self.health(0)), (1, self.health(1))];
        pick(&candidates, Policy::Failover, load)
    }
    fn why_down(&self, _group: Option<&PeerGroup>) -> String {
        "test (down)".into()
    }
    fn port(&mut self, link: usize) -> Option<&mut dyn SessionPort> {
        if self.health(link) == Health::Down {
            return None;
        }
        let session = self.session_of(link)?;
        Some(session as &mut dyn SessionPort)
    }
}

/// The client HTTP settings of the rig: session wait 2 s, head timeout 5 s, keep-alive 10 s,
/// body timeout 3 s.
pub fn http_config() -> ClientHttpConfig {
    let second = Duration::from_secs(1);
    ClientHttpConfig {
        session_wait: 2 * second,
        max_connections: 16,
        head_timeout: 5 * second,
        keepalive_timeout: 10 * second,
        max_head_bytes: 16 * 1024,
        max_body_bytes: None,
        access_log: false,
        forwarding: Forwarding {
            forwarded: false,
            via: false,
            x_forwarded_for: false,
        },
        early_data_methods: Vec::new(),
        body_timeout: 3 * second,
        tunnel_idle_timeout: 100 * second,
        compression: Default::default(),
    }
}

/// One downstream on a [`MemConn`] (output capacity `cap`) and a [`MemSession`] (up while
/// `link.up`), with a manual clock.
pub struct ClientRig {
    pub now: Instant,
    pub http: ClientHttpConfig,
    pub link: MemLink,
    pub streams: StreamRoutes,
    pub metrics: Metrics,
    pub down: Downstream<MemConn>,
}

impl ClientRig {
    pub fn new(now: Instant, cap: usize) -> Self {
        let http = http_config();
        let conn = MemConn::accepted(cap);
        let peer = "127.0.0.1:40000".parse().expect("address");
        ClientRig {
            now,
            down: Downstream::new(conn, peer, &http, now),
            http,
            link: MemLink {
                session: MemSession::default(),
                up: true,
                suspect: false,
                spare: None,
            },
            streams: StreamRoutes::default(),
            metrics: Metrics::new("client", now),
        }
    }

    /// Calls `f` on the downstream, then drives it while it has work left, as the reactor does.
    pub fn with(&mut self, f: impl FnOnce(&mut Downstream<MemConn>, &mut Ctx<'_>)) {
        let mut ctx = Ctx {
            key: 0,
            now: self.now,
            http: &self.http,
            default_authority: "b.test",
            links: &mut self.link,
            stopping: false,
            hold_bodies: false,
            defer_flush: false,
            streams: &mut self.streams,
            metrics: &mut self.metrics,
        };
        f(&mut self.down, &mut ctx);
        for _ in 0..MAX_YIELDS {
            if !self.down.more_work {
                return;
            }
            self.down.drive(&mut ctx);
        }
        panic!("drive keeps yielding: a busy loop");
    }

    pub fn drive(&mut self) {
        self.with(|d, ctx| d.drive(ctx));
    }

    /// Service A sends `bytes`; the downstream is driven.
    pub fn send(&mut self, bytes: &[u8]) {
        self.down.tcp.send(bytes);
        self.drive();
    }

    /// The peer's complete response on the stream the downstream has open (on whichever
    /// link), else the last one opened on link 0.
    pub fn respond(&mut self, status: &str, body: &[u8]) {
        let open = self.streams.refs().first().copied();
        let (link, id) = open.map_or((0, self.link.session.next - 4), |s| (s.link, s.id));
        let fields = vec![
            H3Header::new(b":status", status.as_bytes()),
            H3Header::new(b"content-length", body.len().to_string().as_bytes()),
        ];
        if let Some(session) = self.link.session_of(link) {
            session.incoming.insert(id, body.to_vec());
        }
        self.with(|d, ctx| d.on_headers(ctx, &fields, !body.is_empty()));
        self.with(|d, ctx| d.on_finished(ctx));
    }

    /// The stream the downstream has open, if any.
    pub fn stream(&self) -> Option<u64> {
        self.streams.refs().iter().map(|s| s.id).max()
    }
}

impl Clocked for ClientRig {
    fn now_mut(&mut self) -> &mut Instant {
        &mut self.now
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.down.timers.next()
    }
    fn on_timer(&mut self) {
        self.with(|d, ctx| d.on_timer(ctx));
    }
}
