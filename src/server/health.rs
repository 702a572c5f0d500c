//! Active health checks of a service's upstream addresses (optional, `upstream.health_check`):
//! every interval each address gets a `GET <path>` on a connection of its own, and it takes
//! new connections only while its last check answered a 2xx or 3xx status in time. A check
//! connection lives in the pool's slab (so it shares its token space) in the `Probe` state;
//! this module starts them, reads their answers and times them out.

use std::net::SocketAddr;
use std::time::Instant;

use mio::Registry;

use super::targets::TargetId;
use super::upstream::{Pool, UpState, Upstream};
use crate::bridge::tcp::TcpConn;
use crate::config::HealthCheck;

/// What a check connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub deadline: Instant,
}

/// The request a check sends.
pub fn request(check: &HealthCheck, address: SocketAddr) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: ptproxy-health-check\r\nConnection: close\r\n\r\n",
        check.path
    )
    .into_bytes()
}

/// The status a check got, from the first line of the answer (`None` until it is complete).
pub fn status_line(input: &[u8]) -> Option<Result<u16, String>> {
    let end = input.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&input[..end]);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    Some(match status {
        Some(s) if version.starts_with("HTTP/1.") && (100..600).contains(&s) => Ok(s),
        _ => Err(format!("not an HTTP/1.1 status line: {line:?}")),
    })
}

impl Pool {
    /// Starts the checks that are due and fails those past their deadline; returns when the
    /// next one is due.
    pub fn run_health_checks(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        if self.probes_in_flight == 0 && self.targets.iter().all(|t| t.health_check.is_none()) {
            return None; // no service is checked: nothing to scan, every turn
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, u)| matches!(u.state, UpState::Probe(p) if p.deadline <= now))
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.end_probe(registry, key, Err("health check timed out".into()));
        }
        let mut next: Option<Instant> = None;
        for target in 0..self.targets.len() {
            next = crate::time::earliest(next, self.start_due_probes(registry, target, now));
        }
        let deadlines = self.conns.iter().filter_map(|(_, u)| match u.state {
            UpState::Probe(p) => Some(p.deadline),
            _ => None,
        });
        crate::time::earliest(next, deadlines.min())
    }

    /// Starts service `target`'s round of checks when due; returns when the next round is.
    fn start_due_probes(
        &mut self,
        registry: &Registry,
        target: usize,
        now: Instant,
    ) -> Option<Instant> {
        let t = &mut self.targets[target];
        let check = t.health_check.clone()?;
        if t.next_probe.is_some_and(|at| at > now) {
            return t.next_probe;
        }
        t.next_probe = Some(now + check.interval);
        let addresses = t.endpoints.addresses();
        for address in addresses {
            let busy = self
                .conns
                .iter()
                .any(|(_, u)| u.address == address && matches!(u.state, UpState::Probe(_)));
            if !busy {
                self.start_probe(registry, target, address, &check, now);
            }
        }
        self.targets[target].next_probe
    }

    fn start_probe(
        &mut self,
        registry: &Registry,
        target: usize,
        address: SocketAddr,
        check: &HealthCheck,
        now: Instant,
    ) {
        let stream = match mio::net::TcpStream::connect(address) {
            Ok(s) => s,
            Err(e) => {
                self.targets[target]
                    .endpoints
                    .checked(address, Err(e.to_string()));
                return;
            }
        };
        let mut tcp = TcpConn::new(stream);
        tcp.queue(&request(check, address));
        let key = self
            .conns
            .insert(Upstream::probe(tcp, address, target, now + check.timeout));
        self.probes_in_flight += 1;
        if let Err(e) = self.register(registry, key) {
            self.end_probe(registry, key, Err(format!("health check: {e}")));
        }
    }

    /// An event on check connection `key`: sends the request once connected, reads the answer.
    pub fn on_probe_event(&mut self, registry: &Registry, key: usize) {
        let Some(up) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(Err(e)) = up.tcp.connect_result() {
            let why = format!("health check connect: {e}");
            return self.end_probe(registry, key, Err(why));
        }
        up.tcp.flush();
        up.tcp.fill();
        let result = match status_line(up.tcp.input()) {
            Some(Ok(status)) if status < 400 => Ok(()),
            Some(Ok(status)) => Err(format!("health check answered {status}")),
            Some(Err(e)) => Err(e),
            None if up.tcp.eof || up.tcp.is_broken() => {
                Err("health check: closed without a status".to_string())
            }
            None => return,
        };
        self.end_probe(registry, key, result);
    }

    /// A check ended with `result`: its address is marked, its connection closed.
    fn end_probe(&mut self, registry: &Registry, key: usize, result: Result<(), String>) {
        let Some(up) = self.conns.get(key) else {
            return;
        };
        let (target, address) = (up.target, up.address);
        // A reload may have turned the checks off meanwhile: a late answer no longer counts.
        let service = match target {
            TargetId::Service(i) => self.targets.get_mut(i),
            TargetId::Destination(_) => None,
        };
        if let Some(t) = service.filter(|t| t.health_check.is_some()) {
            t.endpoints.checked(address, result);
        }
        self.probes_in_flight = self.probes_in_flight.saturating_sub(1);
        self.close(registry, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_decides_and_anything_else_is_a_failure() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Some(Ok(200)));
        assert_eq!(status_line(b"HTTP/1.0 503 Busy\r\nx"), Some(Ok(503)));
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), None, "not complete yet");
        assert!(matches!(status_line(b"SSH-2.0-OpenSSH\r\n"), Some(Err(_))));
        assert!(matches!(status_line(b"HTTP/1.1 abc\r\n"), Some(Err(_))));
    }
}
