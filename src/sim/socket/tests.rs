//! The production datagram path ([`UdpIo`]) over the simulated socket, with real quiche
//! connections: the sender's QUIC DATAGRAM frames are numbered, one per packet, so the
//! receiver's `dgram_recv` sequence shows whether every packet quiche made left exactly once
//! and in order.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::config::{LossHiding, LossHidingMode};
use crate::quic::pace_floor::PaceFloor;
use crate::quic::setup::quiche_config;
use crate::quic::tls;
use crate::quic::udp::{LossHider, UdpIo};
use crate::sim::pair::default_configs;

const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41001);
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41002);
/// Large enough that two never share a packet.
const PAYLOAD: usize = 1000;

fn hider_off() -> LossHider {
    LossHider::new(LossHiding {
        mode: LossHidingMode::Off,
        max_datagram: 0,
        interactive_bytes: 0,
        gap: Duration::ZERO,
    })
}

/// Both ends' quiche configs: DATAGRAM frames on, a window wide enough that the whole test
/// leaves without waiting for an ACK, no pacing (the packets are due at once).
fn configs() -> (quiche::Config, quiche::Config) {
    let (cc, sc) = default_configs();
    let quiche = |t: &crate::config::TransportConfig, tls| {
        let mut t = t.clone();
        t.pacing = false;
        t.initial_congestion_window_packets = 1000;
        let mut c = quiche_config(&t, tls, 16 * 1024).expect("quiche config");
        c.enable_dgram(true, 1000, 1000);
        c
    };
    let client_tls = tls::client_context(&cc.tls).expect("client TLS");
    let server_tls = tls::server_context(&sc.tls, tls::AllowedNames::new(None), Default::default())
        .expect("server TLS");
    (
        quiche(&cc.transport, client_tls),
        quiche(&sc.transport, server_tls),
    )
}

/// The connection ID length of both ends in these tests (the default).
const CID_LEN: usize = crate::config::DEFAULT_CONNECTION_ID_BYTES;

