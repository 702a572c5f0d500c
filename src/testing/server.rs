//! Doubles of the server exchange's ports: the request stream ([`MemStream`], which checks
//! every frame as the exchange sends it) and the pool of upstream connections ([`MemPool`],
//! handing out [`MemConn`]s); and [`ServerRig`], one [`Exchange`] wired to them with a manual
//! clock.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quiche::h3::{Header as H3Header, NameValue};

use super::{Clocked, MemConn, Released, MAX_YIELDS};
use crate::bridge::headers::Field;
use crate::bridge::stream::{ExchangeStream, StreamFailed, StreamSink, StreamSource};
use crate::config::{ConnectTo, UpstreamConfig};
use crate::metrics::Metrics;
use crate::resolve::HostPort;
use crate::server::exchange::port::{UpstreamConn, UpstreamPort};
use crate::server::exchange::{Ctx, Exchange, Outcome};

/// The `:status` of a field section, if valid.
pub fn status_of(fields: &[impl NameValue]) -> Option<u16> {
    let f = fields.iter().find(|f| f.name() == b":status")?;
    std::str::from_utf8(f.value()).ok()?.parse().ok()
}

/// The request stream: records the response and panics on a frame out of order (a head after
/// the final one, body or trailers before it, anything after the FIN or a reset, a reset after
/// a clean FIN, FIN on an interim head, a pseudo-field in the trailers).
#[derive(Default)]
pub struct MemStream {
    /// Flow control: every send is refused while set.
    pub blocked: bool,
    /// Most body bytes taken per `send_body` call (`Some(0)`: blocked for data).
    pub per_call: Option<usize>,
    /// Response heads sent (interim ones, then the final one), with their FIN flag.
    pub heads: Vec<(Vec<H3Header>, bool)>,
    pub data: Vec<u8>,
    pub trailers: Option<Vec<H3Header>>,
    pub fin: bool,
    /// Request body bytes the peer sent, not read yet.
    pub incoming: Vec<u8>,
    pub stop_sending: Option<u64>,
    pub reset: Option<u64>,
}

impl MemStream {
    /// The final response head, once sent.
    pub fn final_head(&self) -> Option<&[H3Header]> {
        let (fields, _) = self.heads.last()?;
        status_of(fields)
            .is_some_and(|s| s >= 200)
            .then_some(fields.as_slice())
    }
    /// The final response's status.
    pub fn status(&self) -> Option<u16> {
        status_of(self.final_head()?)
    }
    /// The final head was made by the proxy (it names itself in `proxy-status`).
    pub fn is_synthesized(&self) -> bool {
        self.final_head()
            .is_some_and(|h| h.iter().any(|f| f.name() == b"proxy-status"))
    }
    fn check_open(&self, what: &str) {
        assert!(self.reset.is_none(), "{what} after a reset");
        assert!(!self.fin, "{what} after the FIN");
    }
    fn check_answered(&self, what: &str) {
        self.check_open(what);
        assert!(self.final_head().is_some(), "{what} before the final head");
    }
}

impl StreamSink for MemStream {
    fn send_body(&mut self, data: &[u8], fin: bool) -> Result<Option<usize>, StreamFailed> {
        self.check_answered("body");
        let take = data.len().min(self.per_call.unwrap_or(usize::MAX));
        if self.blocked || (take == 0 && !data.is_empty()) {
            return Ok(None);
        }
        self.data.extend_from_slice(&data[..take]);
        self.fin = fin && take == data.len();
        Ok(Some(take))
    }
    fn send_trailers(&mut self, fields: &[H3Header]) -> Result<bool, StreamFailed> {
        self.check_answered("trailers");
        assert!(
            fields.iter().all(|f| !f.name().starts_with(b":")),
            "a pseudo-field in the trailers"
        );
        if self.blocked {
            return Ok(false);
        }
        self.trailers = Some(fields.to_vec());
        self.fin = true;
        Ok(true)
    }
}

