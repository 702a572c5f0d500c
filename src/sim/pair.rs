//! Both proxies in one process: each role's own sans-IO tables (the client's
//! [`Downstreams`], the server's [`Requests`] and [`CidRoutes`]) with the production state
//! machines in them, each side's quiche session behind the real datagram path ([`UdpIo`] over
//! a [`SimSocket`]), the virtual link between them, service A and service B in memory, and a
//! manual clock for ptproxy's own timers. Each [`SimPair::turn`] delivers what the link
//! carries, lets quiche run on both sides, takes each role's turn as its driver takes one, and
//! sends. Only the drivers' socket plumbing is not here: accepting and registering TCP
//! connections, the client's reconnects, the server's admission of new handshakes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use ring::hmac;
use slab::Slab;

use super::endpoints::{service_conn, Origin, ServiceConn};
use super::link::{Direction, Faults, Rng};
use super::session_link::SimLink;
use super::socket::{send_turn, SimSocket, SocketFaults, SocketStats};
use crate::client::downstream::Downstream;
use crate::client::downstreams::{Downstreams, Env as DownEnv};
use crate::config::{self, ClientConfig, Config, LossHidingMode, Role, ServerConfig};
use crate::metrics::Metrics;
use crate::quic::amplification::SendBudget;
use crate::quic::session::Session;
use crate::quic::udp::{LossHider, UdpIo};
use crate::quic::{self, tls};
use crate::server::cid_routes::CidRoutes;
use crate::server::peer::PeerConn;
use crate::server::requests::{Env, Requests};

/// The simulated addresses of the two proxies (never bound: the link is virtual).
const CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001);
const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40002);

fn configs(client_json: &str, server_json: &str) -> (ClientConfig, ServerConfig) {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pki");
    let Ok(Config::Client(c)) = config::parse(client_json, &pki, Role::Client) else {
        panic!("client config");
    };
    let Ok(Config::Server(s)) = config::parse(server_json, &pki, Role::Server) else {
        panic!("server config");
    };
    (c, s)
}

/// Default configs of the pair (the files of `tests/data/pki`).
pub fn default_configs() -> (ClientConfig, ServerConfig) {
    configs(
        r#"{"listen": ["127.0.0.1:8080"],
            "peer": {"address": "127.0.0.1:40002", "server_name": "localhost"},
            "tls": {"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}}"#,
        r#"{"listen": "127.0.0.1:40002", "upstream": {"address": "127.0.0.1:9"},
            "tls": {"ca": "ca.pem", "cert": "server.pem", "key": "server.key"}}"#,
    )
}

/// The client role in the simulation: service A's connections in the client role's own
/// sans-IO table ([`Downstreams`]) over one session that never reconnects.
struct ClientSide {
    link: SimLink,
    udp: UdpIo<SimSocket>,
    hider: LossHider,
    downs: Downstreams<ServiceConn>,
    metrics: Metrics,
}

/// The server role in the simulation: its sessions routed by connection ID and their request
/// streams, in the server role's own sans-IO tables ([`CidRoutes`], [`Requests`]).
struct ServerSide {
    conns: Slab<PeerConn>,
    routes: CidRoutes,
    /// Derives our first connection ID from the client's chosen one (as the server does).
    cid_key: hmac::Key,
    requests: Requests,
    /// The server's one datagram path, shared by its sessions.
    udp: UdpIo<SimSocket>,
    hider: LossHider,
    quiche: quiche::Config,
    origin: Origin,
    metrics: Metrics,
}

impl ServerSide {
    /// One datagram from the client, routed by its destination connection ID as the server
    /// routes it; a client's first Initial makes the session.
    fn receive(&mut self, mut data: Vec<u8>, from: SocketAddr, real: Instant) {
        let cid_len = self.routes.cid_len();
        let Ok(hdr) = quiche::Header::from_slice(&mut data, cid_len) else {
            return;
        };
        let derived = hmac::sign(&self.cid_key, &hdr.dcid);
        let derived = derived.as_ref()[..cid_len].to_vec();
        let key = self
            .routes
            .get(hdr.dcid.as_ref())
            .or_else(|| self.routes.get(&derived));
        let key = match key {
            Some(k) => k,
            None if hdr.ty == quiche::Type::Initial => self.accept(derived, from, real),
            None => return,
        };
        if let Some(pc) = self.conns.get_mut(key) {
            pc.receive(&mut data, hdr.ty, from, SERVER_ADDR, real);
        }
    }

