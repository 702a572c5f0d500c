//! ptproxy: a point-to-point HTTP/1.1 proxy pair over one persistent, mutually authenticated
//! HTTP/3 (QUIC) session.
//!
//! ```text
//!  service A --HTTP/1.1--> ptproxy --role client ==== QUIC / HTTP/3 ====> ptproxy --role server --HTTP/1.1--> service B
//!            (TCP, keep-alive,  (session up before the first     one request =     (pool of keep-alive
//!             pipelining)        request, kept alive, reconnected)  one stream       TCP connections)
//! ```
//!
//! One process is one single-threaded mio reactor ([`reactor`]) driving a role
//! ([`client::ClientProxy`] or [`server::ServerProxy`]). quiche is used sans-IO: the reactor owns
//! the UDP socket ([`quic::udp`]), the timers ([`time`]) and the congestion-control choice
//! ([`quic::setup`]). HTTP/1.1 heads are tokenized by httparse inside [`h1`]'s strict layer
//! (a CRLF-only pre-scan, every httparse leniency off, ptproxy's limits and semantic checks),
//! bodies are framed by [`h1`]'s own decoders, and both are translated by [`bridge`].

pub mod accept_pause;
pub mod access;
pub mod admin;
pub mod bridge;
pub mod certs;
pub mod client;
pub mod config;
pub mod h1;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod quic;
pub mod reactor;
pub mod resolve;
pub mod resolver;
pub mod server;
#[cfg(test)]
pub mod sim;
pub mod systemd;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod train_dictionary;

use std::error::Error;

/// Runs the proxy for a validated config until it is stopped. `reload` re-reads the config
/// file (SIGHUP).
pub fn run(
    config: &config::Config,
    reload: &dyn Fn() -> Result<config::Config, config::ConfigError>,
) -> Result<(), Box<dyn Error>> {
    // Connection IDs and reset tokens need the OS generator; without it, do not start.
    quic::check_random()?;
    let poll = mio::Poll::new()?;
    match config {
        config::Config::Client(cfg) => {
            let mut proxy = client::ClientProxy::new(cfg, poll.registry())?;
            reactor::run(poll, &mut proxy, reload)?;
        }
        config::Config::Server(cfg) => {
            let mut proxy = server::ServerProxy::new(cfg, poll.registry())?;
            reactor::run(poll, &mut proxy, reload)?;
        }
    }
    Ok(())
}
