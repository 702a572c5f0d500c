use super::*;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn three(balance: Balance) -> Endpoints {
    let targets: Vec<HostPort> = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        .iter()
        .map(|t| HostPort::parse(t).unwrap())
        .collect();
    Endpoints::new("svc", &targets, balance)
}

#[test]
fn round_robin_skips_the_addresses_that_are_down_until_their_backoff_passed() {
    let mut e = three(Balance::RoundRobin);
    let t0 = Instant::now();
    let picks: Vec<SocketAddr> = (0..6).map(|_| e.choose(t0, &[]).unwrap()).collect();
    assert_eq!(
        picks,
        [1, 2, 3, 1, 2, 3].map(|p| a(&format!("127.0.0.1:{p}")))
    );
    e.failed(a("127.0.0.1:2"), "refused", t0);
    let picks: Vec<SocketAddr> = (0..4).map(|_| e.choose(t0, &[]).unwrap()).collect();
    assert!(!picks.contains(&a("127.0.0.1:2")), "{picks:?}");
    // Back in rotation once its backoff passed, out for twice as long after a second failure.
    let later = t0 + DOWN_BACKOFF_MIN;
    assert!((0..3).any(|_| e.choose(later, &[]).unwrap() == a("127.0.0.1:2")));
    e.failed(a("127.0.0.1:2"), "refused", later);
    let in_between = later + DOWN_BACKOFF_MIN + Duration::from_millis(500);
    assert!((0..6).all(|_| e.choose(in_between, &[]).unwrap() != a("127.0.0.1:2")));
    e.succeeded(a("127.0.0.1:2"));
    assert!((0..3).any(|_| e.choose(in_between, &[]).unwrap() == a("127.0.0.1:2")));
}

#[test]
fn least_outstanding_takes_the_address_with_the_fewest_connections_in_use() {
    let mut e = three(Balance::LeastOutstanding);
    let t0 = Instant::now();
    e.acquire(a("127.0.0.1:1"));
    e.acquire(a("127.0.0.1:1"));
    e.acquire(a("127.0.0.1:3"));
    assert_eq!(e.choose(t0, &[]), Ok(a("127.0.0.1:2")));
    e.acquire(a("127.0.0.1:2"));
    e.acquire(a("127.0.0.1:2"));
    assert_eq!(e.choose(t0, &[]), Ok(a("127.0.0.1:3")));
    e.release(a("127.0.0.1:1"));
    e.release(a("127.0.0.1:1"));
    assert_eq!(e.choose(t0, &[]), Ok(a("127.0.0.1:1")));
}

#[test]
fn with_every_address_down_or_tried_the_refusal_names_the_service_and_each_address() {
    let mut e = three(Balance::RoundRobin);
    let t0 = Instant::now();
    e.failed(a("127.0.0.1:1"), "connection refused", t0);
    e.failed(a("127.0.0.1:2"), "connect timed out", t0);
    let why = e.choose(t0, &[a("127.0.0.1:3")]).unwrap_err();
    assert!(why.contains("\"svc\""), "{why}");
    assert!(
        why.contains("127.0.0.1:1 down: connection refused"),
        "{why}"
    );
    assert!(why.contains("127.0.0.1:2 down: connect timed out"), "{why}");
    assert_eq!(e.choose(t0, &[]), Ok(a("127.0.0.1:3")));
    let health = e.health(t0);
    assert_eq!(health.iter().filter(|(_, up)| *up).count(), 1);
}

#[test]
fn a_name_contributes_every_address_it_resolves_to_and_keeps_their_health() {
    let targets = vec![
        HostPort::parse("pool.test:80").unwrap(),
        HostPort::parse("127.0.0.1:9").unwrap(),
    ];
    let mut e = Endpoints::new("svc", &targets, Balance::RoundRobin);
    let t0 = Instant::now();
    assert_eq!(e.health(t0).len(), 1, "the literal is known at once");
    let name = HostPort::parse("pool.test:80").unwrap();
    e.on_resolved(&name, &Ok(vec![a("10.0.0.1:80"), a("10.0.0.2:80")]), t0);
    assert_eq!(e.health(t0).len(), 3);
    e.failed(a("10.0.0.2:80"), "refused", t0);
    e.on_resolved(&name, &Ok(vec![a("10.0.0.2:80"), a("10.0.0.3:80")]), t0);
    let health = e.health(t0);
    assert_eq!(health.len(), 3);
    assert!(
        health.contains(&(a("10.0.0.2:80"), false)),
        "kept its health: {health:?}"
    );
    assert!(health.contains(&(a("10.0.0.3:80"), true)));
    assert!(
        !health.iter().any(|(addr, _)| *addr == a("10.0.0.1:80")),
        "gone from DNS"
    );
    // A failed lookup keeps what was known.
    e.on_resolved(&name, &Err(io::Error::other("SERVFAIL")), t0);
    assert_eq!(e.health(t0).len(), 3);
}

#[test]
fn new_targets_keep_the_health_of_the_addresses_that_stay() {
    let mut e = three(Balance::RoundRobin);
    let t0 = Instant::now();
    e.failed(a("127.0.0.1:2"), "refused", t0);
    let targets: Vec<HostPort> = ["127.0.0.1:2", "127.0.0.1:4"]
        .iter()
        .map(|t| HostPort::parse(t).unwrap())
        .collect();
    e.set_targets(&targets);
    let health = e.health(t0);
    assert_eq!(
        health,
        vec![(a("127.0.0.1:2"), false), (a("127.0.0.1:4"), true)]
    );
}