    fn accept(&mut self, scid: Vec<u8>, from: SocketAddr, real: Instant) -> usize {
        self.quiche
            .set_stateless_reset_token(Some(self.routes.reset_token(&scid)));
        let cid = quiche::ConnectionId::from_ref(&scid);
        let conn = quiche::accept(&cid, None, SERVER_ADDR, from, &mut self.quiche).expect("accept");
        let session = Session::new(conn, Duration::from_secs(3600), None, real);
        let far = real + Duration::from_secs(3600);
        let pc = PeerConn::new(
            session,
            from,
            SERVER_ADDR,
            scid.clone(),
            SendBudget::validated(),
            far,
        );
        let key = self.conns.insert(pc);
        self.routes.insert(scid, key);
        key
    }
}

pub struct SimPair {
    pub client_cfg: ClientConfig,
    pub server_cfg: ServerConfig,
    client: ClientSide,
    server: ServerSide,
    to_server: Direction,
    to_client: Direction,
    pub faults: Faults,
    /// Turns during which the link drops everything (a path that died for a while).
    pub blackhole: std::ops::Range<u64>,
    /// Nothing reaches the server any more (what is in flight towards it is lost too).
    pub server_cut_off: bool,
    rng: Rng,
    /// The manual clock of ptproxy's timers.
    pub now: Instant,
    pub turns: u64,
    /// Turns in which the server was woken (see `server_turn`).
    pub server_woken: u64,
    /// The client's next connection ID (by sequence number) to retire.
    next_retired_cid: u64,
}

fn quiche_config_for(
    t: &crate::config::TransportConfig,
    tls: boring::ssl::SslContextBuilder,
    largest_head: usize,
) -> quiche::Config {
    let mut c = quic::setup::quiche_config(t, tls, largest_head).expect("quiche config");
    // The link delivers in whole turns: acknowledge at once instead of waiting on a real-time
    // delayed-ACK timer.
    c.set_max_ack_delay(0);
    c
}

impl SimPair {
    pub fn new(seed: u64, faults: Faults) -> Self {
        Self::with_server_event_cap(seed, faults, crate::reactor::backlog::H3_EVENTS_PER_TURN)
    }

    /// A pair whose server polls a session for at most `events_per_turn` HTTP/3 events per
    /// turn.
    pub fn with_server_event_cap(seed: u64, faults: Faults, events_per_turn: usize) -> Self {
        let (client_cfg, server_cfg) = default_configs();
        let now = Instant::now();
        let (client_addr, server_addr) = (CLIENT_ADDR, SERVER_ADDR);
        let tls = tls::client_context(&client_cfg.tls).expect("client TLS");
        let mut qc = quiche_config_for(&client_cfg.transport, tls, client_cfg.http.max_head_bytes);
        let cid_len = client_cfg.transport.connection_id_bytes;
        let conn =
            crate::client::dial::connect("localhost", client_addr, server_addr, &mut qc, cid_len)
                .expect("connect");
        let session = Session::new(conn, Duration::from_secs(3600), None, now);
        let tls = tls::server_context(
            &server_cfg.tls,
            tls::AllowedNames::new(None),
            Default::default(),
        )
        .expect("server TLS");
        let server_quiche =
            quiche_config_for(&server_cfg.transport, tls, server_cfg.http.max_head_bytes);
        SimPair {
            client: ClientSide {
                link: SimLink { session },
                udp: UdpIo::new(SimSocket::new(client_addr, seed ^ 0xc11e)),
                hider: hider_off(&client_cfg),
                downs: Downstreams::default(),
                metrics: Metrics::new("client", now),
            },
            server: ServerSide {
                conns: Slab::new(),
                routes: CidRoutes::new(
                    hmac::Key::new(hmac::HMAC_SHA256, b"sim reset"),
                    server_cfg.transport.connection_id_bytes,
                ),
                cid_key: hmac::Key::new(hmac::HMAC_SHA256, b"sim cid"),
                requests: Requests::with_event_cap(events_per_turn),
                udp: UdpIo::new(SimSocket::new(server_addr, seed ^ 0x5e7e)),
                hider: hider_off(&client_cfg),
                quiche: server_quiche,
                origin: Origin::default(),
                metrics: Metrics::new("server", now),
            },
            client_cfg,
            server_cfg,
            to_server: Direction::new(),
            to_client: Direction::new(),
            faults,
            blackhole: 0..0,
            server_cut_off: false,
            rng: Rng::new(seed),
            now,
            turns: 0,
            server_woken: 0,
            next_retired_cid: 0,
        }
    }

