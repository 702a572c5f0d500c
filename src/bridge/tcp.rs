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

use std::io::{self, Read, Write};

/// Most unread input bytes kept per connection.
pub const READ_CAP: usize = 64 * 1024;
/// Output queued per connection before producers must wait.
pub const WRITE_CAP: usize = 256 * 1024;
const READ_CHUNK: usize = 16 * 1024;

pub struct TcpConn {
    pub stream: mio::net::TcpStream,
    /// Received bytes not consumed yet.
    pub input: Vec<u8>,
    /// Bytes received since the connection opened.
    pub received: u64,
    output: Vec<u8>,
    output_sent: usize,
    readable: bool,
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
            input: Vec::new(),
            received: 0,
            output: Vec::new(),
            output_sent: 0,
            readable: true,
            writable: true,
            eof: false,
            read_failed: None,
            write_failed: None,
        }
    }

    /// Records a readiness event.
    pub fn on_event(&mut self, event: &mio::event::Event) {
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
    }

    /// Reads while the socket has data and the input buffer has room. Returns whether any byte
    /// (or EOF) arrived.
    pub fn fill(&mut self) -> bool {
        let mut progress = false;
        while self.readable
            && !self.eof
            && self.read_failed.is_none()
            && self.input.len() < READ_CAP
        {
            let start = self.input.len();
            let want = READ_CHUNK.min(READ_CAP - start);
            self.input.resize(start + want, 0);
            let result = self.stream.read(&mut self.input[start..]);
            match result {
                Ok(0) => {
                    self.input.truncate(start);
                    self.eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.input.truncate(start + n);
                    self.received += n as u64;
                    progress = true;
                }
                Err(e) => {
                    self.input.truncate(start);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => self.readable = false,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            self.read_failed = Some(e);
                            progress = true;
                        }
                    }
                }
            }
        }
        progress
    }

    /// Drops `n` consumed bytes from the front of the input.
    pub fn consume(&mut self, n: usize) {
        self.input.drain(..n.min(self.input.len()));
    }

    /// Queues bytes to send (callers respect [`TcpConn::write_room`] for bodies).
    pub fn queue(&mut self, bytes: &[u8]) {
        if self.write_failed.is_none() {
            self.output.extend_from_slice(bytes);
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
        if self.input.is_empty() && self.input.capacity() > 0 {
            self.input = Vec::new();
        }
        if self.pending_output() == 0 && self.output.capacity() > 0 {
            self.output = Vec::new();
            self.output_sent = 0;
        }
    }

    /// Bytes of buffer memory held (input and output capacity).
    pub fn buffer_capacity(&self) -> usize {
        self.input.capacity() + self.output.capacity()
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
        &self.input
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

    #[test]
    fn an_idle_connection_gives_its_buffer_memory_back() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&vec![7u8; 40_000]).expect("peer writes");
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.input.len() < 40_000 && Instant::now() < deadline {
            conn.readable = true;
            conn.fill();
        }
        conn.queue(&vec![1u8; 200_000]);
        assert!(conn.buffer_capacity() >= 240_000);
        // Still holding data: nothing is released.
        conn.release_buffers();
        assert!(conn.buffer_capacity() >= 240_000);
        conn.consume(conn.input.len());
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
