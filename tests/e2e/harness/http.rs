//! Raw HTTP/1.1 over std::net::TcpStream: a small buffered reader shared by
//! the test client and the mock upstream, and client-side helpers.
//! Parsing is deliberately strict so that framing bugs of the proxy fail tests.

use super::pattern::{check_pattern, fill_pattern, Checksum};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readable {
    Data,
    Eof,
    Timeout,
}

/// TcpStream with a read buffer.
pub struct BufStream {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    /// Reads fail with TimedOut once this instant has passed.
    pub deadline: Option<Instant>,
}

impl BufStream {
    pub fn new(stream: TcpStream) -> BufStream {
        BufStream {
            stream,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            deadline: None,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Reads more bytes into the buffer; returns 0 at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "overall deadline of the exchange exceeded",
            ));
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let r = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(old);
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    let t = self.stream.read_timeout().ok().flatten();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("read timed out (read timeout {t:?})"),
                    ));
                }
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for something to read: data (buffered or new),
    /// EOF, or nothing.
    pub fn poll_readable(&mut self, timeout: Duration) -> io::Result<Readable> {
        if !self.buffered().is_empty() {
            return Ok(Readable::Data);
        }
        let old = self.stream.read_timeout()?;
        self.stream
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let r = self.fill();
        self.stream.set_read_timeout(old)?;
        match r {
            Ok(0) => Ok(Readable::Eof),
            Ok(_) => Ok(Readable::Data),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(Readable::Timeout)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a head up to and including CRLFCRLF. `Ok(None)` on clean EOF
    /// before any byte.
    pub fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut searched: usize = 0;
        loop {
            let b = self.buffered();
            if let Some(p) = find(&b[searched.saturating_sub(3)..], b"\r\n\r\n") {
                let end = searched.saturating_sub(3) + p + 4;
                let head = b[..end].to_vec();
                self.consume(end);
                return Ok(Some(head));
            }
            searched = b.len();
            if searched > MAX_HEAD {
                return Err(bad("head too large"));
            }
            if self.fill()? == 0 {
                if self.buffered().is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside head: {:?}",
                        String::from_utf8_lossy(self.buffered())
                    ),
                ));
            }
        }
    }

    /// Reads one CRLF-terminated line (without CRLF).
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(p) = find(self.buffered(), b"\r\n") {
                let line = self.buffered()[..p].to_vec();
                self.consume(p + 2);
                return Ok(line);
            }
            if self.buffered().len() > 64 * 1024 {
                return Err(bad("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside line",
                ));
            }
        }
    }

    /// Streams exactly `n` bytes to `f`.
    pub fn read_exact_with(&mut self, mut n: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buffered().is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF with {n} body bytes missing"),
                ));
            }
            let k = (self.buffered().len() as u64).min(n) as usize;
            f(&self.buffered()[..k]);
            self.consume(k);
            n -= k as u64;
        }
        Ok(())
    }

    /// Streams a chunked body to `f` (trailers are read and returned).
    pub fn read_chunked_with(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<Vec<String>> {
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8(line).map_err(|_| bad("non UTF-8 chunk size line"))?;
            let size_txt = line.split(';').next().unwrap().trim();
            if size_txt.is_empty() || !size_txt.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("bad chunk size line {line:?}")));
            }
            let size = u64::from_str_radix(size_txt, 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let t = self.read_line()?;
                    if t.is_empty() {
                        return Ok(trailers);
                    }
                    trailers.push(String::from_utf8_lossy(&t).into_owned());
                }
            }
            self.read_exact_with(size, f)?;
            let crlf = self.read_line()?;
            if !crlf.is_empty() {
                return Err(bad("chunk data not followed by CRLF"));
            }
        }
    }

    /// Streams everything until EOF to `f`.
    pub fn read_to_eof_with(&mut self, f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        loop {
            if !self.buffered().is_empty() {
                let n = self.buffered().len();
                f(self.buffered());
                self.consume(n);
            }
            if self.fill()? == 0 {
                return Ok(());
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses header lines ("Name: value"), strict: no obs-fold, token names.
pub fn parse_header_lines(lines: &[&str]) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for l in lines {
        if l.starts_with(' ') || l.starts_with('\t') {
            return Err(bad(format!("obs-fold header line {l:?}")));
        }
        let (n, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("header line without colon {l:?}")))?;
        if n.is_empty() || !n.bytes().all(is_tchar) {
            return Err(bad(format!("bad header name {n:?}")));
        }
        out.push((
            n.to_string(),
            v.trim_matches(|c| c == ' ' || c == '\t').to_string(),
        ));
    }
    Ok(out)
}

pub fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// True if the comma separated list header `name` has token `tok`.
pub fn has_token(headers: &[(String, String)], name: &str, tok: &str) -> bool {
    header_all(headers, name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tok))
}

