//! The operator endpoint: a tiny HTTP/1.1 server on its own listener (loopback by default)
//! serving `GET /metrics` (Prometheus text) and `GET /health` (200 when the session is up, 503
//! otherwise). One request per connection, answered and closed; connections are capped and
//! bounded in size, so a misbehaving scraper cannot hurt the proxy.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::bridge::tcp::TcpConn;
use crate::h1::head::{self, Limits};
use crate::reactor::{ADMIN_CONN_BASE, ADMIN_LISTENER, CONN_BASE};

const MAX_CONNS: usize = CONN_BASE - ADMIN_CONN_BASE;

/// What the role answers for a path: (status, content type, body).
pub type Page = (u16, &'static str, String);

pub struct Admin {
    listener: TcpListener,
    conns: Slab<TcpConn>,
}

impl Admin {
    pub fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, ADMIN_LISTENER, Interest::READABLE)?;
        log::info!("serving /metrics and /health on {}", listener.local_addr()?);
        Ok(Admin {
            listener,
            conns: Slab::new(),
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
        page: impl Fn(&str) -> Page,
    ) {
        if event.token() == ADMIN_LISTENER {
            self.accept(registry);
            return;
        }
        let key = event.token().0 - ADMIN_CONN_BASE;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.on_event(event);
        if serve(conn, &page) {
            let mut conn = self.conns.remove(key);
            let _ = registry.deregister(&mut conn.stream);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            let (stream, _) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("metrics accept: {e}");
                    return;
                }
            };
            if self.conns.len() >= MAX_CONNS {
                continue; // dropped: closes at once
            }
            let entry = self.conns.vacant_entry();
            let mut conn = TcpConn::new(stream);
            let token = Token(ADMIN_CONN_BASE + entry.key());
            if registry
                .register(
                    &mut conn.stream,
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok()
            {
                entry.insert(conn);
            }
        }
    }
}

/// Reads the request, queues the answer, flushes. True when the connection is finished.
fn serve(conn: &mut TcpConn, page: &impl Fn(&str) -> Page) -> bool {
    conn.fill();
    if conn.pending_output() == 0 {
        let limits = Limits {
            max_head_bytes: 8192,
            ..Limits::default()
        };
        match head::parse_request(&conn.input, &limits) {
            Ok(Some((req, _))) => {
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
                conn.consume(conn.input.len());
            }
            Ok(None) if !conn.input_ended() => return false,
            _ => return true,
        }
    }
    conn.flush();
    conn.pending_output() == 0 || conn.is_broken()
}
