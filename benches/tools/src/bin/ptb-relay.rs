//! ptb-relay: a user-space link emulator between two network namespaces.
//!
//! It opens two TUN devices (`--a-dev`, `--b-dev`), moves each into its namespace with an
//! address and a point-to-point peer route, and then carries every IP packet (TCP, UDP, ICMP
//! alike) from one to the other through, per direction and in this order:
//!
//!   1. loss: independent drop with probability `--loss-a2b` / `--loss-b2a` (seeded xorshift,
//!      one generator per direction, so a run is reproducible);
//!   2. rate: a serialization queue at `--rate-mbit` (a packet of S bytes occupies the link for
//!      S*8/rate seconds after the previous one), tail-dropping beyond `--queue-bytes` of backlog;
//!   3. delay: `--delay-ms` one way (RTT = 2 x delay), released with nanosecond timers (ppoll)
//!      and a 1 ns timer slack.
//!
//! It is the fallback for kernels without `sch_netem`. Control is a line protocol on stdin:
//!   `stats`        -> one JSON line on stdout with per-direction counters
//!   `reset SEED`   -> zero the counters and reseed both loss generators
//!   `quit` or EOF  -> exit (the TUN devices vanish with the process)
//! It prints `READY` once both devices are up.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::io::RawFd;
use std::process::Command;
use std::time::{Duration, Instant};

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[derive(Default, Clone, Copy)]
struct Stats {
    offered_pkts: u64,
    offered_bytes: u64,
    lost_pkts: u64,
    qdrop_pkts: u64,
    delivered_pkts: u64,
    delivered_bytes: u64,
    write_errors: u64,
    max_backlog_bytes: u64,
}

struct Dir {
    loss: f64,
    rng: u64,
    /// (release time, packet)
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// When the emulated wire is free again (rate limiting only).
    link_free: Instant,
    st: Stats,
}

impl Dir {
    fn new(loss: f64, seed: u64) -> Dir {
        Dir { loss, rng: seed_mix(seed), queue: VecDeque::new(), link_free: Instant::now(), st: Stats::default() }
    }

    fn rand01(&mut self) -> f64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn ingest(&mut self, pkt: Vec<u8>, now: Instant, cfg: &Cfg) {
        let len = pkt.len() as u64;
        self.st.offered_pkts += 1;
        self.st.offered_bytes += len;
        if self.loss > 0.0 && self.rand01() < self.loss {
            self.st.lost_pkts += 1;
            return;
        }
        let release = match cfg.rate_bps {
            Some(rate) => {
                let start = if self.link_free > now { self.link_free } else { now };
                let backlog = ((start - now).as_secs_f64() * rate / 8.0) as u64;
                if backlog + len > cfg.queue_bytes {
                    self.st.qdrop_pkts += 1;
                    return;
                }
                if backlog + len > self.st.max_backlog_bytes {
                    self.st.max_backlog_bytes = backlog + len;
                }
                self.link_free = start + Duration::from_secs_f64(len as f64 * 8.0 / rate);
                self.link_free + cfg.delay
            }
            None => now + cfg.delay,
        };
        self.queue.push_back((release, pkt));
    }

    fn deliver(&mut self, fd: RawFd, now: Instant) {
        while let Some((at, _)) = self.queue.front() {
            if *at > now {
                break;
            }
            let (_, pkt) = self.queue.pop_front().unwrap();
            let n = unsafe { libc::write(fd, pkt.as_ptr() as *const libc::c_void, pkt.len()) };
            if n < 0 {
                self.st.write_errors += 1;
            } else {
                self.st.delivered_pkts += 1;
                self.st.delivered_bytes += pkt.len() as u64;
            }
        }
    }
}

fn seed_mix(seed: u64) -> u64 {
    // splitmix64 so that small seeds give good xorshift states (never zero).
    let mut z = seed.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    (z ^ (z >> 31)) | 1
}