    /// Opens a connection from service A; returns its key.
    pub fn open(&mut self) -> usize {
        let down = Downstream::new(service_conn(), CLIENT_ADDR, &self.client_cfg.http, self.now);
        self.client.downs.insert(down)
    }

    pub fn conn(&mut self, key: usize) -> Option<&mut ServiceConn> {
        self.client.downs.get_mut(key).map(|d| &mut d.tcp)
    }

    pub fn is_up(&self) -> bool {
        self.client.link.session.is_usable()
            && self
                .server
                .conns
                .iter()
                .any(|(_, pc)| pc.session.is_usable())
    }

    /// Datagrams sent, dropped, and dropped by a blackhole, both directions.
    pub fn link_figures(&self) -> (u64, u64, u64) {
        (
            self.to_server.sent + self.to_client.sent,
            self.to_server.dropped + self.to_client.dropped,
            self.to_server.blackholed + self.to_client.blackholed,
        )
    }

    /// One turn: the link delivers, quiche runs (its own timers on the real clock), HTTP/3
    /// events reach the exchanges, every connection and exchange is driven, ptproxy's timers
    /// fire on the manual clock (advanced by `step`), and both sides send.
    pub fn turn(&mut self, step: Duration) {
        self.turns += 1;
        self.now += step;
        let to_server = self.deliver();
        let real = Instant::now();
        self.client.link.session.handle_timeout(real);
        for (_, pc) in self.server.conns.iter_mut() {
            pc.session.handle_timeout(real);
        }
        self.client_turn();
        self.server_turn(to_server > 0);
        self.send_all();
    }

    /// The earliest real instant quiche wants to be woken at, on either side.
    pub fn quiche_deadline(&self) -> Option<Instant> {
        let c = self.client.link.session.conn.timeout_instant();
        let s = self
            .server
            .conns
            .iter()
            .filter_map(|(_, pc)| pc.session.conn.timeout_instant())
            .min();
        let waiting = crate::time::earliest(
            self.client.udp.next_release(),
            self.server.udp.next_release(),
        );
        crate::time::earliest(crate::time::earliest(c, s), waiting)
    }

    /// Nothing on the link, and no socket full (a full one has room again next turn).
    pub fn link_idle(&self) -> bool {
        self.to_server.is_empty()
            && self.to_client.is_empty()
            && !self.client.udp.socket.is_full()
            && !self.server.udp.socket.is_full()
    }

    /// The link's datagrams arrive in each side's socket and are read back through the
    /// datagram path (cutting GRO aggregates apart) into quiche; returns how many datagrams
    /// reached the server.
    fn deliver(&mut self) -> usize {
        let (client_addr, server_addr) = (CLIENT_ADDR, SERVER_ADDR);
        let real = Instant::now();
        let sockets = SocketFaults::from(&self.faults);
        let sv = &mut self.server;
        sv.udp.socket.faults = sockets;
        let mut to_server = self.to_server.deliver(&self.faults, &mut self.rng);
        if self.server_cut_off {
            to_server.clear();
        }
        let delivered = to_server.len();
        for d in to_server {
            sv.udp.socket.arrive(d, client_addr);
        }
        for _ in 0..100_000 {
            let Ok(Some((d, from))) = sv.udp.recv() else {
                break;
            };
            let d = d.to_vec();
            sv.receive(d, from, real);
        }
        let c = &mut self.client;
        c.udp.socket.faults = sockets;
        for d in self.to_client.deliver(&self.faults, &mut self.rng) {
            c.udp.socket.arrive(d, server_addr);
        }
        for _ in 0..100_000 {
            let Ok(Some((d, from))) = c.udp.recv() else {
                break;
            };
            c.link.session.handle_datagram(d, from, client_addr, real);
        }
        delivered
    }

    /// The link's faults this turn (the scheduled blackhole included).
    fn faults_now(&self) -> Faults {
        Faults {
            blackhole: self.faults.blackhole || self.blackhole.contains(&self.turns),
            ..self.faults
        }
    }

