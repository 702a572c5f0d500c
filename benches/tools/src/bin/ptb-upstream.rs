//! ptb-upstream: a small, fast HTTP/1.1 origin for the benchmark (one thread per connection,
//! keep-alive, TCP_NODELAY, no allocation per body byte).
//!
//!   GET  /small        -> 200, 100-byte body
//!   GET  /bytes/N      -> 200, N-byte body (Content-Length)
//!   POST /sink         -> reads the whole body (Content-Length or chunked), 200 "received N\n"
//!   GET with `Upgrade: websocket` (any path)
//!                      -> 101 with the RFC 6455 accept, then a WebSocket echo: each frame's
//!                         payload comes back unmasked with the same opcode and FIN bit (a
//!                         ping gets a pong, a close gets a close and ends the connection)
//!   GET|POST /json/N?seed=S
//!                      -> 200, exactly N bytes of JSON (`application/json`, an array of
//!                         records with varied values, deterministic by S)
//!   GET  /random/N?seed=S
//!                      -> 200, N random (incompressible) bytes labelled `text/plain`, so that
//!                         a compressing proxy tries them
//!   Bodies sent carry `X-Body-Fnv` (FNV-1a 64, hex) of their bytes; a request body sent with
//!   `X-Body-Fnv` is checked against it (any path): a mismatch is answered 422.
//!   anything else      -> 404, short body
//!
//! Usage: ptb-upstream LISTEN_ADDR [LISTEN_ADDR...]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ptb_tools::{body, ws};

static FILL: [u8; 65536] = [b'x'; 65536];

