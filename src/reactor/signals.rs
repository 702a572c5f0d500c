//! Signals into the event loop through `signal-hook`: its handler records the signal and wakes
//! a socket pair that mio watches, so the loop reads signals as ordinary readiness events.
//! SIGTERM and SIGINT ask for a graceful stop, SIGHUP for a config reload.
//!
//! Each [`SignalSource`] has its own socket pair and its own record of pending signals, and
//! every source sees every signal: several reactors can live in one process (the simulated
//! pair of tests), which the former process-global self-pipe did not allow (a second install
//! took every signal from the first).
//!
//! Delivery as the loop sees it: a signal that arrives twice before the loop reads its source
//! is reported once (signal-hook keeps one flag per signal number; the kernel merges a standard
//! signal pending twice too), and the signals of one read come in signal-number order (SIGHUP,
//! SIGINT, SIGTERM), not in arrival order. A second stop therefore needs a signal that arrives
//! after the loop acted on the first, which is what an operator sends.

use std::io;

use mio::{Interest, Registry, Token};
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The signals ptproxy acts on.
const HANDLED: [libc::c_int; 3] = [SIGTERM, SIGINT, SIGHUP];

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM / SIGINT: stop gracefully (a second one: stop now).
    Terminate,
    /// SIGHUP: reload the config file.
    Reload,
}

impl Signal {
    fn from_number(sig: libc::c_int) -> Self {
        if sig == SIGHUP {
            Signal::Reload
        } else {
            Signal::Terminate
        }
    }
}

/// One reactor's view of the process's signals.
pub struct SignalSource {
    signals: Signals,
}

impl SignalSource {
    /// Installs the handlers (once per process; later calls add a receiver) and registers this
    /// source's read end under `token`.
    pub fn install(registry: &Registry, token: Token) -> io::Result<Self> {
        let mut signals = Signals::new(HANDLED)?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalSource { signals })
    }

    /// Empties the source and returns the signals that arrived since the last call.
    pub fn drain(&mut self) -> Vec<Signal> {
        self.signals.pending().map(Signal::from_number).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::{Duration, Instant};

    /// Polls `poll` until its source reports something or 5 s pass.
    fn wait_for_signals(poll: &mut Poll, source: &mut SignalSource) -> Vec<Signal> {
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("poll: {e}"),
            }
            let got = source.drain();
            if !got.is_empty() {
                return got;
            }
        }
        Vec::new()
    }

    /// Two reactors in one process (two `Poll`s, two sources) both see a signal. With the
    /// former global self-pipe the second install overwrote the pipe the handler wrote to, so
    /// the first reactor never heard of any signal again. SIGHUP is used: once a source is
    /// installed it only asks for a reload, so the test process is never stopped.
    #[test]
    fn two_sources_in_one_process_both_see_a_signal() {
        let mut poll_a = Poll::new().expect("poll a");
        let mut poll_b = Poll::new().expect("poll b");
        let mut a = SignalSource::install(poll_a.registry(), Token(1)).expect("install a");
        let mut b = SignalSource::install(poll_b.registry(), Token(1)).expect("install b");
        signal_hook::low_level::raise(SIGHUP).expect("raise SIGHUP");
        assert_eq!(wait_for_signals(&mut poll_a, &mut a), vec![Signal::Reload]);
        assert_eq!(wait_for_signals(&mut poll_b, &mut b), vec![Signal::Reload]);
    }
}
