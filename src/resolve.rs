//! Names of the peer (client side) and of the upstream (server side): `HOST:PORT` as configured,
//! resolved to all its addresses each time a new round of connection attempts starts, and tried
//! in an order that interleaves IPv6 and IPv4 (RFC 8305 §4, "Happy Eyeballs"), the address that
//! worked last time first.
//!
//! [`Candidates`] is the pure part (order, progress through a round, memory of what worked);
//! resolution itself goes through the system resolver (`getaddrinfo`), after an optional hosts
//! file named by `PTPROXY_HOSTS_FILE` (like `curl --resolve`: pin a name to chosen addresses
//! when debugging, without editing `/etc/hosts`).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Environment variable naming a hosts-format file (`ADDRESS NAME...` per line) consulted
/// before the system resolver.
pub const HOSTS_FILE_ENV: &str = "PTPROXY_HOSTS_FILE";

/// How long [`Candidates::ordered`] reuses an answer (the upstream pool connects often; the
/// resolver is not asked for every connection).
pub const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// A `HOST:PORT` target as the operator wrote it (`name:port`, `1.2.3.4:port`, `[::1]:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Checks the syntax only; names are resolved when used.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(HostPort::from(addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not a HOST:PORT address (no port)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{text:?} is not a HOST:PORT address (bad port {port:?})"))?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_name {
            return Err(format!(
                "{text:?} is not a HOST:PORT address (bad host name {host:?})"
            ));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// The address itself when the host is an IP literal (no resolution needed).
    pub fn literal(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }

    /// All addresses of the name, in resolver order (hosts file override first).
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        if let Some(addr) = self.literal() {
            return Ok(vec![addr]);
        }
        if let Some(found) = self.lookup_hosts_file() {
            return Ok(found);
        }
        let found: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if found.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.host),
            ));
        }
        Ok(found)
    }

    fn lookup_hosts_file(&self) -> Option<Vec<SocketAddr>> {
        let path = std::env::var_os(HOSTS_FILE_ENV)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| log::warn!("{HOSTS_FILE_ENV} {}: {e}", path.to_string_lossy()))
            .ok()?;
        let found = hosts_lookup(&text, &self.host, self.port);
        (!found.is_empty()).then_some(found)
    }
}

impl From<SocketAddr> for HostPort {
    fn from(addr: SocketAddr) -> Self {
        HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The addresses a hosts-format text gives `name`, in file order.
fn hosts_lookup(text: &str, name: &str, port: u16) -> Vec<SocketAddr> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words
                .any(|w| w.eq_ignore_ascii_case(name))
                .then_some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// RFC 8305 §4 order: duplicates dropped, families alternating, starting with the family of the
/// resolver's first answer; `preferred` (the address that worked last) goes first if present.
pub fn happy_eyeballs_order(
    found: &[SocketAddr],
    preferred: Option<SocketAddr>,
) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(found.len());
    for a in found {
        if !unique.contains(a) {
            unique.push(*a);
        }
    }
    let first_v6 = unique.first().is_some_and(SocketAddr::is_ipv6);
    let (mut lead, mut other): (Vec<_>, Vec<_>) =
        unique.into_iter().partition(|a| a.is_ipv6() == first_v6);
    lead.reverse();
    other.reverse();
    let mut ordered = Vec::with_capacity(lead.len() + other.len());
    while let Some(a) = lead.pop() {
        ordered.push(a);
        if let Some(b) = other.pop() {
            ordered.push(b);
        }
    }
    ordered.extend(other.into_iter().rev());
    if let Some(p) = preferred {
        if let Some(i) = ordered.iter().position(|a| *a == p) {
            let addr = ordered.remove(i);
            ordered.insert(0, addr);
        }
    }
    ordered
}

/// The addresses of one target being tried in turn, with memory of the one that worked.
#[derive(Debug, Clone)]
pub struct Candidates {
    pub target: HostPort,
    /// The resolver's last answer, and the same in the order to try.
    found: Vec<SocketAddr>,
    round: Vec<SocketAddr>,
    next: usize,
    worked: Option<SocketAddr>,
    /// When `found` was resolved; `stale` forces a new resolution.
    resolved_at: Option<Instant>,
    stale: bool,
}

impl Candidates {
    pub fn new(target: HostPort) -> Self {
        let mut c = Candidates {
            found: Vec::new(),
            round: Vec::new(),
            next: 0,
            worked: None,
            resolved_at: None,
            stale: true,
            target,
        };
        if let Some(addr) = c.target.literal() {
            c.start_round(&[addr]);
            c.stale = false;
        }
        c
    }

