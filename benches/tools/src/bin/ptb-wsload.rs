//! ptb-wsload: the benchmark's WebSocket echo load generator. N sockets (threads, blocking
//! sockets, a timeout on every operation) each open a WebSocket through the address given
//! (RFC 6455 handshake; the `Sec-WebSocket-Accept` is checked against the key sent), wait until
//! every socket has its answer, then loop for the duration (or the message count): send one
//! masked text message of `--size` bytes carrying the socket, a sequence number and the send
//! time, wait for its echo, compare it byte for byte, record the round trip. At the end each
//! socket sends a close frame and waits (bounded) for the echoed close. Prints one JSON object;
//! times in milliseconds.
//!
//!   ptb-wsload --addr A [--sockets 32] [--duration 10] [--messages N] [--size 64]
//!              [--path /ws] [--host bench] [--timeout 10]
//!
//! `--messages N` bounds the messages per socket (default: no bound but the duration).
//! Output: ok, sockets, sockets_open (handshakes that succeeded), handshake_ms (one per open
//! socket, connect included), lat_ms (every round trip), errors (failed sockets, broken
//! echoes), mismatches (echoes that differ from what was sent), clean_closes, last_error,
//! elapsed_s.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ptb_tools::ws;

struct Opts {
    addr: SocketAddr,
    host: String,
    path: String,
    sockets: usize,
    duration: Duration,
    messages: u64,
    size: usize,
    timeout: Duration,
}

/// What one socket measured.
#[derive(Default)]
struct Tally {
    handshake_ms: Option<f64>,
    lat: Vec<f64>,
    errors: usize,
    mismatches: usize,
    clean_close: bool,
    last_err: String,
}

impl Tally {
    fn fail(&mut self, what: &str, e: impl std::fmt::Display) {
        self.errors += 1;
        self.last_err = format!("{what}: {e}");
    }
}

/// xorshift64*: masks, keys and padding; not security, only variety.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Rng((t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

