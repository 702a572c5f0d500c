//! A raw TCP service as the destination of a plain CONNECT: on each connection it writes a
//! banner first (as SSH or a database greeting does, before the caller says anything), then
//! echoes every byte back until the proxy half-closes, when it half-closes too. Or it resets
//! the connection (RST) once some bytes came. It counts the connections it accepted and
//! records which ended with the proxy's FIN.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the destination writes first on every connection.
pub const BANNER: &[u8] = b"SSH-2.0-ptproxy-test-destination\r\n";

#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// The banner, then echo until the proxy's FIN, then FIN.
    Echo,
    /// The banner, echo, and once this many bytes came, reset (RST, no FIN).
    ResetAfter(usize),
}

struct State {
    behaviour: Behaviour,
    conns: AtomicUsize,
    saw_fin: Mutex<Vec<usize>>,
    errors: Mutex<Vec<String>>,
    stop: AtomicBool,
}

pub struct TcpDestination {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl TcpDestination {
    /// Listens on 127.0.0.1:0.
    pub fn start(behaviour: Behaviour) -> TcpDestination {
        let listener = TcpListener::bind("127.0.0.1:0").expect("destination bind");
        let addr = listener.local_addr().expect("destination address");
        let state = Arc::new(State {
            behaviour,
            conns: AtomicUsize::new(0),
            saw_fin: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let accept = std::thread::Builder::new()
            .name("tcp-destination".into())
            .spawn(move || {
                for s in listener.incoming() {
                    if st.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let id = st.conns.fetch_add(1, Ordering::SeqCst) + 1;
                    let st2 = st.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("tcp-destination-{id}"))
                        .spawn(move || {
                            if let Err(e) = serve(s, id, &st2) {
                                st2.errors.lock().unwrap().push(format!("conn#{id}: {e}"));
                            }
                        });
                }
            })
            .expect("destination thread");
        TcpDestination {
            addr,
            state,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.state.conns.load(Ordering::SeqCst)
    }

    /// Whether connection `conn` (1-based) ended with the proxy's FIN.
    pub fn saw_fin(&self, conn: usize) -> bool {
        self.state.saw_fin.lock().unwrap().contains(&conn)
    }

    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }
}

impl Drop for TcpDestination {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut s: TcpStream, id: usize, st: &State) -> std::io::Result<()> {
    if st.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(BANNER)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let n = super::read_some(&mut s, &mut buf)?;
        if n == 0 {
            st.saw_fin.lock().unwrap().push(id);
            s.shutdown(Shutdown::Write)?;
            return Ok(());
        }
        total += n;
        if let Behaviour::ResetAfter(limit) = st.behaviour {
            if total >= limit {
                super::ws_upstream::reset(s);
                return Ok(());
            }
        }
        s.write_all(&buf[..n])?;
    }
}
