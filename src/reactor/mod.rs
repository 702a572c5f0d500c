//! The event loop both roles share: one mio `Poll`, the token layout, signal delivery and the
//! loop itself. A role plugs in as a [`Driver`]; the loop waits until the driver's earliest
//! deadline, hands it every readiness event, then lets it do its timers and output in
//! [`Driver::process`] (deadlines are compared with `now` after every poll, never inferred
//! from an empty event list).

pub mod agenda;
pub mod backlog;
pub mod signals;
pub mod timer;

use std::io;

use crate::config::{Config, ConfigError};
use crate::systemd;
use signals::Signal;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry, Token};

/// The UDP socket of the QUIC session(s).
pub const UDP: Token = Token(0);
/// The signal source that carries signals into the loop.
pub const SIGNALS: Token = Token(1);
/// The operator endpoint's listener (`/metrics`, `/health`).
pub const ADMIN_LISTENER: Token = Token(2);
/// The precise (timerfd) wake-up of the loop.
pub const TIMER: Token = Token(3);
/// Client role: TCP listeners are `LISTENER_BASE + index`, below `PEER_UDP_BASE`.
pub const LISTENER_BASE: usize = 4;
/// Client role: each peer session's UDP socket is `PEER_UDP_BASE + link key`, below `RESOLVER`.
pub const PEER_UDP_BASE: usize = 256;
/// Operator endpoint connections are `ADMIN_CONN_BASE + slab key`, below `CONN_BASE`.
pub const ADMIN_CONN_BASE: usize = 512;
/// The name resolver thread's wake-up (right below the operator endpoint's connections).
pub const RESOLVER: Token = Token(ADMIN_CONN_BASE - 1);
/// TCP connections (client: downstream; server: upstream) are `CONN_BASE + slab key`.
pub const CONN_BASE: usize = 1024;

/// What the loop does after `Driver::on_terminate`.
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
    /// SIGTERM/SIGINT: start a graceful stop; a second one returns `Exit`.
    fn on_terminate(&mut self, registry: &Registry, now: Instant) -> Control;
    /// SIGHUP with the freshly loaded config: apply what can change, report the rest.
    fn on_reload(&mut self, registry: &Registry, config: &Config);
    /// The driver finished a graceful stop.
    fn is_finished(&self) -> bool;
}

/// Runs `driver` until it finishes or a second termination signal arrives. `reload` re-reads
/// the config file on SIGHUP.
pub fn run<D: Driver>(
    mut poll: Poll,
    driver: &mut D,
    reload: &dyn Fn() -> Result<Config, ConfigError>,
) -> io::Result<()> {
    let mut signals = signals::SignalSource::install(poll.registry(), SIGNALS)?;
    let mut events = Events::with_capacity(1024);
    let watchdog = systemd::watchdog_interval();
    let mut next_watchdog = watchdog.map(|w| Instant::now() + w);
    systemd::notify("READY=1");
    let mut timer = timer::PreciseTimer::new(poll.registry(), TIMER)?;
    loop {
        let deadline = crate::time::earliest(driver.next_deadline(), next_watchdog);
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match timeout {
            Some(t) if t.is_zero() => {} // the poll returns at once
            Some(t) => timer.arm_for(deadline, t),
            None => timer.arm_for(None, Duration::MAX),
        }
        match poll.poll(&mut events, timeout.map(round_up_ms)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            if event.token() != SIGNALS {
                driver.handle_event(poll.registry(), event, now);
                continue;
            }
            for signal in signals.drain() {
                match signal {
                    Signal::Terminate => {
                        systemd::notify("STOPPING=1");
                        if driver.on_terminate(poll.registry(), now) == Control::Exit {
                            return Ok(());
                        }
                    }
                    Signal::Reload => reload_config(driver, poll.registry(), reload),
                }
            }
        }
        let now = Instant::now();
        driver.process(poll.registry(), now);
        if let (Some(w), Some(at)) = (watchdog, next_watchdog) {
            if at <= now {
                systemd::notify("WATCHDOG=1");
                next_watchdog = Some(now + w);
            }
        }
        if driver.is_finished() {
            return Ok(());
        }
    }
}

/// Logs the fields a reload cannot change while the process runs.
pub fn report_fixed(fields: &[(&str, bool)]) {
    let changed: Vec<&str> = fields.iter().filter(|(_, c)| *c).map(|(n, _)| *n).collect();
    if !changed.is_empty() {
        log::warn!(
            "SIGHUP: changes to {} need a restart; they were NOT applied",
            changed.join(", ")
        );
    }
}

fn reload_config<D: Driver>(
    driver: &mut D,
    registry: &Registry,
    reload: &dyn Fn() -> Result<Config, ConfigError>,
) {
    systemd::notify("RELOADING=1");
    match reload() {
        Ok(config) => {
            log::info!("SIGHUP: reloading the config");
            driver.on_reload(registry, &config);
        }
        Err(e) => log::error!("SIGHUP: config not reloaded, keeping the running one: {e}"),
    }
    systemd::notify("READY=1");
}

/// epoll counts in whole milliseconds and truncates; round up so we never wake before a
/// deadline and spin.
fn round_up_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(ms.min(u64::MAX as u128) as u64)
}
