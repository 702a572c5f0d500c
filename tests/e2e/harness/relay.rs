//! UDP relay between the ptproxy client and server with seeded loss, one-way
//! delay, a hop MTU, a rate limit with a tail-drop queue, a blackhole switch,
//! per-direction counters and, when asked, a log of when each datagram towards the
//! client arrived (the server's send pattern: pacing).
//!
//! One socket on 127.0.0.1:0 faces both sides: datagrams coming from the
//! server address go to the (last seen) client address, everything else goes
//! to the server.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub seed: u64,
    /// Probability (0..1) to drop a client -> server datagram.
    pub loss_to_server: f64,
    /// Probability (0..1) to drop a server -> client datagram.
    pub loss_to_client: f64,
    pub delay_to_server: Duration,
    pub delay_to_client: Duration,
    /// Largest datagram passed on, both ways (a hop with a smaller MTU that drops larger
    /// datagrams, as a router does with Don't Fragment set); `None`: any size.
    pub hop_mtu: Option<usize>,
    /// Each direction serializes datagrams at this rate before the delay, with a queue of
    /// at most `queue_bytes` waiting (more is dropped at the tail, as a router does);
    /// `None`: no limit.
    pub rate: Option<RateLimit>,
    /// Log when each datagram from the server arrives, and its size
    /// ([`UdpRelay::arrivals_to_client`]).
    pub log_arrivals: bool,
}

/// The most arrivals the log keeps (later ones are not logged).
const MAX_LOGGED_ARRIVALS: usize = 1_000_000;

/// A link's rate and its queue.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub bytes_per_second: u64,
    pub queue_bytes: u64,
}

impl RelayConfig {
    /// No loss, no delay.
    pub fn clean() -> RelayConfig {
        RelayConfig {
            seed: seed_from_env(1),
            loss_to_server: 0.0,
            loss_to_client: 0.0,
            delay_to_server: Duration::ZERO,
            delay_to_client: Duration::ZERO,
            hop_mtu: None,
            rate: None,
            log_arrivals: false,
        }
    }

    /// Same loss and delay both ways. The seed can be overridden with the
    /// environment variable PTPROXY_E2E_SEED.
    pub fn lossy(loss: f64, delay: Duration, seed: u64) -> RelayConfig {
        RelayConfig {
            seed: seed_from_env(seed),
            loss_to_server: loss,
            loss_to_client: loss,
            delay_to_server: delay,
            delay_to_client: delay,
            hop_mtu: None,
            rate: None,
            log_arrivals: false,
        }
    }

    /// Logs when each datagram from the server arrives ([`UdpRelay::arrivals_to_client`]).
    pub fn with_arrival_log(mut self) -> RelayConfig {
        self.log_arrivals = true;
        self
    }

    /// Drops datagrams larger than `bytes` of UDP payload, both ways.
    pub fn with_hop_mtu(mut self, bytes: usize) -> RelayConfig {
        self.hop_mtu = Some(bytes);
        self
    }

    /// Serializes at `bytes_per_second` each way, queueing at most `queue_bytes`.
    pub fn with_rate(mut self, bytes_per_second: u64, queue_bytes: u64) -> RelayConfig {
        self.rate = Some(RateLimit {
            bytes_per_second,
            queue_bytes,
        });
        self
    }
}

fn seed_from_env(default: u64) -> u64 {
    std::env::var("PTPROXY_E2E_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// xorshift64* PRNG.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            seed
        })
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
pub struct DirCounters {
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub long_header: AtomicU64,
    pub largest_forwarded: AtomicU64,
    pub too_large: AtomicU64,
    pub queue_full: AtomicU64,
}

/// Snapshot of one direction's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams received from the sender.
    pub received: u64,
    /// Their UDP payload bytes.
    pub received_bytes: u64,
    /// Datagrams sent on to the receiver.
    pub forwarded: u64,
    /// Datagrams dropped (loss or blackhole).
    pub dropped: u64,
    /// Received datagrams whose first byte has the QUIC long-header bit (0x80).
    pub long_header: u64,
    /// The largest datagram sent on to the receiver (UDP payload bytes).
    pub largest_forwarded: u64,
    /// Datagrams dropped for being larger than the hop MTU (also in `dropped`).
    pub too_large: u64,
    /// Datagrams dropped because the rate limit's queue was full (also in `dropped`).
    pub queue_full: u64,
}