    /// Whether the name needs a new resolution: never resolved, a round failed, or the answer
    /// is older than [`RESOLVE_TTL`]. An IP literal never does.
    pub fn wants_resolution(&self, now: Instant) -> bool {
        if self.target.literal().is_some() {
            return false;
        }
        let expired = self
            .resolved_at
            .is_none_or(|t| now.saturating_duration_since(t) >= RESOLVE_TTL);
        self.stale || expired || self.round.is_empty()
    }

    /// The addresses known now, in the order to try (never resolves: see
    /// [`crate::resolver`]).
    pub fn known(&self) -> &[SocketAddr] {
        &self.round
    }

    /// A resolution of the name finished with `found` at `now`.
    pub fn resolved(&mut self, found: &[SocketAddr], now: Instant) {
        self.start_round(found);
        self.resolved_at = Some(now);
        self.stale = false;
    }

    /// The next address to try: the next of this round, or (round over) the first of a fresh
    /// resolution. `Err` when the name does not resolve. For one attempt at a time (the
    /// client's session).
    pub fn next_address(&mut self, now: Instant) -> io::Result<SocketAddr> {
        if self.next >= self.round.len() {
            self.resolve(now)?;
        }
        let addr = self
            .round
            .get(self.next)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to try"))?;
        self.next += 1;
        Ok(addr)
    }

    fn resolve(&mut self, now: Instant) -> io::Result<()> {
        let found = self.target.resolve()?;
        self.start_round(&found);
        self.resolved_at = Some(now);
        self.stale = false;
        Ok(())
    }

    /// Starts a round over `found` (what the resolver answered), in Happy Eyeballs order.
    pub fn start_round(&mut self, found: &[SocketAddr]) {
        self.found = found.to_vec();
        self.round = happy_eyeballs_order(found, self.worked);
        self.next = 0;
    }

    /// Every address of the current round was tried (the next `next_address` re-resolves).
    pub fn round_over(&self) -> bool {
        self.next >= self.round.len()
    }

    /// Ends the round now: the next attempt re-resolves and starts from the preferred address.
    pub fn restart(&mut self) {
        self.next = self.round.len();
        self.stale = true;
    }

    /// `addr` worked: try it first from now on.
    pub fn worked(&mut self, addr: SocketAddr) {
        if self.worked != Some(addr) {
            self.worked = Some(addr);
            self.round = happy_eyeballs_order(&self.found, self.worked);
        }
        // this round reached its goal: a next attempt starts a new one
        self.next = self.round.len();
    }

