//! Guard around one ptproxy process: spawn with `--role R CONFIG`, capture
//! stdout/stderr lines (kept for diagnostics), wait for log lines, kill on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    cv: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.cv.notify_all();
    }
}

pub struct Proxy {
    name: String,
    role: Role,
    config: PathBuf,
    env: Vec<(String, String)>,
    child: Mutex<Option<Child>>,
    readers: Vec<JoinHandle<()>>,
    log: Arc<Log>,
    /// Index of the first log line of the current process instance.
    start_mark: usize,
    spawns: usize,
}

/// Default RUST_LOG for the proxies: `info`, or PTPROXY_E2E_RUST_LOG.
pub fn default_rust_log() -> String {
    std::env::var("PTPROXY_E2E_RUST_LOG").unwrap_or_else(|_| "info".to_string())
}

impl Proxy {
    /// Prepares (does not start) a proxy.
    pub fn new(name: &str, role: Role, config: &Path) -> Proxy {
        Proxy {
            name: name.to_string(),
            role,
            config: config.to_path_buf(),
            env: vec![
                ("RUST_LOG".into(), default_rust_log()),
                ("RUST_LOG_STYLE".into(), "never".into()),
            ],
            child: Mutex::new(None),
            readers: Vec::new(),
            log: Arc::new(Log::default()),
            start_mark: 0,
            spawns: 0,
        }
    }

    /// Sets (or overrides) an environment variable of the process.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.to_string(), v.to_string()));
    }

    /// Starts `--role R CONFIG`.
    pub fn spawn(name: &str, role: Role, config: &Path) -> Proxy {
        let mut p = Proxy::new(name, role, config);
        p.start();
        p
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Starts the process (must not be running).
    pub fn start(&mut self) {
        assert!(!self.is_running(), "{}: start() while running", self.name);
        self.join_readers();
        let mut cmd = Command::new(super::ptproxy_bin());
        cmd.arg("--role").arg(self.role.as_str()).arg(&self.config);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "{}: cannot spawn {}: {e}",
                self.name,
                super::ptproxy_bin().display()
            )
        });
        {
            let mut lines = self.log.lines.lock().unwrap();
            if self.spawns > 0 {
                lines.push(format!(
                    "[harness] ---- {} restarted (pid {}) ----",
                    self.name,
                    child.id()
                ));
            }
            self.start_mark = lines.len();
        }
        self.spawns += 1;
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        self.readers
            .push(reader(self.log.clone(), out, "[stdout] "));
        self.readers.push(reader(self.log.clone(), err, ""));
        *self.child.lock().unwrap() = Some(child);
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id())
    }

    /// Exit status if the current process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&self) -> bool {
        let mut g = self.child.lock().unwrap();
        match g.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// SIGKILL and reap (no-op if not running).
    pub fn kill(&mut self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            let _ = c.kill();
            let st = c.wait();
            self.join_readers();
            self.log.push(format!(
                "[harness] ---- {} killed ({:?}) ----",
                self.name, st
            ));
        }
    }

    /// Kill and start again with the same config (so the same ports).
    pub fn restart(&mut self) {
        self.kill();
        self.start();
    }

    /// Peak resident set size (VmHWM) of the running process, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:")
    }

    /// Current resident set size (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmRSS:")
    }

    /// All captured lines (all instances).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Number of captured lines so far (a mark for [`Self::wait_for_log_since`]).
    pub fn log_len(&self) -> usize {
        self.log.lines.lock().unwrap().len()
    }

    /// Number of captured lines (all instances) containing `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Number of lines of the current instance containing `needle`.
    pub fn count_log_current(&self, needle: &str) -> usize {
        self.log.lines.lock().unwrap()[self.start_mark..]
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits for a line of the current process instance containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_log_since(self.start_mark, needle, timeout)
    }

    /// Waits for a line with index >= `mark` containing `needle`. Fails early
    /// if the process exits.
    pub fn wait_for_log_since(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        let mut scanned = mark;
        let mut exited_at: Option<Instant> = None;
        loop {
            if let Some(l) = lines.iter().skip(scanned).find(|l| l.contains(needle)) {
                return Ok(l.clone());
            }
            scanned = lines.len().max(mark);
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{}: no log line containing {needle:?} within {timeout:?}",
                    self.name
                ));
            }
            if let Some(t) = exited_at {
                // give the reader threads a moment to deliver the last lines
                if now >= t + Duration::from_millis(300) {
                    return Err(format!(
                        "{}: process exited ({:?}) without logging {needle:?}",
                        self.name,
                        self.exit_status()
                    ));
                }
            }
            let (g, _) = self
                .log
                .cv
                .wait_timeout(lines, (deadline - now).min(Duration::from_millis(100)))
                .unwrap();
            lines = g;
            if exited_at.is_none() {
                drop(lines);
                if !self.is_running() {
                    exited_at = Some(Instant::now());
                }
                lines = self.log.lines.lock().unwrap();
            }
        }
    }

    /// Like [`Self::wait_for_log`] but panics (logs are dumped by Drop).
    #[track_caller]
    pub fn expect_log(&self, needle: &str, timeout: Duration) -> String {
        match self.wait_for_log(needle, timeout) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// Prints the captured output to stderr (the test's captured output).
    pub fn dump_log(&self) {
        let lines = self.log.lines.lock().unwrap();
        let cfg = std::fs::read_to_string(&self.config).unwrap_or_default();
        eprintln!(
            "==== {} ({} {}) config {}:\n{}",
            self.name,
            super::ptproxy_bin().display(),
            self.role.as_str(),
            self.config.display(),
            cfg
        );
        eprintln!(
            "==== {} captured output ({} lines) ====",
            self.name,
            lines.len()
        );
        const HEAD: usize = 100;
        const TAIL: usize = 400;
        for (i, l) in lines.iter().enumerate() {
            if lines.len() > HEAD + TAIL && i == HEAD {
                eprintln!(
                    "[{}] ... {} lines omitted ...",
                    self.name,
                    lines.len() - HEAD - TAIL
                );
            }
            if i < HEAD || i + TAIL >= lines.len() {
                eprintln!("[{}] {}", self.name, l);
            }
        }
        eprintln!("==== end of {} ====", self.name);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.kill();
        if panicking {
            self.dump_log();
        }
    }
}

fn reader(log: Arc<Log>, src: impl Read + Send + 'static, prefix: &'static str) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let s = String::from_utf8_lossy(&buf);
                    log.push(format!("{prefix}{}", s.trim_end_matches(['\n', '\r'])));
                }
            }
        }
    })
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
