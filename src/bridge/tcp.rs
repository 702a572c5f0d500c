//! A non-blocking TCP connection carrying HTTP/1.1, with bounded input and output buffers and
//! remembered readiness (mio is edge-triggered: a socket we stopped reading because our buffer
//! was full reports nothing new until we drain it, so the flags keep what the last edge said).
//!
//! Backpressure lives here: [`TcpConn::fill`] never grows the input past [`READ_CAP`] and callers
//! stop producing output once [`TcpConn::write_room`] is zero, so memory per connection is bounded
//! whatever the body size or the peer's speed. The output bound counts the whole output buffer,
//! the sent prefix not compacted away yet included, so the buffer never holds more than
//! [`WRITE_CAP`] plus one producer's last step; [`TcpConn::flush`] compacts once the sent prefix
//! is at least half the buffer, so each byte is moved at most once on average.
//!
//! Per request it costs as few system calls and copies as it can: a read that returns less than
//! it asked for emptied the socket (a later byte raises a new edge), so no read ends in
//! `EAGAIN` after it (unless the edge also reported the peer's FIN, which only a read returning
//! 0 shows); the input buffer's bytes are initialized once, not before each read; and
//! buffers a connection releases when it goes idle come from and return to
//! [`super::buffer_pool`].

use std::io::{self, Read, Write};

/// Most unread input bytes kept per connection.
pub const READ_CAP: usize = 64 * 1024;
/// Output queued per connection before producers must wait.
pub const WRITE_CAP: usize = 256 * 1024;
const READ_CHUNK: usize = super::buffer_pool::INPUT_LEN;

pub struct TcpConn {
    pub stream: mio::net::TcpStream,
    /// Received bytes not consumed yet are `buf[..filled]`; the rest is initialized room.
    buf: Vec<u8>,
    filled: usize,
    /// Bytes received since the connection opened.
    pub received: u64,
    output: Vec<u8>,
    output_sent: usize,
    readable: bool,
    /// The peer's FIN (or an error) was reported: read on until EOF, short reads included.
    read_closed: bool,
    writable: bool,
    /// The peer finished sending (read returned 0).
    pub eof: bool,
    /// Reading failed (reset by the peer, ...): no more input will come.
    pub read_failed: Option<io::Error>,
    /// Writing failed (the peer is gone): queued and future output is discarded. Input that
    /// already arrived can still be read, e.g. an upstream's early answer.
    pub write_failed: Option<io::Error>,
}

impl TcpConn {
    pub fn new(stream: mio::net::TcpStream) -> Self {
        TcpConn {
            stream,
            buf: Vec::new(),
            filled: 0,
            received: 0,
            output: Vec::new(),
            output_sent: 0,
            readable: true,
            read_closed: false,
            writable: true,
            eof: false,
            read_failed: None,
            write_failed: None,
        }
    }

    /// Records a readiness event.
    pub fn on_event(&mut self, event: &mio::event::Event) {
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.read_closed |= event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }

