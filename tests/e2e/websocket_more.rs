//! WebSocket through the real pair, the cases issue #14 still asked for: 10 MiB messages
//! byte-exact both ways with bounded proxy memory, 100 WebSockets at once over the one session,
//! the graceful stop of either role with a tunnel open (bytes flow during the drain, the
//! tunnel is reset at its deadline, the process exits), and the 501 for a peer that does not
//! enable extended CONNECT (a bare quiche HTTP/3 server, [`BareH3Server`]).

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::admin::{metric, metrics_addr};
use crate::harness::h3_server::{self, BareH3Server};
use crate::harness::pair::{LOG_SESSION_UP, READY_TIMEOUT};
use crate::harness::pattern::pattern;
use crate::harness::proxy::Proxy;
use crate::harness::ws_client::{frame, WsClient, BINARY, TEXT};
use crate::harness::ws_upstream::{server_frame_head, WsBehaviour, WsUpstream};
use crate::harness::{heavy_lock, poll_until, Pair, PairBuilder};
use crate::ops::{signal, wait_exit};
use crate::websocket_client::assert_switched;

const WAIT: Duration = Duration::from_secs(15);
const TEN_MIB: usize = 10 << 20;
/// The proxies' peak RSS bound, the one `bulk.rs` holds for 200 MB (flow-control windows may
/// legitimately buffer up to `transport.connection_window`, 16 MiB, per session).
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Asserts `got == want` without printing megabytes when they differ.
#[track_caller]
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: {} bytes came for {} sent, first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

fn assert_peak_rss(pair: &Pair, what: &str) {
    for p in [&pair.client, &pair.server] {
        let kib = p
            .peak_rss_kib()
            .unwrap_or_else(|| panic!("{}: no VmHWM (process gone?)", p.name()));
        eprintln!("{what}: {} peak RSS {kib} KiB", p.name());
        assert!(
            kib < RSS_LIMIT_KIB,
            "{what}: {} peak RSS {kib} KiB >= {RSS_LIMIT_KIB} KiB",
            p.name()
        );
    }
}

#[test]
fn ten_mib_messages_each_way_are_byte_exact() {
    let _heavy = heavy_lock();
    let up = WsUpstream::start(WsBehaviour::Push(TEN_MIB));
    let pair = PairBuilder::new(up.addr()).name("ws_10mib").start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);

    // One 10 MiB binary frame from the upstream (sent right after its 101).
    let t = Instant::now();
    let head = server_frame_head(BINARY, TEN_MIB);
    let pushed = c.recv(head.len() + TEN_MIB, Duration::from_secs(120));
    assert_same_bytes(&pushed[..head.len()], &head, "the pushed frame's head");
    assert_same_bytes(
        &pushed[head.len()..],
        &pattern(TEN_MIB),
        "the pushed payload",
    );
    eprintln!("10 MiB upstream -> caller in {:?}", t.elapsed());
    drop(pushed);

    // One 10 MiB binary frame from the caller, echoed by the upstream.
    let t = Instant::now();
    let sent = frame(BINARY, &pattern(TEN_MIB));
    let echoed = c.send_while_receiving(sent.clone(), sent.len(), Duration::from_secs(120));
    assert_same_bytes(&echoed, &sent, "the echoed 10 MiB frame");
    eprintln!("10 MiB caller -> upstream -> caller in {:?}", t.elapsed());

    c.finish();
    assert_eq!(c.read_to_end().expect("a clean end").len(), 0);
    assert_peak_rss(&pair, "after 10 MiB each way");
}

/// Socket `i`'s message of round `round`: its own marker, a length that differs per socket
/// and round (up to 8 KiB, so the streams' DATA interleave in the session's packets), text and
/// binary frames in turn.
fn message(i: usize, round: usize) -> Vec<u8> {
    let len = 1 + (i * 131 + round * 977) % 8192;
    let marker = format!("socket {i} round {round} ");
    let payload: Vec<u8> = marker.bytes().cycle().take(len.max(marker.len())).collect();
    frame(
        if round.is_multiple_of(2) {
            TEXT
        } else {
            BINARY
        },
        &payload,
    )
}