impl StreamSource for MemStream {
    fn recv_body(&mut self, buf: &mut [u8]) -> Result<usize, StreamFailed> {
        let n = buf.len().min(self.incoming.len());
        buf[..n].copy_from_slice(&self.incoming[..n]);
        self.incoming.drain(..n);
        Ok(n)
    }
}

impl ExchangeStream for MemStream {
    fn send_fields(
        &mut self,
        fields: &[Field],
        _first: bool,
        fin: bool,
    ) -> Result<bool, StreamFailed> {
        self.check_open("a field section");
        let Some(status) = status_of(fields) else {
            panic!("a response head without a valid :status: {fields:?}");
        };
        assert!(
            self.final_head().is_none(),
            "a head ({status}) after the final head"
        );
        if self.blocked {
            return Ok(false);
        }
        assert!(status >= 100, "status {status}");
        assert!(status >= 200 || !fin, "FIN on an interim response");
        let fields = fields.iter().map(|f| H3Header::new(f.name(), f.value()));
        self.heads.push((fields.collect(), fin));
        self.fin = fin;
        Ok(true)
    }
    fn accepts(&self, _fields: &[Field]) -> bool {
        true
    }
    fn stop_sending(&mut self, code: u64) {
        self.stop_sending = Some(code);
    }
    fn reset(&mut self, code: u64) {
        assert!(!self.fin, "a reset after a clean FIN");
        self.reset = Some(code);
    }
}

/// The pool: every connection it handed out, keyed by index.
#[derive(Default)]
pub struct MemPool {
    /// What the next checkout hands out (else a fresh connection whose connect hangs).
    pub next: Option<MemConn>,
    pub conns: Vec<MemConn>,
    /// Other addresses a failed connect may move to (each a fresh connect that hangs).
    pub spare_addresses: u32,
    /// The errors of the connects that failed, in order.
    pub failed_connects: Vec<String>,
    /// The CONNECT destinations connected to, in order.
    pub destinations: Vec<String>,
}

impl MemPool {
    /// The key of the latest connection, while the exchange holds it.
    pub fn latest_key(&self) -> Option<usize> {
        let key = self.conns.len().checked_sub(1)?;
        self.conns[key].released.is_none().then_some(key)
    }
    /// The latest connection, while the exchange holds it.
    pub fn latest(&mut self) -> Option<&mut MemConn> {
        let key = self.latest_key()?;
        Some(&mut self.conns[key])
    }
    fn hand_out(&mut self, conn: MemConn) -> usize {
        self.conns.push(conn);
        self.conns.len() - 1
    }
    fn release(&mut self, key: usize, how: Released) {
        let conn = self.conns.get_mut(key).expect("a key the pool gave");
        assert!(conn.released.is_none(), "connection {key} released twice");
        conn.released = Some(how);
    }
}

impl UpstreamPort for MemPool {
    fn checkout(&mut self) -> io::Result<usize> {
        let conn = self.next.take().unwrap_or_else(MemConn::fresh);
        Ok(self.hand_out(conn))
    }
    fn connect_new(&mut self) -> io::Result<usize> {
        Ok(self.hand_out(MemConn::fresh()))
    }
    fn connect_to(&mut self, destination: &HostPort) -> io::Result<usize> {
        self.destinations.push(destination.to_string());
        Ok(self.hand_out(MemConn::fresh()))
    }
    fn connect_failed(&mut self, key: usize, error: &io::Error) -> io::Result<bool> {
        self.failed_connects.push(error.to_string());
        if self.spare_addresses == 0 {
            return Ok(false);
        }
        self.spare_addresses -= 1;
        if let Some(conn) = self.conns.get_mut(key) {
            *conn = MemConn::fresh();
        }
        Ok(true)
    }
    fn connected(&mut self, _key: usize) {}
    fn checkin(&mut self, key: usize, reusable: bool) {
        self.release(key, Released::CheckedIn { reusable });
    }
    fn close(&mut self, key: usize) {
        self.release(key, Released::Closed);
    }
    fn conn(&mut self, key: usize) -> Option<&mut dyn UpstreamConn> {
        self.conns
            .get_mut(key)
            .filter(|c| c.released.is_none())
            .map(|c| c as &mut dyn UpstreamConn)
    }
}