    /// Reads while the socket has data and the input buffer has room. Returns whether any byte
    /// (or EOF) arrived.
    pub fn fill(&mut self) -> bool {
        let mut progress = false;
        while self.readable && !self.eof && self.read_failed.is_none() && self.filled < READ_CAP {
            let want = READ_CHUNK.min(READ_CAP - self.filled);
            self.make_room(want);
            let result = self
                .stream
                .read(&mut self.buf[self.filled..self.filled + want]);
            match result {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.filled += n;
                    self.received += n as u64;
                    progress = true;
                    // A short read emptied the socket: the next byte raises a new edge. Not
                    // so for a FIN that came with the same edge: read on to see the EOF.
                    self.readable = n == want || self.read_closed;
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => self.readable = false,
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        self.read_failed = Some(e);
                        progress = true;
                    }
                },
            }
        }
        progress
    }

    /// Initialized room for `want` more input bytes after what is held.
    fn make_room(&mut self, want: usize) {
        if self.buf.is_empty() {
            self.buf = super::buffer_pool::take_input();
        }
        let needed = self.filled + want;
        if self.buf.len() < needed {
            self.buf.resize(needed, 0);
        }
    }

    /// Received bytes not consumed yet.
    pub fn input(&self) -> &[u8] {
        &self.buf[..self.filled]
    }

    /// Drops `n` consumed bytes from the front of the input.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.filled);
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// Queues bytes to send (callers respect [`TcpConn::write_room`] for bodies).
    pub fn queue(&mut self, bytes: &[u8]) {
        if self.write_failed.is_none() {
            self.output_mut().extend_from_slice(bytes);
        }
    }

    /// No more input (EOF or a read error).
    pub fn input_ended(&self) -> bool {
        self.eof || self.read_failed.is_some()
    }

    /// Either direction failed.
    pub fn is_broken(&self) -> bool {
        self.read_failed.is_some() || self.write_failed.is_some()
    }

    /// Direct access to the output queue, for encoders that append in place.
    pub fn output_mut(&mut self) -> &mut Vec<u8> {
        if self.output.capacity() == 0 {
            self.output = super::buffer_pool::take_output();
        }
        &mut self.output
    }

    /// How many more output bytes producers may queue now: the buffer's whole length counts,
    /// sent bytes not compacted away yet included, so the buffer itself stays within the cap.
    pub fn write_room(&self) -> usize {
        WRITE_CAP.saturating_sub(self.output.len())
    }

    pub fn pending_output(&self) -> usize {
        self.output.len() - self.output_sent
    }

    /// Writes queued output while the socket accepts it. Returns whether any byte left.
    pub fn flush(&mut self) -> bool {
        let mut progress = false;
        while self.writable && self.write_failed.is_none() && self.output_sent < self.output.len() {
            match self.stream.write(&self.output[self.output_sent..]) {
                Ok(0) => {
                    self.write_failed = Some(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    self.output_sent += n;
                    progress = true;
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => self.writable = false,
                    io::ErrorKind::Interrupted => {}
                    _ => self.write_failed = Some(e),
                },
            }
        }
        if self.output_sent == self.output.len() || self.write_failed.is_some() {
            self.output.clear();
            self.output_sent = 0;
        } else if self.output_sent > 0 && self.output_sent >= self.output.len() / 2 {
            // The unsent tail moved is no longer than the prefix sent since the last compaction.
            self.output.drain(..self.output_sent);
            self.output_sent = 0;
        }
        progress
    }

    /// Gives the buffers' memory back when they hold nothing: for a connection going idle,
    /// which would otherwise keep up to [`READ_CAP`] + [`WRITE_CAP`] of capacity from its
    /// last exchange for as long as it stays open.
    pub fn release_buffers(&mut self) {
        if self.filled == 0 && self.buf.capacity() > 0 {
            super::buffer_pool::give_input(std::mem::take(&mut self.buf));
        }
        if self.pending_output() == 0 && self.output.capacity() > 0 {
            super::buffer_pool::give_output(std::mem::take(&mut self.output));
            self.output_sent = 0;
        }
    }

    /// Bytes of buffer memory held (input and output capacity).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity() + self.output.capacity()
    }

    /// Whether the connect() of an outgoing connection finished, and how.
    pub fn connect_result(&mut self) -> Option<io::Result<()>> {
        if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
            return Some(Err(e));
        }
        match self.stream.peer_addr() {
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        }
    }
}

