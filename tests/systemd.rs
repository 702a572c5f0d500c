//! systemd integration: the shipped unit file is valid and hardened, and the binary speaks the
//! sd_notify protocol (READY=1 once serving, STOPPING=1 on SIGTERM, WATCHDOG=1 when asked).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private temp dir (removed on drop).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ptproxy-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn unit_file_is_hardened_notify_service_and_verifies() {
    let unit = std::fs::read_to_string(repo().join("conf/ptproxy@.service")).expect("unit file");
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=30",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == line),
            "unit file lacks {line:?}"
        );
    }
    let Ok(status) = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    else {
        eprintln!("systemd-analyze not installed: content checked, verification skipped");
        return;
    };
    assert!(status.success());
    let dir = TempDir::new("unit");
    let copy = dir.0.join("ptproxy@client-0.service");
    std::fs::write(&copy, &unit).expect("copy unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = text.lines().filter(|l| l.contains("ptproxy@")).collect();
    assert!(
        problems.is_empty(),
        "systemd-analyze verify complained:\n{text}"
    );
}

/// Receives sd_notify datagrams until `want` arrives or `timeout` passes.
fn wait_for_state(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(left)).expect("timeout");
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let done = msg.lines().any(|l| l == want);
        seen.push(msg);
        if done {
            break;
        }
    }
    seen
}

/// What a failed wait reports about the server: whether it still runs, and its log.
fn server_report(child: &mut KillOnDrop, dir: &Path) -> String {
    let state = match child.0.try_wait() {
        Ok(Some(status)) => format!("exited: {status}"),
        Ok(None) => "still running".to_string(),
        Err(e) => format!("wait failed: {e}"),
    };
    let log = std::fs::read_to_string(dir.join("server.stderr")).unwrap_or_default();
    format!("server {state}; its log:\n{log}")
}

fn start_server(dir: &Path, notify: &Path, watchdog_usec: Option<u64>) -> KillOnDrop {
    let pki = repo().join("tests/data/pki");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let config = format!(
        r#"{{"listen": "127.0.0.1:{port}", "upstream": {{"address": "127.0.0.1:9"}},
            "tls": {{"ca": "{0}/ca.pem", "cert": "{0}/server.pem", "key": "{0}/server.key"}}}}"#,
        pki.display()
    );
    let path = dir.join("b.json");
    std::fs::write(&path, config).expect("config");
    let stderr = std::fs::File::create(dir.join("server.stderr")).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ptproxy"));
    cmd.args(["--role", "server"])
        .arg(&path)
        .env("NOTIFY_SOCKET", notify)
        .stderr(stderr);
    if let Some(usec) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", usec.to_string());
    }
    KillOnDrop(cmd.spawn().expect("spawn ptproxy"))
}

#[test]
fn notifies_ready_watchdog_and_stopping() {
    let dir = TempDir::new("notify");
    let notify = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&notify).expect("bind notify socket");
    let mut child = start_server(&dir.0, &notify, Some(200_000));
    let seen = wait_for_state(&sock, "READY=1", Duration::from_secs(10));
    assert!(
        seen.iter().any(|m| m == "READY=1"),
        "no READY=1, got {seen:?}; {}",
        server_report(&mut child, &dir.0)
    );
    let seen = wait_for_state(&sock, "WATCHDOG=1", Duration::from_secs(5));
    assert!(
        seen.iter().any(|m| m == "WATCHDOG=1"),
        "no WATCHDOG=1 within 5 s at WATCHDOG_USEC=200ms, got {seen:?}; {}",
        server_report(&mut child, &dir.0)
    );
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let seen = wait_for_state(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(
        seen.iter().any(|m| m == "STOPPING=1"),
        "no STOPPING=1 after SIGTERM, got {seen:?}; {}",
        server_report(&mut child, &dir.0)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM with no sessions"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "graceful stop must exit 0, got {status}");
}
