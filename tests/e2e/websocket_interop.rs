//! WebSocket through the real pair with a real WebSocket library at both ends: Python
//! `websockets` (installed by `.ci/prereqs`) as service A against the ptproxy client and as
//! the upstream behind the ptproxy server, driven by `tests/e2e/ws_interop.py`. Text, binary
//! and fragmented messages, ping/pong both ways, subprotocol and permessage-deflate
//! negotiation, the close handshake started by each side with code and reason intact. A
//! missing module fails the test naming `.ci/prereqs`; it never skips.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::harness::{poll_until, repo_dir, PairBuilder};

const WAIT: Duration = Duration::from_secs(15);

/// One `python3 ws_interop.py ...` process, its stdout and stderr lines collected.
struct Script {
    name: &'static str,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Script {
    fn spawn(name: &'static str, args: &[&str]) -> Script {
        let script = repo_dir().join("tests").join("e2e").join("ws_interop.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {}: {e} (run .ci/prereqs)", script.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let readers = vec![
            collect(out, "", lines.clone()),
            collect(err, "[stderr] ", lines.clone()),
        ];
        Script {
            name,
            child,
            lines,
            readers,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line starting with `prefix`, waiting up to `timeout`.
    fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        poll_until(timeout, Duration::from_millis(10), || {
            self.lines().into_iter().find(|l| l.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("{}: no line {prefix:?} within {timeout:?}", self.name))
    }

    /// Waits up to `timeout` for the exit; all lines once it exited.
    fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let st = poll_until(timeout, Duration::from_millis(20), || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|| panic!("{} did not finish within {timeout:?}", self.name));
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (st, self.lines())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} ----", self.name);
            for l in self.lines() {
                eprintln!("[{}] {l}", self.name);
            }
        }
    }
}

fn collect(
    src: impl Read + Send + 'static,
    prefix: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(src).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap().push(format!("{prefix}{line}"));
        }
    })
}

/// Fails (never skips) when python3 or its `websockets` module is missing.
fn require_websockets() {
    let out = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is needed ({e}): run .ci/prereqs, which installs it"));
    assert!(
        out.status.success(),
        "the Python `websockets` module (version 11 or later) is missing: run .ci/prereqs, which installs it ({})",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[test]
fn python_websockets_client_and_server_talk_through_the_pair() {
    require_websockets();
    let server = Script::spawn("ws_interop server", &["server"]);
    let port = server.wait_line("listening ", WAIT)["listening ".len()..].to_string();
    let upstream = format!("127.0.0.1:{port}").parse().expect("server port");
    let pair = PairBuilder::new(upstream)
        .name("ws_interop")
        .both("http.access_log", "true")
        .start();
    let uri = format!("ws://{}", pair.http_addr);
    let client = Script::spawn("ws_interop client", &["client", &uri]);
    let (st, lines) = client.finish(Duration::from_secs(60));
    assert!(st.success(), "the client exited {st:?}: {lines:#?}");
    for want in [
        "ok subprotocol chat",
        "ok extensions permessage-deflate",
        "ok text",
        "ok binary",
        "ok fragmented",
        "ok pong from the server",
        "ok pong to the server",
        "ok client close: sent 4001 'client says bye' rcvd 4001 'client says bye'",
        "ok server close: rcvd 4002 'server says bye' sent 4002 'server says bye'",
        "ok all",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want:?} in {lines:#?}");
    }
    // The upstream's view: the path and subprotocol of each connection, a pong to its ping,
    // each close handshake complete with the code and reason its starter chose.
    let opened = server.wait_line("server: path /interop/one ", WAIT);
    assert!(opened.contains("subprotocol chat"), "{opened}");
    assert!(opened.contains("permessage-deflate"), "{opened}");
    server.wait_line("server: pong ok", WAIT);
    server.wait_line("server: path /interop/two subprotocol chat", WAIT);
    server.wait_line(
        "server: closed rcvd 4001 'client says bye' sent 4001 'client says bye' rcvd_then_sent True",
        WAIT,
    );
    server.wait_line(
        "server: closed rcvd 4002 'server says bye' sent 4002 'server says bye' rcvd_then_sent False",
        WAIT,
    );
    // Each tunnel ended cleanly on both proxies: one access line each, status 101 / 200.
    for p in [&pair.client, &pair.server] {
        let ended = poll_until(WAIT, Duration::from_millis(20), || {
            (p.count_log("tunnel=websocket") == 2).then_some(())
        });
        assert!(ended.is_some(), "{}: two tunnel access lines", p.name());
    }
}