    /// How many addresses the current round has.
    pub fn round_len(&self) -> usize {
        self.round.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_names_and_literals_and_names_the_mistake() {
        assert_eq!(
            HostPort::parse("peer.example:4433"),
            Ok(HostPort {
                host: "peer.example".into(),
                port: 4433
            })
        );
        assert_eq!(
            HostPort::parse("[::1]:4433").map(|h| h.literal()),
            Ok(Some(a("[::1]:4433")))
        );
        assert_eq!(
            HostPort::parse("[::1]:4433").unwrap().to_string(),
            "[::1]:4433"
        );
        assert!(HostPort::parse("nowhere").unwrap_err().contains("no port"));
        assert!(HostPort::parse("x:y").unwrap_err().contains("bad port"));
        assert!(HostPort::parse("a b:1").unwrap_err().contains("bad host"));
        assert!(HostPort::parse(":1").unwrap_err().contains("bad host"));
    }

    #[test]
    fn families_alternate_starting_with_the_first_answer() {
        let found = [
            a("[2001:db8::1]:1"),
            a("[2001:db8::2]:1"),
            a("[2001:db8::3]:1"),
            a("192.0.2.1:1"),
            a("192.0.2.2:1"),
        ];
        assert_eq!(
            happy_eyeballs_order(&found, None),
            vec![
                a("[2001:db8::1]:1"),
                a("192.0.2.1:1"),
                a("[2001:db8::2]:1"),
                a("192.0.2.2:1"),
                a("[2001:db8::3]:1"),
            ]
        );
        let v4_first = [
            a("192.0.2.1:1"),
            a("192.0.2.2:1"),
            a("192.0.2.3:1"),
            a("[::1]:1"),
        ];
        assert_eq!(
            happy_eyeballs_order(&v4_first, None),
            vec![
                a("192.0.2.1:1"),
                a("[::1]:1"),
                a("192.0.2.2:1"),
                a("192.0.2.3:1"),
            ]
        );
    }

    #[test]
    fn duplicates_are_dropped_and_the_address_that_worked_goes_first() {
        let found = [
            a("[::1]:1"),
            a("127.0.0.1:1"),
            a("[::1]:1"),
            a("127.0.0.2:1"),
        ];
        assert_eq!(
            happy_eyeballs_order(&found, Some(a("127.0.0.2:1"))),
            vec![a("127.0.0.2:1"), a("[::1]:1"), a("127.0.0.1:1")]
        );
        // an address no longer in the answer is not kept
        assert_eq!(
            happy_eyeballs_order(&found, Some(a("10.0.0.1:1"))),
            vec![a("[::1]:1"), a("127.0.0.1:1"), a("127.0.0.2:1")]
        );
    }

    #[test]
    fn candidates_walk_a_round_then_remember_what_worked() {
        let mut c = Candidates::new(HostPort::parse("peer.test:1").unwrap());
        c.start_round(&[a("[::1]:1"), a("127.0.0.1:1")]);
        assert_eq!(c.next_address(Instant::now()).unwrap(), a("[::1]:1"));
        assert!(!c.round_over());
        assert_eq!(c.next_address(Instant::now()).unwrap(), a("127.0.0.1:1"));
        assert!(c.round_over());
        c.worked(a("127.0.0.1:1"));
        c.start_round(&[a("[::1]:1"), a("127.0.0.1:1")]);
        assert_eq!(c.next_address(Instant::now()).unwrap(), a("127.0.0.1:1"));
    }

    #[test]
    fn literal_targets_resolve_to_themselves() {
        let mut c = Candidates::new(HostPort::parse("127.0.0.1:9").unwrap());
        let now = Instant::now();
        assert_eq!(c.next_address(now).unwrap(), a("127.0.0.1:9"));
        assert!(c.round_over());
        assert_eq!(c.next_address(now).unwrap(), a("127.0.0.1:9"));
        assert_eq!(c.known(), &[a("127.0.0.1:9")]);
        assert!(
            !c.wants_resolution(now + RESOLVE_TTL),
            "a literal needs no resolver"
        );
    }

    #[test]
    fn a_name_wants_resolution_until_answered_then_after_its_ttl_or_a_failed_round() {
        let mut c = Candidates::new(HostPort::parse("upstream.test:9").unwrap());
        let t0 = Instant::now();
        assert!(c.known().is_empty());
        assert!(c.wants_resolution(t0), "never resolved");
        c.resolved(&[a("[::1]:9"), a("127.0.0.1:9")], t0);
        assert!(!c.wants_resolution(t0 + Duration::from_secs(1)));
        assert_eq!(c.known().len(), 2);
        c.worked(a("127.0.0.1:9"));
        assert_eq!(c.known(), &[a("127.0.0.1:9"), a("[::1]:9")]);
        assert!(c.wants_resolution(t0 + RESOLVE_TTL), "expired");
        assert_eq!(
            c.known().len(),
            2,
            "the old answer serves until a new one comes"
        );
        c.resolved(&[a("127.0.0.1:9")], t0 + RESOLVE_TTL);
        assert!(!c.wants_resolution(t0 + RESOLVE_TTL));
        c.restart();
        assert!(
            c.wants_resolution(t0 + RESOLVE_TTL),
            "a failed round asks again"
        );
    }

    #[test]
    fn hosts_text_gives_every_address_of_a_name_in_file_order() {
        let text = "# test\n::1 twohomed other\n127.0.0.1 localhost\n127.0.0.1 TwoHomed # v4\n";
        assert_eq!(
            hosts_lookup(text, "twohomed", 7),
            vec![a("[::1]:7"), a("127.0.0.1:7")]
        );
        assert!(hosts_lookup(text, "absent", 7).is_empty());
    }
}
