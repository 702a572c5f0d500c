//! Both proxies in one process: the client role's downstreams and the server role's exchanges
//! (the production state machines, through their ports), each side's quiche session, the
//! virtual link between them, service A and service B in memory, and a manual clock for
//! ptproxy's own timers. Each [`SimPair::turn`] delivers what the link carries, lets quiche
//! and HTTP/3 run on both sides, and fires the timers due on the manual clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use quiche::h3::Event;
use slab::Slab;

use super::endpoints::{Origin, ServiceConn};
use super::link::{Direction, Faults, Rng};
use super::socket::{send_turn, SimSocket, SocketFaults, SocketStats};
use crate::bridge::stream::{H3Stream, SessionPort};
use crate::client::downstream::{Ctx as DownCtx, Downstream};
use crate::config::{self, ClientConfig, Config, LossHidingMode, Role, ServerConfig};
use crate::metrics::Metrics;
use crate::quic::session::Session;
use crate::quic::udp::{LossHider, UdpIo};
use crate::quic::{self, tls};
use crate::server::exchange::{Ctx as ExCtx, Exchange, Outcome};
use crate::time::TimerTable;

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

/// The client role in the simulation: service A's connections and the session.
struct ClientSide {
    session: Session,
    udp: UdpIo<SimSocket>,
    hider: LossHider,
    downs: Slab<Downstream<ServiceConn>>,
    by_stream: HashMap<u64, usize>,
    timers: TimerTable<usize>,
    metrics: Metrics,
}

