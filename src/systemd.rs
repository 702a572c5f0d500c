//! systemd integration without a dependency: `sd_notify` messages written to the datagram
//! socket named by `NOTIFY_SOCKET` (READY, STOPPING, RELOADING, STATUS, WATCHDOG), and the
//! watchdog interval from `WATCHDOG_USEC`. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification (e.g. `"READY=1"`); silently does nothing outside systemd.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        send_abstract(&sock, name, state)
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
            .map(|_| ())
    };
    if let Err(e) = result {
        log::debug!("sd_notify {state:?}: {e}");
    }
}

/// Abstract socket names (leading '@' in NOTIFY_SOCKET) need the Linux socket address API.
fn send_abstract(sock: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

/// Half the watchdog interval systemd asked for, if it asked (`WatchdogSec=`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
