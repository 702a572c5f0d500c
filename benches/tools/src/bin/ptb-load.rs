//! ptb-load: the benchmark's HTTP/1.1 load generator. Raw blocking sockets, monotonic clock
//! (`Instant`), every socket operation under a timeout and every loop bounded by a count and a
//! deadline. Prints one JSON object on stdout; latencies are in milliseconds.
//!
//!   ptb-load cold --addr A                      one GET /small on a new connection
//!   ptb-load seq  --addr A --n N [--new-conn]   N sequential GET /small, one keep-alive
//!                                               connection (or a new connection per request)
//!   ptb-load conc --addr A --clients C --duration S
//!                                               C keep-alive clients looping GET /small for S s
//!   ptb-load get  --addr A --size BYTES         one GET /bytes/BYTES, timed to the last byte
//!   ptb-load post --addr A --size BYTES         one POST /sink with a BYTES body, timed to the
//!                                               end of the response
//!   ptb-load json --addr A --n N [--clients C] [--req-size B] [--resp-size B] [--save-dir D]
//!                                               link compression (issue 15): C keep-alive
//!                                               clients (1: one at a time) each POST N JSON
//!                                               bodies of B bytes (application/json, with
//!                                               X-Body-Fnv: the upstream checks it) to
//!                                               /json/RESP and get RESP bytes of JSON back,
//!                                               checked against the upstream's X-Body-Fnv; a
//!                                               content-encoded (gzip) response is counted, and
//!                                               the first one saved to D for bench.py to check
//!   ptb-load get|post ... --random              GET /random/BYTES (checked against its
//!                                               X-Body-Fnv) / POST random bytes as text/plain
//!                                               with X-Body-Fnv (checked by the upstream)
//!   ptb-load get|post ... --json [--save-dir D] the same with JSON: GET /json/BYTES (with
//!                                               Accept-Encoding: gzip; a gzip response is saved
//!                                               to D for bench.py to check), POST BYTES of JSON
//!                                               as application/json
//!   ptb-load wait --addr A                      retries a TCP connect until it succeeds
//!                                               (readiness probe; no request is sent)
//!   ptb-load samples --save-dir D --n N [--req-size B] [--resp-size B]
//!                                               writes N JSON bodies of each size to D, made
//!                                               as the JSON mix makes them but with seeds it
//!                                               never uses (from 2^40): the samples
//!                                               `ptproxy train-dictionary` trains on
//! Common: --host NAME (Host field, default "bench"), --timeout S (idle timeout of each socket
//! operation, default 10), --deadline S (bound on the whole mode, default 120).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ptb_tools::body;

static FILL: [u8; 65536] = [b'y'; 65536];

struct Opts {
    addr: SocketAddr,
    host: String,
    n: usize,
    new_conn: bool,
    clients: usize,
    duration: f64,
    size: u64,
    timeout: Duration,
    deadline: Duration,
    /// A generated, checked body (--random or --json).
    random: bool,
    json: bool,
    req_size: usize,
    resp_size: usize,
    save_dir: Option<String>,
}

struct Client {
    addr: SocketAddr,
    timeout: Duration,
    s: Option<TcpStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The response body's bytes, kept while a caller checks them (None: discarded).
    collect: Option<Vec<u8>>,
}

struct Resp {
    status: u16,
    body: u64,
    /// `X-Body-Fnv` of the response (the upstream's checksum of what it sent), if any.
    fnv: Option<u64>,
    /// `Content-Encoding` other than identity, if any.
    encoding: Option<String>,
}