fn main() {
    let addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        eprintln!("usage: ptb-upstream LISTEN_ADDR...");
        std::process::exit(2);
    }
    let mut handles = Vec::new();
    for a in addrs {
        let l = TcpListener::bind(&a).unwrap_or_else(|e| {
            eprintln!("ptb-upstream: bind {a}: {e}");
            std::process::exit(2)
        });
        eprintln!("ptb-upstream: listening on {a}");
        handles.push(std::thread::spawn(move || {
            for s in l.incoming() {
                match s {
                    Ok(s) => {
                        std::thread::spawn(move || {
                            let _ = serve(s);
                        });
                    }
                    Err(e) => {
                        eprintln!("ptb-upstream: accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Running FNV-1a 64 of the body bytes skipped, while a request body is checked.
    hash: Option<u64>,
}

impl Conn {
    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
            }
        }
        let n = self.s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                let head = self.buf[self.start..self.start + p + 4].to_vec();
                self.start += p + 4;
                return Ok(Some(head));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Discards exactly n body bytes.
    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end && self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = ((self.end - self.start) as u64).min(n) as usize;
            if let Some(h) = self.hash.as_mut() {
                for &b in &self.buf[self.start..self.start + take] {
                    *h ^= b as u64;
                    *h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(p) = find(&self.buf[self.start..self.end], b"\r\n") {
                let l = self.buf[self.start..self.start + p].to_vec();
                self.start += p + 2;
                return Ok(l);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn skip_chunked(&mut self) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let l = self.read_line()?;
            let s = String::from_utf8_lossy(&l);
            let hex = s.split(';').next().unwrap_or("").trim();
            let n = u64::from_str_radix(hex, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if n == 0 {
                // trailers until empty line
                loop {
                    if self.read_line()?.is_empty() {
                        return Ok(total);
                    }
                }
            }
            self.skip(n)?;
            total += n;
            if !self.read_line()?.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk end"));
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn serve(s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    s.set_write_timeout(Some(Duration::from_secs(300)))?;
    let mut c = Conn { s, buf: vec![0u8; 65536], start: 0, end: 0, hash: None };
    loop {
        let head = match c.read_head()? {
            Some(h) => h,
            None => return Ok(()),
        };
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.split("\r\n");
        let reqline = lines.next().unwrap_or("");
        let mut parts = reqline.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("");
        let mut close = version != "HTTP/1.1";
        let mut clen: Option<u64> = None;
        let mut chunked = false;
        let mut upgrade_ws = false;
        let mut ws_key: Option<String> = None;
        let mut body_fnv: Option<u64> = None;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                match k.as_str() {
                    "content-length" => clen = v.parse().ok(),
                    "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                    "upgrade" => upgrade_ws = v.eq_ignore_ascii_case("websocket"),
                    "sec-websocket-key" => ws_key = Some(v.to_string()),
                    "x-body-fnv" => body_fnv = u64::from_str_radix(v, 16).ok(),
                    "connection" => {
                        let v = v.to_ascii_lowercase();
                        if v.contains("close") {
                            close = true;
                        } else if v.contains("keep-alive") {
                            close = false;
                        }
                    }
                    _ => {}
                }
            }
        }
        if method == "GET" && upgrade_ws {
            return websocket_echo(c, ws_key.as_deref());
        }
        c.hash = body_fnv.map(|_| body::fnv1a64(b""));
        let received = if chunked {
            c.skip_chunked()?
        } else if let Some(n) = clen {
            c.skip(n)?;
            n
        } else {
            0
        };
        let request_body_ok = body_fnv == c.hash.take() || body_fnv.is_none();
        let conn_hdr = if close { "Connection: close\r\n" } else { "" };
        let (mut ctype, mut fnv_hdr) = ("application/octet-stream", String::new());
        let (status, body_len, small_body): (&str, u64, Option<Vec<u8>>) = if !request_body_ok {
            ("422 Unprocessable Entity", 18, Some(b"checksum mismatch\n".to_vec()))
        } else if let Some((kind, n, seed)) = generated(&method, &path) {
            let b = if kind == "json" { body::json_body(n, seed) } else { body::random_body(n, seed) };
            ctype = if kind == "json" { "application/json" } else { "text/plain" };
            fnv_hdr = format!("X-Body-Fnv: {:016x}\r\n", body::fnv1a64(&b));
            ("200 OK", b.len() as u64, Some(b))
        } else if method == "GET" && path == "/small" {
            ("200 OK", 100, Some(FILL[..100].to_vec()))
        } else if method == "GET" && path.starts_with("/bytes/") {
            match path["/bytes/".len()..].parse::<u64>() {
                Ok(n) => ("200 OK", n, None),
                Err(_) => ("400 Bad Request", 4, Some(b"bad\n".to_vec())),
            }
        } else if (method == "POST" || method == "PUT") && path == "/sink" {
            let b = format!("received {received}\n").into_bytes();
            ("200 OK", b.len() as u64, Some(b))
        } else {
            ("404 Not Found", 10, Some(b"not found\n".to_vec()))
        };
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {body_len}\r\n{fnv_hdr}{conn_hdr}\r\n"
        )
        .into_bytes();
        if method == "HEAD" {
            c.s.write_all(&out)?;
        } else if let Some(b) = small_body {
            out.extend_from_slice(&b);
            c.s.write_all(&out)?;
        } else {
            c.s.write_all(&out)?;
            let mut left = body_len;
            while left > 0 {
                let n = left.min(FILL.len() as u64) as usize;
                c.s.write_all(&FILL[..n])?;
                left -= n as u64;
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// `GET|POST /json/N?seed=S` and `GET /random/N?seed=S`: (kind, N, S).
fn generated(method: &str, path: &str) -> Option<(&'static str, usize, u64)> {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let seed = query.strip_prefix("seed=").and_then(|v| v.parse().ok()).unwrap_or(1);
    if let Some(n) = route.strip_prefix("/json/") {
        if method == "GET" || method == "POST" {
            return n.parse().ok().filter(|&n| n <= 1 << 30).map(|n| ("json", n, seed));
        }
    }
    if let Some(n) = route.strip_prefix("/random/") {
        if method == "GET" {
            return n.parse().ok().filter(|&n| n <= 1 << 30).map(|n| ("random", n, seed));
        }
    }
    None
}

/// Answers the upgrade (101 with the accept, or 400 without a key) and echoes frames until the
/// peer closes. Frames are read through whatever the head's buffer already holds.
fn websocket_echo(c: Conn, key: Option<&str>) -> io::Result<()> {
    let Conn { mut s, buf, start, end, .. } = c;
    let Some(key) = key else {
        return s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        ws::accept_for(key)
    );
    s.write_all(head.as_bytes())?;
    let mut out = s.try_clone()?;
    let mut input = (&buf[start..end]).chain(s);
    while let Some(f) = ws::read_frame(&mut input)? {
        match f.opcode {
            ws::OP_PING => ws::write_frame(&mut out, true, ws::OP_PONG, &f.payload, None)?,
            ws::OP_PONG => {}
            ws::OP_CLOSE => {
                ws::write_frame(&mut out, true, ws::OP_CLOSE, &f.payload, None)?;
                return Ok(());
            }
            op => ws::write_frame(&mut out, f.fin, op, &f.payload, None)?,
        }
    }
    Ok(())
}
