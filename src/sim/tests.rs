//! The simulated pair's runs: many requests over a lossy link, answered exactly and
//! reproducibly, within bounded timer tables, through sockets that block and refuse offload.

use super::link::Faults;
use super::*;

fn lossy() -> Faults {
    Faults {
        loss: 0.02,
        duplicate: 0.005,
        reorder: 0.01,
        blackhole: false,
        ..Faults::default()
    }
}

#[test]
fn a_hundred_thousand_requests_over_a_lossy_link_give_the_expected_trace() {
    let requests = 100_000;
    let run = run(0x5eed, lossy(), 64, requests);
    eprintln!("{run:?}");
    assert_eq!(run.wrong, 0, "requests answered wrongly or not at all");
    assert_eq!(run.digest, expected_digest(requests));
    assert!(
        run.datagrams.1 > 0,
        "the link lost datagrams: {:?}",
        run.datagrams
    );
    assert!(run.wall < Duration::from_secs(60), "took {:?}", run.wall);
    // One entry per open connection (64) and per exchange in flight (64) at most.
    assert!(
        run.max_timer_entries <= 128,
        "timer entries grew to {}",
        run.max_timer_entries
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let a = run(42, lossy(), 16, 2_000);
    let b = run(42, lossy(), 16, 2_000);
    assert_eq!((a.wrong, b.wrong), (0, 0));
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.digest, expected_digest(2_000));
}

#[test]
fn a_stalled_origin_is_a_504_at_the_response_timeout_on_the_manual_clock() {
    let started = std::time::Instant::now();
    let mut pair = pair::SimPair::new(7, Faults::default());
    for _ in 0..1000 {
        if pair.is_up() {
            break;
        }
        pair.turn(Duration::from_millis(1));
    }
    assert!(pair.is_up());
    let timeout = pair.server_cfg.upstream.response_timeout;
    let key = pair.open();
    let sent_at = pair.now;
    if let Some(conn) = pair.conn(key) {
        conn.send(b"GET /stall HTTP/1.1\r\nHost: b.test\r\n\r\n");
    }
    // 100 ms of ptproxy time per turn: minutes of timers pass in a fraction of a second.
    let mut answer = None;
    for _ in 0..3_000 {
        pair.turn(Duration::from_millis(100));
        if let Some(a) = pair.conn(key).and_then(|c| c.take_response("GET")) {
            answer = Some((a, pair.now - sent_at));
            break;
        }
    }
    let ((status, body), waited) = answer.expect("an answer");
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(
        waited >= timeout && waited <= timeout + Duration::from_millis(300),
        "504 after {waited:?} of manual time (upstream.response_timeout_ms {timeout:?})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "real time {:?}",
        started.elapsed()
    );
}

#[test]
fn requests_caught_by_a_dead_path_complete_once_it_is_back() {
    // 40 turns of a link that drops everything, early in a lossy run: quiche backs off and
    // retransmits on its own clock; every request is still answered exactly.
    let run = run_with_blackhole(11, lossy(), 50..90, 16, 3_000);
    eprintln!("{run:?}");
    assert!(
        run.datagrams.2 > 0,
        "the blackhole took datagrams: {:?}",
        run.datagrams
    );
    assert_eq!(run.wrong, 0);
    assert_eq!(run.digest, expected_digest(3_000));
    assert!(run.wall < Duration::from_secs(60), "took {:?}", run.wall);
}

#[test]
fn sockets_that_block_and_refuse_gso_lose_no_request() {
    // Both sides' sockets: full on 10% of sends (WouldBlock until the next turn's WRITABLE),
    // no GSO (refused once, then datagram by datagram), GRO aggregates on half the receives.
    let faults = Faults {
        would_block: 0.1,
        no_gso: true,
        gro: 0.5,
        ..lossy()
    };
    let run = run(0xb10c, faults, 32, 5_000);
    eprintln!("{run:?}");
    assert_eq!(run.wrong, 0);
    assert_eq!(run.digest, expected_digest(5_000));
    for side in [run.sockets.0, run.sockets.1] {
        assert!(side.would_blocks > 10, "{side:?}");
        assert_eq!((side.gso_refused, side.gso_batches), (1, 0), "{side:?}");
        assert!(side.gro_aggregates > 0, "{side:?}");
    }
    assert!(run.wall < Duration::from_secs(60), "took {:?}", run.wall);
}

#[test]
fn without_socket_faults_the_datagram_path_sends_gso_batches() {
    // The counterpart of the run above: the same path with offload working.
    let run = run(0x650, lossy(), 16, 1_000);
    assert_eq!(run.digest, expected_digest(1_000));
    for side in [run.sockets.0, run.sockets.1] {
        assert!(side.gso_batches > 0, "{side:?}");
        assert_eq!((side.would_blocks, side.gso_refused), (0, 0), "{side:?}");
    }
}