fn err(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Client {
    fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client { addr, timeout, s: None, buf: vec![0u8; 65536], start: 0, end: 0, collect: None }
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        self.s = Some(s);
        self.start = 0;
        self.end = 0;
        Ok(())
    }

    fn close(&mut self) {
        self.s = None;
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(err("response head too large"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let s = self.s.as_mut().ok_or_else(|| err("not connected"))?;
        let n = s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
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

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.start == self.end && self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = ((self.end - self.start) as u64).min(n) as usize;
            if let Some(c) = self.collect.as_mut() {
                c.extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Sends a request head (and `body_len` filler bytes) and reads the whole response.
    fn roundtrip(&mut self, head: &[u8], body_len: u64) -> io::Result<Resp> {
        if self.s.is_none() {
            self.connect()?;
        }
        self.send(head, body_len)?;
        self.read_response()
    }

    /// Sends a request head and the given body bytes, and reads the whole response.
    fn roundtrip_body(&mut self, head: &[u8], body: &[u8]) -> io::Result<Resp> {
        if self.s.is_none() {
            self.connect()?;
        }
        let s = self.s.as_mut().ok_or_else(|| err("not connected"))?;
        if body.len() <= 16384 {
            s.write_all(&[head, body].concat())?;
        } else {
            s.write_all(head)?;
            s.write_all(body)?;
        }
        self.read_response()
    }

    fn send(&mut self, head: &[u8], body_len: u64) -> io::Result<()> {
        {
            let s = self.s.as_mut().unwrap();
            if body_len <= 16384 {
                let mut one = head.to_vec();
                one.extend_from_slice(&FILL[..body_len as usize]);
                s.write_all(&one)?;
            } else {
                s.write_all(head)?;
                let mut left = body_len;
                while left > 0 {
                    let n = left.min(FILL.len() as u64) as usize;
                    s.write_all(&FILL[..n])?;
                    left -= n as u64;
                }
            }
        }
        Ok(())
    }

    fn read_response(&mut self) -> io::Result<Resp> {
        if let Some(c) = self.collect.as_mut() {
            c.clear();
        }
        loop {
            // status line + fields
            let status_line = self.line()?;
            let sl = String::from_utf8_lossy(&status_line).to_string();
            let mut it = sl.split(' ');
            let version = it.next().unwrap_or("").to_string();
            let status: u16 = it.next().and_then(|x| x.parse().ok()).ok_or_else(|| err(&format!("bad status line {sl:?}")))?;
            let mut clen: Option<u64> = None;
            let mut chunked = false;
            let mut close = version != "HTTP/1.1";
            let mut fnv = None;
            let mut encoding = None;
            loop {
                let l = self.line()?;
                if l.is_empty() {
                    break;
                }
                let l = String::from_utf8_lossy(&l).to_string();
                if let Some((k, v)) = l.split_once(':') {
                    let k = k.trim().to_ascii_lowercase();
                    let v = v.trim().to_ascii_lowercase();
                    match k.as_str() {
                        "content-length" => clen = v.parse().ok(),
                        "transfer-encoding" => chunked = v.contains("chunked"),
                        "x-body-fnv" => fnv = u64::from_str_radix(&v, 16).ok(),
                        "content-encoding" if v != "identity" => encoding = Some(v),
                        "connection" => {
                            if v.contains("close") {
                                close = true
                            } else if v.contains("keep-alive") {
                                close = false
                            }
                        }
                        _ => {}
                    }
                }
            }
            if (100..200).contains(&status) && status != 101 {
                continue; // interim response
            }
            let body = if status == 204 || status == 304 {
                0
            } else if chunked {
                let mut total = 0u64;
                loop {
                    let l = self.line()?;
                    let l = String::from_utf8_lossy(&l).to_string();
                    let hex = l.split(';').next().unwrap_or("").trim().to_string();
                    let n = u64::from_str_radix(&hex, 16).map_err(|_| err("bad chunk size"))?;
                    if n == 0 {
                        while !self.line()?.is_empty() {}
                        break;
                    }
                    self.skip(n)?;
                    total += n;
                    if !self.line()?.is_empty() {
                        return Err(err("bad chunk end"));
                    }
                }
                total
            } else if let Some(n) = clen {
                self.skip(n)?;
                n
            } else {
                // close-delimited
                let mut total = 0u64;
                loop {
                    let take = self.end - self.start;
                    self.skip(take as u64)?;
                    total += take as u64;
                    if self.fill()? == 0 {
                        break;
                    }
                }
                close = true;
                total
            };
            if close {
                self.close();
            }
            return Ok(Resp { status, body, fnv, encoding });
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn small_req(host: &str) -> Vec<u8> {
    format!("GET /small HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ptb-load\r\n\r\n").into_bytes()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn lat_json(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    format!("[{}]", parts.join(","))
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: ptb-load cold|seq|conc|get|post --addr HOST:PORT [options]");
        std::process::exit(2);
    }
    let mode = args[0].clone();
    let mut o = Opts {
        addr: "127.0.0.1:8080".parse().unwrap(),
        host: "bench".into(),
        n: 200,
        new_conn: false,
        clients: 32,
        duration: 10.0,
        size: 10 * 1024 * 1024,
        timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(120),
        random: false,
        json: false,
        req_size: 2048,
        resp_size: 20480,
        save_dir: None,
    };
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--new-conn" || a == "--random" || a == "--json" {
            o.new_conn |= a == "--new-conn";
            o.random |= a == "--random" || a == "--json";
            o.json |= a == "--json";
            i += 1;
            continue;
        }
        let v = args.get(i + 1).cloned().unwrap_or_default();
        let num = |s: &str| -> f64 {
            s.parse().unwrap_or_else(|_| {
                eprintln!("ptb-load: bad number for {a}: {s:?}");
                std::process::exit(2)
            })
        };
        match a {
            "--addr" => {
                o.addr = v.to_socket_addrs().ok().and_then(|mut x| x.next()).unwrap_or_else(|| {
                    eprintln!("ptb-load: bad --addr {v}");
                    std::process::exit(2)
                })
            }
            "--host" => o.host = v,
            "--n" => o.n = num(&v) as usize,
            "--clients" => o.clients = num(&v) as usize,
            "--duration" => o.duration = num(&v),
            "--size" => o.size = num(&v) as u64,
            "--timeout" => o.timeout = Duration::from_secs_f64(num(&v)),
            "--deadline" => o.deadline = Duration::from_secs_f64(num(&v)),
            "--req-size" => o.req_size = num(&v) as usize,
            "--resp-size" => o.resp_size = num(&v) as usize,
            "--save-dir" => o.save_dir = Some(v),
            _ => {
                eprintln!("ptb-load: unknown argument {a}");
                std::process::exit(2)
            }
        }
        i += 2;
    }
    let out = match mode.as_str() {
        "cold" => cold(&o),
        "seq" => seq(&o),
        "conc" => conc(&o),
        "get" => bulk(&o, false),
        "post" => bulk(&o, true),
        "wait" => wait(&o),
        "json" => json_mix(&o),
        "samples" => samples(&o),
        _ => {
            eprintln!("ptb-load: unknown mode {mode}");
            std::process::exit(2)
        }
    };
    println!("{out}");
}

fn cold(o: &Opts) -> String {
    let mut c = Client::new(o.addr, o.timeout);
    let req = small_req(&o.host);
    let t0 = Instant::now();
    let r = c.roundtrip(&req, 0);
    let d = ms(t0.elapsed());
    match r {
        Ok(r) if r.status == 200 && r.body == 100 => format!("{{\"ok\":true,\"ms\":{d:.3}}}"),
        Ok(r) => format!("{{\"ok\":false,\"ms\":{d:.3},\"error\":\"status {} body {}\"}}", r.status, r.body),
        Err(e) => format!("{{\"ok\":false,\"ms\":{d:.3},\"error\":\"{}\"}}", esc(&e.to_string())),
    }
}

fn seq(o: &Opts) -> String {
    let mut c = Client::new(o.addr, o.timeout);
    let req = small_req(&o.host);
    let start = Instant::now();
    let mut lat = Vec::with_capacity(o.n);
    let mut errors = 0usize;
    let mut last_err = String::new();
    if !o.new_conn {
        // Keep-alive mode times requests on an open connection: connect before the clock starts
        // (the new-connection mode is the one that pays for connection set-up).
        if let Err(e) = c.connect() {
            last_err = format!("connect: {e}");
        }
    }
    for _ in 0..o.n {
        if start.elapsed() > o.deadline {
            last_err = "deadline".into();
            break;
        }
        let t0 = Instant::now();
        if o.new_conn {
            c.close();
        }
        match c.roundtrip(&req, 0) {
            Ok(r) if r.status == 200 && r.body == 100 => lat.push(ms(t0.elapsed())),
            Ok(r) => {
                errors += 1;
                last_err = format!("status {} body {}", r.status, r.body);
            }
            Err(e) => {
                errors += 1;
                last_err = e.to_string();
                c.close();
            }
        }
        if o.new_conn {
            c.close();
        }
    }
    format!(
        "{{\"ok\":{},\"n\":{},\"errors\":{},\"last_error\":\"{}\",\"elapsed_s\":{:.3},\"lat_ms\":{}}}",
        lat.len(),
        o.n,
        errors,
        esc(&last_err),
        start.elapsed().as_secs_f64(),
        lat_json(&lat)
    )
}

fn conc(o: &Opts) -> String {
    let barrier = Arc::new(Barrier::new(o.clients + 1));
    let mut hs = Vec::new();
    let dur = Duration::from_secs_f64(o.duration);
    for _ in 0..o.clients {
        let b = barrier.clone();
        let addr = o.addr;
        let timeout = o.timeout;
        let req = small_req(&o.host);
        hs.push(std::thread::spawn(move || {
            let mut c = Client::new(addr, timeout);
            let _ = c.connect();
            b.wait();
            let start = Instant::now();
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut last_err = String::new();
            // Bounded: stops issuing at `dur`; each request is bounded by the socket timeout.
            while start.elapsed() < dur {
                let t0 = Instant::now();
                match c.roundtrip(&req, 0) {
                    Ok(r) if r.status == 200 && r.body == 100 => lat.push(ms(t0.elapsed())),
                    Ok(r) => {
                        errors += 1;
                        last_err = format!("status {}", r.status);
                    }
                    Err(e) => {
                        errors += 1;
                        last_err = e.to_string();
                        c.close();
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            (lat, errors, last_err)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut last_err = String::new();
    for h in hs {
        if let Ok((l, e, le)) = h.join() {
            all.extend(l);
            errors += e;
            if !le.is_empty() {
                last_err = le;
            }
        }
    }
    let el = start.elapsed().as_secs_f64();
    format!(
        "{{\"ok\":{},\"errors\":{},\"last_error\":\"{}\",\"elapsed_s\":{:.3},\"clients\":{},\"lat_ms\":{}}}",
        all.len(),
        errors,
        esc(&last_err),
        el,
        o.clients,
        lat_json(&all)
    )
}

fn bulk(o: &Opts, post: bool) -> String {
    let mut c = Client::new(o.addr, o.timeout);
    // Generated bodies (--random, --json) are checked: by the upstream on the way up, here on
    // the way down.
    let (route, ctype) = if o.json { ("json", "application/json") } else { ("random", "text/plain") };
    let upload = (o.random && post).then(|| {
        if o.json {
            body::json_body(o.size as usize, 1)
        } else {
            body::random_body(o.size as usize, 1)
        }
    });
    let head = if let Some(b) = upload.as_ref() {
        format!(
            "POST /sink HTTP/1.1\r\nHost: {}\r\nUser-Agent: ptb-load\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nX-Body-Fnv: {:016x}\r\n\r\n",
            o.host, o.size, body::fnv1a64(b)
        )
    } else if o.random {
        c.collect = Some(Vec::new());
        let gzip = if o.json { "Accept-Encoding: gzip\r\n" } else { "" };
        format!("GET /{route}/{}?seed=1 HTTP/1.1\r\nHost: {}\r\nUser-Agent: ptb-load\r\n{gzip}\r\n", o.size, o.host)
    } else if post {
        format!(
            "POST /sink HTTP/1.1\r\nHost: {}\r\nUser-Agent: ptb-load\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            o.host, o.size
        )
    } else {
        format!("GET /bytes/{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ptb-load\r\n\r\n", o.size, o.host)
    };
    // The whole transfer is bounded by the deadline through a watchdog that shuts the socket.
    if let Err(e) = c.connect() {
        return format!("{{\"ok\":false,\"error\":\"connect: {}\"}}", esc(&e.to_string()));
    }
    let sock = c.s.as_ref().unwrap().try_clone().ok();
    let deadline = o.deadline;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < deadline {
            if done2.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(s) = sock {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    let t0 = Instant::now();
    let r = match (post, upload.as_ref()) {
        (true, Some(b)) => c.roundtrip_body(head.as_bytes(), b),
        _ => c.roundtrip(head.as_bytes(), if post { o.size } else { 0 }),
    };
    let secs = t0.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    // A generated download is checked byte for byte against what the upstream says it sent; a
    // gzip one is saved as <fnv>-<size>.gz for bench.py to decompress and check.
    let intact = match (&r, c.collect.as_ref()) {
        (Ok(r), Some(got)) if r.encoding.is_some() => match o.save_dir.as_deref() {
            Some(dir) => r.fnv.is_some_and(|f| std::fs::write(format!("{dir}/{f:016x}-{}.gz", o.size), got).is_ok()),
            None => false,
        },
        (Ok(r), Some(got)) => r.fnv == Some(body::fnv1a64(got)),
        _ => true,
    };
    match r {
        Ok(r) => {
            let ok = r.status == 200 && (post || r.body == o.size || r.encoding.is_some()) && intact;
            format!(
                "{{\"ok\":{ok},\"seconds\":{secs:.4},\"status\":{},\"encoded\":{},\"body\":{},\"size\":{}{}}}",
                r.status,
                r.encoding.is_some(),
                r.body,
                o.size,
                if ok {
                    String::new()
                } else {
                    format!(",\"error\":\"{}\"", esc(&format!("status {} body {} intact {intact} encoding {:?}", r.status, r.body, r.encoding)))
                }
            )
        }
        Err(e) => format!("{{\"ok\":false,\"seconds\":{secs:.4},\"error\":\"{}\"}}", esc(&e.to_string())),
    }
}

fn wait(o: &Opts) -> String {
    let start = Instant::now();
    let mut tries = 0u64;
    while start.elapsed() < o.deadline {
        tries += 1;
        if TcpStream::connect_timeout(&o.addr, Duration::from_millis(500)).is_ok() {
            return format!("{{\"ok\":true,\"ms\":{:.3},\"tries\":{tries}}}", ms(start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    format!("{{\"ok\":false,\"ms\":{:.3},\"tries\":{tries}}}", ms(start.elapsed()))
}

/// What one JSON-mix client saw.
#[derive(Default)]
struct MixTally {
    lat: Vec<f64>,
    errors: usize,
    mismatches: usize,
    encoded: usize,
    encoded_bytes: u64,
    last_err: String,
}

/// The JSON API mix: `clients` keep-alive clients, each `n` requests: POST `req_size` bytes of
/// JSON, get `resp_size` bytes of JSON back. Both bodies are checked (see the header comment).
/// Seeds of the dictionary's samples: far above the JSON mix's (client * 10^6 + request).
const SAMPLE_SEEDS: u64 = 1 << 40;

fn samples(o: &Opts) -> String {
    let Some(dir) = o.save_dir.as_deref() else {
        eprintln!("ptb-load samples: --save-dir D is required");
        std::process::exit(2)
    };
    let mut written = 0u64;
    for i in 0..o.n as u64 {
        for size in [o.req_size, o.resp_size] {
            let path = format!("{dir}/{size}-{i}.json");
            if let Err(e) = std::fs::write(&path, body::json_body(size, SAMPLE_SEEDS + i)) {
                return format!("{{\"ok\":false,\"error\":\"{}: {}\"}}", esc(&path), esc(&e.to_string()));
            }
            written += size as u64;
        }
    }
    format!("{{\"ok\":true,\"files\":{},\"bytes\":{written}}}", 2 * o.n)
}

fn json_mix(o: &Opts) -> String {
    let clients = o.clients.max(1);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut hs = Vec::new();
    for ci in 0..clients {
        let b = barrier.clone();
        let (addr, timeout, deadline, n) = (o.addr, o.timeout, o.deadline, o.n);
        let (host, req_size, resp_size, save) = (o.host.clone(), o.req_size, o.resp_size, o.save_dir.clone());
        hs.push(std::thread::spawn(move || {
            let mut c = Client::new(addr, timeout);
            let mut t = MixTally::default();
            if let Err(e) = c.connect() {
                t.last_err = format!("connect: {e}");
            }
            c.collect = Some(Vec::new());
            b.wait();
            let start = Instant::now();
            for i in 0..n {
                if start.elapsed() > deadline {
                    t.last_err = "deadline".into();
                    break;
                }
                let seed = (ci * 1_000_000 + i + 1) as u64;
                mix_one(&mut c, &mut t, seed, &host, req_size, resp_size, save.as_deref());
            }
            t
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let mut all = MixTally::default();
    for h in hs {
        if let Ok(t) = h.join() {
            all.lat.extend(t.lat);
            all.errors += t.errors;
            all.mismatches += t.mismatches;
            all.encoded += t.encoded;
            all.encoded_bytes += t.encoded_bytes;
            if !t.last_err.is_empty() {
                all.last_err = t.last_err;
            }
        }
    }
    format!(
        "{{\"ok\":{},\"errors\":{},\"mismatches\":{},\"encoded\":{},\"encoded_bytes\":{},\"req_size\":{},\"resp_size\":{},\"last_error\":\"{}\",\"elapsed_s\":{:.3},\"clients\":{clients},\"lat_ms\":{}}}",
        all.lat.len(),
        all.errors,
        all.mismatches,
        all.encoded,
        all.encoded_bytes,
        o.req_size,
        o.resp_size,
        esc(&all.last_err),
        start.elapsed().as_secs_f64(),
        lat_json(&all.lat)
    )
}

/// One request of the JSON mix, checked: the upstream checks the request body (422 if it
/// differs), this checks the plain response against the JSON it must be; a content-encoded
/// response is counted and, the first time, saved as `<fnv>-<size>.gz` for bench.py to check.
fn mix_one(c: &mut Client, t: &mut MixTally, seed: u64, host: &str, req_size: usize, resp_size: usize, save: Option<&str>) {
    let req = body::json_body(req_size, seed);
    let head = format!(
        "POST /json/{resp_size}?seed={seed} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ptb-load\r\nAccept: application/json\r\n\
         Accept-Encoding: gzip\r\nContent-Type: application/json\r\nContent-Length: {req_size}\r\nX-Body-Fnv: {:016x}\r\n\r\n",
        body::fnv1a64(&req)
    );
    let t0 = Instant::now();
    match c.roundtrip_body(head.as_bytes(), &req) {
        Ok(r) if r.status == 200 => {
            let d = ms(t0.elapsed());
            let got = c.collect.as_deref().unwrap_or_default();
            let want = body::fnv1a64(&body::json_body(resp_size, seed));
            if r.encoding.is_some() {
                t.encoded += 1;
                t.encoded_bytes += got.len() as u64;
                if let (Some(dir), 1) = (save, t.encoded) {
                    let _ = std::fs::write(format!("{dir}/{want:016x}-{resp_size}.gz"), got);
                }
                t.lat.push(d);
            } else if got.len() == resp_size && body::fnv1a64(got) == want {
                t.lat.push(d);
            } else {
                t.mismatches += 1;
                t.last_err = format!("response body differs (seed {seed}, {} bytes)", got.len());
            }
        }
        Ok(r) => {
            t.errors += 1;
            t.last_err = format!("status {} (seed {seed})", r.status);
        }
        Err(e) => {
            t.errors += 1;
            t.last_err = e.to_string();
            c.close();
        }
    }
}
