//! Mock upstream: a recording HTTP/1.1 origin server on 127.0.0.1:0
//! (thread per connection, keep-alive, strict request parsing).
//!
//! Routes (query strings ignored):
//! - `/echo`        200, request body echoed, Content-Length
//! - `/hello`       200 "hello", Content-Length
//! - `/chunked`     200 chunked in several chunks ([`CHUNKED_BODY`]); close-delimited to HTTP/1.0
//! - `/close`       200 [`CLOSE_BODY`] without Content-Length, then close
//! - `/bytes/N`     N pattern bytes, Content-Length, 64 KiB writes
//! - `/sink`        body read streaming; 200 "len=<n> sum=<checksum>";
//!   `/sink?pause_ms=P&pause_after=N` stops reading for P ms after N bytes
//! - `/stall`       request read, never answered (held until the Upstream drops or the peer closes)
//! - `/delay/MS`    200 "delayed" after MS milliseconds (at most 10 s)
//! - `/status/NNN`  that status, empty body (no Content-Length for 1xx/204/304)
//! - `/headers`     200, body = received headers "name: value\n" in order
//! - anything else  404
//!
//! Besides the complete requests ([`Upstream::requests`]), every request head read is kept
//! verbatim before any validation ([`Upstream::heads`]), so a test can tell that nothing at all
//! (not even a head the mock then rejected, or a request whose body never completed) reached it.

use super::http::{header, header_all, parse_header_lines, BufStream, Readable};
use super::pattern::{fill_pattern, fill_text, Checksum};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const CHUNKED_PARTS: [&str; 4] = [
    "first chunk\n",
    "second, a bit longer chunk\n",
    "3\n",
    "the last chunk of /chunked\n",
];
pub const CHUNKED_BODY: &str =
    "first chunk\nsecond, a bit longer chunk\n3\nthe last chunk of /chunked\n";
pub const CLOSE_BODY: &str = "this body is delimited by the upstream closing the connection\n";
/// Request bodies up to this size are stored in [`Recorded::body`].
pub const STORE_LIMIT: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqFraming {
    None,
    Length(u64),
    Chunked,
}

/// One request as received by the upstream.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Index of the TCP connection (1-based, in accept order).
    pub conn: usize,
    pub method: String,
    pub target: String,
    pub version: String,
    /// Headers in order, names with their original case.
    pub headers: Vec<(String, String)>,
    pub framing: ReqFraming,
    pub body_len: u64,
    pub body_sum: u64,
    /// Body bytes if `body_len <= STORE_LIMIT` (not stored for `/sink`).
    pub body: Option<Vec<u8>>,
    pub trailers: Vec<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_all(&self.headers, name)
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A request head as read from the wire (lossy UTF-8), before any validation.
#[derive(Clone, Debug)]
pub struct RawHead {
    /// Index of the TCP connection (1-based, in accept order).
    pub conn: usize,
    /// The head up to and including the final CRLFCRLF.
    pub text: String,
}

impl RawHead {
    /// The request target (second word of the request line), or "".
    pub fn target(&self) -> &str {
        let line = self.text.split("\r\n").next().unwrap_or("");
        line.split(' ').nth(1).unwrap_or("")
    }

    /// Value of the first header line named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

#[derive(Default)]
struct State {
    recorded: Mutex<Vec<Recorded>>,
    heads: Mutex<Vec<RawHead>>,
    errors: Mutex<Vec<String>>,
    conns: AtomicUsize,
    stop: AtomicBool,
    closed: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

pub struct Upstream {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_at("127.0.0.1:0".parse().expect("address"))
    }

    /// An upstream on `addr` (a port that was free, e.g. one a test kept closed until now).
    pub fn start_at(addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).expect("upstream bind");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = std::thread::Builder::new()
            .name("upstream-accept".into())
            .spawn(move || accept_loop(listener, st))
            .unwrap();
        Upstream {
            addr,
            state,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Snapshot of all recorded requests, in completion order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    /// Every request head read so far (valid or not, body complete or not), in arrival order.
    pub fn heads(&self) -> Vec<RawHead> {
        self.state.heads.lock().unwrap().clone()
    }

    /// Checks that the request for `target` arrived here as a routed request must: with the
    /// `Host` the caller sent and without the `ptproxy-service` field (only ptproxy reads it).
    #[track_caller]
    pub fn assert_routed_here(&self, target: &str, host: &str) {
        let seen = self.requests();
        let r = seen
            .iter()
            .find(|r| r.target == target)
            .unwrap_or_else(|| panic!("{host}{target} did not reach the upstream {}", self.addr));
        assert_eq!(
            r.header("host"),
            Some(host),
            "Host reaches the upstream unchanged"
        );
        assert_eq!(
            r.header("ptproxy-service"),
            None,
            "the service field never reaches B"
        );
    }

    pub fn request_count(&self) -> usize {
        self.state.recorded.lock().unwrap().len()
    }

    /// Number of TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    /// Protocol errors seen (malformed requests from the proxy).
    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests are recorded.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        super::poll_until(timeout, Duration::from_millis(10), || {
            (self.request_count() >= n).then_some(())
        })
        .is_some()
    }

