//! Scripted upstream: answers each request with exact raw bytes, for the responses a
//! well-behaved origin never sends (invalid status lines, bad header bytes, broken chunking,
//! conflicting lengths, bodies cut short by a close, interim responses, trailers...).
//!
//! Each request (head, plus a Content-Length or chunked body) is recorded, then a router
//! chosen by the test turns it into a script of [`Part`]s: bytes to write, pauses, and
//! optionally a close. A script that does not close leaves the connection open and the next
//! request is read from it (keep-alive), so a test can see whether the proxy reuses or closes
//! a connection after a given response: [`RawUpstream::peer_closed`] tells which connections
//! the proxy closed (EOF or reset while the mock was waiting for a request).

use super::http::{header, parse_header_lines, BufStream};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::accept::Acceptor;

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Part {
    /// Written as is (and flushed).
    Bytes(Vec<u8>),
    /// Pause before the next part.
    Sleep(Duration),
    /// Close the connection (both directions); the script ends.
    Close,
}

/// A request as the mock read it.
#[derive(Clone, Debug)]
pub struct RawRequest {
    /// Index of the TCP connection (1-based, in accept order).
    pub conn: usize,
    /// The head up to and including CRLFCRLF (lossy UTF-8).
    pub head: String,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<String>,
}

impl RawRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

type Router = dyn Fn(&RawRequest) -> Vec<Part> + Send + Sync;

struct State {
    router: Box<Router>,
    requests: Mutex<Vec<RawRequest>>,
    errors: Mutex<Vec<String>>,
    peer_closed: Mutex<Vec<usize>>,
    stop: Arc<AtomicBool>,
    streams: Mutex<Vec<TcpStream>>,
}

pub struct RawUpstream {
    state: Arc<State>,
    acceptor: Acceptor,
}

impl RawUpstream {
    /// Listens on 127.0.0.1:0; `router` scripts the answer to each request.
    pub fn start(router: impl Fn(&RawRequest) -> Vec<Part> + Send + Sync + 'static) -> RawUpstream {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            router: Box::new(router),
            requests: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            peer_closed: Mutex::new(Vec::new()),
            stop: stop.clone(),
            streams: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let acceptor = Acceptor::start("raw-upstream", stop, move |s, id| {
            if let Ok(c) = s.try_clone() {
                st.streams.lock().unwrap().push(c);
            }
            serve(s, id, &st)
        });
        RawUpstream { state, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// Requests read so far, in arrival order.
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.acceptor.connection_count()
    }

    /// Whether the proxy closed (or reset) connection `conn` while the mock waited on it.
    pub fn peer_closed(&self, conn: usize) -> bool {
        self.state.peer_closed.lock().unwrap().contains(&conn)
    }

    /// Waits up to `timeout` for the proxy to close connection `conn`.
    pub fn wait_peer_closed(&self, conn: usize, timeout: Duration) -> bool {
        super::poll_until(timeout, Duration::from_millis(10), || {
            self.peer_closed(conn).then_some(())
        })
        .is_some()
    }

    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- raw upstream {}: {} connections ----",
                self.addr(),
                self.connection_count()
            );
            for r in self.requests().iter().take(100) {
                eprintln!("  conn#{} {} {}", r.conn, r.method, r.target);
            }
        }
        self.acceptor.stop();
        for s in self.state.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn serve(stream: TcpStream, id: usize, st: &State) {
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut io = BufStream::new(stream);
    loop {
        let req = match read_request(&mut io, id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                st.peer_closed.lock().unwrap().push(id);
                return;
            }
            Err(e) => {
                if !st.stop.load(Ordering::SeqCst) {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::BrokenPipe
                    ) {
                        st.peer_closed.lock().unwrap().push(id);
                    } else {
                        st.errors.lock().unwrap().push(format!("conn#{id}: {e}"));
                    }
                }
                return;
            }
        };
        let parts = (st.router)(&req);
        st.requests.lock().unwrap().push(req);
        for part in parts {
            match part {
                Part::Bytes(b) => {
                    if out.write_all(&b).and_then(|_| out.flush()).is_err() {
                        return;
                    }
                }
                Part::Sleep(d) => std::thread::sleep(d),
                Part::Close => {
                    let _ = out.shutdown(Shutdown::Both);
                    return;
                }
            }
        }
    }
}

fn read_request(io: &mut BufStream, id: usize) -> io::Result<Option<RawRequest>> {
    let Some(raw) = io.read_head()? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw).into_owned();
    let text = head.strip_suffix("\r\n\r\n").unwrap_or(&head);
    let mut lines = text.split("\r\n");
    let rl = lines.next().unwrap_or("");
    let mut words = rl.split(' ');
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let rest: Vec<&str> = lines.collect();
    let headers = parse_header_lines(&rest)?;
    let chunked = header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut body = Vec::new();
    let mut trailers = Vec::new();
    if chunked {
        trailers = io.read_chunked_with(&mut |b| body.extend_from_slice(b))?;
    } else if let Some(cl) = header(&headers, "content-length") {
        let n: u64 = cl
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {cl:?}")))?;
        io.read_exact_with(n, &mut |b| body.extend_from_slice(b))?;
    }
    Ok(Some(RawRequest {
        conn: id,
        head,
        method,
        target,
        headers,
        body,
        trailers,
    }))
}
