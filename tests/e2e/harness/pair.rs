//! A ptproxy client + server pair with configs in a temp dir, free loopback
//! ports, optional UDP relay in between, and readiness waits.

use super::http::{self, HttpConn, Response};
use super::json::Json;
use super::proxy::{Proxy, Role};
use super::relay::{RelayConfig, UdpRelay};
use super::tmp::TempDir;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Log substrings (see SPEC.md).
pub const LOG_QUIC_LISTEN: &str = "listening for QUIC on";
pub const LOG_HTTP_LISTEN: &str = "listening for HTTP/1.1 on";
pub const LOG_SESSION_UP: &str = "session established";
pub const LOG_SESSION_LOST: &str = "session lost";

pub struct PairBuilder {
    name: String,
    client_cfg: Json,
    server_cfg: Json,
    http_addr: SocketAddr,
    quic_addr: SocketAddr,
    relay: Option<RelayConfig>,
    expect_session: bool,
    start_server: bool,
    env: Vec<(String, String)>,
}

fn abs(p: std::path::PathBuf) -> Json {
    Json::str(p.to_str().expect("UTF-8 path"))
}

impl PairBuilder {
    /// Defaults: client listens on a free TCP port, server on a free UDP
    /// port, server's upstream = `upstream`, TLS from tests/data/pki
    /// (client.pem / server.pem / ca.pem), everything else at its default.
    pub fn new(upstream: SocketAddr) -> PairBuilder {
        let http_addr: SocketAddr = format!("127.0.0.1:{}", super::free_tcp_port())
            .parse()
            .unwrap();
        let quic_addr: SocketAddr = format!("127.0.0.1:{}", super::free_udp_port())
            .parse()
            .unwrap();
        let mut c = Json::object();
        c.set(
            "listen",
            Json::array(vec![Json::str(http_addr.to_string())]),
        );
        c.set("peer.address", Json::str(quic_addr.to_string()));
        c.set("peer.server_name", Json::str("localhost"));
        c.set("tls.ca", abs(super::pki("ca.pem")));
        c.set("tls.cert", abs(super::pki("client.pem")));
        c.set("tls.key", abs(super::pki("client.key")));
        let mut s = Json::object();
        s.set("listen", Json::str(quic_addr.to_string()));
        s.set("upstream.address", Json::str(upstream.to_string()));
        s.set("tls.ca", abs(super::pki("ca.pem")));
        s.set("tls.cert", abs(super::pki("server.pem")));
        s.set("tls.key", abs(super::pki("server.key")));
        PairBuilder {
            name: "pair".into(),
            client_cfg: c,
            server_cfg: s,
            http_addr,
            quic_addr,
            relay: None,
            expect_session: true,
            start_server: true,
            env: Vec::new(),
        }
    }

