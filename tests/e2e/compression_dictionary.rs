//! The shared zstd dictionary of link compression (issue #15 item 2): with the same dictionary
//! file on both ends, small JSON bodies cross compressed with it (fewer link bytes than
//! without), byte-exact both ways; ends with different dictionaries, or one without, still
//! interoperate (no dictionary used, plain zstd for large bodies); a peer claiming dictionary
//! encoding without a shared dictionary gets its stream reset (the caller a 502), never a
//! wrong body; and `ptproxy train-dictionary` writes a file that loads as a config dictionary.

use crate::compression::{compressed, echo};
use crate::harness::admin::metrics_addr;
use crate::harness::json::Json;
use crate::harness::tmp::TempDir;
use crate::harness::{ptproxy_bin, Pair, PairBuilder, RelayConfig, Upstream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// About `len` bytes of API-like JSON records, different for each `seed`.
fn json_records(len: usize, seed: u64) -> Vec<u8> {
    const NAMES: &[&str] = &["Ana", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran"];
    const STATUS: &[&str] = &["active", "suspended", "pending", "closed"];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = |n: u64| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    };
    let mut out = b"[".to_vec();
    while out.len() + 200 < len {
        let name = NAMES[next(NAMES.len() as u64) as usize];
        let record = format!(
            "{{\"id\":{},\"name\":\"{name}\",\"email\":\"{}{}@example.com\",\"status\":\"{}\",\
             \"balance\":{}.{:02},\"verified\":{}}},",
            next(1_000_000),
            name.to_lowercase(),
            next(100),
            STATUS[next(4) as usize],
            next(100_000),
            next(100),
            next(2) == 1,
        );
        out.extend_from_slice(record.as_bytes());
    }
    out.extend_from_slice(b"{}]");
    out.resize(len.max(out.len()), b' ');
    out
}

/// Writes sample bodies (seeds from `seed`) into `dir`/samples and trains a dictionary from
/// them in-process (as `ptproxy train-dictionary` does); returns the dictionary's path.
fn dictionary(dir: &TempDir, name: &str, seed: u64) -> PathBuf {
    let samples: Vec<Vec<u8>> = (0..300)
        .map(|i| json_records(300 + (i as usize * 13) % 800, seed + i))
        .collect();
    let bytes = zstd::dict::from_samples(&samples, 16 * 1024).expect("trains");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write dictionary");
    path
}

fn compression(dictionary: Option<&Path>) -> String {
    match dictionary {
        Some(p) => format!(
            r#"{{"enabled": true, "dictionary": {:?}}}"#,
            p.display().to_string()
        ),
        None => r#"{"enabled": true}"#.to_string(),
    }
}

/// A pair with compression on at both ends and these dictionaries; with the metrics addresses.
fn pair(
    up: &Upstream,
    name: &str,
    client: Option<&Path>,
    server: Option<&Path>,
) -> (Pair, String, String) {
    let (client_metrics, client_json) = metrics_addr();
    let (server_metrics, server_json) = metrics_addr();
    let pair = PairBuilder::new(up.addr())
        .name(name)
        .relay(RelayConfig::clean())
        .client("metrics.listen", &client_json)
        .server("metrics.listen", &server_json)
        .client("http.compression", &compression(client))
        .server("http.compression", &compression(server))
        .start();
    (pair, client_metrics.to_string(), server_metrics.to_string())
}

/// UDP payload bytes the relay carried (both ways) while `f` ran.
fn link_bytes(pair: &Pair, f: impl FnOnce()) -> u64 {
    let total = |p: &Pair| {
        let s = p.relay().stats();
        s.to_server.received_bytes + s.to_client.received_bytes
    };
    let before = total(pair);
    f();
    total(pair) - before
}

const SMALL: usize = 20;

/// `SMALL` JSON bodies of 300-1000 bytes echoed (request and response), byte-exact.
fn small_echoes(pair: &Pair, up: &Upstream) {
    for i in 0..SMALL {
        let body = json_records(300 + (i * 37) % 700, 90_000 + i as u64);
        echo(pair, up, "application/json", &[], &body);
    }
}

#[test]
fn the_same_dictionary_on_both_ends_carries_small_json_in_fewer_link_bytes() {
    let dir = TempDir::new("dict_same");
    let dict = dictionary(&dir, "api.dict", 1000);
    let up = Upstream::start();
    let (with, client_m, server_m) = pair(&up, "dict_same", Some(&dict), Some(&dict));
    let with_bytes = link_bytes(&with, || small_echoes(&with, &up));
    // Both directions went compressed (bodies under the 1024 bytes of min_bytes without it).
    let (req_plain, req_link) = compressed(&server_m, "received");
    let (resp_plain, resp_link) = compressed(&client_m, "received");
    drop(with);
    let (without, _, _) = pair(&up, "dict_none", None, None);
    let without_bytes = link_bytes(&without, || small_echoes(&without, &up));
    eprintln!(
        "{SMALL} small JSON echoes: {with_bytes} link bytes with the dictionary, \
         {without_bytes} without; bodies {req_plain} -> {req_link} (requests), \
         {resp_plain} -> {resp_link} (responses)"
    );
    assert!(req_plain > 0.0 && req_link * 2.0 < req_plain, "requests");
    assert!(
        resp_plain > 0.0 && resp_link * 2.0 < resp_plain,
        "responses"
    );
    assert!(
        with_bytes * 4 < without_bytes * 3,
        "{with_bytes} link bytes with the dictionary, {without_bytes} without"
    );
}

#[test]
fn different_or_missing_dictionaries_interoperate_without_one() {
    let dir = TempDir::new("dict_mismatch");
    let a = dictionary(&dir, "a.dict", 1000);
    let b = dictionary(&dir, "b.dict", 50_000);
    let cases: [(&str, Option<&Path>, Option<&Path>); 3] = [
        ("dict_differ", Some(&a), Some(&b)),
        ("dict_client_only", Some(&a), None),
        ("dict_server_only", None, Some(&a)),
    ];
    for (name, client, server) in cases {
        let up = Upstream::start();
        let (pair, client_m, server_m) = pair(&up, name, client, server);
        small_echoes(&pair, &up);
        for m in [&client_m, &server_m] {
            assert_eq!(
                compressed(m, "sent"),
                (0.0, 0.0),
                "{name}: small bodies went compressed without a shared dictionary"
            );
        }
        // Large bodies still go compressed, with plain zstd.
        let big = json_records(60_000, 7);
        echo(&pair, &up, "application/json", &[], &big);
        let (plain, link) = compressed(&server_m, "received");
        assert!(
            plain == big.len() as f64 && link * 2.0 < plain,
            "{name}: {plain} -> {link}"
        );
    }
}

/// A fake client end (a bare HTTP/3 client, announcing nothing) sends a request body marked
/// as compressed with the dictionary to a server that has one: the stream is reset and the
/// upstream gets nothing. A fake server end answers so to a client that has one: the caller
/// gets a 502, never the body.
#[test]
fn a_peer_claiming_the_dictionary_without_sharing_it_is_refused() {
    use crate::harness::h3_client::{H3Client, H3Outcome};
    use crate::harness::h3_server::{compressed_answer, zstd_plain, BareH3Server};
    use crate::harness::pair::{LOG_SESSION_UP, READY_TIMEOUT};
    const H3_MESSAGE_ERROR: u64 = 0x10e;
    let dir = TempDir::new("dict_fake");
    let dict = dictionary(&dir, "api.dict", 1000);

    let up = Upstream::start();
    let (pair, _, _) = pair(&up, "dict_fake_client", Some(&dict), Some(&dict));
    let mut c = H3Client::connect(pair.quic_addr);
    let frame = compressed_answer("good");
    let length = zstd_plain().len().to_string();
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/echo_typed"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
        ("ptproxy-link-encoding", "zstd-d"),
    ];
    let s = c.send(&fields, Some(&frame));
    match c.outcome(s, Duration::from_secs(10)) {
        H3Outcome::Reset(code) => assert_eq!(code, H3_MESSAGE_ERROR),
        H3Outcome::Response { status, .. } => panic!("answered {status}, not reset"),
    }
    assert!(
        up.requests().iter().all(|q| q.target != "/echo_typed"),
        "the upstream got the request"
    );
    let r = pair.get("/hello");
    assert_eq!(r.body, b"hello", "the session is still fine: {r}");

    let bare = BareH3Server::start();
    let pair = PairBuilder::new(crate::harness::closed_tcp_addr())
        .name("dict_fake_server")
        .start_server(false)
        .client("peer.address", &format!("\"{}\"", bare.addr()))
        .client("http.compression", &compression(Some(&dict)))
        .start();
    pair.client.expect_log(LOG_SESSION_UP, READY_TIMEOUT);
    let mut c = pair.conn();
    c.set_deadline(Duration::from_secs(10));
    let r = c.get("/zstd-d/good").expect("an answer");
    assert_eq!(r.status(), 502, "{r}");
    assert!(r.body != zstd_plain(), "the caller got the body");
    let r = pair.get("/zstd/good");
    assert!(r.body == zstd_plain(), "plain zstd still decodes: {r}");
}