fn err(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Connects and performs the opening handshake. Returns the stream and whatever bytes followed
/// the 101's head (normally none).
fn open(o: &Opts, rng: &mut Rng) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&o.addr, o.timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(o.timeout))?;
    s.set_write_timeout(Some(o.timeout))?;
    let key = ws::base64(&rng.bytes::<16>());
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: ptb-wsload\r\n\r\n",
        o.path, o.host
    );
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 16384 {
            return Err(err("handshake answer head over 16 KiB"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(err("connection closed before the handshake answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if status.split(' ').nth(1) != Some("101") {
        return Err(err(format!("handshake answered {status:?}")));
    }
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|(_, v)| v.trim().to_string());
    let want = ws::accept_for(&key);
    if accept.as_deref() != Some(want.as_str()) {
        return Err(err(format!("Sec-WebSocket-Accept {accept:?}, expected {want:?}")));
    }
    Ok((s, buf[head_end..].to_vec()))
}

/// The message for one round: printable ASCII (a valid text frame), unique per socket and
/// sequence number, with the send time, padded to `size` with a pattern that depends on both.
fn message(socket: usize, seq: u64, size: usize) -> Vec<u8> {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
    let mut m = format!("ptb-ws s={socket:03} n={seq:010} t={t} ").into_bytes();
    let mut i = 0u64;
    while m.len() < size {
        m.push(b'a' + ((seq + socket as u64 + i) % 26) as u8);
        i += 1;
    }
    m.truncate(size.max(1));
    m
}

/// Reads frames until a data frame arrives (pongs are skipped; a close ends the echo).
fn read_echo<R: Read>(r: &mut R) -> io::Result<ws::Frame> {
    for _ in 0..16 {
        let f = ws::read_frame(r)?.ok_or_else(|| err("connection closed instead of an echo"))?;
        match f.opcode {
            ws::OP_PONG | ws::OP_PING => continue,
            ws::OP_CLOSE => return Err(err("close frame instead of an echo")),
            _ => return Ok(f),
        }
    }
    Err(err("16 control frames in a row instead of an echo"))
}

fn run_socket(o: &Opts, idx: usize, barrier: &Barrier) -> Tally {
    let mut t = Tally::default();
    let mut rng = Rng::new(idx as u64 + 1);
    let t0 = Instant::now();
    let opened = open(o, &mut rng);
    if opened.is_ok() {
        t.handshake_ms = Some(ms(t0.elapsed()));
    }
    barrier.wait(); // every socket, open or not, so that the barrier always releases
    let (s, early) = match opened {
        Ok(x) => x,
        Err(e) => {
            t.fail("handshake", e);
            return t;
        }
    };
    let mut out = match s.try_clone() {
        Ok(x) => x,
        Err(e) => {
            t.fail("socket", e);
            return t;
        }
    };
    let mut input = (&early[..]).chain(s);
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < o.duration && seq < o.messages {
        let m = message(idx, seq, o.size);
        let sent_at = Instant::now();
        if let Err(e) = ws::write_frame(&mut out, true, ws::OP_TEXT, &m, Some(rng.bytes::<4>())) {
            t.fail("send", e);
            return t;
        }
        match read_echo(&mut input) {
            Ok(f) => {
                let rtt = ms(sent_at.elapsed());
                if f.opcode == ws::OP_TEXT && f.fin && !f.masked && f.payload == m {
                    t.lat.push(rtt);
                } else {
                    t.mismatches += 1;
                    t.last_err = format!("echo {seq} differs (opcode {}, {} bytes)", f.opcode, f.payload.len());
                }
            }
            Err(e) => {
                t.fail("echo", e);
                return t;
            }
        }
        seq += 1;
    }
    // Closing handshake: 1000 (normal closure), then the echoed close, bounded by the timeout.
    if ws::write_frame(&mut out, true, ws::OP_CLOSE, &1000u16.to_be_bytes(), Some(rng.bytes::<4>())).is_ok() {
        t.clean_close = matches!(ws::read_frame(&mut input), Ok(Some(f)) if f.opcode == ws::OP_CLOSE);
    }
    t
}

fn lat_json(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
    format!("[{}]", parts.join(","))
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        host: "bench".into(),
        path: "/ws".into(),
        sockets: 32,
        duration: Duration::from_secs(10),
        messages: u64::MAX,
        size: 64,
        timeout: Duration::from_secs(10),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
        let num = |s: &str| s.parse::<f64>().map_err(|_| format!("bad number for {a}: {s:?}"));
        match a.as_str() {
            "--addr" => {
                o.addr = v.to_socket_addrs().ok().and_then(|mut x| x.next()).ok_or_else(|| format!("bad --addr {v}"))?
            }
            "--host" => o.host = v.clone(),
            "--path" => o.path = v.clone(),
            "--sockets" => o.sockets = num(v)?.max(1.0) as usize,
            "--duration" => o.duration = Duration::from_secs_f64(num(v)?),
            "--messages" => o.messages = num(v)? as u64,
            "--size" => o.size = num(v)?.clamp(48.0, 125.0) as usize,
            "--timeout" => o.timeout = Duration::from_secs_f64(num(v)?),
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    Ok(o)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = Arc::new(parse(&args).unwrap_or_else(|e| {
        eprintln!("ptb-wsload: {e}");
        std::process::exit(2)
    }));
    let barrier = Arc::new(Barrier::new(o.sockets + 1));
    let handles: Vec<_> = (0..o.sockets)
        .map(|i| {
            let (o, b) = (o.clone(), barrier.clone());
            std::thread::spawn(move || run_socket(&o, i, &b))
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut all = Tally::default();
    let (mut hs, mut open, mut closes) = (Vec::new(), 0usize, 0usize);
    for h in handles {
        let t =
            h.join().unwrap_or_else(|_| Tally { errors: 1, last_err: "thread panicked".into(), ..Tally::default() });
        if let Some(x) = t.handshake_ms {
            hs.push(x);
            open += 1;
        }
        closes += usize::from(t.clean_close);
        all.lat.extend(t.lat);
        all.errors += t.errors;
        all.mismatches += t.mismatches;
        if !t.last_err.is_empty() {
            all.last_err = t.last_err;
        }
    }
    println!(
        "{{\"ok\":{},\"sockets\":{},\"sockets_open\":{open},\"errors\":{},\"mismatches\":{},\"clean_closes\":{closes},\"last_error\":\"{}\",\"elapsed_s\":{:.3},\"size\":{},\"handshake_ms\":{},\"lat_ms\":{}}}",
        !all.lat.is_empty(),
        o.sockets,
        all.errors,
        all.mismatches,
        esc(&all.last_err),
        start.elapsed().as_secs_f64(),
        o.size,
        lat_json(&hs),
        lat_json(&all.lat)
    );
}
