//! ptb-tools: what the benchmark binaries share. Only the WebSocket pieces (RFC 6455 framing,
//! the handshake's accept value with its SHA-1 and base64) so far; each binary is otherwise
//! self-contained.

pub mod ws;
