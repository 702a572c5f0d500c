//! `exchange` scripts built on purpose: a builder for the input layout of
//! [`crate::exchange`], the corpus seeds (the main paths of each role), and seeded random
//! scripts for the stable-Rust smoke test in `tests/fuzz_replay.rs`.

/// An `exchange` input under construction (opcodes as in `exchange_server` /
/// `exchange_client`).
pub struct Script(Vec<u8>);

impl Script {
    /// The server role; `a` and `length` as in `exchange_server`.
    pub fn server(a: u8, length: u8) -> Self {
        Script(vec![0, a, length])
    }
    /// The client role; `a` as in `exchange_client`.
    pub fn client(a: u8) -> Self {
        Script(vec![1, a, 0])
    }
    /// One opcode and its arguments.
    pub fn op(&mut self, op: &[u8]) -> &mut Self {
        self.0.extend_from_slice(op);
        self
    }
    /// An opcode taking `k bytes` (server 0 / 7, client 1 / 5), in ops of at most 255 bytes.
    pub fn bytes(&mut self, opcode: u8, bytes: &[u8]) -> &mut Self {
        for piece in bytes.chunks(255) {
            self.0.extend_from_slice(&[opcode, piece.len() as u8]);
            self.0.extend_from_slice(piece);
        }
        self
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

// Server opcodes.
const S_BODY: u8 = 0;
const S_END: u8 = 2;
const S_TRAILERS: u8 = 3;
const S_RESET: u8 = 4;
const S_CONNECT: u8 = 5;
const S_RESPONSE: u8 = 6;
const S_CLOSE: u8 = 8;
const S_CAP: u8 = 9;
const S_READS: u8 = 10;
const S_BLOCK: u8 = 11;
const S_LARGE: u8 = 13;

// Client opcodes.
const C_REQUEST: u8 = 0;
const C_EOF: u8 = 2;
const C_SESSION: u8 = 3;
const C_HEAD: u8 = 4;
const C_BODY: u8 = 5;
const C_END: u8 = 6;
const C_RESET: u8 = 7;
const C_LOST: u8 = 8;
const C_CAP: u8 = 9;
const C_READ: u8 = 10;
const C_LARGE: u8 = 12;

/// The seeds of `fuzz/corpus/exchange/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Server: a GET answered 200 on a fresh connection.
        (
            "seed-server-get-200",
            Script::server(0, 0)
                .op(&[S_CONNECT, 0, S_RESPONSE, 0])
                .to_bytes(),
        ),
        // A POST with a Content-Length body, then trailers, answered chunked with trailers.
        (
            "seed-server-post-chunked",
            Script::server(2 | 8 | 16, 5)
                .op(&[S_CONNECT, 0])
                .bytes(S_BODY, b"hello")
                .op(&[S_END, S_RESPONSE, 3, S_RESPONSE, 5])
                .to_bytes(),
        ),
        // A chunked request body with trailers on a reused connection, answered 204.
        (
            "seed-server-trailers",
            Script::server(3 | 8 | 32, 0)
                .bytes(S_BODY, b"abc")
                .op(&[S_TRAILERS, 0, S_END, S_RESPONSE, 1])
                .to_bytes(),
        ),
        // The upstream cuts the body short and closes: a reset, never a clean FIN.
        (
            "seed-server-truncated",
            Script::server(0, 0)
                .op(&[S_CONNECT, 0, S_RESPONSE, 4, S_CLOSE])
                .to_bytes(),
        ),
        // Chunked without its last chunk, then closed.
        (
            "seed-server-chunked-cut",
            Script::server(32, 0)
                .op(&[S_RESPONSE, 6, S_CLOSE])
                .to_bytes(),
        ),
        // The connect hangs: 504 at the connect timeout.
        (
            "seed-server-connect-timeout",
            Script::server(0, 0).op(&[S_LARGE, 1]).to_bytes(),
        ),
        // The connect fails: 502.
        (
            "seed-server-connect-fails",
            Script::server(0, 0).op(&[S_CONNECT, 1]).to_bytes(),
        ),
        // A malformed response head: 502.
        (
            "seed-server-malformed",
            Script::server(32, 0).op(&[S_RESPONSE, 10]).to_bytes(),
        ),
        // The stream is blocked: the 504 cannot leave, the stream is reset.
        (
            "seed-server-blocked-504",
            Script::server(0, 0)
                .op(&[S_BLOCK, 1, S_LARGE, 1, S_LARGE, 1])
                .to_bytes(),
        ),
        // The upstream stops reading a request body after a complete response.
        (
            "seed-server-stalled-upload",
            Script::server(2 | 8 | 32, 0)
                .op(&[S_READS, 0, S_CAP, 10])
                .bytes(S_BODY, &[b'x'; 200])
                .op(&[S_RESPONSE, 0, S_LARGE, 1])
                .to_bytes(),
        ),
        // A reused connection closes before any byte: retried on a fresh one.
        (
            "seed-server-retry",
            Script::server(32, 0)
                .op(&[S_CLOSE, S_CONNECT, 0, S_RESPONSE, 2, S_RESPONSE, 0])
                .to_bytes(),
        ),
        // The peer resets the stream mid-response.
        (
            "seed-server-peer-reset",
            Script::server(32, 0)
                .op(&[S_RESPONSE, 7, S_RESET])
                .to_bytes(),
        ),
        // An invalid request (no method): 400.
        ("seed-server-bad-request", Script::server(5, 0).to_bytes()),
        // Client: a GET answered 200.
        (
            "seed-client-get-200",
            Script::client(0)
                .op(&[C_REQUEST, 0, C_HEAD, 0, 1])
                .bytes(C_BODY, b"hello")
                .op(&[C_END, C_READ])
                .to_bytes(),
        ),
        // A POST body, answered 204, then a second request on the same connection.
        (
            "seed-client-keep-alive",
            Script::client(0)
                .op(&[
                    C_REQUEST, 1, C_HEAD, 2, 0, C_REQUEST, 0, C_HEAD, 4, 0, C_READ,
                ])
                .to_bytes(),
        ),
        // The peer's body ends short of its length: the connection is reset.
        (
            "seed-client-truncated",
            Script::client(0)
                .op(&[C_REQUEST, 0, C_HEAD, 6, 1])
                .bytes(C_BODY, b"short")
                .op(&[C_END])
                .to_bytes(),
        ),
        // No session: 503 at the session wait.
        (
            "seed-client-no-session",
            Script::client(1).op(&[C_REQUEST, 0, C_LARGE, 1]).to_bytes(),
        ),
        // The session refuses streams (Streams), then fails.
        (
            "seed-client-refused",
            Script::client(0)
                .op(&[C_SESSION, 3, C_REQUEST, 0, C_SESSION, 4])
                .to_bytes(),
        ),
        // 103s to a client that does not read, then the final response.
        (
            "seed-client-103",
            Script::client(0)
                .op(&[
                    C_CAP, 0, C_REQUEST, 0, C_HEAD, 3, 1, C_HEAD, 3, 1, C_HEAD, 0, 1,
                ])
                .bytes(C_BODY, b"hello")
                .op(&[C_END, C_CAP, 255, C_READ])
                .to_bytes(),
        ),
        // The peer resets the stream mid-body, and before the head.
        (
            "seed-client-reset",
            Script::client(0)
                .op(&[C_REQUEST, 0, C_HEAD, 1, 1])
                .bytes(C_BODY, b"part")
                .op(&[C_RESET, C_REQUEST, 0, C_RESET])
                .to_bytes(),
        ),
        // The session is lost under an idempotent GET: sent again on the next session.
        (
            "seed-client-session-lost",
            Script::client(0)
                .op(&[C_REQUEST, 0, C_LOST, C_SESSION, 0, C_HEAD, 2, 0, C_READ])
                .to_bytes(),
        ),
        // A request body that stops arriving: 408; a client EOF inside a head: 400.
        (
            "seed-client-body-stall",
            Script::client(0).op(&[C_REQUEST, 3, C_LARGE, 1]).to_bytes(),
        ),
        (
            "seed-client-eof-in-head",
            Script::client(0).op(&[C_REQUEST, 9, C_EOF]).to_bytes(),
        ),
        // An HTTP/1.0 request, answered until the close.
        (
            "seed-client-http10",
            Script::client(0)
                .op(&[C_REQUEST, 4, C_HEAD, 1, 1])
                .bytes(C_BODY, b"all of it")
                .op(&[C_END, C_READ])
                .to_bytes(),
        ),
    ]
}

/// A deterministic random `exchange` script (xorshift64 from `seed`): either role, up to 48
/// ops with arguments and raw bytes biased toward the vocabularies.
pub fn random(seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = vec![(next() % 2) as u8, next() as u8, next() as u8];
    let ops = 1 + next() % 48;
    for _ in 0..ops {
        let op = (next() % 16) as u8;
        out.push(op);
        let raw = if out[0] == 0 {
            matches!(op, 0 | 7)
        } else {
            matches!(op, 1 | 5)
        };
        let k = (next() % 24) as u8;
        if raw {
            out.push(k);
            let text: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc0\r\n";
            for _ in 0..k {
                let r = next();
                out.push(if r % 3 == 0 {
                    r as u8
                } else {
                    text[(r as usize >> 8) % text.len()]
                });
            }
        } else {
            // Small arguments most of the time (the clock steps stay short).
            for _ in 0..2 {
                let r = next();
                out.push(if r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    (r >> 8) as u8 % 8
                });
            }
        }
    }
    out
}