/// Runs `ptproxy ARGS` with a 60 s bound.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(ptproxy_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ptproxy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("ptproxy {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn train_dictionary_writes_a_dictionary_the_config_loads() {
    let dir = TempDir::new("train_dictionary");
    let samples = dir.join("samples");
    std::fs::create_dir_all(samples.join("nested")).unwrap();
    for i in 0..150u64 {
        let sub = if i % 2 == 0 { "nested" } else { "" };
        let path = samples.join(sub).join(format!("{i}.json"));
        std::fs::write(path, json_records(300 + (i as usize * 11) % 700, i)).unwrap();
    }
    let out = dir.join("api.dict");
    let (out_s, samples_s) = (out.display().to_string(), samples.display().to_string());
    let o = run(&[
        "train-dictionary",
        "--out",
        &out_s,
        "--size",
        "8192",
        &samples_s,
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("150 samples"), "{stdout}");
    let id = stdout
        .split("dictionary id ")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .unwrap_or_else(|| panic!("no id in: {stdout}"))
        .to_string();
    assert!(std::fs::metadata(&out).unwrap().len() <= 8192);

    // The file loads as the server's dictionary, and --check prints the same id.
    let b = PairBuilder::new("127.0.0.1:9".parse().unwrap());
    let mut server = b.server_config().clone();
    server.set("http.compression.dictionary", Json::str(&out_s));
    let config = dir.join("server.json");
    std::fs::write(&config, server.pretty()).unwrap();
    let o = run(&["--role", "server", "--check", &config.display().to_string()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("id {id}")), "{stdout}");

    // Bad input: non-zero exit with a clear message, nothing written.
    let again = run(&["train-dictionary", "--out", &out_s, &samples_s]);
    assert!(
        text(&again).1.contains("never overwritten"),
        "{:?}",
        text(&again)
    );
    let other = dir.join("other.dict").display().to_string();
    let missing = dir.join("missing").display().to_string();
    let one = samples.join("1.json").display().to_string();
    for (args, message) in [
        (
            vec!["train-dictionary", "--out", &other, &missing],
            "cannot read",
        ),
        (
            vec!["train-dictionary", "--out", &other, &one],
            "too few samples",
        ),
        (vec!["train-dictionary", "--out", &other], "no samples"),
    ] {
        let o = run(&args);
        let (_, stderr) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert!(!Path::new(&other).exists());
}