    /// Name used for the temp dir and in diagnostics.
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.to_string();
        self
    }

    /// Sets a client config value at a dotted path; `json` is JSON text,
    /// e.g. `.client("http.session_wait_ms", "500")`.
    pub fn client(mut self, path: &str, json: &str) -> Self {
        self.client_cfg.set(path, Json::must(json));
        self
    }

    pub fn server(mut self, path: &str, json: &str) -> Self {
        self.server_cfg.set(path, Json::must(json));
        self
    }

    /// Same value on both sides (e.g. "transport.idle_timeout_ms").
    pub fn both(self, path: &str, json: &str) -> Self {
        self.client(path, json).server(path, json)
    }

    pub fn client_remove(mut self, path: &str) -> Self {
        self.client_cfg.remove(path);
        self
    }

    pub fn server_remove(mut self, path: &str) -> Self {
        self.server_cfg.remove(path);
        self
    }

    /// Client TLS identity from tests/data/pki (e.g. "other-client").
    pub fn client_identity(self, stem: &str) -> Self {
        let cert = Json::str(super::pki(&format!("{stem}.pem")).to_str().unwrap()).to_string();
        let key = Json::str(super::pki(&format!("{stem}.key")).to_str().unwrap()).to_string();
        self.client("tls.cert", &cert).client("tls.key", &key)
    }

    /// Put a UDP relay between client and server.
    pub fn relay(mut self, cfg: RelayConfig) -> Self {
        self.relay = Some(cfg);
        self
    }

    /// Whether start() waits for the client's `session established`
    /// (default true). If false only the listener line is awaited.
    pub fn expect_session(mut self, yes: bool) -> Self {
        self.expect_session = yes;
        self
    }

    /// Whether start() starts the server process (default true). The server
    /// config is written anyway; `pair.server.start()` starts it later.
    pub fn start_server(mut self, yes: bool) -> Self {
        self.start_server = yes;
        if !yes {
            self.expect_session = false;
        }
        self
    }

    /// Environment variable for both processes (e.g. RUST_LOG).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn client_config(&self) -> &Json {
        &self.client_cfg
    }

    pub fn server_config(&self) -> &Json {
        &self.server_cfg
    }

    /// Writes the configs, starts server (waits for its QUIC listener) then
    /// client (waits for its HTTP listener and, unless disabled, the
    /// session). Panics with both logs on failure.
    #[track_caller]
    pub fn start(mut self) -> Pair {
        let dir = TempDir::new(&self.name);
        // honour overridden listen addresses
        if let Some(a) = self.server_cfg.get("listen").and_then(|j| j.as_str()) {
            self.quic_addr = a.parse().expect("server listen address");
        }
        if let Some(a) = self
            .client_cfg
            .get("listen")
            .and_then(|j| j.as_array())
            .and_then(|a| a.first())
            .and_then(|j| j.as_str())
        {
            self.http_addr = a.parse().expect("client listen address");
        }
        let relay = self.relay.take().map(|cfg| {
            let r = UdpRelay::start(self.quic_addr, cfg).expect("start udp relay");
            self.client_cfg
                .set("peer.address", Json::str(r.addr().to_string()));
            r
        });
        let client_path = dir.join("client.json");
        let server_path = dir.join("server.json");
        std::fs::write(&client_path, self.client_cfg.pretty()).unwrap();
        std::fs::write(&server_path, self.server_cfg.pretty()).unwrap();

        let mut server = Proxy::new("server", Role::Server, &server_path);
        let mut client = Proxy::new("client", Role::Client, &client_path);
        for (k, v) in &self.env {
            server.set_env(k, v);
            client.set_env(k, v);
        }
        let mut pair = Pair {
            client,
            server,
            relay,
            http_addr: self.http_addr,
            quic_addr: self.quic_addr,
            client_config: self.client_cfg,
            server_config: self.server_cfg,
            dir,
        };
        if self.start_server {
            pair.server.start();
            pair.server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
        }
        pair.client.start();
        pair.client.expect_log(LOG_HTTP_LISTEN, READY_TIMEOUT);
        if self.expect_session {
            pair.client.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
        }
        pair
    }
}

pub struct Pair {
    // drop order: client, server, relay, then the temp dir
    pub client: Proxy,
    pub server: Proxy,
    pub relay: Option<UdpRelay>,
    /// Where the client accepts HTTP/1.1.
    pub http_addr: SocketAddr,
    /// Where the server listens for QUIC.
    pub quic_addr: SocketAddr,
    pub client_config: Json,
    pub server_config: Json,
    pub dir: TempDir,
}

impl Pair {
    #[track_caller]
    pub fn conn(&self) -> HttpConn {
        match HttpConn::connect(self.http_addr) {
            Ok(c) => c,
            Err(e) => panic!("connect to client {}: {e}", self.http_addr),
        }
    }

    /// GETs `size` bytes of the upstream's pattern (`/bytes/{size}`) on a fresh connection
    /// within `deadline`, checking the status, the length and every byte; returns how long
    /// it took.
    #[track_caller]
    pub fn download_exact(&self, size: u64, deadline: Duration) -> Duration {
        let t = Instant::now();
        let mut c = self.conn();
        c.set_deadline(deadline);
        let (head, n) = c
            .download_pattern(&format!("/bytes/{size}"))
            .unwrap_or_else(|e| panic!("download of {size} bytes after {:?}: {e}", t.elapsed()));
        assert_eq!((head.status, n), (200, size), "{head:?}");
        t.elapsed()
    }

    /// GET on a fresh connection; panics on I/O errors (not on statuses).
    #[track_caller]
    pub fn get(&self, target: &str) -> Response {
        match http::get(self.http_addr, target) {
            Ok(r) => r,
            Err(e) => panic!("GET {target} via {}: {e}", self.http_addr),
        }
    }

    /// POST on a fresh connection; panics on I/O errors (not on statuses).
    #[track_caller]
    pub fn post(&self, target: &str, body: &[u8]) -> Response {
        match http::post(self.http_addr, target, body) {
            Ok(r) => r,
            Err(e) => panic!("POST {target} via {}: {e}", self.http_addr),
        }
    }

    pub fn relay(&self) -> &UdpRelay {
        self.relay.as_ref().expect("pair has no relay")
    }

    /// Kill the server and start it again on the same port; waits for its
    /// QUIC listener.
    #[track_caller]
    pub fn restart_server(&mut self) {
        self.server.restart();
        self.server.expect_log(LOG_QUIC_LISTEN, READY_TIMEOUT);
    }

    pub fn dump_logs(&self) {
        self.client.dump_log();
        self.server.dump_log();
    }
}
