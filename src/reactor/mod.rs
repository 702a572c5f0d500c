//! The event loop both roles share: one mio `Poll`, the token layout, signal delivery and the
//! loop itself. A role plugs in as a [`Driver`]; the loop waits until the driver's earliest
//! deadline, hands it every readiness event, then lets it do its timers and output in
//! [`Driver::process`] (deadlines are compared with `now` after every poll, never inferred
//! from an empty event list).

pub mod signals;

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry, Token};

/// The UDP socket of the QUIC session(s).
pub const UDP: Token = Token(0);
/// The self-pipe that carries signals into the loop.
pub const SIGNALS: Token = Token(1);
/// Client role: TCP listeners are `LISTENER_BASE + index`.
pub const LISTENER_BASE: usize = 2;
/// TCP connections (client: downstream; server: upstream) are `CONN_BASE + slab key`.
pub const CONN_BASE: usize = 1024;

/// What the loop does after `Driver::on_signal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Exit,
}

/// A role's state machine as the reactor sees it.
pub trait Driver {
    fn handle_event(&mut self, registry: &Registry, event: &Event, now: Instant);
    /// Timers, protocol polling and output, after each batch of events.
    fn process(&mut self, registry: &Registry, now: Instant);
    fn next_deadline(&self) -> Option<Instant>;
    /// A termination signal arrived; returns whether to stop now.
    fn on_signal(&mut self, now: Instant) -> Control;
    /// The driver finished a graceful stop.
    fn is_finished(&self) -> bool;
}

/// Runs `driver` until it finishes or a second termination signal arrives.
pub fn run<D: Driver>(mut poll: Poll, driver: &mut D) -> io::Result<()> {
    let mut signals = signals::SignalPipe::install(poll.registry(), SIGNALS)?;
    let mut events = Events::with_capacity(1024);
    loop {
        let timeout = driver
            .next_deadline()
            .map(|d| d.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout.map(round_up_ms)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == SIGNALS {
                if signals.drain() && driver.on_signal(now) == Control::Exit {
                    return Ok(());
                }
                continue;
            }
            driver.handle_event(poll.registry(), event, now);
        }
        driver.process(poll.registry(), Instant::now());
        if driver.is_finished() {
            return Ok(());
        }
    }
}

/// epoll counts in whole milliseconds and truncates; round up so we never wake before a
/// deadline and spin.
fn round_up_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(ms.min(u64::MAX as u128) as u64)
}
