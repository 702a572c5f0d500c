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
    let timeout = pair.server_cfg.services.list[0].upstream.response_timeout;
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

/// Turns until the simulated session is up on both sides.
fn come_up(pair: &mut pair::SimPair) {
    for _ in 0..1000 {
        if pair.is_up() {
            return;
        }
        pair.turn(Duration::from_millis(1));
    }
    panic!("the simulated session did not come up");
}

#[test]
fn events_left_at_the_cap_are_handled_without_a_new_datagram() {
    // The server polls a session for at most 4 HTTP/3 events per turn, and (like its driver)
    // takes a turn only when datagrams arrive, a timer is due or it left itself work. 40
    // requests arrive in one flight, then nothing reaches the server any more: only the work
    // it left itself at the cap can bring the other 36 to service B.
    const REQUESTS: u64 = 40;
    let mut pair = pair::SimPair::with_server_event_cap(3, Faults::default(), 4);
    come_up(&mut pair);
    let keys: Vec<usize> = (0..REQUESTS).map(|_| pair.open()).collect();
    for (i, key) in keys.iter().enumerate() {
        let wire = format!("GET /r/{i}/100 HTTP/1.1\r\nHost: b.test\r\n\r\n");
        pair.conn(*key).expect("connection").send(wire.as_bytes());
    }
    for _ in 0..100 {
        if pair.origin_requests() > 0 {
            break;
        }
        pair.turn(Duration::from_millis(1));
    }
    let first_turn = pair.origin_requests();
    assert!(
        (1..REQUESTS).contains(&first_turn),
        "the cap held the first turn to part of the flight: {first_turn}"
    );
    pair.server_cut_off = true;
    let woken_before = pair.server_woken;
    for _ in 0..100 {
        if pair.origin_requests() == REQUESTS {
            break;
        }
        pair.turn(Duration::from_millis(1));
    }
    assert_eq!(
        pair.origin_requests(),
        REQUESTS,
        "requests left in the session at the cap never reached service B"
    );
    assert!(
        pair.server_woken - woken_before >= (REQUESTS - first_turn) / 4,
        "the server took its turns without datagrams ({} turns)",
        pair.server_woken - woken_before
    );
}

#[test]
fn ten_thousand_connection_id_changes_leave_the_routing_table_bounded() {
    // The client moves to a new connection ID 10^4 times (as a client migrating, or a NAT
    // that rebinds, makes it), with requests flowing: the server keeps issuing spare IDs and
    // forgets each retired one, so its routing table stays at what one session may use.
    const CHANGES: u64 = 10_000;
    // quic::ACTIVE_CID_LIMIT spare IDs at the client, plus those in flight both ways.
    const BOUND: usize = 4 * 4;
    let mut pair = pair::SimPair::new(9, Faults::default());
    come_up(&mut pair);
    let key = pair.open();
    let (mut changes, mut sent, mut answered, mut most) = (0, 0u64, 0u64, (0, 0));
    for _ in 0..1_000_000 {
        if changes == CHANGES {
            break;
        }
        if pair.retire_client_cid() {
            changes += 1;
        }
        let conn = pair.conn(key).expect("connection");
        if sent == answered {
            let wire = format!("GET /r/{sent}/64 HTTP/1.1\r\nHost: b.test\r\n\r\n");
            conn.send(wire.as_bytes());
            sent += 1;
        } else if let Some((status, body)) = conn.take_response("GET") {
            assert_eq!(status, 200);
            assert_eq!(body, endpoints::payload(answered, 64));
            answered += 1;
        }
        pair.turn(Duration::from_millis(1));
        let (routed, held) = pair.routed_cids();
        most = (most.0.max(routed), most.1.max(held));
    }
    eprintln!("{changes} changes, {answered} requests answered, most routed IDs {most:?}");
    assert_eq!(changes, CHANGES, "the churn did not complete");
    assert!(answered > 100, "requests kept flowing: {answered}");
    assert!(most.0 <= BOUND, "routed IDs grew to {}", most.0);
    assert!(most.1 <= BOUND, "one session's IDs grew to {}", most.1);
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
        // Refused once, or twice when the refused message followed one the same call sent
        // (a batched send reports only its first message's error; the retry sees it).
        assert!((1..=2).contains(&side.gso_refused), "{side:?}");
        assert_eq!(side.gso_batches, 0, "{side:?}");
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
