//! A bare HTTP/3 client (quiche) speaking straight to a ptproxy server with the test PKI's
//! client certificate, for requests the ptproxy client would never send: crafted field lists,
//! bodies that disagree with their Content-Length. It reports what came back on the stream:
//! a response (status, fields, body) or a reset with its code. For tunnels (extended CONNECT)
//! it keeps a stream open, sends DATA on it and reads what came so far ([`StreamSeen`]).

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How a request stream ended.
#[derive(Debug)]
pub enum H3Outcome {
    Response {
        status: u16,
        fields: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The server reset the stream with this HTTP/3 error code.
    Reset(u64),
}

/// What came on a stream so far.
#[derive(Debug, Default, Clone)]
pub struct StreamSeen {
    pub status: Option<u16>,
    pub fields: Vec<(String, String)>,
    pub data: Vec<u8>,
    /// The server ended the stream cleanly (FIN).
    pub finished: bool,
    /// The server reset the stream with this code.
    pub reset: Option<u64>,
}

impl StreamSeen {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct H3Client {
    /// Streams read through [`H3Client::wait_for`].
    seen: HashMap<u64, StreamSeen>,
    socket: UdpSocket,
    local: SocketAddr,
    peer: SocketAddr,
    conn: quiche::Connection,
    h3: quiche::h3::Connection,
    /// The sequence number of the server's connection ID to retire next.
    next_retired_seq: u64,
}

/// The test PKI's file `name` as a path string.
fn pem(name: &str) -> String {
    super::pki(name).to_str().expect("UTF-8 path").to_string()
}

/// The quiche settings of the harness's bare HTTP/3 ends (client and server), with the test
/// PKI's certificate `identity` (`client` or `server`); peer verification is the caller's.
pub fn quiche_config(identity: &str) -> quiche::Config {
    let mut cfg = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("quiche config");
    cfg.set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
        .expect("alpn");
    cfg.load_cert_chain_from_pem_file(&pem(&format!("{identity}.pem")))
        .expect("certificate");
    cfg.load_priv_key_from_pem_file(&pem(&format!("{identity}.key")))
        .expect("key");
    cfg.set_max_idle_timeout(30_000);
    cfg.set_max_recv_udp_payload_size(1350);
    cfg.set_max_send_udp_payload_size(1350);
    cfg.set_initial_max_data(10_000_000);
    cfg.set_initial_max_stream_data_bidi_local(1_000_000);
    cfg.set_initial_max_stream_data_bidi_remote(1_000_000);
    cfg.set_initial_max_stream_data_uni(1_000_000);
    cfg.set_initial_max_streams_bidi(100);
    cfg.set_initial_max_streams_uni(100);
    cfg
}

/// Name/value pairs as quiche HTTP/3 fields, exactly as given.
fn header_list(fields: &[(&str, &str)]) -> Vec<quiche::h3::Header> {
    fields
        .iter()
        .map(|(n, v)| quiche::h3::Header::new(n.as_bytes(), v.as_bytes()))
        .collect()
}

impl H3Client {
    /// Connects to the server at `server` (name `localhost`) and waits for the session.
    pub fn connect(server: SocketAddr) -> H3Client {
        let mut cfg = quiche_config("client");
        cfg.load_verify_locations_from_file(&pem("ca.pem"))
            .expect("ca");
        cfg.verify_peer(true);
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let scid = [0x5a; 16];
        let scid = quiche::ConnectionId::from_ref(&scid);
        let mut conn = quiche::connect(Some("localhost"), &scid, local, server, &mut cfg)
            .expect("quiche connect");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut io = Io {
            socket: &socket,
            local,
            peer: server,
        };
        while !conn.is_established() {
            assert!(Instant::now() < deadline, "HTTP/3 handshake timed out");
            assert!(
                !conn.is_closed(),
                "session closed in the handshake: {:?}",
                conn.peer_error()
            );
            io.turn(&mut conn);
        }
        let h3 = quiche::h3::Connection::with_transport(
            &mut conn,
            &quiche::h3::Config::new().expect("h3 config"),
        )
        .expect("h3 connection");
        H3Client {
            seen: HashMap::new(),
            socket,
            local,
            peer: server,
            conn,
            h3,
            next_retired_seq: 0,
        }
    }

