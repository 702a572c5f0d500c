//! What both roles share to carry HTTP between HTTP/1.1 sockets and HTTP/3 streams: the TCP
//! connection with bounded buffers, header translation, the body pumps (one per direction)
//! and the synthesized answers.

pub mod answers;
pub mod buffer_pool;
pub mod compression;
pub mod headers;
pub mod pump;
pub mod stream;
pub mod tcp;
pub mod websocket;

/// Methods a client may repeat without changing the outcome (RFC 9110 §9.2.2): what either
/// role may send again after a connection or session died under the request.
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}