/// One exchange on a [`MemStream`] and a [`MemPool`], with a manual clock. The exchange is
/// dropped when it finishes, as the reactor drops it.
pub struct ServerRig {
    pub now: Instant,
    pub stream: MemStream,
    pub pool: MemPool,
    pub config: UpstreamConfig,
    /// The service's CONNECT destinations (none unless a test sets them).
    pub connect_to: ConnectTo,
    pub metrics: Metrics,
    pub exchange: Option<Exchange>,
    pub finished: bool,
}

impl ServerRig {
    pub fn new(now: Instant, connect_timeout: Duration, response_timeout: Duration) -> Self {
        let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
        ServerRig {
            now,
            stream: MemStream::default(),
            pool: MemPool::default(),
            config: UpstreamConfig {
                addresses: vec![address.into()],
                balance: crate::config::DEFAULT_BALANCE,
                health_check: None,
                connect_timeout,
                response_timeout,
                max_idle: 8,
                idle_timeout: Duration::from_secs(1),
            },
            connect_to: ConnectTo::default(),
            metrics: Metrics::new("server", now),
            exchange: None,
            finished: false,
        }
    }

    /// A request arrives for `b.test/x`, with `extra` fields (`body`: DATA follows them), and
    /// is driven once. Returns whether that finished it.
    pub fn start(&mut self, method: &str, extra: &[H3Header], body: bool) -> bool {
        let mut fields = vec![
            H3Header::new(b":method", method.as_bytes()),
            H3Header::new(b":scheme", b"http"),
            H3Header::new(b":authority", b"b.test"),
            H3Header::new(b":path", b"/x"),
        ];
        fields.extend_from_slice(extra);
        self.start_fields(&fields, body)
    }

    /// Starts the exchange of a request stream with exactly these fields; `body`: more
    /// frames follow. Returns whether it finished at once.
    pub fn start_fields(&mut self, fields: &[H3Header], body: bool) -> bool {
        let exchange = Exchange::start(&mut self.ctx(), 0, Ok(0), fields, body);
        self.exchange = Some(exchange);
        self.drive()
    }

    /// Calls `f` on the exchange, then drives it while it yields, as the reactor does.
    /// Returns whether this finished it (nothing happens once it has).
    pub fn run(&mut self, f: impl FnOnce(&mut Exchange, &mut Ctx<'_>) -> Outcome) -> bool {
        let Some(mut ex) = self.exchange.take() else {
            return false;
        };
        let mut ctx = self.ctx();
        let mut outcome = f(&mut ex, &mut ctx);
        for _ in 0..MAX_YIELDS {
            if outcome != Outcome::Yielded {
                break;
            }
            outcome = ex.drive(&mut ctx);
        }
        assert!(
            outcome != Outcome::Yielded,
            "drive yields without end: a busy loop"
        );
        if outcome == Outcome::Finished {
            self.finished = true;
        } else {
            self.exchange = Some(ex);
        }
        outcome == Outcome::Finished
    }

    pub fn drive(&mut self) -> bool {
        self.run(|ex, ctx| ex.drive(ctx))
    }

    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            now: self.now,
            stream: &mut self.stream,
            pool: &mut self.pool,
            upstream: &self.config,
            service: "test",
            max_head_bytes: 16 * 1024,
            access_log: false,
            client: "test",
            metrics: &mut self.metrics,
            tunnel_idle_timeout: std::time::Duration::from_secs(300),
            connect_to: &self.connect_to,
            compression: None,
            dictionary: None,
            forwarding: None,
        }
    }
}

impl Clocked for ServerRig {
    fn now_mut(&mut self) -> &mut Instant {
        &mut self.now
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.exchange.as_ref().and_then(|ex| ex.timers.next())
    }
    fn on_timer(&mut self) {
        self.run(|ex, ctx| ex.on_timer(ctx));
    }
}