    /// Keeps the session going (reads, acknowledges, answers probes) for `time`.
    pub fn idle(&mut self, time: Duration) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            Io {
                socket: &self.socket,
                local: self.local,
                peer: self.peer,
            }
            .turn(&mut self.conn);
        }
    }

    /// Retires the server's connection IDs one after the other, oldest first, each as soon as
    /// the server has issued a spare to move to (connection-ID churn, as a client that rotates
    /// IDs for privacy makes it). Returns how many of `count` were retired before `timeout`.
    pub fn retire_connection_ids(&mut self, count: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut retired = 0;
        while retired < count && Instant::now() < deadline {
            assert!(
                !self.conn.is_closed(),
                "session closed: {:?}",
                self.conn.peer_error()
            );
            if self.conn.available_dcids() > 0
                && self.conn.retire_dcid(self.next_retired_seq).is_ok()
            {
                self.next_retired_seq += 1;
                retired += 1;
            }
            Io {
                socket: &self.socket,
                local: self.local,
                peer: self.peer,
            }
            .turn(&mut self.conn);
        }
        retired
    }

    /// Sends a request with exactly these fields, then `body` (if any) and the end of the
    /// stream; returns the stream id.
    pub fn send(&mut self, fields: &[(&str, &str)], body: Option<&[u8]>) -> u64 {
        let list = header_list(fields);
        let stream = self
            .h3
            .send_request(&mut self.conn, &list, body.is_none())
            .expect("send_request");
        if let Some(body) = body {
            let n = self
                .h3
                .send_body(&mut self.conn, stream, body, true)
                .expect("send_body");
            assert_eq!(n, body.len(), "the test body must fit the stream window");
        }
        self.flush();
        stream
    }

    /// Opens a stream with exactly these fields and keeps it open (no FIN); returns its id.
    pub fn open(&mut self, fields: &[(&str, &str)]) -> u64 {
        let list = header_list(fields);
        let stream = self
            .h3
            .send_request(&mut self.conn, &list, false)
            .expect("send_request");
        self.flush();
        stream
    }

