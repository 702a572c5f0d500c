//! Both roles' reactors in one process, on real loopback sockets: a client and a server
//! reactor on two threads carry requests to an upstream, then one SIGTERM to the process stops
//! both gracefully. Each reactor has its own signal source (the former process-global signal
//! pipe gave every signal to the last reactor installed, so one of the two never stopped).
//! Its own test binary: the signal goes to the whole process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ptproxy::config::{self, Config, ConfigError, Role};

/// A free loopback port (bound, then released for the proxy to take).
fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
}

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free TCP port")
}

/// An upstream answering `hello` to every request, on keep-alive connections.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("upstream");
    let addr = listener.local_addr().expect("address");
    thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(mut conn) = conn else { continue };
            thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for _ in 0..1000 {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    buf.drain(..end);
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
                    if conn.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn parse(text: &str, role: Role) -> Config {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pki");
    config::parse(text, &pki, role).unwrap_or_else(|e| panic!("config: {e}"))
}

/// Runs one role's reactor on a thread; its result arrives on the returned channel.
fn spawn(config: Config) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let no_reload = || -> Result<Config, ConfigError> {
            Err(ConfigError {
                field: "(none)".into(),
                reason: "reload is not used in this test".into(),
            })
        };
        let result = ptproxy::run(&config, &no_reload).map_err(|e| e.to_string());
        let _ = tx.send(result);
    });
    rx
}

/// GET / through the client proxy, once it answers (it waits for its session first).
fn get(addr: SocketAddr) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn a_client_and_a_server_reactor_share_a_process_and_both_stop_on_one_sigterm() {
    let upstream = upstream();
    let quic = free_udp();
    let http = free_tcp();
    let server = parse(
        &format!(
            r#"{{"listen": "{quic}", "upstream": {{"address": "{upstream}"}},
                "tls": {{"ca": "ca.pem", "cert": "server.pem", "key": "server.key"}}}}"#
        ),
        Role::Server,
    );
    let client = parse(
        &format!(
            r#"{{"listen": ["{http}"], "peer": {{"address": "{quic}", "server_name": "localhost"}},
                "tls": {{"ca": "ca.pem", "cert": "client.pem", "key": "client.key"}}}}"#
        ),
        Role::Client,
    );
    let server_done = spawn(server);
    let client_done = spawn(client);

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut answers = Vec::new();
    while answers.len() < 10 && Instant::now() < deadline {
        match get(http) {
            Some(a) if a.starts_with("HTTP/1.1 200") => answers.push(a),
            _ => thread::sleep(Duration::from_millis(50)), // the listener is not up yet
        }
    }
    assert_eq!(answers.len(), 10, "requests through the in-process pair");
    assert!(answers.iter().all(|a| a.ends_with("hello")), "{answers:?}");

    // One SIGTERM to the process: every reactor's signal source sees it.
    // SAFETY: raising a signal this process handles (signal-hook's handlers are installed).
    assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
    for (role, done) in [("server", server_done), ("client", client_done)] {
        match done.recv_timeout(Duration::from_secs(15)) {
            Ok(result) => assert_eq!(result, Ok(()), "{role} reactor"),
            Err(_) => panic!("the {role} reactor did not stop on SIGTERM within 15 s"),
        }
    }
}