/// An established, confirmed client/server pair (handshake over a plain in-memory pipe).
fn established() -> (quiche::Connection, quiche::Connection) {
    let (mut qc, mut qs) = configs();
    let mut client = crate::client::dial::connect("localhost", CLIENT, SERVER, &mut qc, CID_LEN)
        .expect("connect");
    let scid = [7u8; CID_LEN];
    let scid = quiche::ConnectionId::from_ref(&scid);
    let mut server = quiche::accept(&scid, None, SERVER, CLIENT, &mut qs).expect("accept");
    let mut buf = vec![0u8; 65_536];
    for _ in 0..100 {
        let mut moved = false;
        while let Ok((n, _)) = client.send(&mut buf) {
            let info = quiche::RecvInfo {
                from: CLIENT,
                to: SERVER,
            };
            server.recv(&mut buf[..n], info).expect("server recv");
            moved = true;
        }
        while let Ok((n, _)) = server.send(&mut buf) {
            let info = quiche::RecvInfo {
                from: SERVER,
                to: CLIENT,
            };
            client.recv(&mut buf[..n], info).expect("client recv");
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(client.is_established() && server.is_established());
    (client, server)
}

fn payload(i: usize) -> Vec<u8> {
    let mut p = (i as u32).to_be_bytes().to_vec();
    p.extend((0..PAYLOAD - 4).map(|j| (i * 7 + j) as u8));
    p
}

/// Queues `count` numbered DATAGRAM frames on `client`, sends them through `udp` (serving
/// WRITABLE as the reactor would), and returns the datagrams that left and how many packets
/// quiche made.
fn send_through(
    udp: &mut UdpIo<SimSocket>,
    client: &mut quiche::Connection,
    count: usize,
) -> (Vec<(Vec<u8>, SocketAddr)>, usize) {
    for i in 0..count {
        client.dgram_send(&payload(i)).expect("dgram_send");
    }
    let before = client.stats().sent;
    let mut hider = hider_off();
    let mut pace = PaceFloor::default();
    for _ in 0..1000 {
        if udp.socket.is_full() {
            udp.socket.make_writable();
            udp.on_writable(Instant::now());
        }
        let more = udp.send_from(client, Instant::now(), &mut hider, &mut pace, None);
        let idle = !more && udp.next_release().is_none() && !udp.socket.is_full();
        if idle && client.dgram_send_queue_len() == 0 {
            break;
        }
    }
    (udp.socket.take_outbox(), client.stats().sent - before)
}

/// Feeds the datagrams to `server` in order; the DATAGRAM frames it got, in order.
fn receive(server: &mut quiche::Connection, sent: Vec<(Vec<u8>, SocketAddr)>) -> Vec<Vec<u8>> {
    for (mut d, to) in sent {
        assert_eq!(to, SERVER);
        let info = quiche::RecvInfo {
            from: CLIENT,
            to: SERVER,
        };
        server.recv(&mut d, info).expect("server recv");
    }
    let mut buf = vec![0u8; 65_536];
    let mut got = Vec::new();
    while let Ok(n) = server.dgram_recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

fn assert_exactly_once_in_order(got: &[Vec<u8>], count: usize) {
    assert_eq!(got.len(), count, "DATAGRAM frames received");
    for (i, d) in got.iter().enumerate() {
        let n = |d: &Vec<u8>| u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        assert!(
            *d == payload(i),
            "frame {i} is not the {i}th sent: {:?}",
            got.iter().map(n).collect::<Vec<_>>()
        );
    }
}

#[test]
fn would_block_mid_run_every_packet_leaves_once_and_in_order_after_writable() {
    let (mut client, mut server) = established();
    let mut udp = UdpIo::new(SimSocket::new(CLIENT, 1));
    // One GSO batch of 64 goes out, then the socket is full in the middle of the run.
    udp.socket.fill_after(1);
    let count = 150;
    let (sent, made) = send_through(&mut udp, &mut client, count);
    let stats = udp.socket.stats;
    assert_eq!(stats.would_blocks, 1, "{stats:?}");
    assert!(
        stats.refused_sends >= 1 && stats.gso_batches >= 1,
        "{stats:?}"
    );
    assert_eq!(sent.len(), made, "datagrams out vs packets quiche made");
    assert_eq!(stats.datagrams as usize, made, "{stats:?}");
    assert_exactly_once_in_order(&receive(&mut server, sent), count);
}

#[test]
fn random_would_blocks_lose_nothing_and_keep_the_order() {
    let (mut client, mut server) = established();
    let mut udp = UdpIo::new(SimSocket::new(CLIENT, 2));
    udp.socket.faults.would_block = 0.3;
    let count = 300;
    let (sent, made) = send_through(&mut udp, &mut client, count);
    let stats = udp.socket.stats;
    assert!(stats.would_blocks >= 3, "{stats:?}");
    assert_eq!(sent.len(), made);
    assert_exactly_once_in_order(&receive(&mut server, sent), count);
}

#[test]
fn a_refused_gso_falls_back_to_single_datagrams_and_loses_nothing() {
    let (mut client, mut server) = established();
    let mut udp = UdpIo::new(SimSocket::new(CLIENT, 3));
    udp.socket.faults.no_gso = true;
    let count = 150;
    let (sent, made) = send_through(&mut udp, &mut client, count);
    let stats = udp.socket.stats;
    assert_eq!(
        (stats.gso_refused, stats.gso_batches),
        (1, 0),
        "GSO tried once, then off: {stats:?}"
    );
    assert_eq!(sent.len(), made);
    assert_exactly_once_in_order(&receive(&mut server, sent), count);
}

#[test]
fn a_gro_aggregate_is_handed_out_as_its_datagrams() {
    let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 41003);
    let sizes = [
        (1200, CLIENT),
        (1200, CLIENT),
        (1200, CLIENT),
        (700, CLIENT), // shorter: closes the aggregate
        (1200, CLIENT),
        (1200, other), // another sender: not glued on
        (1200, other),
        (1300, other), // larger: not glued on
        (90, CLIENT),
    ];
    let arriving: Vec<(Vec<u8>, SocketAddr)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(len, from))| (vec![i as u8; len], from))
        .collect();
    let mut udp = UdpIo::new(SimSocket::new(SERVER, 4));
    udp.socket.faults.gro = 1.0;
    for (d, from) in &arriving {
        udp.socket.arrive(d.clone(), *from);
    }
    let mut got = Vec::new();
    for _ in 0..100 {
        match udp.recv().expect("recv") {
            Some((d, from)) => got.push((d.to_vec(), from)),
            None => break,
        }
    }
    assert_eq!(got, arriving);
    // [0..=3], [4], [5, 6], [7], [8]: two receives carried more than one datagram.
    assert_eq!(udp.socket.stats.gro_aggregates, 2);
}