    /// Sends `data` as DATA on `stream` (then FIN if `fin`), waiting for flow-control credit
    /// as needed, for at most `timeout`.
    pub fn send_data(&mut self, stream: u64, data: &[u8], fin: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut sent = 0;
        loop {
            match self
                .h3
                .send_body(&mut self.conn, stream, &data[sent..], fin)
            {
                // All of what was left taken: the FIN (if asked) went with it.
                Ok(n) if sent + n == data.len() => {
                    self.flush();
                    return;
                }
                Ok(n) => sent += n,
                Err(quiche::h3::Error::Done) => {}
                Err(e) => panic!("send_body on stream {stream}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "sent {sent} of {} bytes on stream {stream} in {timeout:?}",
                data.len()
            );
            self.poll_streams();
        }
    }

    /// Resets `stream` both ways with `code` (RESET_STREAM and STOP_SENDING).
    pub fn reset_stream(&mut self, stream: u64, code: u64) {
        let _ = self
            .conn
            .stream_shutdown(stream, quiche::Shutdown::Write, code);
        let _ = self
            .conn
            .stream_shutdown(stream, quiche::Shutdown::Read, code);
        self.flush();
    }

    /// Runs the session until `done` holds for what came on `stream` (or it ended), for at
    /// most `timeout`; returns what came.
    pub fn wait_for(
        &mut self,
        stream: u64,
        timeout: Duration,
        done: impl Fn(&StreamSeen) -> bool,
    ) -> StreamSeen {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen.entry(stream).or_default();
            if done(seen) || seen.finished || seen.reset.is_some() {
                return seen.clone();
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream}: condition not met in {timeout:?}; saw {} bytes, status {:?}",
                seen.data.len(),
                seen.status
            );
            self.poll_streams();
        }
    }

    /// One turn of the session, then every HTTP/3 event into [`H3Client::seen`].
    fn poll_streams(&mut self) {
        assert!(
            !self.conn.is_closed(),
            "session closed: {:?}",
            self.conn.peer_error()
        );
        Io {
            socket: &self.socket,
            local: self.local,
            peer: self.peer,
        }
        .turn(&mut self.conn);
        let mut buf = vec![0u8; 65_536];
        while let Ok((id, event)) = self.h3.poll(&mut self.conn) {
            let seen = self.seen.entry(id).or_default();
            match event {
                quiche::h3::Event::Headers { list, .. } => {
                    use quiche::h3::NameValue;
                    for f in list {
                        let (n, v) = (
                            String::from_utf8_lossy(f.name()).into_owned(),
                            String::from_utf8_lossy(f.value()).into_owned(),
                        );
                        if n == ":status" {
                            seen.status = v.parse().ok();
                        } else {
                            seen.fields.push((n, v));
                        }
                    }
                }
                quiche::h3::Event::Data => {
                    while let Ok(n) = self.h3.recv_body(&mut self.conn, id, &mut buf) {
                        seen.data.extend_from_slice(&buf[..n]);
                    }
                }
                quiche::h3::Event::Finished => seen.finished = true,
                quiche::h3::Event::Reset(code) => seen.reset = Some(code),
                _ => {}
            }
        }
    }

    fn flush(&mut self) {
        Io {
            socket: &self.socket,
            local: self.local,
            peer: self.peer,
        }
        .send(&mut self.conn);
    }

    /// Waits up to `timeout` for how `stream` ends.
    pub fn outcome(&mut self, stream: u64, timeout: Duration) -> H3Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                Instant::now() < deadline,
                "no end of stream {stream} in {timeout:?}"
            );
            self.poll_streams();
            let Some(seen) = self.seen.get(&stream) else {
                continue;
            };
            if let Some(code) = seen.reset {
                return H3Outcome::Reset(code);
            }
            if seen.finished {
                let seen = self.seen.remove(&stream).unwrap_or_default();
                return H3Outcome::Response {
                    status: seen.status.expect("a response without :status"),
                    fields: seen.fields,
                    body: seen.data,
                };
            }
        }
    }
}

struct Io<'a> {
    socket: &'a UdpSocket,
    local: SocketAddr,
    peer: SocketAddr,
}

impl Io<'_> {
    /// Sends what is due, waits a little for datagrams and feeds them in, runs the timers.
    fn turn(&mut self, conn: &mut quiche::Connection) {
        self.send(conn);
        let mut buf = [0u8; 65_535];
        for _ in 0..1000 {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let info = quiche::RecvInfo {
                        from,
                        to: self.local,
                    };
                    let _ = conn.recv(&mut buf[..n], info);
                    let _ = self.socket.set_read_timeout(Some(Duration::from_millis(1)));
                }
                Err(_) => break,
            }
        }
        let _ = self
            .socket
            .set_read_timeout(Some(Duration::from_millis(20)));
        if conn.timeout() == Some(Duration::ZERO) {
            conn.on_timeout();
        } else if let Some(t) = conn.timeout_instant() {
            if t <= Instant::now() {
                conn.on_timeout();
            }
        }
        self.send(conn);
    }

    fn send(&mut self, conn: &mut quiche::Connection) {
        let mut out = [0u8; 1500];
        for _ in 0..1000 {
            match conn.send(&mut out) {
                Ok((n, info)) => {
                    let _ = self.socket.send_to(&out[..n], info.to);
                }
                Err(_) => break,
            }
        }
        let _ = self.peer;
    }
}