/// How a response body was delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    NoBody,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Clone, Debug)]
pub struct ResponseHead {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    /// The connection will be closed by the peer after this response.
    pub fn closes(&self) -> bool {
        self.framing == Framing::Close
            || has_token(&self.headers, "connection", "close")
            || (self.version == "HTTP/1.0" && !has_token(&self.headers, "connection", "keep-alive"))
    }
}

#[derive(Clone, Debug)]
pub struct Response {
    pub head: ResponseHead,
    pub body: Vec<u8>,
    pub trailers: Vec<String>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn framing(&self) -> Framing {
        self.head.framing
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {:?} headers={:?} body[{}]=",
            self.head.version,
            self.head.status,
            self.head.reason,
            self.head.framing,
            self.head.headers,
            self.body.len()
        )?;
        let shown = &self.body[..self.body.len().min(300)];
        write!(f, "{:?}", String::from_utf8_lossy(shown))
    }
}

/// Parses a response head (status line + headers) and decides the framing.
pub fn parse_response_head(head: &[u8], request_method: &str) -> io::Result<ResponseHead> {
    let text = std::str::from_utf8(head).map_err(|_| bad("non UTF-8 response head"))?;
    let text = text
        .strip_suffix("\r\n\r\n")
        .ok_or_else(|| bad("head without CRLFCRLF"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let code = parts.next().unwrap_or("");
    if code.len() != 3 || !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad(format!("bad status code in {status_line:?}")));
    }
    let status: u16 = code.parse().unwrap();
    let reason = parts.next().unwrap_or("").to_string();
    let rest: Vec<&str> = lines.collect();
    if rest.iter().any(|l| l.contains('\n') || l.contains('\r')) {
        return Err(bad("bare CR/LF in response head"));
    }
    let headers = parse_header_lines(&rest)?;
    let te = header_all(&headers, "transfer-encoding");
    let cls = header_all(&headers, "content-length");
    let framing = if request_method.eq_ignore_ascii_case("HEAD")
        || status < 200
        || status == 204
        || status == 304
    {
        Framing::NoBody
    } else if !te.is_empty() {
        if !cls.is_empty() {
            return Err(bad(
                "response has both Transfer-Encoding and Content-Length",
            ));
        }
        let last = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .next_back()
            .unwrap_or_default();
        if last == "chunked" {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if !cls.is_empty() {
        let first = cls[0];
        if cls.iter().any(|v| *v != first)
            || first.is_empty()
            || !first.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad(format!("bad Content-Length {cls:?}")));
        }
        Framing::Length(first.parse().map_err(|_| bad("Content-Length overflow"))?)
    } else {
        Framing::Close
    };
    if (status == 204 || (100..200).contains(&status))
        && (!cls.is_empty() && cls[0] != "0" || !te.is_empty())
    {
        return Err(bad(format!("{status} response with body framing headers")));
    }
    Ok(ResponseHead {
        version,
        status,
        reason,
        headers,
        framing,
    })
}

/// Builds a request. Adds `Host: e2e.test` unless a Host header is given, and
/// `Content-Length` when a body is given (unless the caller passes its own
/// Content-Length / Transfer-Encoding and pre-framed body).
pub fn build_request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push_str("Host: e2e.test\r\n");
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if let Some(b) = body {
        if !framed {
            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
    }
    out.push_str("\r\n");
    let mut v = out.into_bytes();
    if let Some(b) = body {
        v.extend_from_slice(b);
    }
    v
}