#[test]
fn a_hundred_websockets_at_once_share_the_one_session() {
    const SOCKETS: usize = 100;
    const ROUNDS: usize = 5;
    let up = WsUpstream::start(WsBehaviour::Echo);
    let (metrics, metrics_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name("ws_hundred")
        .client("metrics.listen", &metrics_json)
        .start();
    let mut clients: Vec<WsClient> = (0..SOCKETS)
        .map(|_| WsClient::upgrade(pair.http_addr, &[]))
        .collect();
    for c in &clients {
        assert_switched(c);
    }
    assert_eq!(
        metric(metrics, "ptproxy_tunnels_open"),
        Some(SOCKETS as f64)
    );
    // Rounds across all sockets: every socket sends, then every socket reads its echo.
    for round in 0..ROUNDS {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&message(i, round));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = message(i, round);
            let got = c.recv(want.len(), WAIT);
            assert_same_bytes(&got, &want, &format!("socket {i} round {round}"));
        }
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.finish();
        let rest = c.read_to_end().expect("a clean end");
        assert!(rest.is_empty(), "socket {i}: {} stray bytes", rest.len());
    }
    assert_eq!(
        up.connection_count(),
        SOCKETS,
        "one upstream connection each"
    );
    let closed = poll_until(WAIT, Duration::from_millis(20), || {
        (metric(metrics, "ptproxy_tunnels_open") == Some(0.0)).then_some(())
    });
    assert!(closed.is_some(), "every tunnel must be counted closed");
    assert_eq!(
        pair.client.count_log(LOG_SESSION_UP),
        1,
        "all of them over the one session"
    );
}

