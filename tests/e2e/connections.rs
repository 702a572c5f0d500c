//! Client-side connection handling: keep-alive, pipelining, concurrency.

use crate::harness::http::{build_request, HttpConn};
use crate::harness::pattern::pattern;
use crate::harness::{PairBuilder, Upstream};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[test]
fn keepalive_connection_serves_ten_sequential_requests() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("keepalive").start();
    let mut c = pair.conn();
    for i in 0..10usize {
        if i % 2 == 0 {
            let body = format!("keep-alive request {i} ")
                .repeat(i + 1)
                .into_bytes();
            let r = c
                .post("/echo", &body)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status(), 200, "request {i}: {r}");
            assert_eq!(r.body, body, "request {i}");
            assert!(
                !r.head.closes(),
                "request {i}: proxy closes the connection: {r}"
            );
        } else {
            let n = 1000 * i + 7;
            let r = c
                .get(&format!("/bytes/{n}"))
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(r.status(), 200, "request {i}: {r}");
            assert!(
                r.body == pattern(n),
                "request {i}: wrong body ({} bytes)",
                r.body.len()
            );
            assert!(
                !r.head.closes(),
                "request {i}: proxy closes the connection: {r}"
            );
        }
    }
    assert_eq!(up.request_count(), 10);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("pipelining").start();
    let mut c = pair.conn();
    let big = pattern(100_000);
    let mut all = Vec::new();
    all.extend(build_request("POST", "/echo", &[], Some(b"pipelined zero")));
    all.extend(build_request("GET", "/bytes/3001", &[], None));
    all.extend(build_request("POST", "/echo", &[], Some(b"pipelined two")));
    all.extend(build_request("GET", "/hello", &[], None));
    all.extend(build_request("POST", "/echo", &[], Some(&big)));
    c.send(&all).expect("write 5 pipelined requests at once");
    let methods = ["POST", "GET", "POST", "GET", "POST"];
    let want: Vec<Vec<u8>> = vec![
        b"pipelined zero".to_vec(),
        pattern(3001),
        b"pipelined two".to_vec(),
        b"hello".to_vec(),
        big,
    ];
    for (i, (m, w)) in methods.iter().zip(want).enumerate() {
        let r = c
            .read_response(m)
            .unwrap_or_else(|e| panic!("pipelined response {i}: {e}"));
        assert_eq!(r.status(), 200, "response {i}: {r}");
        assert!(r.body == w, "response {i} out of order or wrong: {r}");
    }
    assert_eq!(up.request_count(), 5);
}

#[test]
fn two_hundred_concurrent_connections_all_answered() {
    const N: usize = 200;
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("concurrent").start();
    let addr = pair.http_addr;
    let barrier = Arc::new(Barrier::new(N));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut threads = Vec::new();
    for i in 0..N {
        let (barrier, failures) = (barrier.clone(), failures.clone());
        threads.push(
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let conn = HttpConn::connect_timeout(addr, Duration::from_secs(60));
                    barrier.wait(); // all connections open, then all requests at once
                    let mut conn = match conn {
                        Ok(c) => c,
                        Err(e) => {
                            return failures.lock().unwrap().push(format!("#{i}: connect: {e}"))
                        }
                    };
                    let mut body = format!("concurrent client {i} ").into_bytes();
                    body.extend(pattern(100 + i * 37));
                    match conn.post(&format!("/echo?client={i}"), &body) {
                        Ok(r) if r.status() == 200 && r.body == body => {}
                        Ok(r) => failures.lock().unwrap().push(format!("#{i}: {r}")),
                        Err(e) => failures.lock().unwrap().push(format!("#{i}: {e}")),
                    }
                })
                .expect("spawn client thread"),
        );
    }
    for t in threads {
        t.join().expect("client thread panicked");
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {N} failed, first ones: {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(up.request_count(), N);
}

/// Found by the loopback benchmark (issue 13): with the default pool of 32 idle upstream
/// connections, 64 busy keep-alive clients made the server close connections between bursts
/// and open new ones for a fifth to a third of all requests (a TCP handshake, seven system calls
/// and an upstream accept each). The pool now keeps what a busy client keeps in flight.
#[test]
fn sixty_four_busy_clients_reuse_their_upstream_connections() {
    const CLIENTS: usize = 64;
    const EACH: usize = 30;
    let up = Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("pool_reuse").start();
    let addr = pair.http_addr;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (barrier, failures) = (barrier.clone(), failures.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let conn = HttpConn::connect_timeout(addr, Duration::from_secs(30));
                    barrier.wait();
                    let mut conn = match conn {
                        Ok(c) => c,
                        Err(e) => return failures.lock().unwrap().push(format!("#{i}: {e}")),
                    };
                    for n in 0..EACH {
                        match conn.get(&format!("/hello?c{i}n{n}")) {
                            Ok(r) if r.status() == 200 => {}
                            Ok(r) => failures.lock().unwrap().push(format!("#{i}/{n}: {r}")),
                            Err(e) => {
                                return failures.lock().unwrap().push(format!("#{i}/{n}: {e}"))
                            }
                        }
                    }
                })
                .expect("spawn client thread")
        })
        .collect();
    for t in threads {
        t.join().expect("client thread panicked");
    }
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    assert_eq!(up.request_count(), CLIENTS * EACH);
    let opened = up.connection_count();
    assert!(
        opened <= CLIENTS + CLIENTS / 2,
        "{opened} upstream connections for {CLIENTS} clients: the pool closed and reopened them"
    );
}
