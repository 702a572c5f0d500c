//! `--check` config validation, and `--check --connect` (one handshake with the peer).

use crate::harness::json::Json;
use crate::harness::tmp::TempDir;
use crate::harness::{ptproxy_bin, repo_dir, PairBuilder};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `ptproxy --role ROLE --check PATH` with a 20 s bound.
fn run_check(role: &str, path: &Path) -> Output {
    run_with(&["--role", role, "--check"], path)
}

/// Runs `ptproxy ARGS PATH` with a 20 s bound.
fn run_with(args: &[&str], path: &Path) -> Output {
    let mut child = Command::new(ptproxy_bin())
        .args(args)
        .arg(path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ptproxy --check");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "--check did not exit within 20 s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_accepts_shipped_example_configs() {
    for (role, file) in [("client", "a.json"), ("server", "b.json")] {
        let path = repo_dir().join("conf").join(file);
        let o = run_check(role, &path);
        assert!(
            o.status.success(),
            "--role {role} --check conf/{file}: {}",
            describe(&o)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            all.contains("config OK"),
            "expected \"config OK\": {}",
            describe(&o)
        );
    }
}

/// Writes `cfg` and checks that `--check` fails naming `must_name` on stderr.
fn assert_rejected(role: &str, cfg: &Json, must_name: &str) {
    let dir = TempDir::new("check");
    let path = dir.join(&format!("{role}.json"));
    std::fs::write(&path, cfg.pretty()).unwrap();
    let o = run_check(role, &path);
    assert!(
        !o.status.success(),
        "--role {role} --check accepted a bad config:\n{}\n{}",
        cfg.pretty(),
        describe(&o)
    );
    assert_eq!(
        o.status.code(),
        Some(2),
        "SPEC: invalid config exits with status 2: {}",
        describe(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(must_name),
        "stderr must name {must_name:?}: {}",
        describe(&o)
    );
}

#[test]
fn check_rejects_unknown_fields_and_names_them() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    let (client, server) = (b.client_config().clone(), b.server_config().clone());
    // the generated configs themselves are valid
    for (role, cfg) in [("client", &client), ("server", &server)] {
        let dir = TempDir::new("check_ok");
        let path = dir.join("cfg.json");
        std::fs::write(&path, cfg.pretty()).unwrap();
        let o = run_check(role, &path);
        assert!(
            o.status.success(),
            "generated {role} config rejected:\n{}\n{}",
            cfg.pretty(),
            describe(&o)
        );
    }
    let mut c = client.clone();
    c.set("bogus_top_level_field", Json::num(1));
    assert_rejected(
        "client",
        &c,
        "bogus_top_level_field: unknown field at the top level",
    );
    let mut c = client.clone();
    c.set("http.bogus_http_knob", Json::bool(true));
    assert_rejected(
        "client",
        &c,
        "http.bogus_http_knob: unknown field in \"http\"",
    );
    let mut s = server.clone();
    s.set("upstream.frobnicate_ms", Json::num(5));
    assert_rejected(
        "server",
        &s,
        "upstream.frobnicate_ms: unknown field in \"upstream\"",
    );
}

#[test]
fn check_rejects_bad_congestion_control_and_names_the_field() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    let mut c = b.client_config().clone();
    c.set("transport.congestion_control", Json::str("vegas"));
    assert_rejected("client", &c, "congestion_control");
    let mut s = b.server_config().clone();
    s.set("transport.congestion_control", Json::str("warp-speed"));
    assert_rejected("server", &s, "congestion_control");
}

#[test]
fn check_says_the_peer_was_not_contacted() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    let dir = TempDir::new("check_no_contact");
    let path = dir.join("client.json");
    std::fs::write(&path, b.client_config().pretty()).unwrap();
    let o = run_check("client", &path);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        out.contains("was not contacted") && out.contains("--connect"),
        "--check must say it did not contact the peer: {}",
        describe(&o)
    );
}

/// `--role client --check --connect PATH`, timed.
fn check_connect(cfg: &Json, tag: &str) -> (Output, Duration) {
    let dir = TempDir::new(tag);
    let path = dir.join("client.json");
    std::fs::write(&path, cfg.pretty()).unwrap();
    let t0 = Instant::now();
    let o = run_with(&["--role", "client", "--check", "--connect"], &path);
    (o, t0.elapsed())
}