/// Encodes `parts` as a chunked body (one chunk per part, empty parts skipped).
pub fn chunked_body(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        v.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
        v.extend_from_slice(p);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

/// Client side connection.
pub struct HttpConn {
    pub io: BufStream,
    pub peer: SocketAddr,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        Self::connect_timeout(addr, DEFAULT_TIMEOUT)
    }

    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> io::Result<HttpConn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(HttpConn {
            io: BufStream::new(s),
            peer: addr,
        })
    }

    pub fn set_timeout(&self, t: Duration) {
        self.io.stream.set_read_timeout(Some(t)).unwrap();
        self.io.stream.set_write_timeout(Some(t)).unwrap();
    }

    /// Overall deadline (from now) for all further reads and upload writes.
    pub fn set_deadline(&mut self, d: Duration) {
        self.io.deadline = Some(Instant::now() + d);
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.stream.write_all(bytes)?;
        self.io.stream.flush()
    }

    pub fn shutdown_write(&self) -> io::Result<()> {
        self.io.stream.shutdown(Shutdown::Write)
    }

    /// Reads the next final response head (1xx interim responses skipped).
    pub fn read_head(&mut self, method: &str) -> io::Result<ResponseHead> {
        loop {
            let raw = self.io.read_head()?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before response",
                )
            })?;
            let head = parse_response_head(&raw, method)?;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            return Ok(head);
        }
    }

    /// Streams the body of `head` to `f`; returns trailers.
    pub fn read_body_with(
        &mut self,
        head: &ResponseHead,
        f: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Vec<String>> {
        match head.framing {
            Framing::NoBody => Ok(Vec::new()),
            Framing::Length(n) => self.io.read_exact_with(n, f).map(|_| Vec::new()),
            Framing::Chunked => self.io.read_chunked_with(f),
            Framing::Close => self.io.read_to_eof_with(f).map(|_| Vec::new()),
        }
    }

    /// Reads one complete response to a request with method `method`.
    pub fn read_response(&mut self, method: &str) -> io::Result<Response> {
        let head = self.read_head(method)?;
        let mut body = Vec::new();
        let trailers = self.read_body_with(&head, &mut |b| body.extend_from_slice(b))?;
        Ok(Response {
            head,
            body,
            trailers,
        })
    }

    /// Sends a request (see [`build_request`]) and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        self.send(&build_request(method, target, headers, body))?;
        self.read_response(method)
    }

    pub fn get(&mut self, target: &str) -> io::Result<Response> {
        self.request("GET", target, &[], None)
    }

    pub fn post(&mut self, target: &str, body: &[u8]) -> io::Result<Response> {
        self.request("POST", target, &[], Some(body))
    }

    /// True if the peer closes the connection (EOF or reset) within
    /// `timeout` without sending anything more.
    pub fn peer_closed_within(&mut self, timeout: Duration) -> bool {
        match self.io.poll_readable(timeout) {
            Ok(Readable::Eof) => true,
            Ok(_) => false,
            Err(_) => true,
        }
    }

    /// Streams `n` pattern bytes as the body of `method target` with
    /// Content-Length, then reads the response. Returns the response and the
    /// checksum of what was sent.
    pub fn upload_pattern(
        &mut self,
        method: &str,
        target: &str,
        n: u64,
    ) -> io::Result<(Response, u64)> {
        let head = format!("{method} {target} HTTP/1.1\r\nHost: e2e.test\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\n\r\n");
        self.send(head.as_bytes())?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut sum = Checksum::new();
        let mut off = 0u64;
        while off < n {
            if self.io.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("overall deadline exceeded after uploading {off} bytes"),
                ));
            }
            let k = ((n - off) as usize).min(buf.len());
            fill_pattern(off, &mut buf[..k]);
            sum.update(&buf[..k]);
            self.io.stream.write_all(&buf[..k]).map_err(|e| {
                io::Error::new(e.kind(), format!("upload write at offset {off}: {e}"))
            })?;
            off += k as u64;
        }
        let resp = self.read_response(method)?;
        Ok((resp, sum.value()))
    }

    /// GETs `target` and checks that the body is the pattern from offset 0,
    /// without storing it. Returns the head and the body length.
    pub fn download_pattern(&mut self, target: &str) -> io::Result<(ResponseHead, u64)> {
        self.download_pattern_paused(target, u64::MAX, Duration::ZERO)
    }

    /// Like [`Self::download_pattern`], but stops reading for `pause` once
    /// `pause_after` body bytes were read (a slow consumer: lets flow
    /// control and socket buffers fill up along the whole path).
    pub fn download_pattern_paused(
        &mut self,
        target: &str,
        pause_after: u64,
        pause: Duration,
    ) -> io::Result<(ResponseHead, u64)> {
        self.send(&build_request("GET", target, &[], None))?;
        let head = self.read_head("GET")?;
        let mut off = 0u64;
        let mut paused = false;
        let mut scratch = Vec::new();
        let mut mismatch: Option<u64> = None;
        self.read_body_with(&head, &mut |b| {
            if mismatch.is_none() {
                if let Err(at) = check_pattern(off, b, &mut scratch) {
                    mismatch = Some(at);
                }
            }
            off += b.len() as u64;
            if !paused && off >= pause_after {
                paused = true;
                std::thread::sleep(pause);
            }
        })?;
        if let Some(at) = mismatch {
            return Err(bad(format!(
                "downloaded body differs from the pattern at offset {at} (status {}, {off} bytes read)",
                head.status
            )));
        }
        Ok((head, off))
    }
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    HttpConn::connect(addr)?.request(method, target, headers, body)
}

pub fn get(addr: SocketAddr, target: &str) -> io::Result<Response> {
    request(addr, "GET", target, &[], None)
}

pub fn post(addr: SocketAddr, target: &str, body: &[u8]) -> io::Result<Response> {
    request(addr, "POST", target, &[], Some(body))
}
