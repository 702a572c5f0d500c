//! SIGTERM/SIGINT into the event loop through a self-pipe: the handler only writes one byte
//! (async-signal-safe); the loop reads it as an ordinary readiness event.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
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
        for sig in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: the handler only performs an async-signal-safe write.
            unsafe {
                libc::signal(sig, on_signal as *const () as libc::sighandler_t);
            }
        }
        Ok(SignalPipe { read_fd: fds[0] })
    }

    /// Empties the pipe; true if at least one signal arrived.
    pub fn drain(&mut self) -> bool {
        let mut buf = [0u8; 64];
        let mut any = false;
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return any;
            }
            any = true;
        }
    }
}
