//! The simulated pair's runs: many requests over a lossy link, answered exactly and
//! reproducibly, within bounded timer tables.

use super::link::Faults;
use super::*;

fn lossy() -> Faults {
    Faults {
        loss: 0.02,
        duplicate: 0.005,
        reorder: 0.01,
        blackhole: false,
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
