//! A raw TCP service as the destination of a plain CONNECT: on each connection it writes a
//! banner first (as SSH or a database greeting does, before the caller says anything), then
//! echoes every byte back until the proxy half-closes, when it half-closes too. Or it resets
//! the connection (RST) once some bytes came. It counts the connections it accepted and
//! records which ended with the proxy's FIN.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::accept::Acceptor;

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
    saw_fin: Mutex<Vec<usize>>,
    errors: Mutex<Vec<String>>,
    stop: Arc<AtomicBool>,
}

pub struct TcpDestination {
    state: Arc<State>,
    acceptor: Acceptor,
}

impl TcpDestination {
    /// Listens on 127.0.0.1:0.
    pub fn start(behaviour: Behaviour) -> TcpDestination {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            behaviour,
            saw_fin: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            stop: stop.clone(),
        });
        let st = state.clone();
        let acceptor = Acceptor::start("tcp-destination", stop, move |s, id| {
            if let Err(e) = serve(s, id, &st) {
                st.errors.lock().unwrap().push(format!("conn#{id}: {e}"));
            }
        });
        TcpDestination { state, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.acceptor.connection_count()
    }

    /// Whether connection `conn` (1-based) ended with the proxy's FIN.
    pub fn saw_fin(&self, conn: usize) -> bool {
        self.state.saw_fin.lock().unwrap().contains(&conn)
    }

    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
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
