//! The operator endpoint: a tiny HTTP/1.1 server on its own listener (loopback by default)
//! serving `GET /metrics` (Prometheus text) and `GET /health` (200 when the session is up, 503
//! otherwise). One request per connection, answered and closed; connections are capped and
//! bounded in size and time, so a misbehaving scraper cannot hurt the proxy nor lock the
//! endpoint out:
//!
//! - a request head must arrive within [`HEAD_TIMEOUT`] of the accept;
//! - an answer that makes no progress for [`IDLE_TIMEOUT`] (a client that does not read) is
//!   dropped;
//! - at most [`MAX_CONNS`] connections; when a new one arrives at the cap, the oldest one
//!   still waiting for its request head is closed to make room, so idle sockets can delay
//!   a health check by nothing.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::accept_pause::{self, AcceptPause};
use crate::bridge::tcp::TcpConn;
use crate::h1::head::{self, Limits};
use crate::reactor::{ADMIN_CONN_BASE, ADMIN_LISTENER, CONN_BASE};

/// Most operator connections open at once (within the token space of the endpoint).
pub const MAX_CONNS: usize = 128;
const _: () = assert!(MAX_CONNS <= CONN_BASE - ADMIN_CONN_BASE);
/// Time from accept to a complete request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time an answer may go without any byte written.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the role answers for a path: (status, content type, body).
pub type Page = (u16, &'static str, String);

pub struct Admin {
    listener: TcpListener,
    conns: Slab<AdminConn>,
    /// Accepting paused at the descriptor limit (retried on a timer).
    accept_pause: AcceptPause,
    /// Connections accepted so far.
    accepts: u64,
}

struct AdminConn {
    tcp: TcpConn,
    /// Acceptance order (a burst of accepts shares one `now`, so time cannot order them).
    accepted: u64,
    /// The request was read and its answer queued.
    answered: bool,
    /// Closed when this passes (head timeout, then idle timeout while answering).
    deadline: Instant,
}

impl Admin {
    pub fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, ADMIN_LISTENER, Interest::READABLE)?;
        log::info!("serving /metrics and /health on {}", listener.local_addr()?);
        Ok(Admin {
            listener,
            conns: Slab::new(),
            accept_pause: AcceptPause::default(),
            accepts: 0,
        })
    }

    /// True when `token` belongs to the admin endpoint.
    pub fn owns(token: Token) -> bool {
        token == ADMIN_LISTENER || (ADMIN_CONN_BASE..CONN_BASE).contains(&token.0)
    }

    /// Handles readiness on an admin token; `page` renders the answer for a path.
    pub fn handle_event(
        &mut self,
        registry: &Registry,
        event: &mio::event::Event,
        now: Instant,
        page: impl Fn(&str) -> Page,
    ) {
        if event.token() == ADMIN_LISTENER {
            if !self.accept_pause.is_paused() {
                self.accept(registry, now);
            }
            return;
        }
        let key = event.token().0 - ADMIN_CONN_BASE;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.tcp.on_event(event);
        if conn.serve(now, &page) {
            self.close(registry, key);
        }
    }

    /// Closes the connections whose head or idle timeout passed.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        if self.accept_pause.retry_due(now) {
            self.accept(registry, now);
        }
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            log::debug!("metrics connection timed out");
            self.close(registry, key);
        }
    }

    /// When the next connection times out (or accepting resumes).
    pub fn next_deadline(&self) -> Option<Instant> {
        let conns = self.conns.iter().map(|(_, c)| c.deadline).min();
        crate::time::earliest(conns, self.accept_pause.next_deadline())
    }

    fn close(&mut self, registry: &Registry, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = registry.deregister(&mut conn.tcp.stream);
        }
    }

    /// At the cap: closes the oldest connection still waiting for its request head. False
    /// when every connection is busy answering (the new one is then refused).
    fn make_room(&mut self, registry: &Registry) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| !c.answered)
            .min_by_key(|(_, c)| c.accepted)
            .map(|(k, _)| k);
        match oldest {
            Some(key) => {
                log::debug!(
                    "metrics connections at the cap ({MAX_CONNS}): closing the oldest idle one"
                );
                self.close(registry, key);
                true
            }
            None => false,
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(pair) => {
                    self.accept_pause.accepted("metrics.listen");
                    pair
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if accept_pause::is_resource_exhaustion(&e) => {
                    self.accept_pause.pause("metrics.listen", &e, now);
                    return;
                }
                Err(e) => {
                    log::warn!("metrics accept: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNS && !self.make_room(registry) {
                continue; // dropped: closes at once
            }
            let entry = self.conns.vacant_entry();
            let mut tcp = TcpConn::new(stream);
            let token = Token(ADMIN_CONN_BASE + entry.key());
            if registry
                .register(
                    &mut tcp.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok()
            {
                self.accepts += 1;
                entry.insert(AdminConn {
                    tcp,
                    accepted: self.accepts,
                    answered: false,
                    deadline: now + HEAD_TIMEOUT,
                });
            }
        }
    }
}

impl AdminConn {
    /// Reads the request, queues the answer, flushes. True when the connection is finished.
    fn serve(&mut self, now: Instant, page: &impl Fn(&str) -> Page) -> bool {
        let conn = &mut self.tcp;
        conn.fill();
        if !self.answered {
            let limits = Limits {
                max_head_bytes: 8192,
                ..Limits::default()
            };
            match head::parse_request(conn.input(), &limits) {
                Ok(Some((req, _))) => {
                    queue_answer(conn, &req, page);
                    self.answered = true;
                    self.deadline = now + IDLE_TIMEOUT;
                }
                Ok(None) if !conn.input_ended() => return false,
                _ => return true,
            }
        }
        if conn.flush() {
            self.deadline = now + IDLE_TIMEOUT;
        }
        conn.pending_output() == 0 || conn.is_broken()
    }
}

/// Queues the answer to `req` and forgets its input.
fn queue_answer(conn: &mut TcpConn, req: &head::RequestHead, page: &impl Fn(&str) -> Page) {
    let path = req.target.split('?').next().unwrap_or("");
    let (status, kind, body) = if req.method == "GET" || req.method == "HEAD" {
        page(path)
    } else {
        (405, "text/plain", "only GET\n".to_string())
    };
    let reason = crate::h1::write::reason_phrase(status);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.queue(head.as_bytes());
    if req.method != "HEAD" {
        conn.queue(body.as_bytes());
    }
    conn.consume(conn.input().len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    /// Regression: connections accepted in one burst share one `now`; ordering them by time
    /// made the cap evict the connection accepted just before (its slab slot is the one
    /// reused), so the newest connections were closed at once instead of the oldest.
    #[test]
    fn at_the_cap_the_oldest_connections_go_even_within_one_burst() {
        let poll = mio::Poll::new().expect("poll");
        let mut admin =
            Admin::bind("127.0.0.1:0".parse().expect("address"), poll.registry()).expect("bind");
        let addr = admin.listener.local_addr().expect("address");
        let extra = 3;
        // All accepted at one `now`, as in one busy turn of the loop (accepting as they come,
        // since the listen backlog is shorter than the burst).
        let now = Instant::now();
        let clients: Vec<TcpStream> = (0..MAX_CONNS + extra)
            .map(|_| {
                let c = TcpStream::connect(addr).expect("connect");
                admin.accept(poll.registry(), now);
                c
            })
            .collect();
        assert_eq!(admin.accepts as usize, clients.len());
        let mut kept: Vec<u64> = admin.conns.iter().map(|(_, c)| c.accepted).collect();
        kept.sort_unstable();
        let newest: Vec<u64> = (extra as u64 + 1..=clients.len() as u64).collect();
        assert_eq!(
            kept, newest,
            "the {extra} oldest are closed, the newest kept"
        );
    }
}
