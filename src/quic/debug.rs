//! Debugging aids for QUIC connections, off unless asked for:
//! - `SSLKEYLOGFILE` (environment): TLS secrets appended in NSS key log format, so a capture
//!   can be decrypted in Wireshark. Loudly logged at start-up: it defeats the encryption.
//! - `debug.qlog_dir` (config): one qlog (JSON-SEQ) trace per connection, for qvis.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Per-process debug settings applied to each new connection.
#[derive(Debug, Clone, Default)]
pub struct DebugTaps {
    keylog: Option<PathBuf>,
    qlog_dir: Option<PathBuf>,
}

/// The key log file named by `SSLKEYLOGFILE`, if any.
pub fn keylog_path() -> Option<PathBuf> {
    std::env::var_os("SSLKEYLOGFILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl DebugTaps {
    pub fn new(qlog_dir: Option<PathBuf>) -> Self {
        let keylog = keylog_path();
        if let Some(path) = &keylog {
            log::warn!(
                "SSLKEYLOGFILE is set: TLS secrets of every session go to {} (debugging only!)",
                path.display()
            );
        }
        if let Some(dir) = &qlog_dir {
            log::info!("qlog traces go to {}", dir.display());
        }
        DebugTaps { keylog, qlog_dir }
    }

    /// Attaches the key log and qlog writers to a new connection.
    pub fn attach(&self, conn: &mut quiche::Connection, role: &str) {
        if let Some(path) = &self.keylog {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => conn.set_keylog(Box::new(file)),
                Err(e) => log::warn!("SSLKEYLOGFILE {}: {e}", path.display()),
            }
        }
        if let Some(dir) = &self.qlog_dir {
            let id = conn.trace_id().to_string();
            match create_trace(dir, role, &id) {
                Ok(file) => conn.set_qlog(
                    Box::new(file),
                    format!("ptproxy {role}"),
                    format!("connection {id}"),
                ),
                Err(e) => log::warn!("qlog in {}: {e}", dir.display()),
            }
        }
    }
}

fn create_trace(dir: &Path, role: &str, id: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(dir.join(format!("{role}-{id}.sqlog")))
}
