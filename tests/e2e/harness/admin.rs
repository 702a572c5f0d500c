//! The operator endpoint (`/metrics`, `/health`) seen from the tests: a free address for it,
//! GETs on it, and a Prometheus text scrape parsed enough to look samples up.

use super::http::HttpConn;
use super::{free_tcp_port, poll_until};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A free loopback address for a metrics endpoint, and its JSON (for `.client`/`.server`).
pub fn metrics_addr() -> (SocketAddr, String) {
    let a: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    (a, format!("\"{a}\""))
}

/// One `/metrics` answer, parsed enough to look samples up.
pub struct Scrape {
    pub text: String,
}

impl Scrape {
    /// Every sample of metric `name` as (label set text, e.g. `{code="2xx"}` or "", value).
    pub fn samples(&self, name: &str) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for line in self.text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (n, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n == name {
                let v = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().unwrap_or(f64::NAN),
                };
                out.push((labels.to_string(), v));
            }
        }
        out
    }

    /// The value of `name` with exactly the label set `labels` ("" for none).
    pub fn value(&self, name: &str, labels: &str) -> Option<f64> {
        self.samples(name)
            .into_iter()
            .find(|(l, _)| l == labels)
            .map(|(_, v)| v)
    }

    /// Like [`Self::value`] but panics (with the whole scrape) when missing.
    #[track_caller]
    pub fn get(&self, name: &str, labels: &str) -> f64 {
        match self.value(name, labels) {
            Some(v) => v,
            None => panic!(
                "metric {name}{labels} missing from the scrape:\n{}",
                self.text
            ),
        }
    }

    /// The only sample of `name` (whatever its labels); panics if there is not exactly one.
    #[track_caller]
    pub fn single(&self, name: &str) -> (String, f64) {
        let s = self.samples(name);
        assert_eq!(
            s.len(),
            1,
            "expected exactly one sample of {name}, got {s:?} in:\n{}",
            self.text
        );
        s.into_iter().next().unwrap()
    }
}

/// GET `path` on an operator endpoint: (status, content type, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut c = HttpConn::connect_timeout(addr, Duration::from_secs(3))?;
    let r = c.get(path)?;
    Ok((
        r.status(),
        r.header("content-type").unwrap_or_default().to_string(),
        r.body_str(),
    ))
}

#[track_caller]
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, kind, body) =
        admin_get(addr, "/metrics").unwrap_or_else(|e| panic!("GET /metrics on {addr}: {e}"));
    assert_eq!(status, 200, "GET /metrics on {addr}: {status}\n{body}");
    assert!(
        kind.starts_with("text/plain"),
        "GET /metrics on {addr}: content type {kind:?}"
    );
    Scrape { text: body }
}

/// Status of `GET /health`, or the I/O error as text.
pub fn health(addr: SocketAddr) -> Result<u16, String> {
    admin_get(addr, "/health")
        .map(|(s, _, _)| s)
        .map_err(|e| e.to_string())
}

/// Polls `/health` every 100 ms until it answers `want`; returns how long that took, or the
/// answers seen.
pub fn wait_health(addr: SocketAddr, want: u16, timeout: Duration) -> Result<Duration, String> {
    let t = Instant::now();
    let mut seen = Vec::new();
    let ok = poll_until(timeout, Duration::from_millis(100), || {
        let h = health(addr);
        if h == Ok(want) {
            return Some(());
        }
        if seen.last() != Some(&h) {
            seen.push(h);
        }
        None
    });
    match ok {
        Some(()) => Ok(t.elapsed()),
        None => Err(format!(
            "/health on {addr} did not answer {want} within {timeout:?}; distinct answers seen: {seen:?}"
        )),
    }
}

/// The value of the sample `series` (name with its labels, e.g. `x_total{reason="a"}`) in a
/// scrape of `addr`; `None` when it is missing or the endpoint does not answer (for polling).
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, _, body) = admin_get(addr, "/metrics").ok()?;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}