impl DirCounters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            received: self.received.load(Ordering::SeqCst),
            received_bytes: self.received_bytes.load(Ordering::SeqCst),
            forwarded: self.forwarded.load(Ordering::SeqCst),
            dropped: self.dropped.load(Ordering::SeqCst),
            long_header: self.long_header.load(Ordering::SeqCst),
            largest_forwarded: self.largest_forwarded.load(Ordering::SeqCst),
            too_large: self.too_large.load(Ordering::SeqCst),
            queue_full: self.queue_full.load(Ordering::SeqCst),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub to_server: DirStats,
    pub to_client: DirStats,
}

#[derive(Default)]
struct Shared {
    to_server: DirCounters,
    to_client: DirCounters,
    blackhole: AtomicBool,
    stop: AtomicBool,
    /// When each datagram from the server arrived, and its UDP payload bytes (`log_arrivals`).
    arrivals_to_client: Mutex<Vec<(Instant, usize)>>,
}

pub struct UdpRelay {
    addr: SocketAddr,
    server: SocketAddr,
    cfg: RelayConfig,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl UdpRelay {
    pub fn start(server: SocketAddr, cfg: RelayConfig) -> io::Result<UdpRelay> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        // A relay thread that falls behind on a loaded machine must not lose datagrams in its
        // socket buffer: those drops would be losses the counters (and the seed) know nothing of.
        enlarge_buffers(&sock);
        let addr = sock.local_addr()?;
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let c = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("udp-relay".into())
            .spawn(move || relay_loop(sock, server, c, sh))?;
        Ok(UdpRelay {
            addr,
            server,
            cfg,
            shared,
            thread: Some(thread),
        })
    }

