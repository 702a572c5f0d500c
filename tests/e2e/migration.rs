//! NAT rebinding: the client's address as the server sees it changes in the middle of a
//! transfer (a NAT gave the flow a new port). The session must carry on, on the same
//! connection, without losing the request in flight.

use crate::harness::{PairBuilder, Upstream};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A UDP "NAT": clients talk to `front`; it forwards to the server from a back socket that
/// `rebind` replaces with a fresh one (new source port), like a NAT losing its mapping.
struct Nat {
    front: SocketAddr,
    back: Arc<Mutex<Arc<UdpSocket>>>,
    client: Arc<Mutex<Option<SocketAddr>>>,
    front_sock: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    rebinds: AtomicU64,
}

const READ_TIMEOUT: Duration = Duration::from_millis(50);

impl Nat {
    fn start(server: SocketAddr) -> Nat {
        let front_sock = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind front"));
        front_sock
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let nat = Nat {
            front: front_sock.local_addr().expect("addr"),
            back: Arc::new(Mutex::new(Arc::new(
                UdpSocket::bind("127.0.0.1:0").expect("bind back"),
            ))),
            client: Arc::new(Mutex::new(None)),
            front_sock,
            stop: Arc::new(AtomicBool::new(false)),
            rebinds: AtomicU64::new(0),
        };
        let (front, back, client, stop) = (
            nat.front_sock.clone(),
            nat.back.clone(),
            nat.client.clone(),
            nat.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *client.lock().expect("lock") = Some(from);
                let sock = back.lock().expect("lock").clone();
                let _ = sock.send_to(&buf[..n], server);
            }
        });
        nat.pump_back();
        nat
    }

    /// Relays what the server sends to the current back socket towards the client.
    fn pump_back(&self) {
        let sock = self.back.lock().expect("lock").clone();
        sock.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        let (front, client, stop) = (
            self.front_sock.clone(),
            self.client.clone(),
            self.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, _)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(c) = *client.lock().expect("lock") {
                    let _ = front.send_to(&buf[..n], c);
                }
            }
        });
    }

    /// The flow gets a new source port from now on (the old one still delivers stragglers).
    fn rebind(&self) -> SocketAddr {
        let fresh = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind new back"));
        let addr = fresh.local_addr().expect("addr");
        *self.back.lock().expect("lock") = fresh;
        self.pump_back();
        self.rebinds.fetch_add(1, Ordering::SeqCst);
        addr
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn session_survives_the_client_address_changing_mid_transfer() {
    let up = Upstream::start();
    let builder = PairBuilder::new(up.addr())
        .name("nat_rebinding")
        .start_server(true);
    let quic = builder
        .server_config()
        .get("listen")
        .and_then(|j| j.as_str().map(str::to_string));
    let server: SocketAddr = quic.expect("server listen").parse().expect("addr");
    let nat = Nat::start(server);
    let pair = builder
        .client("peer.address", &format!("\"{}\"", nat.front))
        .start();
    const SIZE: usize = 32 * 1024 * 1024;
    std::thread::scope(|s| {
        // The reader pauses after 1 MiB, so the transfer is still in flight across the rebinds.
        let download = s.spawn(|| {
            let mut c = pair.conn();
            c.set_deadline(Duration::from_secs(60));
            c.download_pattern_paused(
                &format!("/bytes/{SIZE}"),
                1 << 20,
                Duration::from_millis(1500),
            )
        });
        // Rebind twice while the download runs, with requests on another connection between.
        let mut c = pair.conn();
        c.set_deadline(Duration::from_secs(30));
        for i in 0..30 {
            if i == 5 || i == 20 {
                let port = nat.rebind();
                eprintln!("NAT now sends from {port}");
            }
            let body = format!("request {i} across a rebinding").into_bytes();
            let r = c
                .post("/echo", &body)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!((r.status(), &r.body), (200, &body), "request {i}: {r}");
        }
        assert!(
            !download.is_finished(),
            "the download was not in flight across the rebinds"
        );
        let (head, n) = download.join().expect("download thread").expect("download");
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(
            n, SIZE as u64,
            "download cut short (the pattern itself is checked while reading)"
        );
    });
    assert_eq!(nat.rebinds.load(Ordering::SeqCst), 2);
    assert_eq!(
        pair.client.count_log("session established"),
        1,
        "the client had to reconnect"
    );
    assert_eq!(
        pair.server.count_log("session established"),
        1,
        "the server saw a new session"
    );
}
