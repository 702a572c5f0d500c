//! ptb-tools: what the benchmark binaries share: the WebSocket pieces (RFC 6455 framing, the
//! handshake's accept value with its SHA-1 and base64) and the bodies of the link-compression
//! benchmark (JSON, random bytes, their checksum); each binary is otherwise self-contained.

pub mod body;
pub mod ws;