impl crate::bridge::pump::H1Buffers for TcpConn {
    fn input(&self) -> &[u8] {
        TcpConn::input(self)
    }
    fn consume(&mut self, n: usize) {
        TcpConn::consume(self, n);
    }
    fn input_ended(&self) -> bool {
        TcpConn::input_ended(self)
    }
    fn write_room(&self) -> usize {
        TcpConn::write_room(self)
    }
    fn output(&mut self) -> &mut Vec<u8> {
        self.output_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A connected pair over loopback: ours (non-blocking, mio) and the peer's.
    fn pair() -> (TcpConn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let peer = std::net::TcpStream::connect(addr).expect("connect");
        let (ours, _) = listener.accept().expect("accept");
        ours.set_nonblocking(true).expect("non-blocking");
        (TcpConn::new(mio::net::TcpStream::from_std(ours)), peer)
    }

    /// Waits (at most 5 s) until the peer's FIN has arrived on `stream`.
    fn wait_for_fin(stream: &mio::net::TcpStream) {
        use std::os::fd::AsRawFd;
        let mut fds = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, 5000) };
        assert_eq!(ready, 1, "the FIN arrived");
    }

    #[test]
    fn a_short_read_waits_for_the_next_edge_instead_of_reading_again() {
        let (mut conn, mut peer) = pair();
        peer.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .expect("peer writes");
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.input().is_empty() && Instant::now() < deadline {
            conn.readable = true;
            conn.fill();
        }
        assert_eq!(conn.input(), b"GET / HTTP/1.1\r\n\r\n");
        assert!(
            !conn.readable,
            "the socket is known empty: no read ending in EAGAIN"
        );
        // What the next edge brings is read then, after what came first.
        peer.write_all(b"more").expect("peer writes");
        while conn.input().len() < 22 && Instant::now() < deadline {
            conn.readable = true;
            conn.fill();
        }
        assert_eq!(&conn.input()[18..], b"more");
        conn.consume(18);
        assert_eq!(conn.input(), b"more");
        // Data and the FIN in one edge: the short read is not the end, the EOF is read too.
        peer.write_all(b"last").expect("peer writes");
        peer.shutdown(std::net::Shutdown::Write).expect("FIN");
        wait_for_fin(&conn.stream);
        conn.readable = true;
        conn.read_closed = true;
        conn.fill();
        assert_eq!((conn.input(), conn.eof), (&b"morelast"[..], true));
    }

    #[test]
    fn an_idle_connection_gives_its_buffer_memory_back() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&vec![7u8; 40_000]).expect("peer writes");
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.input().len() < 40_000 && Instant::now() < deadline {
            conn.readable = true;
            conn.fill();
        }
        conn.queue(&vec![1u8; 200_000]);
        assert!(conn.buffer_capacity() >= 240_000);
        // Still holding data: nothing is released.
        conn.release_buffers();
        assert!(conn.buffer_capacity() >= 240_000);
        conn.consume(conn.input().len());
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut sink = vec![0u8; 64 * 1024];
        let mut read = 0;
        while conn.pending_output() > 0 && Instant::now() < deadline {
            conn.writable = true;
            conn.flush();
            read += peer.read(&mut sink).expect("peer reads");
        }
        while read < 200_000 && Instant::now() < deadline {
            read += peer.read(&mut sink).expect("peer reads");
        }
        assert_eq!((conn.pending_output(), read), (0, 200_000));
        // Drained (the state of a keep-alive connection between requests): released.
        assert!(conn.buffer_capacity() > 0, "capacity kept until released");
        conn.release_buffers();
        assert_eq!(conn.buffer_capacity(), 0);
    }

    /// A producer step as the body pumps make them: a whole frame once there is any room, so
    /// it may overshoot the room by less than one step.
    const PRODUCER_STEP: usize = 16 * 1024;

    /// A peer reading slowly: every cycle the producer fills the room, we flush what the
    /// socket takes, the peer reads a little. The output buffer never holds more than
    /// `WRITE_CAP` plus one producer step (before, the sent prefix was compacted only past
    /// `WRITE_CAP` bytes while the room counted only unsent bytes: about twice `WRITE_CAP`).
    #[test]
    fn the_output_buffer_stays_within_its_cap_under_a_slow_reader() {
        let (mut conn, mut peer) = pair();
        // Small fixed socket buffers: the slow phase starts after a few hundred KiB.
        socket2::SockRef::from(&conn.stream)
            .set_send_buffer_size(64 * 1024)
            .expect("SO_SNDBUF");
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(64 * 1024)
            .expect("SO_RCVBUF");
        peer.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut queued, mut read, mut peak) = (0usize, 0usize, 0usize);
        let mut sink = vec![0u8; 8 * 1024];
        for _ in 0..1_500 {
            assert!(Instant::now() < deadline, "the cycles took too long");
            while conn.write_room() > 0 {
                conn.queue(&[b'x'; PRODUCER_STEP]);
                queued += PRODUCER_STEP;
            }
            peak = peak.max(conn.output.len());
            conn.writable = true;
            conn.flush();
            read += peer.read(&mut sink).expect("peer reads");
        }
        assert!(
            read > 4 * WRITE_CAP,
            "the peer read only {read} bytes: the slow phase was not reached"
        );
        assert!(queued > read, "the producer was never held back");
        assert!(
            peak < WRITE_CAP + PRODUCER_STEP,
            "output buffer peaked at {peak} bytes, over WRITE_CAP ({WRITE_CAP}) + one step"
        );
    }
}
