//! What both roles share to carry HTTP between HTTP/1.1 sockets and HTTP/3 streams: the TCP
//! connection with bounded buffers, header translation, the body pumps (one per direction)
//! and the synthesized answers.

pub mod answers;
pub mod headers;
pub mod pump;
pub mod stream;
pub mod tcp;
