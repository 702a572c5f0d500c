//! End-to-end tests of ptproxy: real `ptproxy --role server` and
//! `ptproxy --role client` processes, a recording mock upstream, raw HTTP/1.1
//! clients and (where needed) a lossy UDP relay between the two proxies.
//!
//! Every test builds its own pair (own temp dir, ports, processes). Useful
//! environment variables:
//! - PTPROXY_E2E_RUST_LOG: RUST_LOG of the proxies (default `info`)
//! - PTPROXY_E2E_SEED: seed of the lossy relay
//! - PTPROXY_E2E_KEEP: keep the temp dirs (configs)
//! - PTPROXY_E2E_BIN: test another ptproxy binary than the one Cargo built
//!
//! On failure the captured output and config of both proxies, the upstream's
//! recorded requests and the relay's counters/seed are printed.

mod harness;

mod harness_selftest;

mod acks;
mod auth;
mod basic;
mod bulk;
mod check;
mod compression;
mod compression_dictionary;
mod connect;
mod connections;
mod contact;
mod debug_taps;
mod edge_limits;
mod errors;
mod flood;
mod forwarding;
mod framing;
mod known_link;
mod liveness;
mod loss_hiding;
mod lossy;
mod migration;
mod ops;
mod pace_floor;
mod pacing;
mod path_estimate;
mod path_mtu;
mod peers;
mod pktinfo;
mod read_backlog;
mod services;
mod session;
mod soak;
mod startup_exit;
mod strict;
mod timers;
mod upstream_edges;
mod upstream_pools;
mod websocket;
mod websocket_client;
mod websocket_interop;
mod websocket_more;
mod zero_rtt;
