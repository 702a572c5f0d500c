//! Several server processes (sites) and one client keeping a session to each: the shape of
//! a deployment with redundant servers at the far site, for the several-peers tests.
//!
//! Each site is a ptproxy server on its own UDP port with a [`UdpRelay`] in front (so a test
//! can delay or blackhole one site's link); the client's `peers` name the relays.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::json::Json;
use super::pair::{LOG_HTTP_LISTEN, LOG_QUIC_LISTEN};
use super::proxy::{Proxy, Role};
use super::relay::{RelayConfig, UdpRelay};
use super::tmp::TempDir;

const READY: Duration = Duration::from_secs(15);

fn abs(p: PathBuf) -> Json {
    Json::str(p.to_str().expect("UTF-8 path"))
}

/// A server config for `listen` whose default service is `upstream`, with the test PKI.
pub fn server_config(listen: SocketAddr, upstream: SocketAddr) -> Json {
    let mut s = Json::object();
    s.set("listen", Json::str(listen.to_string()));
    s.set("upstream.address", Json::str(upstream.to_string()));
    s.set("tls.ca", abs(super::pki("ca.pem")));
    s.set("tls.cert", abs(super::pki("server.pem")));
    s.set("tls.key", abs(super::pki("server.key")));
    s
}

/// A client config listening on `listen` with the test PKI and an operator endpoint (its
/// address is returned too), no peer yet.
pub fn client_config(listen: SocketAddr) -> (Json, SocketAddr) {
    let (metrics, metrics_json) = super::admin::metrics_addr();
    let mut c = Json::object();
    c.set("metrics.listen", Json::must(&metrics_json));
    c.set("listen", Json::array(vec![Json::str(listen.to_string())]));
    c.set("tls.ca", abs(super::pki("ca.pem")));
    c.set("tls.cert", abs(super::pki("client.pem")));
    c.set("tls.key", abs(super::pki("client.key")));
    (c, metrics)
}

/// The client's `peers` for `sites`, in this order.
pub fn peers_of(sites: &[&Site]) -> Json {
    let entries: Vec<String> = sites.iter().map(|s| s.peer_json()).collect();
    Json::must(&format!("[{}]", entries.join(", ")))
}

/// One site: a server process and the relay in front of it.
pub struct Site {
    pub name: String,
    pub server: Proxy,
    pub relay: UdpRelay,
    pub config: Json,
}

impl Site {
    /// Starts the server of `config` (written in `dir`) and a relay with `link` in front.
    #[track_caller]
    pub fn start(dir: &TempDir, name: &str, config: Json, link: RelayConfig) -> Site {
        let path = dir.join(&format!("{name}.json"));
        std::fs::write(&path, config.pretty()).expect("write server config");
        let mut server = Proxy::new(name, Role::Server, &path);
        server.start();
        server.expect_log(LOG_QUIC_LISTEN, READY);
        let listen = config
            .get("listen")
            .and_then(|j| j.as_str())
            .and_then(|a| a.parse().ok())
            .expect("server listen address");
        let relay = UdpRelay::start(listen, link).expect("start udp relay");
        Site {
            name: name.into(),
            server,
            relay,
            config,
        }
    }

    /// The client's `peers` entry for this site (through its relay).
    pub fn peer_json(&self) -> String {
        format!(
            r#"{{"name": "{}", "address": "{}", "server_name": "localhost"}}"#,
            self.name,
            self.relay.addr()
        )
    }
}

/// A relay that delays each direction by `one_way` (RTT = twice that).
pub fn delayed(one_way: Duration) -> RelayConfig {
    RelayConfig {
        delay_to_server: one_way,
        delay_to_client: one_way,
        ..RelayConfig::clean()
    }
}

/// Starts the client of `config` (written in `dir`) and waits until it listens.
#[track_caller]
pub fn start_client(dir: &Path, config: &Json) -> Proxy {
    start_client_with_env(dir, config, &[])
}

/// [`start_client`] with environment variables set for the process.
#[track_caller]
pub fn start_client_with_env(dir: &Path, config: &Json, env: &[(&str, &str)]) -> Proxy {
    let path = dir.join("client.json");
    std::fs::write(&path, config.pretty()).expect("write client config");
    let mut client = Proxy::new("client", Role::Client, &path);
    for (k, v) in env {
        client.set_env(k, v);
    }
    client.start();
    client.expect_log(LOG_HTTP_LISTEN, READY);
    client
}