struct Cfg {
    delay: Duration,
    rate_bps: Option<f64>,
    queue_bytes: u64,
}

fn open_tun(name: &str) -> RawFd {
    let fd = unsafe { libc::open(b"/dev/net/tun\0".as_ptr() as *const libc::c_char, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        die(&format!("open /dev/net/tun: {}", std::io::Error::last_os_error()));
    }
    let mut ifr = [0u8; 40];
    let nb = name.as_bytes();
    if nb.len() >= 16 {
        die("device name too long");
    }
    ifr[..nb.len()].copy_from_slice(nb);
    let flags = (IFF_TUN | IFF_NO_PI).to_ne_bytes();
    ifr[16..18].copy_from_slice(&flags);
    let r = unsafe { libc::ioctl(fd, TUNSETIFF as _, ifr.as_mut_ptr()) };
    if r < 0 {
        die(&format!("TUNSETIFF {name}: {}", std::io::Error::last_os_error()));
    }
    fd
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap_or_else(|e| die(&format!("ip: {e}")));
    if !st.success() {
        die(&format!("ip {} failed", args.join(" ")));
    }
}

fn setup(dev: &str, ns: &str, addr: &str, peer: &str, mtu: u32) {
    ip(&["link", "set", dev, "netns", ns]);
    ip(&["-n", ns, "addr", "add", addr, "peer", peer, "dev", dev]);
    ip(&["-n", ns, "link", "set", dev, "mtu", &mtu.to_string(), "txqueuelen", "10000", "up"]);
}

fn die(msg: &str) -> ! {
    eprintln!("ptb-relay: {msg}");
    std::process::exit(2)
}

fn stats_json(s: &Stats) -> String {
    format!(
        "{{\"offered_pkts\":{},\"offered_bytes\":{},\"lost_pkts\":{},\"qdrop_pkts\":{},\"delivered_pkts\":{},\"delivered_bytes\":{},\"write_errors\":{},\"max_backlog_bytes\":{}}}",
        s.offered_pkts, s.offered_bytes, s.lost_pkts, s.qdrop_pkts, s.delivered_pkts, s.delivered_bytes, s.write_errors, s.max_backlog_bytes
    )
}

fn main() {
    let mut a_dev = "ptba0".to_string();
    let mut b_dev = "ptbb0".to_string();
    let mut a_ns = String::new();
    let mut b_ns = String::new();
    let mut a_addr = "10.201.0.1".to_string();
    let mut b_addr = "10.201.0.2".to_string();
    let mut delay_ms = 25.0f64;
    let mut loss_a2b = 0.0f64;
    let mut loss_b2a = 0.0f64;
    let mut rate_mbit = 0.0f64;
    let mut queue_bytes: u64 = 0;
    let mut seed: u64 = 1;
    let mut mtu: u32 = 1500;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_else(|| die(&format!("{} needs a value", args[i])));
        let f = |s: &str| s.parse::<f64>().unwrap_or_else(|_| die(&format!("bad number {s}")));
        match args[i].as_str() {
            "--a-dev" => a_dev = v,
            "--b-dev" => b_dev = v,
            "--a-ns" => a_ns = v,
            "--b-ns" => b_ns = v,
            "--a-addr" => a_addr = v,
            "--b-addr" => b_addr = v,
            "--delay-ms" => delay_ms = f(&v),
            "--loss-a2b" => loss_a2b = f(&v),
            "--loss-b2a" => loss_b2a = f(&v),
            "--rate-mbit" => rate_mbit = f(&v),
            "--queue-bytes" => queue_bytes = f(&v) as u64,
            "--seed" => seed = f(&v) as u64,
            "--mtu" => mtu = f(&v) as u32,
            other => die(&format!("unknown argument {other}")),
        }
        i += 2;
    }
    if a_ns.is_empty() || b_ns.is_empty() {
        die("--a-ns and --b-ns are required");
    }
    let rate_bps = if rate_mbit > 0.0 { Some(rate_mbit * 1e6) } else { None };
    if queue_bytes == 0 {
        // Default bottleneck buffer: one bandwidth-delay product, at least 64 KiB.
        queue_bytes = match rate_bps {
            Some(r) => ((r / 8.0) * (2.0 * delay_ms / 1000.0)).max(65536.0) as u64,
            None => u64::MAX / 2,
        };
    }
    let cfg = Cfg { delay: Duration::from_secs_f64(delay_ms / 1000.0), rate_bps, queue_bytes };

    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    let fa = open_tun(&a_dev);
    let fb = open_tun(&b_dev);
    setup(&a_dev, &a_ns, &a_addr, &b_addr, mtu);
    setup(&b_dev, &b_ns, &b_addr, &a_addr, mtu);

    let mut ab = Dir::new(loss_a2b, seed);
    let mut ba = Dir::new(loss_b2a, seed ^ 0x5555_5555);
    unsafe {
        let fl = libc::fcntl(0, libc::F_GETFL);
        libc::fcntl(0, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    println!("READY");
    std::io::stdout().flush().ok();

    let mut buf = vec![0u8; 65536];
    let mut line = Vec::<u8>::new();
    loop {
        let now = Instant::now();
        ab.deliver(fb, now);
        ba.deliver(fa, now);
        let next = match (ab.queue.front(), ba.queue.front()) {
            (Some(x), Some(y)) => Some(x.0.min(y.0)),
            (Some(x), None) => Some(x.0),
            (None, Some(y)) => Some(y.0),
            (None, None) => None,
        };
        let mut fds = [
            libc::pollfd { fd: fa, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: fb, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 },
        ];
        let ts;
        let tsp = match next {
            Some(t) => {
                let d = t.saturating_duration_since(Instant::now());
                ts = libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long };
                &ts as *const libc::timespec
            }
            None => std::ptr::null(),
        };
        let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 3, tsp, std::ptr::null()) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            die(&format!("ppoll: {e}"));
        }
        for (k, fd) in [(0usize, fa), (1usize, fb)] {
            if fds[k].revents & libc::POLLIN == 0 {
                continue;
            }
            for _ in 0..1024 {
                let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
                if n <= 0 {
                    break;
                }
                let now = Instant::now();
                let pkt = buf[..n as usize].to_vec();
                if k == 0 {
                    ab.ingest(pkt, now, &cfg);
                } else {
                    ba.ingest(pkt, now, &cfg);
                }
            }
        }
        if fds[2].revents != 0 {
            let mut cbuf = [0u8; 4096];
            let n = unsafe { libc::read(0, cbuf.as_mut_ptr() as *mut libc::c_void, cbuf.len()) };
            if n == 0 {
                return; // orchestrator gone
            }
            if n > 0 {
                line.extend_from_slice(&cbuf[..n as usize]);
            }
            while let Some(pos) = line.iter().position(|&c| c == b'\n') {
                let cmd: Vec<u8> = line.drain(..=pos).collect();
                let cmd = String::from_utf8_lossy(&cmd).trim().to_string();
                let mut parts = cmd.split_whitespace();
                match parts.next() {
                    Some("stats") => {
                        println!("{{\"a2b\":{},\"b2a\":{}}}", stats_json(&ab.st), stats_json(&ba.st));
                        std::io::stdout().flush().ok();
                    }
                    Some("reset") => {
                        let s: u64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(seed);
                        ab.st = Stats::default();
                        ba.st = Stats::default();
                        ab.rng = seed_mix(s);
                        ba.rng = seed_mix(s ^ 0x5555_5555);
                        println!("OK");
                        std::io::stdout().flush().ok();
                    }
                    Some("quit") => return,
                    Some(other) => {
                        println!("ERR unknown command {other}");
                        std::io::stdout().flush().ok();
                    }
                    None => {}
                }
            }
        }
    }
}