/// The server role in the simulation: one exchange per request stream.
struct ServerSide {
    session: Option<Session>,
    udp: UdpIo<SimSocket>,
    hider: LossHider,
    quiche: quiche::Config,
    exchanges: Slab<Exchange>,
    by_stream: HashMap<u64, usize>,
    timers: TimerTable<usize>,
    origin: Origin,
    metrics: Metrics,
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
    rng: Rng,
    /// The manual clock of ptproxy's timers.
    pub now: Instant,
    pub turns: u64,
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
        let (client_cfg, server_cfg) = default_configs();
        let now = Instant::now();
        let (client_addr, server_addr) = (CLIENT_ADDR, SERVER_ADDR);
        let tls = tls::client_context(&client_cfg.tls).expect("client TLS");
        let mut qc = quiche_config_for(&client_cfg.transport, tls, client_cfg.http.max_head_bytes);
        let conn = crate::client::dial::connect("localhost", client_addr, server_addr, &mut qc)
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
                session,
                udp: UdpIo::new(SimSocket::new(client_addr, seed ^ 0xc11e)),
                hider: hider_off(&client_cfg),
                downs: Slab::new(),
                by_stream: HashMap::new(),
                timers: TimerTable::default(),
                metrics: Metrics::new("client", now),
            },
            server: ServerSide {
                session: None,
                udp: UdpIo::new(SimSocket::new(server_addr, seed ^ 0x5e7e)),
                hider: hider_off(&client_cfg),
                quiche: server_quiche,
                exchanges: Slab::new(),
                by_stream: HashMap::new(),
                timers: TimerTable::default(),
                origin: Origin::default(),
                metrics: Metrics::new("server", now),
            },
            client_cfg,
            server_cfg,
            to_server: Direction::new(),
            to_client: Direction::new(),
            faults,
            blackhole: 0..0,
            rng: Rng::new(seed),
            now,
            turns: 0,
        }
    }

    /// Opens a connection from service A; returns its key.
    pub fn open(&mut self) -> usize {
        let down = Downstream::new(
            ServiceConn::default(),
            CLIENT_ADDR,
            &self.client_cfg.http,
            self.now,
        );
        let key = self.client.downs.insert(down);
        self.client
            .timers
            .set(key, self.client.downs[key].timers.next());
        key
    }

    pub fn conn(&mut self, key: usize) -> Option<&mut ServiceConn> {
        self.client.downs.get_mut(key).map(|d| &mut d.tcp)
    }

    pub fn is_up(&self) -> bool {
        self.client.session.is_usable()
            && self.server.session.as_ref().is_some_and(|s| s.is_usable())
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
        self.deliver();
        let real = Instant::now();
        self.client.session.handle_timeout(real);
        if let Some(s) = self.server.session.as_mut() {
            s.handle_timeout(real);
        }
        self.client_events();
        self.server_events();
        self.drive_all();
        self.fire_timers();
        self.send_all();
    }

    /// The earliest real instant quiche wants to be woken at, on either side, or a packet
    /// waiting in a datagram path (pacing) may leave.
    pub fn quiche_deadline(&self) -> Option<Instant> {
        let c = self.client.session.conn.timeout_instant();
        let s = self
            .server
            .session
            .as_ref()
            .and_then(|s| s.conn.timeout_instant());
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
    /// datagram path (cutting GRO aggregates apart) into quiche.
    fn deliver(&mut self) {
        let (client_addr, server_addr) = (CLIENT_ADDR, SERVER_ADDR);
        let real = Instant::now();
        let sockets = SocketFaults::from(&self.faults);
        let sv = &mut self.server;
        sv.udp.socket.faults = sockets;
        for d in self.to_server.deliver(&self.faults, &mut self.rng) {
            sv.udp.socket.arrive(d, client_addr);
        }
        for _ in 0..100_000 {
            let Ok(Some((d, from))) = sv.udp.recv() else {
                break;
            };
            if sv.session.is_none() {
                let mut scid = [0u8; quic::CID_LEN];
                quic::random_bytes(&mut scid);
                let scid = quiche::ConnectionId::from_ref(&scid);
                let Ok(conn) = quiche::accept(&scid, None, server_addr, from, &mut sv.quiche)
                else {
                    continue;
                };
                sv.session = Some(Session::new(conn, Duration::from_secs(3600), None, real));
            }
            if let Some(s) = sv.session.as_mut() {
                s.handle_datagram(d, from, server_addr, real);
            }
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
            c.session.handle_datagram(d, from, client_addr, real);
        }
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
        send_turn(&mut c.udp, &mut c.session.conn, &mut c.hider, &faults, real);
        for (d, _) in c.udp.socket.take_outbox() {
            self.to_server.send(&d, &faults, &mut self.rng);
        }
        let sv = &mut self.server;
        if let Some(s) = sv.session.as_mut() {
            send_turn(&mut sv.udp, &mut s.conn, &mut sv.hider, &faults, real);
        }
        for (d, _) in sv.udp.socket.take_outbox() {
            self.to_client.send(&d, &faults, &mut self.rng);
        }
    }

    /// What each side's socket did: (client, server).
    pub fn socket_stats(&self) -> (SocketStats, SocketStats) {
        (self.client.udp.socket.stats, self.server.udp.socket.stats)
    }

    /// Runs `f` on downstream `key` with the client's context, then sets its timer or drops it.
    fn with_down(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut Downstream<ServiceConn>, &mut DownCtx<'_>),
    ) {
        let c = &mut self.client;
        let Some(down) = c.downs.get_mut(key) else {
            return;
        };
        let usable = c.session.is_usable();
        let mut ctx = DownCtx {
            key,
            now: self.now,
            http: &self.client_cfg.http,
            default_authority: "b.test",
            session: usable.then_some(&mut c.session as &mut dyn SessionPort),
            accepting: usable,
            early: false,
            stopping: false,
            why_down: "simulated peer (down)",
            hold_bodies: false,
            by_stream: &mut c.by_stream,
            metrics: &mut c.metrics,
        };
        f(down, &mut ctx);
        c.timers.set(key, down.timers.next());
    }

    fn client_events(&mut self) {
        for _ in 0..100_000 {
            let s = &mut self.client.session;
            let Some(h3) = s.h3.as_mut() else { return };
            let (id, event) = match h3.poll(&mut s.conn) {
                Ok(pair) => pair,
                Err(_) => return,
            };
            let Some(&key) = self.client.by_stream.get(&id) else {
                continue;
            };
            self.with_down(key, |d, ctx| d.on_stream_event(ctx, event));
        }
    }

    /// Runs `f` on exchange `ek` with the server's ports; removes it once finished.
    fn with_exchange(
        &mut self,
        ek: usize,
        f: impl FnOnce(&mut Exchange, &mut ExCtx<'_>) -> Outcome,
    ) {
        let sv = &mut self.server;
        let (Some(session), Some(ex)) = (sv.session.as_mut(), sv.exchanges.get_mut(ek)) else {
            return;
        };
        let id = ex.stream;
        let ports = (&mut sv.origin, &mut sv.metrics, &self.server_cfg, self.now);
        match with_ports(session, id, ports, |ctx| f(ex, ctx)) {
            Some(Outcome::Finished) => {
                sv.timers.set(ek, None);
                sv.exchanges.remove(ek);
                sv.by_stream.remove(&id);
            }
            Some(_) => sv.timers.set(ek, ex.timers.next()),
            None => {}
        }
    }

    fn server_events(&mut self) {
        for _ in 0..100_000 {
            let Some(s) = self.server.session.as_mut() else {
                return;
            };
            let Some(h3) = s.h3.as_mut() else { return };
            let (id, event) = match h3.poll(&mut s.conn) {
                Ok(pair) => pair,
                Err(_) => return,
            };
            let existing = self.server.by_stream.get(&id).copied();
            match (event, existing) {
                (Event::Headers { list, more_frames }, None) => {
                    self.start_exchange(id, &list, more_frames)
                }
                (event, Some(ek)) => {
                    self.with_exchange(ek, |ex, ctx| match ex.on_stream_event(ctx, event) {
                        Outcome::Finished => Outcome::Finished,
                        _ => ex.drive(ctx),
                    })
                }
                _ => {}
            }
        }
    }

    fn start_exchange(&mut self, id: u64, list: &[quiche::h3::Header], more_frames: bool) {
        let sv = &mut self.server;
        let Some(session) = sv.session.as_mut() else {
            return;
        };
        let ports = (&mut sv.origin, &mut sv.metrics, &self.server_cfg, self.now);
        let Some(ex) = with_ports(session, id, ports, |ctx| {
            Exchange::start(ctx, id, list, more_frames)
        }) else {
            return;
        };
        let ek = sv.exchanges.insert(ex);
        sv.by_stream.insert(id, ek);
        self.with_exchange(ek, |ex, ctx| ex.drive(ctx));
    }

    fn drive_all(&mut self) {
        let downs: Vec<usize> = self.client.downs.iter().map(|(k, _)| k).collect();
        for key in downs {
            self.with_down(key, |d, ctx| d.drive(ctx));
        }
        let exchanges: Vec<usize> = self.server.exchanges.iter().map(|(k, _)| k).collect();
        for ek in exchanges {
            self.with_exchange(ek, |ex, ctx| ex.drive(ctx));
        }
    }

    fn fire_timers(&mut self) {
        for key in self.client.timers.expired(self.now) {
            self.with_down(key, |d, ctx| d.on_timer(ctx));
        }
        for ek in self.server.timers.expired(self.now) {
            self.with_exchange(ek, |ex, ctx| ex.on_timer(ctx));
        }
    }

    /// Entries in both sides' timer tables.
    pub fn timer_entries(&self) -> usize {
        self.client.timers.len() + self.server.timers.len()
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

/// Runs `f` with the server's context for stream `id`: the session's stream and service B as
/// the exchange's ports. `None` before the session has its HTTP/3 layer.
fn with_ports<T>(
    session: &mut Session,
    id: u64,
    (origin, metrics, cfg, now): (&mut Origin, &mut Metrics, &ServerConfig, Instant),
    f: impl FnOnce(&mut ExCtx<'_>) -> T,
) -> Option<T> {
    let h3 = session.h3.as_mut()?;
    let mut stream = H3Stream {
        h3,
        conn: &mut session.conn,
        id,
    };
    let mut ctx = ExCtx {
        now,
        stream: &mut stream,
        pool: origin,
        upstream: &cfg.upstream,
        max_head_bytes: cfg.http.max_head_bytes,
        access_log: false,
        client: "sim",
        metrics,
    };
    Some(f(&mut ctx))
}
