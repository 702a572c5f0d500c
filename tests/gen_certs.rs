//! `ptproxy gen-certs` through the real binary: files and modes, refusal to overwrite, the
//! printed config snippets, and a real client/server pair running on the generated files.
//! Also checks that the role CLI (`--role R [--check] CONFIG`, `--version`, `--help`) still
//! parses next to the subcommand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ptproxy");
const FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];
const READY_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- helpers

/// Unique temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "ptproxy-gen-certs-{tag}-{}-{}-{nanos:x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gen_certs(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(cwd)
        .arg("gen-certs")
        .args(args)
        .output()
        .expect("run ptproxy gen-certs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The JSON objects printed by gen-certs: blocks from a line `{` to a line `}`.
fn snippets(stdout: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in stdout.lines() {
        if line == "{" {
            block = Some(String::new());
        }
        if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
        if line == "}" {
            if let Some(b) = block.take() {
                out.push(
                    serde_json::from_str(&b)
                        .unwrap_or_else(|e| panic!("snippet is not JSON ({e}):\n{b}")),
                );
            }
        }
    }
    out
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny keep-alive HTTP/1.1 upstream answering every request `200 ok`.
fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            thread::spawn(move || serve(conn));
        }
    });
    addr
}

fn serve(conn: TcpStream) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut writer = conn;
    loop {
        // Read one request head (the test only sends body-less requests).
        let mut line = String::new();
        let mut saw_request = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" || line == "\n" {
                if saw_request {
                    break;
                }
                continue;
            }
            saw_request = true;
        }
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Lines a child wrote to stderr, with a condition variable to wait for one.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    cv: Condvar,
}

/// A running `ptproxy --role R CONFIG`, killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Arc<Lines>,
}

impl Proc {
    fn start(name: &'static str, role: &str, config: &Path) -> Proc {
        let mut child = Command::new(BIN)
            .args(["--role", role])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("RUST_LOG_STYLE", "never")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ptproxy");
        let lines = Arc::new(Lines::default());
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().push(line);
                sink.cv.notify_all();
            }
            // EOF: wake waiters so they see the process is gone.
            sink.cv.notify_all();
        });
        Proc { name, child, lines }
    }

    /// Waits until a stderr line contains `needle` (false on timeout).
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lines.lock().unwrap();
        loop {
            if lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            lines = self.lines.cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    fn log(&self) -> String {
        format!(
            "--- {} stderr ---\n{}",
            self.name,
            self.lines.lines.lock().unwrap().join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request through the client listener; returns (status line, body).
fn request(port: u16) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(READY_TIMEOUT)).unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = text(&buf[..end]);
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or_else(|| panic!("no Content-Length in response head:\n{head}"));
            if buf.len() >= end + 4 + len {
                let status = head.lines().next().unwrap_or("").to_string();
                return (status, buf[end + 4..end + 4 + len].to_vec());
            }
        }
        let n = match s.read(&mut chunk) {
            // A signal interrupted the read (EINTR): not an answer, read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.expect("read response"),
        };
        assert!(n > 0, "connection closed early, got {:?}", text(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// gen-certs into `<tmp>/pki` (relative DIR), checks the files, and returns the two snippets.
fn generate(tmp: &TempDir, server_name: &str, client_name: Option<&str>) -> (Value, Value) {
    let mut args = vec!["pki", "--server-name", server_name];
    if let Some(c) = client_name {
        args.extend(["--client-name", c]);
    }
    let out = gen_certs(tmp.path(), &args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "gen-certs failed: {}\n{stdout}",
        text(&out.stderr)
    );
    let dir = std::fs::canonicalize(tmp.path().join("pki")).unwrap();
    assert_eq!(mode(&dir), 0o700, "directory mode");
    for f in FILES {
        let want = if f.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&dir.join(f)), want, "mode of {f}");
    }
    let found = snippets(&stdout);
    assert_eq!(found.len(), 2, "expected two JSON snippets in:\n{stdout}");
    let (client, server) = (found[0].clone(), found[1].clone());
    let p = |f: &str| Value::String(dir.join(f).to_str().unwrap().to_string());
    assert_eq!(client["tls"]["ca"], p("ca.pem"), "{stdout}");
    assert_eq!(client["tls"]["cert"], p("client.pem"), "{stdout}");
    assert_eq!(client["tls"]["key"], p("client.key"), "{stdout}");
    assert_eq!(
        client["peer"]["server_name"],
        json!(server_name),
        "{stdout}"
    );
    assert_eq!(server["tls"]["ca"], p("ca.pem"), "{stdout}");
    assert_eq!(server["tls"]["cert"], p("server.pem"), "{stdout}");
    assert_eq!(server["tls"]["key"], p("server.key"), "{stdout}");
    let client_name = client_name.unwrap_or("ptproxy-client");
    assert_eq!(
        server["tls"]["allowed_client_names"],
        json!([client_name]),
        "{stdout}"
    );
    for v in [&client["tls"], &server["tls"]] {
        for k in ["ca", "cert", "key"] {
            assert!(Path::new(v[k].as_str().unwrap()).is_absolute(), "{stdout}");
        }
    }
    (client, server)
}

/// Starts a server and a client on the generated files (configs built from the printed
/// snippets), waits for the session, and sends one request through the pair.
fn run_pair(tmp: &TempDir, client_snippet: Value, server_snippet: Value) {
    let upstream = start_upstream();
    let quic_port = free_udp_port();
    let http_port = free_tcp_port();

    let mut server = server_snippet;
    server["listen"] = json!(format!("127.0.0.1:{quic_port}"));
    server["upstream"] = json!({ "address": upstream.to_string() });
    let mut client = client_snippet;
    client["listen"] = json!([format!("127.0.0.1:{http_port}")]);
    client["peer"]["address"] = json!(format!("127.0.0.1:{quic_port}"));
    client["reconnect"] = json!({ "initial_backoff_ms": 50, "max_backoff_ms": 500 });

    let server_cfg = tmp.path().join("server.json");
    let client_cfg = tmp.path().join("client.json");
    std::fs::write(&server_cfg, serde_json::to_vec_pretty(&server).unwrap()).unwrap();
    std::fs::write(&client_cfg, serde_json::to_vec_pretty(&client).unwrap()).unwrap();
    for (role, cfg) in [("server", &server_cfg), ("client", &client_cfg)] {
        let out = Command::new(BIN)
            .args(["--role", role, "--check"])
            .arg(cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{role} config rejected: {}",
            text(&out.stderr)
        );
    }

    let server = Proc::start("server", "server", &server_cfg);
    let client = Proc::start("client", "client", &client_cfg);
    assert!(
        client.wait_for("session established", READY_TIMEOUT),
        "no session within {READY_TIMEOUT:?}\n{}\n{}",
        client.log(),
        server.log()
    );
    let (status, body) = request(http_port);
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "status {status:?}\n{}\n{}",
        client.log(),
        server.log()
    );
    assert_eq!(body, b"ok", "{}\n{}", client.log(), server.log());
}

