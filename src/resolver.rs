//! Name resolution off the reactor thread: `getaddrinfo` may wait seconds for a slow or dead
//! DNS server, and the reactor must keep serving every other request meanwhile. One thread
//! resolves the names it is asked for, one at a time, and wakes the loop (a [`mio::Waker`])
//! when an answer is ready; the reactor takes the answers with [`Resolver::answers`].
//!
//! Asking again for a name already being resolved does nothing: one lookup per name at a time.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use mio::{Registry, Token, Waker};

use crate::resolve::HostPort;

/// One finished lookup.
pub type Answer = (HostPort, io::Result<Vec<SocketAddr>>);

pub struct Resolver {
    requests: Sender<HostPort>,
    answers: Receiver<Answer>,
    /// Names asked for and not answered yet.
    pending: HashSet<HostPort>,
}

impl Resolver {
    /// Starts the resolver thread; its answers wake the loop with `token`.
    pub fn start(registry: &Registry, token: Token) -> io::Result<Resolver> {
        let waker = Arc::new(Waker::new(registry, token)?);
        let (requests, inbox) = mpsc::channel::<HostPort>();
        let (outbox, answers) = mpsc::channel::<Answer>();
        thread::Builder::new()
            .name("ptproxy-resolver".into())
            .spawn(move || {
                for target in inbox {
                    let found = target.resolve();
                    if outbox.send((target, found)).is_err() {
                        return; // the reactor is gone
                    }
                    if let Err(e) = waker.wake() {
                        log::warn!("resolver: cannot wake the loop: {e}");
                    }
                }
            })?;
        Ok(Resolver {
            requests,
            answers,
            pending: HashSet::new(),
        })
    }

    /// Asks for `target` to be resolved (once while a lookup of it runs).
    pub fn ask(&mut self, target: &HostPort) {
        if self.pending.contains(target) {
            return;
        }
        if self.requests.send(target.clone()).is_ok() {
            self.pending.insert(target.clone());
        } else {
            log::warn!("resolver thread gone: {target} stays unresolved");
        }
    }

    /// The answers ready now.
    pub fn answers(&mut self) -> Vec<Answer> {
        let ready: Vec<Answer> = self.answers.try_iter().collect();
        for (target, _) in &ready {
            self.pending.remove(target);
        }
        ready
    }

    /// Waits up to `limit` for every pending lookup (start-up only, before serving).
    pub fn wait_all(&mut self, limit: std::time::Duration) -> Vec<Answer> {
        let deadline = std::time::Instant::now() + limit;
        let mut ready = Vec::new();
        while !self.pending.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) => {
                    self.pending.remove(&answer.0);
                    ready.push(answer);
                }
                Err(_) => break,
            }
        }
        ready
    }
}
