//! `ptproxy --role client --check --connect`: one handshake with the configured peer, outside
//! the reactor, reported in one line: the server certificate's names and the RTT, or why it
//! failed. For operators setting up a new link.
//!
//! The attempt is the one the proxy makes (same TLS files, transport settings, peer name and
//! address order, connected UDP socket so ICMP errors show), bounded by
//! `reconnect.handshake_timeout_ms` per address. A session counts as reached once the server's
//! HTTP/3 SETTINGS arrive: only then has the server accepted our certificate.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::config::{ClientConfig, PeerConfig};
use crate::quic::session::Session;
use crate::quic::setup::{PathSizing, MAX_DATAGRAM};
use crate::quic::{self, tls};
use crate::resolve::{happy_eyeballs_order, HostPort};

use super::contact::describe_icmp;
use super::dial;

/// Makes one handshake with `peer`; `Ok` is the success line, `Err` the failure line.
pub fn probe(cfg: &ClientConfig, peer: &PeerConfig) -> Result<String, String> {
    let target = &peer.address;
    let found = target
        .resolve()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?;
    let mut failures = Vec::new();
    for addr in happy_eyeballs_order(&found, None) {
        match handshake(cfg, &peer.server_name, addr) {
            Ok(line) => return Ok(format!("peer {} reached: {line}", where_(target, addr))),
            Err(e) if addr.to_string() == target.to_string() => failures.push(e),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(format!(
        "cannot reach the peer {target}: {}",
        failures.join("; ")
    ))
}

fn where_(target: &HostPort, addr: SocketAddr) -> String {
    if target.to_string() == addr.to_string() {
        target.to_string()
    } else {
        format!("{target} at {addr}")
    }
}

/// One handshake with `addr`, bounded by the handshake timeout.
fn handshake(cfg: &ClientConfig, server_name: &str, addr: SocketAddr) -> Result<String, String> {
    let started = Instant::now();
    let deadline = started + cfg.reconnect.handshake_timeout;
    let tls = tls::client_context(&cfg.tls).map_err(|e| e.to_string())?;
    let mut qcfg = quic::setup::quiche_config(&cfg.transport, tls, cfg.http.max_head_bytes)
        .map_err(|e| e.to_string())?;
    let socket = UdpSocket::bind(dial::wildcard(addr)).map_err(|e| format!("UDP socket: {e}"))?;
    socket
        .connect(addr)
        .map_err(|e| format!("UDP connect: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let cid_len = cfg.transport.connection_id_bytes;
    PathSizing::new(&cfg.transport, cfg.http.max_head_bytes).fit(&mut qcfg, addr);
    let conn =
        dial::connect(server_name, local, addr, &mut qcfg, cid_len).map_err(|e| e.to_string())?;
    let mut session = Session::new(conn, cfg.transport.keepalive_interval, None, started);
    let timeout = cfg.reconnect.handshake_timeout;
    drive(&socket, &mut session, local, deadline, timeout)?;
    let line = describe(&session, started.elapsed());
    // Leave politely, so the server does not keep the session until its idle timeout.
    let _ = session
        .conn
        .close(true, quic::h3_code::NO_ERROR, b"check done");
    let _ = flush(&socket, &mut session, &mut vec![0u8; MAX_DATAGRAM]);
    Ok(line)
}

/// Runs the handshake until the session is usable, closed, unreachable or out of time.
fn drive(
    socket: &UdpSocket,
    session: &mut Session,
    local: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Bounded: each turn waits for a datagram or quiche's timer, and the deadline ends it.
    for _ in 0..100_000 {
        flush(socket, session, &mut buf)?;
        if session.is_usable() {
            return Ok(());
        }
        if session.conn.is_closed() {
            return Err(session.close_reason());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "handshake timed out: nothing answered within {} ms (no ptproxy server there, \
                 UDP blocked, or a wrong peer.address)",
                timeout.as_millis()
            ));
        }
        let wait = session
            .conn
            .timeout()
            .unwrap_or(Duration::from_millis(100))
            .min(deadline - now)
            .max(Duration::from_millis(1));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                session.handle_datagram(&mut buf[..n], from, local, Instant::now());
                poll_h3(session);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(describe_icmp(&e)),
        }
    }
    Err("handshake did not finish".into())
}

/// Reads HTTP/3 control data (the server's SETTINGS); no request is made, so events are dropped.
fn poll_h3(session: &mut Session) {
    let Some(h3) = session.h3.as_mut() else {
        return;
    };
    for _ in 0..1000 {
        if h3.poll(&mut session.conn).is_err() {
            return;
        }
    }
}

/// Sends everything quiche has to send.
fn flush(socket: &UdpSocket, session: &mut Session, buf: &mut [u8]) -> Result<(), String> {
    loop {
        match session.conn.send(buf) {
            Ok((n, info)) => match socket.send(&buf[..n]) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    return Err(describe_icmp(&e))
                }
                Err(e) => log::debug!("udp send to {}: {e}", info.to),
            },
            Err(quiche::Error::Done) => return Ok(()),
            Err(e) => return Err(format!("QUIC: {e}")),
        }
    }
}

/// The success line: certificate names, RTT, handshake time, resumption.
fn describe(session: &Session, took: Duration) -> String {
    let names = session
        .conn
        .peer_cert()
        .and_then(|der| boring::x509::X509::from_der(der).ok())
        .map(|cert| tls::certificate_names(&cert))
        .unwrap_or_default();
    let rtt = session
        .conn
        .path_stats()
        .next()
        .map(|p| format!("{:.1} ms", p.rtt.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "server certificate names [{}], rtt {rtt}, handshake {} ms, mutual TLS accepted",
        names.join(", "),
        took.as_millis()
    )
}