// ---------------------------------------------------------------- tests

#[test]
fn generated_files_run_a_pair_over_an_ip_server_name() {
    let tmp = TempDir::new("ip");
    let (client, server) = generate(&tmp, "127.0.0.1", None);
    run_pair(&tmp, client, server);
}

#[test]
fn generated_files_run_a_pair_over_a_dns_server_name() {
    let tmp = TempDir::new("dns");
    let (client, server) = generate(&tmp, "localhost", Some("client-a.example.internal"));
    run_pair(&tmp, client, server);
}

#[test]
fn second_run_refuses_and_leaves_files_unchanged() {
    let tmp = TempDir::new("again");
    generate(&tmp, "localhost", None);
    let dir = tmp.path().join("pki");
    let before: Vec<Vec<u8>> = FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let out = gen_certs(tmp.path(), &["pki", "--server-name", "other.example"]);
    assert!(!out.status.success(), "second run succeeded");
    let err = text(&out.stderr);
    assert!(
        err.contains("ca.pem") && err.contains("refusing to overwrite"),
        "stderr should name the file: {err}"
    );
    for (f, old) in FILES.iter().zip(&before) {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), old, "{f} changed");
    }
}

#[test]
fn one_existing_file_blocks_every_write() {
    let tmp = TempDir::new("one");
    let dir = tmp.path().join("pki");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("client.key"), b"mine").unwrap();
    let out = gen_certs(tmp.path(), &["pki", "--server-name", "localhost"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("client.key"),
        "stderr should name client.key: {err}"
    );
    assert_eq!(std::fs::read(dir.join("client.key")).unwrap(), b"mine");
    for f in FILES.iter().filter(|f| **f != "client.key") {
        assert!(!dir.join(f).exists(), "{f} was written");
    }
}

#[test]
fn bad_arguments_are_refused_cleanly() {
    let tmp = TempDir::new("bad");
    for args in [
        &["pki", "--server-name", "bad name"][..],
        &["pki", "--server-name", "localhost", "--client-name", "a/b"][..],
        &["pki"][..],
    ] {
        let out = gen_certs(tmp.path(), args);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(!text(&out.stderr).contains("panicked"), "{args:?} panicked");
        assert!(!tmp.path().join("pki").exists(), "{args:?} created the dir");
    }
    let out = Command::new(BIN)
        .args(["--role", "client", "gen-certs", "pki", "--server-name", "x"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn role_cli_still_parses() {
    let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/a.json");
    let b = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/b.json");
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let a = a.to_str().unwrap();
    let b = b.to_str().unwrap();

    for args in [
        &["--role", "client", "--check", a][..],
        &["--role", "server", "--check", b][..],
        &[a, "--role", "client", "--check"][..],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("config OK"), "{args:?}");
    }
    // `--role client CONFIG` reaches config loading (a missing file is a config error, 2).
    let out = run(&["--role", "client", "/nonexistent/ptproxy-a.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/ptproxy-a.json"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("ptproxy "));
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("--role") && help.contains("gen-certs"),
        "{help}"
    );
    let out = run(&["gen-certs", "--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("--server-name"));
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
}
