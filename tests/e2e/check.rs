//! `--check` config validation.

use crate::harness::json::Json;
use crate::harness::tmp::TempDir;
use crate::harness::{ptproxy_bin, repo_dir, PairBuilder};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `ptproxy --role ROLE --check PATH` with a 20 s bound.
fn run_check(role: &str, path: &Path) -> Output {
    let mut child = Command::new(ptproxy_bin())
        .args(["--role", role, "--check"])
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
    assert_rejected("client", &c, "bogus_top_level_field");
    let mut c = client.clone();
    c.set("http.bogus_http_knob", Json::Bool(true));
    assert_rejected("client", &c, "bogus_http_knob");
    let mut s = server.clone();
    s.set("upstream.frobnicate_ms", Json::num(5));
    assert_rejected("server", &s, "frobnicate_ms");
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
