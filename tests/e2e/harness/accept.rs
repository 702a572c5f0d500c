//! The accept loop of the harness's TCP servers (upstreams, CONNECT destinations): one thread
//! accepts on 127.0.0.1, each connection is served on a thread of its own, numbered from 1 in
//! accept order, until the owner stops it (on drop at the latest).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Listens on 127.0.0.1:0 and runs `serve(stream, n)` for the n-th connection on a thread
    /// named `{name}-{n}`. `stop` (shared with the servers, which may check it too) ends the
    /// loop once set.
    pub fn start(
        name: &str,
        stop: Arc<AtomicBool>,
        serve: impl Fn(TcpStream, usize) + Send + Sync + 'static,
    ) -> Acceptor {
        let listener = TcpListener::bind("127.0.0.1:0").expect("harness server bind");
        let addr = listener.local_addr().expect("harness server address");
        let conns = Arc::new(AtomicUsize::new(0));
        let (st, counter, serve) = (stop.clone(), conns.clone(), Arc::new(serve));
        let prefix = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || {
                for s in listener.incoming() {
                    if st.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let id = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    let serve = serve.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("{prefix}-{id}"))
                        .spawn(move || serve(s, id));
                }
            })
            .expect("harness accept thread");
        Acceptor {
            addr,
            stop,
            conns,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Ends the accept loop (a connection of our own wakes it); connections being served go
    /// on. Idempotent.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.thread.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = h.join();
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop();
    }
}