    /// Closes the listening socket: further connects are refused. Existing
    /// connections stay up.
    pub fn stop_accepting(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept.take() {
            // wake the blocking accept()
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = h.join();
        }
    }

    /// Goes down: closes the listener (connects are refused) and every
    /// existing connection.
    pub fn shutdown(&mut self) {
        self.stop_accepting();
        for s in self.state.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn dump(&self) {
        let reqs = self.requests();
        eprintln!(
            "---- upstream {}: {} connections, {} requests ----",
            self.addr,
            self.connection_count(),
            reqs.len()
        );
        for r in reqs.iter().take(50) {
            eprintln!(
                "  conn#{} {} {} {} {:?} body_len={} headers={:?}",
                r.conn, r.method, r.target, r.version, r.framing, r.body_len, r.headers
            );
        }
        for e in self.errors() {
            eprintln!("  upstream error: {e}");
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        self.state.stop.store(true, Ordering::SeqCst);
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, st: Arc<State>) {
    for s in listener.incoming() {
        if st.closed.load(Ordering::SeqCst) {
            break;
        }
        let Ok(s) = s else { continue };
        let id = st.conns.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(c) = s.try_clone() {
            st.streams.lock().unwrap().push(c);
        }
        let st2 = st.clone();
        let _ = std::thread::Builder::new()
            .name(format!("upstream-conn-{id}"))
            .spawn(move || {
                if let Err(e) = serve_conn(s, id, &st2) {
                    if !st2.stop.load(Ordering::SeqCst)
                        && !matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                        )
                    {
                        st2.errors.lock().unwrap().push(format!("conn#{id}: {e}"));
                    }
                }
            });
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

fn write_simple(
    s: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in extra {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    if !(status < 200 || status == 204 || status == 304) {
        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    let mut out = h.into_bytes();
    if !(head_only || status < 200 || status == 204 || status == 304) {
        out.extend_from_slice(body);
    }
    s.write_all(&out)
}

fn serve_conn(stream: TcpStream, id: usize, st: &State) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut io = BufStream::new(stream);
    loop {
        let Some(raw) = io.read_head()? else {
            return Ok(());
        };
        st.heads.lock().unwrap().push(RawHead {
            conn: id,
            text: String::from_utf8_lossy(&raw).into_owned(),
        });
        let text = std::str::from_utf8(&raw).map_err(|_| bad("non UTF-8 request head"))?;
        let text = text.strip_suffix("\r\n\r\n").unwrap();
        let mut lines = text.split("\r\n");
        let rl = lines.next().unwrap();
        let parts: Vec<&str> = rl.split(' ').collect();
        if parts.len() != 3
            || parts[0].is_empty()
            || !parts[0].bytes().all(super::http::is_tchar)
            || parts[1].is_empty()
        {
            let _ = write_simple(&mut out, 400, &[], b"bad request line", false, true);
            return Err(bad(format!("bad request line {rl:?}")));
        }
        let (method, target, version) = (
            parts[0].to_string(),
            parts[1].to_string(),
            parts[2].to_string(),
        );
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            let _ = write_simple(&mut out, 400, &[], b"bad version", false, true);
            return Err(bad(format!("bad version in {rl:?}")));
        }
        let rest: Vec<&str> = lines.collect();
        let headers = match parse_header_lines(&rest) {
            Ok(h) => h,
            Err(e) => {
                let _ = write_simple(&mut out, 400, &[], b"bad header", false, true);
                return Err(e);
            }
        };
        let te = header_all(&headers, "transfer-encoding");
        let cls = header_all(&headers, "content-length");
        let hosts = header_all(&headers, "host");
        let framing = if !te.is_empty() {
            if !cls.is_empty() {
                let _ = write_simple(&mut out, 400, &[], b"TE and CL", false, true);
                return Err(bad(format!(
                    "{rl:?}: both Transfer-Encoding and Content-Length"
                )));
            }
            let codings: Vec<String> = te
                .iter()
                .flat_map(|v| v.split(','))
                .map(|t| t.trim().to_ascii_lowercase())
                .collect();
            if codings != ["chunked"] {
                let _ = write_simple(&mut out, 501, &[], b"unsupported TE", false, true);
                return Err(bad(format!("{rl:?}: unsupported Transfer-Encoding {te:?}")));
            }
            ReqFraming::Chunked
        } else if !cls.is_empty() {
            let first = cls[0];
            if cls.iter().any(|v| *v != first)
                || first.is_empty()
                || !first.bytes().all(|c| c.is_ascii_digit())
            {
                let _ = write_simple(&mut out, 400, &[], b"bad CL", false, true);
                return Err(bad(format!("{rl:?}: bad Content-Length {cls:?}")));
            }
            ReqFraming::Length(first.parse().map_err(|_| bad("CL overflow"))?)
        } else {
            ReqFraming::None
        };
        if version == "HTTP/1.1" && hosts.len() != 1 {
            let _ = write_simple(&mut out, 400, &[], b"Host", false, true);
            return Err(bad(format!("{rl:?}: {} Host headers", hosts.len())));
        }
        let path = target.split('?').next().unwrap_or("").to_string();
        let sink = path == "/sink";
        let expects_body = matches!(framing, ReqFraming::Chunked)
            || matches!(framing, ReqFraming::Length(n) if n > 0);
        if expects_body
            && version == "HTTP/1.1"
            && header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }

        // body
        let query = |k: &str| -> Option<u64> {
            let q = target.split_once('?')?.1;
            q.split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
        };
        let pause = Duration::from_millis(query("pause_ms").unwrap_or(0));
        let pause_after = query("pause_after").unwrap_or(u64::MAX);
        let mut paused = !sink || pause.is_zero();
        let mut sum = Checksum::new();
        let mut body: Vec<u8> = Vec::new();
        let mut trailers = Vec::new();
        {
            let mut f = |b: &[u8]| {
                sum.update(b);
                if !sink {
                    body.extend_from_slice(b);
                }
                if !paused && sum.len() >= pause_after {
                    paused = true;
                    std::thread::sleep(pause); // a slow consumer
                }
            };
            match framing {
                ReqFraming::None => {}
                ReqFraming::Length(n) => io.read_exact_with(n, &mut f)?,
                ReqFraming::Chunked => trailers = io.read_chunked_with(&mut f)?,
            }
        }
        let body_len = sum.len();
        let rec = Recorded {
            conn: id,
            method: method.clone(),
            target: target.clone(),
            version: version.clone(),
            headers: headers.clone(),
            framing,
            body_len,
            body_sum: sum.value(),
            body: (!sink && body_len <= STORE_LIMIT).then(|| body.clone()),
            trailers,
        };
        st.recorded.lock().unwrap().push(rec);

        let head_only = method == "HEAD";
        let conn_tokens: Vec<String> = header_all(&headers, "connection")
            .iter()
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        let mut close = conn_tokens.iter().any(|t| t == "close")
            || (version == "HTTP/1.0" && !conn_tokens.iter().any(|t| t == "keep-alive"));
        let ka: Vec<(&str, String)> = if version == "HTTP/1.0" && !close {
            vec![("Connection", "keep-alive".into())]
        } else {
            vec![]
        };

        match path.as_str() {
            "/echo" => {
                let mut extra = ka.clone();
                extra.push(("Content-Type", "application/octet-stream".into()));
                write_simple(&mut out, 200, &extra, &body, head_only, close)?;
            }
            "/echo_typed" => {
                // The body back with the request's Content-Type and Content-Encoding.
                let mut extra = ka.clone();
                for name in ["Content-Type", "Content-Encoding"] {
                    if let Some(v) = header(&headers, name) {
                        extra.push((name, v.to_string()));
                    }
                }
                write_simple(&mut out, 200, &extra, &body, head_only, close)?;
            }
            "/hello" => {
                let mut extra = ka.clone();
                extra.push(("Content-Type", "text/plain".into()));
                write_simple(&mut out, 200, &extra, b"hello", head_only, close)?;
            }
            "/headers" => {
                let mut b = String::new();
                for (n, v) in &headers {
                    b.push_str(&format!("{n}: {v}\n"));
                }
                write_simple(&mut out, 200, &ka, b.as_bytes(), head_only, close)?;
            }
            "/sink" => {
                let b = super::pattern::sink_answer(body_len, sum.value());
                write_simple(&mut out, 200, &ka, b.as_bytes(), head_only, close)?;
            }
            "/chunked" => {
                if version == "HTTP/1.0" {
                    close = true;
                    let mut h = String::from(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                    );
                    if !head_only {
                        h.push_str(CHUNKED_BODY);
                    }
                    out.write_all(h.as_bytes())?;
                } else {
                    let mut h = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n");
                    if close {
                        h.push_str("Connection: close\r\n");
                    }
                    h.push_str("\r\n");
                    out.write_all(h.as_bytes())?;
                    if !head_only {
                        for p in CHUNKED_PARTS {
                            out.write_all(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes())?;
                            out.flush()?;
                        }
                        out.write_all(b"0\r\n\r\n")?;
                    }
                }
            }
            "/close" => {
                close = true;
                let mut h = String::from(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
                );
                if !head_only {
                    h.push_str(CLOSE_BODY);
                }
                out.write_all(h.as_bytes())?;
            }
            "/stall" => {
                let deadline = Instant::now() + Duration::from_secs(600);
                while !st.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    match io.poll_readable(Duration::from_millis(50)) {
                        Ok(Readable::Timeout) => {}
                        Ok(Readable::Data) => std::thread::sleep(Duration::from_millis(50)),
                        Ok(Readable::Eof) | Err(_) => break,
                    }
                }
                return Ok(());
            }
            p if p.starts_with("/text/") => {
                // N bytes of compressible text (`pattern::fill_text`), text/plain.
                let n: u64 = p["/text/".len()..].parse().unwrap_or(0);
                let mut h = String::from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n");
                h.push_str(&format!("Content-Length: {n}\r\n\r\n"));
                out.write_all(h.as_bytes())?;
                let mut buf = vec![0u8; 64 * 1024];
                let mut off = 0u64;
                while off < n && !head_only {
                    let k = ((n - off) as usize).min(buf.len());
                    fill_text(off, &mut buf[..k]);
                    out.write_all(&buf[..k])?;
                    off += k as u64;
                }
            }
            p if p.starts_with("/bytes/") => {
                let n: u64 = match p["/bytes/".len()..].parse() {
                    Ok(n) => n,
                    Err(_) => {
                        write_simple(&mut out, 400, &[], b"bad N", false, close)?;
                        continue;
                    }
                };
                let mut h =
                    String::from("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n");
                for (k, v) in &ka {
                    h.push_str(&format!("{k}: {v}\r\n"));
                }
                h.push_str(&format!("Content-Length: {n}\r\n"));
                if close {
                    h.push_str("Connection: close\r\n");
                }
                h.push_str("\r\n");
                out.write_all(h.as_bytes())?;
                if !head_only {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut off = 0u64;
                    while off < n {
                        let k = ((n - off) as usize).min(buf.len());
                        fill_pattern(off, &mut buf[..k]);
                        out.write_all(&buf[..k])?;
                        off += k as u64;
                    }
                }
            }
            p if p.starts_with("/delay/") => {
                // A slow origin: answers after the given milliseconds (at most 10 s).
                let ms: u64 = p["/delay/".len()..].parse().unwrap_or(0).min(10_000);
                std::thread::sleep(Duration::from_millis(ms));
                write_simple(&mut out, 200, &ka, b"delayed", head_only, close)?;
            }
            p if p.starts_with("/status/") => {
                let code: u16 = p["/status/".len()..].parse().unwrap_or(0);
                if !(200..=599).contains(&code) {
                    write_simple(&mut out, 400, &[], b"bad status", false, close)?;
                } else {
                    write_simple(&mut out, code, &ka, b"", head_only, close)?;
                }
            }
            _ => write_simple(&mut out, 404, &ka, b"not found", head_only, close)?,
        }
        out.flush()?;
        if close {
            let _ = out.shutdown(Shutdown::Write);
            // drain what the peer still sends so that our close is not a reset
            let _ = io.poll_readable(Duration::from_millis(200));
            return Ok(());
        }
    }
}
