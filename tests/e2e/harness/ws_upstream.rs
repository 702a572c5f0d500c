//! A WebSocket-speaking upstream for the tunnel tests: it reads an HTTP/1.1 upgrade request,
//! answers `101 Switching Protocols` with the RFC 6455 `Sec-WebSocket-Accept` for the key it
//! got (and the first offered subprotocol), then echoes every byte back until the proxy
//! half-closes, when it half-closes too. Other behaviours: push one big frame before echoing,
//! refuse the upgrade with a status, die with a TCP reset after echoing some bytes, or answer
//! an accept for another key. It records each request head, the connections it accepted and which of them saw the proxy's
//! FIN or reset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::accept::Acceptor;

/// What the upstream does with an upgrade request.
#[derive(Clone, Copy, Debug)]
pub enum WsBehaviour {
    /// 101, then echo until the proxy's FIN, then FIN.
    Echo,
    /// Answer with this status (a short text body) and close.
    Refuse(u16),
    /// 101, echo, and once this many bytes came, reset the connection (RST, no FIN).
    ResetAfter(usize),
    /// 101 with a `Sec-WebSocket-Accept` that does not match the key, then echo.
    WrongAccept,
    /// 101, then one binary server frame of this many [`pattern`](super::pattern) bytes
    /// (unmasked, RFC 6455 §5.1), then echo as [`WsBehaviour::Echo`].
    Push(usize),
}

struct State {
    behaviour: WsBehaviour,
    heads: Mutex<Vec<String>>,
    saw_fin: Mutex<Vec<usize>>,
    saw_reset: Mutex<Vec<usize>>,
    errors: Mutex<Vec<String>>,
    stop: Arc<AtomicBool>,
}

pub struct WsUpstream {
    state: Arc<State>,
    acceptor: Acceptor,
}

impl WsUpstream {
    /// Listens on 127.0.0.1:0.
    pub fn start(behaviour: WsBehaviour) -> WsUpstream {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            behaviour,
            heads: Mutex::new(Vec::new()),
            saw_fin: Mutex::new(Vec::new()),
            saw_reset: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            stop: stop.clone(),
        });
        let st = state.clone();
        let acceptor = Acceptor::start("ws-upstream", stop, move |s, id| {
            if let Err(e) = serve(s, id, &st) {
                st.errors.lock().unwrap().push(format!("conn#{id}: {e}"));
            }
        });
        WsUpstream { state, acceptor }
    }

    pub fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// Request heads read so far (lossy UTF-8, up to CRLFCRLF).
    pub fn heads(&self) -> Vec<String> {
        self.state.heads.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connection_count(&self) -> usize {
        self.acceptor.connection_count()
    }

    /// Whether connection `conn` (1-based) saw the proxy's FIN after the upgrade.
    pub fn saw_fin(&self, conn: usize) -> bool {
        self.state.saw_fin.lock().unwrap().contains(&conn)
    }

    /// Whether connection `conn` (1-based) was reset by the proxy after the upgrade.
    pub fn saw_reset(&self, conn: usize) -> bool {
        self.state.saw_reset.lock().unwrap().contains(&conn)
    }

    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }
}

impl Drop for WsUpstream {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- ws upstream {}: {} connections, errors {:?} ----",
                self.addr(),
                self.connection_count(),
                self.errors()
            );
            for h in self.heads() {
                eprintln!("{h}");
            }
        }
        self.acceptor.stop();
    }
}

/// The value of field `name` in a request head (case-insensitive name).
pub fn head_field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn serve(mut s: TcpStream, id: usize, st: &State) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let (head, rest) = read_head(&mut s)?;
    if st.stop.load(Ordering::SeqCst) || head.is_empty() {
        return Ok(());
    }
    st.heads.lock().unwrap().push(head.clone());
    let limit = match st.behaviour {
        WsBehaviour::Refuse(status) => {
            let body = "upgrade refused by the test upstream\n";
            let answer = format!(
                "HTTP/1.1 {status} Refused\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes())?;
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
        WsBehaviour::Echo | WsBehaviour::WrongAccept | WsBehaviour::Push(_) => None,
        WsBehaviour::ResetAfter(n) => Some(n),
    };
    let key = match st.behaviour {
        WsBehaviour::WrongAccept => "AAAAAAAAAAAAAAAAAAAAAA==",
        _ => head_field(&head, "sec-websocket-key").unwrap_or(""),
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_for(key)
    );
    if let Some(offered) = head_field(&head, "sec-websocket-protocol") {
        let first = offered.split(',').next().unwrap_or("").trim();
        answer.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
    }
    answer.push_str("\r\n");
    s.write_all(answer.as_bytes())?;
    if let WsBehaviour::Push(n) = st.behaviour {
        s.write_all(&server_frame_head(BINARY_OPCODE, n))?;
        s.write_all(&super::pattern::pattern(n))?;
    }
    let mut echoed = rest.len();
    s.write_all(&rest)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if limit.is_some_and(|l| echoed >= l) {
            reset(s);
            return Ok(());
        }
        let n = match s.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                st.saw_reset.lock().unwrap().push(id);
                return Ok(());
            }
            other => other?,
        };
        if n == 0 {
            st.saw_fin.lock().unwrap().push(id);
            s.shutdown(Shutdown::Write)?;
            return Ok(());
        }
        s.write_all(&buf[..n])?;
        echoed += n;
    }
}

const BINARY_OPCODE: u8 = 0x2;

/// The head of one final, unmasked server frame (RFC 6455 §5.2) of `len` payload bytes.
pub fn server_frame_head(opcode: u8, len: usize) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out
}

/// Reads up to and including CRLFCRLF; returns the head and the bytes read after it.
fn read_head(s: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&got).into_owned(), rest));
        }
        if got.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let n = super::read_some(s, &mut buf)?;
        if n == 0 {
            return Ok((String::new(), Vec::new()));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Closes with a TCP reset (SO_LINGER 0), never a FIN.
pub fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a properly sized, initialized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// RFC 6455 `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(ctx.finish().as_ref())
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
