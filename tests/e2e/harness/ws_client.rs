//! A small raw WebSocket client for the tunnel tests (service A): it sends the HTTP/1.1
//! upgrade request to the ptproxy client, reads the answer's head, then writes and reads raw
//! bytes. WebSocket framing is opaque to ptproxy, so [`frame`] builds real (masked) client
//! frames by hand only to keep the bytes close to life.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// RFC 6455 §1.3's example key.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Frame opcodes (RFC 6455 §5.2).
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xa;

pub struct WsClient {
    pub stream: TcpStream,
    /// The answer's head (up to CRLFCRLF), lossy UTF-8.
    pub head: String,
    /// Bytes read after the head, not yet handed out.
    pending: Vec<u8>,
}

/// The upgrade request for `path` with key `key` and `extra` fields.
pub fn upgrade_request(path: &str, key: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

impl WsClient {
    /// Connects to `addr`, sends the upgrade with `KEY` and `extra`, reads the answer's head.
    pub fn upgrade(addr: SocketAddr, extra: &[(&str, &str)]) -> WsClient {
        Self::send_raw(addr, &upgrade_request("/chat", KEY, extra))
    }

    /// Connects to `addr`, sends `request` as is, reads the answer's head.
    pub fn send_raw(addr: SocketAddr, request: &str) -> WsClient {
        let mut stream = TcpStream::connect(addr).expect("connect to the ptproxy client");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        stream
            .write_all(request.as_bytes())
            .expect("send the upgrade");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            assert!(got.len() < 64 * 1024, "answer head too long");
            let n = super::read_some(&mut stream, &mut buf).expect("read the answer head");
            assert!(
                n > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        };
        let pending = got.split_off(end);
        WsClient {
            stream,
            head: String::from_utf8_lossy(&got).into_owned(),
            pending,
        }
    }

    /// The status code of the answer.
    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The value of field `name` in the answer's head.
    pub fn field(&self, name: &str) -> Option<&str> {
        crate::harness::ws_upstream::head_field(&self.head, name)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send tunnel bytes");
    }

    /// Reads exactly `n` bytes (within `timeout`).
    pub fn recv(&mut self, n: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = vec![0u8; 64 * 1024];
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} bytes came",
                out.len()
            );
            let got = super::read_some(&mut self.stream, &mut buf).expect("read tunnel bytes");
            assert!(got > 0, "EOF after {} of {n} bytes", out.len());
            out.extend_from_slice(&buf[..got]);
        }
        self.pending = out.split_off(n);
        out
    }

    /// Sends `bytes` from a second thread while this one reads `echo_len` bytes back (within
    /// `timeout`), so that neither side waits for the other; returns what came back.
    pub fn send_while_receiving(
        &mut self,
        bytes: Vec<u8>,
        echo_len: usize,
        timeout: Duration,
    ) -> Vec<u8> {
        let mut writer = self.stream.try_clone().expect("clone");
        let len = bytes.len();
        let w = std::thread::spawn(move || writer.write_all(&bytes));
        let echoed = self.recv(echo_len, timeout);
        w.join()
            .expect("writer thread")
            .unwrap_or_else(|e| panic!("write {len} bytes: {e}"));
        echoed
    }

    /// Half-closes our side (FIN).
    pub fn finish(&mut self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown write");
    }

    /// Reads until the connection ends and checks that it ended with a TCP reset: a tunnel
    /// that broke must never look like a clean end.
    #[track_caller]
    pub fn assert_reset(&mut self) {
        match self.read_to_end() {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
            Ok(bytes) => panic!(
                "a clean EOF after {} bytes for a tunnel that broke",
                bytes.len()
            ),
        }
    }

    /// Reads until the connection ends: `Ok(bytes)` on a clean EOF, the error otherwise.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            match super::read_some(&mut self.stream, &mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        Err(io::Error::other("no end after 100000 reads"))
    }
}

/// One final client frame (masked, RFC 6455 §5.2-5.3) with `opcode` and `payload`.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}