/// Sends `f` and reads its echo (exactly `f`); an error for a connection that failed, and
/// `UnexpectedEof` for one that ended cleanly.
fn try_echo(stream: &mut TcpStream, f: &[u8]) -> io::Result<()> {
    stream.write_all(f)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < f.len() {
        match crate::harness::read_some(stream, &mut buf)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    assert_same_bytes(&got, f, "an echo during the drain");
    Ok(())
}

/// How a tunnel fared from a SIGTERM on: when the last echo came, and when and how it ended.
struct DrainRun {
    last_echo: Option<Duration>,
    ended: Duration,
    error: io::Error,
}

/// Echoes a message every 100 ms from the moment of the SIGTERM (`since`) until the tunnel
/// fails (bounded: the drain deadline is seconds away, each echo waits at most 15 s).
fn echo_until_the_tunnel_ends(c: &mut WsClient, since: Instant) -> DrainRun {
    let mut last_echo = None;
    for k in 0..300 {
        let f = frame(TEXT, format!("during the drain {k}").as_bytes());
        match try_echo(&mut c.stream, &f) {
            Ok(()) => last_echo = Some(since.elapsed()),
            Err(error) => {
                return DrainRun {
                    last_echo,
                    ended: since.elapsed(),
                    error,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100)); // pacing the traffic, not a wait
    }
    panic!("the tunnel still carried bytes 300 echoes after the SIGTERM");
}

/// The drain of `target` with a tunnel open (`http.drain_timeout_ms` 3000 on that side):
/// bytes flow both ways for the whole drain, then the caller's connection is reset (never a
/// clean end, never a hang), the upstream connection is reset too, and the process exits 0.
fn assert_tunnel_drained(pair: &Pair, target: &Proxy, c: &mut WsClient, up: &WsUpstream) {
    c.send(b"before the signal");
    assert_eq!(c.recv(17, WAIT), b"before the signal");
    let mark = target.log_len();
    let t0 = Instant::now();
    signal(target, "TERM");
    target
        .wait_for_log_since(mark, "stopping", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_new_upgrades_refused(pair, target, up);
    let run = echo_until_the_tunnel_ends(c, t0);
    eprintln!(
        "{}: last echo {:?} after SIGTERM, tunnel ended {:?} after it: {}",
        target.name(),
        run.last_echo,
        run.ended,
        run.error
    );
    assert!(
        run.last_echo
            .is_some_and(|t| t >= Duration::from_millis(2000)),
        "the tunnel stopped carrying bytes early in the 3 s drain (last echo {:?})",
        run.last_echo
    );
    assert_eq!(
        run.error.kind(),
        io::ErrorKind::ConnectionReset,
        "at the drain deadline the caller's connection is reset: {}",
        run.error
    );
    assert!(
        run.ended >= Duration::from_millis(2500) && run.ended < Duration::from_secs(8),
        "the tunnel ended {:?} after SIGTERM (drain deadline 3 s)",
        run.ended
    );
    let st = wait_exit(target, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{} did not exit within 10 s of the drain", target.name()));
    assert!(st.success(), "{} exited {st:?}", target.name());
    // The process is gone, but its last lines may still be in the pipe to the log reader.
    target
        .wait_for_log("drain deadline passed", Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        target.count_log("drain deadline passed"),
        1,
        "one warning at the deadline (a deadline left set after it made the closing turns spin)"
    );
    let reset = poll_until(WAIT, Duration::from_millis(20), || {
        up.saw_reset(1).then_some(())
    });
    assert!(
        reset.is_some(),
        "the upstream connection must be reset, not closed cleanly (saw FIN: {})",
        up.saw_fin(1)
    );
}

/// While `target` drains, a new caller gets no tunnel: the client refuses the TCP connection
/// (its listener is closed); through a draining server the new upgrade is answered 503 by
/// the client (as a plain request is). Nothing new reaches the upstream.
fn assert_new_upgrades_refused(pair: &Pair, target: &Proxy, up: &WsUpstream) {
    if std::ptr::eq(target, &pair.client) {
        let refused = poll_until(Duration::from_secs(2), Duration::from_millis(10), || {
            TcpStream::connect_timeout(&pair.http_addr, Duration::from_millis(500))
                .is_err()
                .then_some(())
        });
        assert!(
            refused.is_some(),
            "the stopping client still accepts connections"
        );
    } else {
        let mut late = WsClient::upgrade(pair.http_addr, &[]);
        assert_eq!(late.status(), 503, "{}", late.head);
        let _ = late.read_to_end();
    }
    assert_eq!(up.connection_count(), 1, "{:?}", up.heads());
}

#[test]
fn sigterm_to_the_client_drains_an_open_tunnel_then_resets_it() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr())
        .name("ws_drain_client")
        .client("http.drain_timeout_ms", "3000")
        .start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);
    assert_tunnel_drained(&pair, &pair.client, &mut c, &up);
}

#[test]
fn sigterm_to_the_server_drains_an_open_tunnel_then_resets_it() {
    let up = WsUpstream::start(WsBehaviour::Echo);
    let pair = PairBuilder::new(up.addr())
        .name("ws_drain_server")
        .server("http.drain_timeout_ms", "3000")
        .client("http.session_wait_ms", "1000")
        .start();
    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_switched(&c);
    assert_tunnel_drained(&pair, &pair.server, &mut c, &up);
}

#[test]
fn a_peer_without_extended_connect_gets_the_caller_a_501() {
    let bare = BareH3Server::start();
    let pair = PairBuilder::new(crate::harness::closed_tcp_addr())
        .name("ws_peer_without_setting")
        .start_server(false)
        .client("peer.address", &format!("\"{}\"", bare.addr()))
        .start();
    pair.client.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
    // The session works: a plain request gets the bare server's answer.
    let r = pair.get("/plain");
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_str(), h3_server::BODY);

    let mut c = WsClient::upgrade(pair.http_addr, &[]);
    assert_eq!(c.status(), 501, "{}", c.head);
    let proxy_status = c.field("proxy-status").unwrap_or_default().to_string();
    assert!(
        proxy_status.starts_with("ptproxy-client; error=http_request_denied"),
        "{}",
        c.head
    );
    let body = c.read_to_end().unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&body).contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"),
        "{body:?}"
    );
    assert_eq!(bare.methods(), ["GET"], "no stream for the upgrade");
}