#[test]
fn check_connect_reports_the_server_certificate_names_and_rtt() {
    let up = crate::harness::Upstream::start();
    let pair = PairBuilder::new(up.addr()).name("check_connect_ok").start();
    let (o, took) = check_connect(&pair.client_config, "check_connect_ok_cfg");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", describe(&o));
    let line = out
        .lines()
        .find(|l| l.contains("reached"))
        .unwrap_or_else(|| panic!("no result line: {}", describe(&o)));
    assert!(
        line.contains(&pair.quic_addr.to_string())
            && line.contains("server certificate names [localhost")
            && line.contains("rtt ")
            && line.contains(" ms"),
        "the line must name the peer, the certificate names and the RTT: {line:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // the probe session was a separate one: the proxy's own session is still the only one up
    assert_eq!(pair.client.count_log("session established"), 1);
}

#[test]
fn check_connect_to_a_wrong_address_fails_clearly_within_5_s() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    // nothing listens: the ICMP port unreachable answer ends it at once
    let closed = format!("127.0.0.1:{}", crate::harness::free_udp_port());
    let mut cfg = b.client_config().clone();
    cfg.set("peer.address", Json::str(closed.clone()));
    let (o, took) = check_connect(&cfg, "check_connect_closed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        err.contains(&format!("cannot reach the peer {closed}"))
            && err.contains("ICMP port unreachable"),
        "{}",
        describe(&o)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // something holds the port but never answers: the handshake timeout (default 3 s) ends it
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent = hole.local_addr().unwrap().to_string();
    cfg.set("peer.address", Json::str(silent.clone()));
    let (o, took) = check_connect(&cfg, "check_connect_silent");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert!(
        err.contains(&format!("cannot reach the peer {silent}"))
            && err.contains("handshake timed out: nothing answered within 3000 ms"),
        "{}",
        describe(&o)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A string field of a generated config.
fn field(cfg: &Json, path: &str) -> String {
    cfg.get(path)
        .and_then(|j| j.as_str())
        .unwrap_or_else(|| panic!("{path} in {}", cfg.pretty()))
        .to_string()
}

#[test]
fn check_loads_the_tls_files_as_a_start_would() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    let (client, server) = (b.client_config().clone(), b.server_config().clone());
    let dir = TempDir::new("check_tls_files");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let garbage = garbage.display().to_string();
    let server_key = field(&server, "tls.key");
    let client_key = field(&client, "tls.key");
    let cases: Vec<(&str, &Json, &str, String, String)> = vec![
        (
            "client",
            &client,
            "tls.cert",
            garbage.clone(),
            format!("tls.cert ({garbage})"),
        ),
        (
            "client",
            &client,
            "tls.key",
            garbage.clone(),
            format!("tls.key ({garbage})"),
        ),
        (
            "client",
            &client,
            "tls.ca",
            garbage.clone(),
            format!("tls.ca ({garbage})"),
        ),
        (
            "server",
            &server,
            "tls.cert",
            garbage.clone(),
            format!("tls.cert ({garbage})"),
        ),
        (
            "server",
            &server,
            "tls.ca",
            garbage.clone(),
            format!("tls.ca ({garbage})"),
        ),
        // a key of the same CA, but not the certificate's
        (
            "client",
            &client,
            "tls.key",
            server_key.clone(),
            format!("tls.key ({server_key}): does not match tls.cert"),
        ),
        (
            "server",
            &server,
            "tls.key",
            client_key.clone(),
            format!("tls.key ({client_key}): does not match tls.cert"),
        ),
    ];
    for (role, base, key, value, must_name) in cases {
        let mut cfg = base.clone();
        cfg.set(key, Json::str(value));
        assert_rejected(role, &cfg, &must_name);
    }
    // unreadable: only observable when the tests do not run as root
    let locked = dir.join("locked.pem");
    std::fs::copy(field(&client, "tls.cert"), &locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::File::open(&locked).is_err() {
        let mut cfg = client.clone();
        cfg.set("tls.cert", Json::str(locked.display().to_string()));
        assert_rejected("client", &cfg, &format!("tls.cert ({})", locked.display()));
    }
}

#[test]
fn check_rejects_a_server_name_no_certificate_can_carry() {
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    for name in ["bad name", "a..b", "-x.test", "host/path", "999.1.1.1"] {
        let mut cfg = b.client_config().clone();
        cfg.set("peer.server_name", Json::str(name));
        assert_rejected("client", &cfg, "peer.server_name: invalid server name");
    }
}