    /// Both sides send through their datagram path; what left their sockets goes on the link.
    fn send_all(&mut self) {
        let faults = self.faults_now();
        let real = Instant::now();
        let c = &mut self.client;
        send_turn(&mut c.udp, &mut c.link.session, &mut c.hider, &faults, real);
        for (d, _) in c.udp.socket.take_outbox() {
            self.to_server.send(&d, &faults, &mut self.rng);
        }
        let sv = &mut self.server;
        for (_, pc) in sv.conns.iter_mut() {
            send_turn(&mut sv.udp, &mut pc.session, &mut sv.hider, &faults, real);
        }
        for (d, _) in sv.udp.socket.take_outbox() {
            self.to_client.send(&d, &faults, &mut self.rng);
        }
    }

    /// What each side's socket did: (client, server).
    pub fn socket_stats(&self) -> (SocketStats, SocketStats) {
        (self.client.udp.socket.stats, self.server.udp.socket.stats)
    }

    /// The client's turn, as its driver takes one, except that every connection of service
    /// A counts as ready (the in-memory connections raise no readiness events).
    fn client_turn(&mut self) {
        let c = &mut self.client;
        c.downs.mark_all_dirty();
        let mut env = DownEnv {
            now: self.now,
            links: &mut c.link,
            http: &self.client_cfg.http,
            default_authority: "b.test",
            stopping: false,
            metrics: &mut c.metrics,
        };
        let downs = &mut c.downs;
        downs.poll_h3(&mut env);
        downs.collect_writable(&mut env);
        downs.fire_timers(&mut env);
        if env.links.accepts_requests(0) {
            downs.send_waiting_heads(&mut env);
        }
        downs.drive_dirty(&mut env);
        downs.take_closed();
    }

    /// The server's turn, as its driver takes one: only when woken by datagrams, by work left
    /// from the last turn ([`crate::reactor::agenda::Agenda::has_work`]) or by a timer due on the manual clock.
    fn server_turn(&mut self, datagrams: bool) {
        let sv = &mut self.server;
        let timer_due = sv
            .requests
            .agenda()
            .next_deadline()
            .is_some_and(|t| t <= self.now);
        if !(datagrams || timer_due || sv.requests.agenda().has_work()) {
            return;
        }
        self.server_woken += 1;
        for (ck, pc) in sv.conns.iter_mut() {
            pc.announce_if_usable(self.now);
            sv.routes.refresh(ck, pc);
        }
        let mut env = Env {
            now: self.now,
            cfg: &self.server_cfg,
            metrics: &mut sv.metrics,
            upstreams: &mut sv.origin,
            stopping: false,
        };
        sv.requests.poll_sessions(&mut sv.conns, &mut env);
        sv.requests.fire_timers(&mut sv.conns, &mut env);
        sv.requests.drive_dirty(&mut sv.conns, &mut env);
    }

    /// Entries in both sides' timer tables.
    pub fn timer_entries(&self) -> usize {
        self.client.downs.agenda().timer_entries() + self.server.requests.agenda().timer_entries()
    }

    /// Connection IDs the server routes, and the most any one session holds.
    pub fn routed_cids(&self) -> (usize, usize) {
        let most = self.server.conns.iter().map(|(_, pc)| pc.cids.len()).max();
        (self.server.routes.len(), most.unwrap_or(0))
    }

    /// The client retires the server's connection ID in use and moves to a spare one, as a
    /// client does when it migrates; false when it holds no spare ID yet.
    pub fn retire_client_cid(&mut self) -> bool {
        let conn = &mut self.client.link.session.conn;
        if conn.available_dcids() == 0 || conn.retire_dcid(self.next_retired_cid).is_err() {
            return false;
        }
        self.next_retired_cid += 1;
        true
    }

    /// Exchanges the server holds now.
    pub fn server_exchanges(&self) -> usize {
        self.server.requests.len()
    }

    /// Requests service B read (on its connections still open).
    pub fn origin_requests(&self) -> u64 {
        self.server.origin.requests_read()
    }

    /// Upstream connections service B accepted.
    pub fn origin_connects(&self) -> u64 {
        self.server.origin.connects
    }
}

fn hider_off(cfg: &ClientConfig) -> LossHider {
    let mut hiding = cfg.transport.loss_hiding;
    hiding.mode = LossHidingMode::Off;
    LossHider::new(hiding)
}
