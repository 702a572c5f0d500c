//! The simulated pair: both roles' tables and state machines in one process, over a seeded virtual link,
//! with service A and service B in memory and a manual clock for ptproxy's timers (see
//! [`pair`]). quiche keeps its own real-time clock for loss recovery; the link delivers in
//! whole turns and acknowledgements are not delayed, so a run takes as many real milliseconds
//! as its losses need probe timeouts.
//!
//! What is deterministic is the HTTP trace: every request's status and body, folded in request
//! order into a digest ([`Run::digest`]), which the same seed and workload always give (and
//! which the expected answers alone determine when nothing fails). The packet-level trace is
//! not: quiche's timing decisions depend on the real clock.

pub mod endpoints;
pub mod link;
pub mod pair;
mod session_link;
pub mod socket;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use endpoints::payload;
use link::Faults;
use pair::SimPair;

/// One request of the workload, by its ID: a GET of a sized answer, or (one in ten) a POST
/// whose body comes back.
pub fn request(id: u64) -> (String, Vec<u8>, Vec<u8>) {
    if id.is_multiple_of(10) {
        let body = payload(id ^ 0xabcd, 500 + (id as usize * 7) % 3000);
        let head = format!(
            "POST /echo/{id} HTTP/1.1\r\nHost: b.test\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut wire = head.into_bytes();
        wire.extend_from_slice(&body);
        ("POST".into(), wire, body)
    } else {
        let size = (id as usize).wrapping_mul(7919) % 4096;
        let wire = format!("GET /r/{id}/{size} HTTP/1.1\r\nHost: b.test\r\n\r\n").into_bytes();
        ("GET".into(), wire, payload(id, size))
    }
}

/// FNV-1a, for the trace digest.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The digest of the trace a fully successful run gives: every request answered 200 with
/// its expected body.
pub fn expected_digest(requests: u64) -> u64 {
    (0..requests).fold(FNV_START, |h, id| {
        let (_, _, body) = request(id);
        fold_answer(h, id, 200, &body)
    })
}

fn fold_answer(hash: u64, id: u64, status: u16, body: &[u8]) -> u64 {
    let h = fnv(hash, &id.to_le_bytes());
    let h = fnv(h, &status.to_le_bytes());
    fnv(h, body)
}

/// What a run did.
#[derive(Debug)]
pub struct Run {
    pub digest: u64,
    /// Requests whose answer was not a 200 with the expected body.
    pub wrong: u64,
    pub turns: u64,
    pub wall: Duration,
    /// Datagrams sent, dropped, and dropped by a blackhole.
    pub datagrams: (u64, u64, u64),
    /// Most entries the timer tables held at once.
    pub max_timer_entries: usize,
    /// What the client's and the server's sockets did.
    pub sockets: (socket::SocketStats, socket::SocketStats),
}

/// Runs `requests` requests over `connections` keep-alive connections of service A.
pub fn run(seed: u64, faults: Faults, connections: usize, requests: u64) -> Run {
    run_with_blackhole(seed, faults, 0..0, connections, requests)
}

/// [`run`], with the link dropping everything during the turns in `blackhole` (counted from
/// the session's start).
pub fn run_with_blackhole(
    seed: u64,
    faults: Faults,
    blackhole: std::ops::Range<u64>,
    connections: usize,
    requests: u64,
) -> Run {
    let started = Instant::now();
    let mut pair = SimPair::new(seed, faults);
    for _ in 0..10_000 {
        if pair.is_up() {
            break;
        }
        pair.turn(Duration::from_millis(1));
        wait_for_quiche(&pair);
    }
    assert!(pair.is_up(), "the simulated session came up");
    pair.blackhole = (pair.turns + blackhole.start)..(pair.turns + blackhole.end);
    let conns: Vec<usize> = (0..connections).map(|_| pair.open()).collect();
    // Per connection: the request in flight (id, method).
    let mut in_flight: Vec<Option<(u64, String)>> = vec![None; connections];
    let mut answers: Vec<Option<(u16, u64)>> = vec![None; requests as usize];
    let mut next_id = 0u64;
    let mut done = 0u64;
    let mut max_timer_entries = 0;
    for _ in 0..50_000_000u64 {
        for (i, key) in conns.iter().enumerate() {
            let Some(conn) = pair.conn(*key) else {
                continue;
            };
            if let Some((id, method)) = &in_flight[i] {
                if let Some((status, body)) = conn.take_response(method) {
                    answers[*id as usize] = Some((status, fnv(FNV_START, &body)));
                    let (_, _, expected) = request(*id);
                    if status != 200 || body != expected {
                        answers[*id as usize] = Some((status, 0));
                    }
                    in_flight[i] = None;
                    done += 1;
                }
            }
            if in_flight[i].is_none() && next_id < requests {
                let (method, wire, _) = request(next_id);
                conn.send(&wire);
                in_flight[i] = Some((next_id, method));
                next_id += 1;
            }
        }
        if done == requests {
            break;
        }
        pair.turn(Duration::from_millis(1));
        max_timer_entries = max_timer_entries.max(pair.timer_entries());
        wait_for_quiche(&pair);
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "simulation stuck: {done} of {requests} answered after {} turns",
            pair.turns
        );
    }
    let mut digest = FNV_START;
    let mut wrong = 0;
    for (id, answer) in answers.iter().enumerate() {
        let (_, _, expected) = request(id as u64);
        match answer {
            Some((200, hash)) if *hash == fnv(FNV_START, &expected) => {
                digest = fold_answer(digest, id as u64, 200, &expected);
            }
            other => {
                wrong += 1;
                let (status, hash) = other.unwrap_or((0, 0));
                digest = fold_answer(digest, id as u64, status, &hash.to_le_bytes());
            }
        }
    }
    Run {
        digest,
        wrong,
        turns: pair.turns,
        wall: started.elapsed(),
        datagrams: pair.link_figures(),
        max_timer_entries,
        sockets: pair.socket_stats(),
    }
}

/// When nothing is in flight on the link, quiche can only move on at its next (real-time)
/// timer: wait for it, at most 50 ms.
fn wait_for_quiche(pair: &SimPair) {
    if !pair.link_idle() {
        return;
    }
    if let Some(at) = pair.quiche_deadline() {
        let wait = at
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}
