//! A bare HTTP/3 server (quiche) that a ptproxy client can take for its peer: the test PKI's
//! server certificate (`localhost`), one session at a time, and every request answered `200`
//! with a short body. Its HTTP/3 settings are quiche's defaults, so it does not send
//! SETTINGS_ENABLE_CONNECT_PROTOCOL: the peer a client meets when the server end does not
//! carry WebSocket, nor any of ptproxy's private settings (an older server end). It records
//! the fields of each request stream it got.
//!
//! As a fake ptproxy server end it also answers `/zstd/<case>` with a response marked
//! `ptproxy-link-encoding: zstd` (link compression) whose DATA is [`compressed_answer`]`(case)`:
//! `good` a sound frame of [`zstd_plain`], `flipped` the same with a byte altered, `cut` the
//! same without its checksum. `/zstd-d/<case>` is the same answer marked `zstd-d` (compressed
//! with a shared dictionary), which this server never announced.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The body of every answer.
pub const BODY: &str = "bare HTTP/3 server\n";

/// A request's fields as received, in order.
pub type Fields = Vec<(String, String)>;

pub struct BareH3Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Fields>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BareH3Server {
    /// Listens on 127.0.0.1 at a free port.
    pub fn start() -> BareH3Server {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bare h3 server bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("bare h3 server address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (requests.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bare-h3-server".into())
            .spawn(move || serve(socket, addr, &m, &s))
            .expect("bare h3 server thread");
        BareH3Server {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `:method` of every request stream received so far.
    pub fn methods(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|f| {
                f.iter()
                    .find(|(n, _)| n == ":method")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The fields of every request stream received so far.
    pub fn requests(&self) -> Vec<Fields> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for BareH3Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The plain body of the `/zstd/` answers: 20 KB of JSON.
pub fn zstd_plain() -> Vec<u8> {
    let mut out = b"[".to_vec();
    for i in 0..400 {
        out.extend_from_slice(format!("{{\"id\":{i},\"name\":\"user {i}\"}},").as_bytes());
    }
    out.extend_from_slice(b"{}]");
    out
}

/// The DATA of the `/zstd/<case>` answer (see the module header).
pub fn compressed_answer(case: &str) -> Vec<u8> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::ChecksumFlag(true))
        .expect("checksum");
    let plain = zstd_plain();
    let mut frame = Vec::with_capacity(plain.len() + 1024);
    cctx.compress2(&mut frame, &plain).expect("compress");
    match case {
        "flipped" => {
            let middle = frame.len() / 2;
            frame[middle] ^= 0x20;
        }
        "cut" => frame.truncate(frame.len() - 4),
        _ => {}
    }
    frame
}

fn config() -> quiche::Config {
    let mut cfg = super::h3_client::quiche_config("server");
    cfg.verify_peer(false);
    cfg
}

/// One session at a time: a new Initial is accepted when there is none (or it closed).
struct Session {
    conn: quiche::Connection,
    h3: Option<quiche::h3::Connection>,
}

fn serve(socket: UdpSocket, local: SocketAddr, requests: &Mutex<Vec<Fields>>, stop: &AtomicBool) {
    let mut cfg = config();
    let mut session: Option<Session> = None;
    let mut buf = [0u8; 65_535];
    let mut next_scid: u8 = 0;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..1000 {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            let Ok(hdr) = quiche::Header::from_slice(&mut buf[..n], quiche::MAX_CONN_ID_LEN) else {
                continue;
            };
            let fresh = session.as_ref().is_none_or(|s| s.conn.is_closed());
            if fresh && hdr.ty == quiche::Type::Initial {
                next_scid = next_scid.wrapping_add(1);
                let scid = [next_scid; 16];
                let scid = quiche::ConnectionId::from_ref(&scid);
                match quiche::accept(&scid, None, local, from, &mut cfg) {
                    Ok(conn) => session = Some(Session { conn, h3: None }),
                    Err(_) => continue,
                }
            }
            let Some(s) = session.as_mut() else { continue };
            let _ = s
                .conn
                .recv(&mut buf[..n], quiche::RecvInfo { from, to: local });
        }
        if let Some(s) = session.as_mut() {
            if s.conn.timeout().is_some_and(|t| t.is_zero()) {
                s.conn.on_timeout();
            } else if let Some(at) = s.conn.timeout_instant() {
                if at <= std::time::Instant::now() {
                    s.conn.on_timeout();
                }
            }
            answer_requests(s, requests);
            let mut out = [0u8; 1500];
            for _ in 0..1000 {
                match s.conn.send(&mut out) {
                    Ok((n, info)) => {
                        let _ = socket.send_to(&out[..n], info.to);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

/// Answers every request stream `200` with [`BODY`] and records its fields.
fn answer_requests(s: &mut Session, requests: &Mutex<Vec<Fields>>) {
    if s.h3.is_none() && s.conn.is_established() {
        // quiche's default settings: extended CONNECT stays off.
        let h3cfg = quiche::h3::Config::new().expect("h3 config");
        s.h3 = quiche::h3::Connection::with_transport(&mut s.conn, &h3cfg).ok();
    }
    let Some(h3) = s.h3.as_mut() else { return };
    for _ in 0..1000 {
        let Ok((stream, event)) = h3.poll(&mut s.conn) else {
            return;
        };
        match event {
            quiche::h3::Event::Headers { list, .. } => {
                use quiche::h3::NameValue;
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let fields = list.iter().map(|h| (text(h.name()), text(h.value())));
                requests.lock().unwrap().push(fields.collect());
                let path = list
                    .iter()
                    .find(|h| h.name() == b":path")
                    .map(|h| String::from_utf8_lossy(h.value()).into_owned())
                    .unwrap_or_default();
                let dictionary = path.starts_with("/zstd-d/");
                let case = path
                    .strip_prefix("/zstd/")
                    .or_else(|| path.strip_prefix("/zstd-d/"));
                if let Some(case) = case {
                    let mark: &[u8] = if dictionary { b"zstd-d" } else { b"zstd" };
                    let plain_len = zstd_plain().len().to_string();
                    let head = [
                        quiche::h3::Header::new(b":status", b"200"),
                        quiche::h3::Header::new(b"content-type", b"application/json"),
                        quiche::h3::Header::new(b"content-length", plain_len.as_bytes()),
                        quiche::h3::Header::new(b"ptproxy-link-encoding", mark),
                    ];
                    let _ = h3.send_response(&mut s.conn, stream, &head, false);
                    let _ = h3.send_body(&mut s.conn, stream, &compressed_answer(case), true);
                    continue;
                }
                let head = [
                    quiche::h3::Header::new(b":status", b"200"),
                    quiche::h3::Header::new(b"content-length", BODY.len().to_string().as_bytes()),
                ];
                let _ = h3.send_response(&mut s.conn, stream, &head, false);
                let _ = h3.send_body(&mut s.conn, stream, BODY.as_bytes(), true);
            }
            quiche::h3::Event::Data => {
                let mut sink = [0u8; 4096];
                while matches!(h3.recv_body(&mut s.conn, stream, &mut sink), Ok(n) if n > 0) {}
            }
            _ => {}
        }
    }
}