    /// Address the client must use as its peer.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// Drop every datagram (both ways) while on.
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats {
            to_server: self.shared.to_server.snapshot(),
            to_client: self.shared.to_client.snapshot(),
        }
    }

    /// When each datagram from the server arrived so far, in order, with its UDP payload
    /// bytes (empty unless the relay was started `with_arrival_log`).
    pub fn arrivals_to_client(&self) -> Vec<(Instant, usize)> {
        match self.shared.arrivals_to_client.lock() {
            Ok(log) => log.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Total long-header datagrams seen (both directions).
    pub fn long_header_total(&self) -> u64 {
        let s = self.stats();
        s.to_server.long_header + s.to_client.long_header
    }

    /// Waits until `f(stats)` has not changed for `quiet`; false on timeout.
    pub fn wait_stable<T: PartialEq>(
        &self,
        quiet: Duration,
        timeout: Duration,
        f: impl Fn(&RelayStats) -> T,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        let mut last = f(&self.stats());
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            let cur = f(&self.stats());
            if cur != last {
                last = cur;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- udp relay {} -> {}: seed={:#x} (set PTPROXY_E2E_SEED to reproduce) cfg={:?} stats={:?}", self.addr, self.server, self.cfg.seed, self.cfg, self.stats());
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks for 4 MiB socket buffers both ways (the kernel caps them at `net.core.rmem_max`).
fn enlarge_buffers(sock: &UdpSocket) {
    let sock = socket2::SockRef::from(sock);
    let size = 4 << 20;
    let _ = sock.set_recv_buffer_size(size);
    let _ = sock.set_send_buffer_size(size);
}

/// Sends one datagram; counted before sending so that a receiver never
/// sees a datagram the counters do not include yet.
fn forward(sock: &UdpSocket, data: &[u8], to: SocketAddr, ctr: &DirCounters) {
    ctr.forwarded.fetch_add(1, Ordering::SeqCst);
    // Also before sending (a failed send still counts towards the largest: loopback sends do
    // not fail).
    ctr.largest_forwarded
        .fetch_max(data.len() as u64, Ordering::SeqCst);
    if sock.send_to(data, to).is_err() {
        ctr.forwarded.fetch_sub(1, Ordering::SeqCst);
        ctr.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct Pending {
    due: Instant,
    data: Vec<u8>,
}

/// One direction's serializer: when the link finishes sending what it has taken so far.
#[derive(Default)]
struct Serializer {
    busy_until: Option<Instant>,
}

impl Serializer {
    /// When a datagram of `len` bytes arriving `now` has left the link; `None`: the queue
    /// ahead of it is full and it is dropped.
    fn depart(&mut self, limit: RateLimit, len: usize, now: Instant) -> Option<Instant> {
        let start = self.busy_until.map_or(now, |b| b.max(now));
        let waiting = start.saturating_duration_since(now).as_secs_f64();
        if waiting * limit.bytes_per_second as f64 > limit.queue_bytes as f64 {
            return None;
        }
        let sending = Duration::from_secs_f64(len as f64 / limit.bytes_per_second as f64);
        let done = start + sending;
        self.busy_until = Some(done);
        Some(done)
    }
}

fn log_arrival(log: &Mutex<Vec<(Instant, usize)>>, bytes: usize) {
    let mut log = match log.lock() {
        Ok(log) => log,
        Err(poisoned) => poisoned.into_inner(),
    };
    if log.len() < MAX_LOGGED_ARRIVALS {
        log.push((Instant::now(), bytes));
    }
}

fn relay_loop(sock: UdpSocket, server: SocketAddr, cfg: RelayConfig, sh: Arc<Shared>) {
    let mut rng_s = XorShift::new(cfg.seed);
    let mut rng_c = XorShift::new(cfg.seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut q_s: VecDeque<Pending> = VecDeque::new(); // to server
    let mut q_c: VecDeque<Pending> = VecDeque::new(); // to client
    let mut link_s = Serializer::default();
    let mut link_c = Serializer::default();
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !sh.stop.load(Ordering::SeqCst) {
        // flush what is due
        let now = Instant::now();
        while q_s.front().is_some_and(|p| p.due <= now) {
            let p = q_s.pop_front().unwrap();
            forward(&sock, &p.data, server, &sh.to_server);
        }
        if let Some(c) = client {
            while q_c.front().is_some_and(|p| p.due <= now) {
                let p = q_c.pop_front().unwrap();
                forward(&sock, &p.data, c, &sh.to_client);
            }
        }
        let next_due = [q_s.front(), q_c.front()]
            .into_iter()
            .flatten()
            .map(|p| p.due)
            .min();
        let wait = match next_due {
            Some(d) => d
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(20)),
            None => Duration::from_millis(20),
        };
        let _ = sock.set_read_timeout(Some(wait));
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(v) => v,
            Err(_) => continue, // timeout (or ICMP noise)
        };
        let to_server = src != server;
        if to_server {
            client = Some(src);
        } else if client.is_none() {
            continue;
        }
        let (ctr, rng, loss, delay, q, link) = if to_server {
            (
                &sh.to_server,
                &mut rng_s,
                cfg.loss_to_server,
                cfg.delay_to_server,
                &mut q_s,
                &mut link_s,
            )
        } else {
            (
                &sh.to_client,
                &mut rng_c,
                cfg.loss_to_client,
                cfg.delay_to_client,
                &mut q_c,
                &mut link_c,
            )
        };
        ctr.received.fetch_add(1, Ordering::SeqCst);
        ctr.received_bytes.fetch_add(n as u64, Ordering::SeqCst);
        if n > 0 && buf[0] & 0x80 != 0 {
            ctr.long_header.fetch_add(1, Ordering::SeqCst);
        }
        if cfg.log_arrivals && !to_server {
            log_arrival(&sh.arrivals_to_client, n);
        }
        // draw for every datagram so the loss pattern only depends on the seed
        let r = rng.next_f64();
        if sh.blackhole.load(Ordering::SeqCst) || r < loss {
            ctr.dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if cfg.hop_mtu.is_some_and(|mtu| n > mtu) {
            ctr.too_large.fetch_add(1, Ordering::SeqCst);
            ctr.dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        let now = Instant::now();
        let departed = match cfg.rate {
            Some(limit) => match link.depart(limit, n, now) {
                Some(at) => at,
                None => {
                    ctr.queue_full.fetch_add(1, Ordering::SeqCst);
                    ctr.dropped.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            },
            None => now,
        };
        if delay.is_zero() && cfg.rate.is_none() {
            let dst = if to_server { server } else { client.unwrap() };
            forward(&sock, &buf[..n], dst, ctr);
        } else {
            // Departures are in arrival order and the delay is fixed: the queue stays sorted.
            q.push_back(Pending {
                due: departed + delay,
                data: buf[..n].to_vec(),
            });
        }
    }
}
