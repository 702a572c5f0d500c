//! Signals into the event loop through a self-pipe: the handler only writes the signal number
//! as one byte (async-signal-safe); the loop reads it as an ordinary readiness event.
//! SIGTERM and SIGINT ask for a graceful stop, SIGHUP for a config reload.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM / SIGINT: stop gracefully (a second one: stop now).
    Terminate,
    /// SIGHUP: reload the config file.
    Reload,
}

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

pub struct SignalPipe {
    read_fd: RawFd,
}

impl SignalPipe {
    /// Creates the pipe, registers its read end and installs the handlers.
    pub fn install(registry: &Registry, token: Token) -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        registry.register(&mut SourceFd(&fds[0]), token, Interest::READABLE)?;
        WRITE_FD.store(fds[1], Ordering::Relaxed);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            // SAFETY: the handler only performs an async-signal-safe write.
            unsafe {
                libc::signal(sig, on_signal as *const () as libc::sighandler_t);
            }
        }
        Ok(SignalPipe { read_fd: fds[0] })
    }

    /// Empties the pipe and returns the signals that arrived, in order.
    pub fn drain(&mut self) -> Vec<Signal> {
        let mut buf = [0u8; 64];
        let mut out = Vec::new();
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            for &b in &buf[..n as usize] {
                out.push(if i32::from(b) == libc::SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Terminate
                });
            }
        }
    }
}
