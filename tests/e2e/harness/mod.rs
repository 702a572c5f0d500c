//! Test harness for the ptproxy end-to-end tests.
//!
//! Everything here is plain `std`: no dev-dependencies.
//! - [`proxy::Proxy`]: guard around one ptproxy process (stderr capture, log waits, kill/restart).
//! - [`pair::PairBuilder`] / [`pair::Pair`]: a configured client+server pair, ready to use.
//! - [`upstream::Upstream`]: recording HTTP/1.1 origin server.
//! - [`relay::UdpRelay`]: lossy / delaying UDP relay between the two proxies.
//! - [`http`]: raw HTTP/1.1 client helpers.
//! - [`admin`]: the operator endpoint (`/metrics`, `/health`): address, GETs, scrapes.
//! - [`json`]: tiny JSON value used to write configs.
//! - [`pattern`]: deterministic byte pattern and checksum for big transfers.
#![allow(dead_code, unused_imports)]

pub mod accept;
pub mod admin;
pub mod h3_client;
pub mod h3_server;
pub mod http;
pub mod json;
pub mod pair;
pub mod pattern;
pub mod pki;
pub mod proxy;
pub mod raw_upstream;
pub mod relay;
pub mod sites;
pub mod tcp_destination;
pub mod tmp;
pub mod upstream;
pub mod ws_client;
pub mod ws_upstream;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use http::{HttpConn, Response};
pub use pair::{Pair, PairBuilder};
pub use proxy::{Proxy, Role};
pub use relay::{RelayConfig, UdpRelay};
pub use upstream::Upstream;

/// Path of the ptproxy binary under test (the one Cargo built for this
/// package; PTPROXY_E2E_BIN overrides it, e.g. to test another build).
pub fn ptproxy_bin() -> PathBuf {
    match std::env::var_os("PTPROXY_E2E_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ptproxy")),
    }
}

/// Root of the repository (where Cargo.toml lives).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Absolute path of a file of the test PKI (tests/data/pki).
pub fn pki(name: &str) -> PathBuf {
    repo_dir().join("tests").join("data").join("pki").join(name)
}

/// One `read`, taken again when a signal interrupted it (EINTR is not an error of the peer).
pub fn read_some(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Serialises the tests that move hundreds of megabytes so that they do not
/// compete with each other for the (few) cores.
pub fn heavy_lock() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `f` every `every` until it returns `Some`, or `timeout` passes.
pub fn poll_until<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// Ports handed to the proxies come from below the kernel's ephemeral range (32768-60999 here),
/// one after the other: a port the kernel gave to `bind(:0)` and the test released could be
/// handed out again to any other socket of the suite (relays, clients, the proxies' own
/// outgoing sockets) before the proxy binds it, and since the proxies no longer share
/// addresses (`reuse_port` is off by default), such a collision would fail a start at random.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port free for both TCP and UDP right now, never handed out before in this run.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start at a per-process offset so that two test processes do not walk the same ports.
    let base = PORT_RANGE.start + (std::process::id() % 1000) as u16 * 10;
    for _ in 0..PORT_RANGE.len() {
        let step = NEXT.fetch_add(1, Ordering::SeqCst);
        let span = PORT_RANGE.end - PORT_RANGE.start;
        let port = PORT_RANGE.start + (base - PORT_RANGE.start + step) % span;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PORT_RANGE:?}");
}

/// Free loopback TCP port (see [`PORT_RANGE`]).
pub fn free_tcp_port() -> u16 {
    free_port()
}

/// Free loopback UDP port (see [`PORT_RANGE`]).
pub fn free_udp_port() -> u16 {
    free_port()
}

/// A loopback TCP address where nothing listens (connects are refused).
pub fn closed_tcp_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp 127.0.0.1:0");
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A loopback address where connect() hangs: a listener with an accept backlog of one whose
/// queue is full (never accepted), so the kernel drops further SYNs. Returns the listener and
/// the connections filling it (both must live as long as the address is used).
pub fn hanging_tcp_addr() -> (
    std::net::TcpListener,
    Vec<std::net::TcpStream>,
    std::net::SocketAddr,
) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    // SAFETY: listen(2) on a socket this function owns.
    assert_eq!(
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), 0) },
        0,
        "listen(fd, 0)"
    );
    let mut fill = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (l, fill, addr),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    panic!(
        "connect to {addr} never hung after {} connections",
        fill.len()
    );
}
