//! HTTP/1.x wire layer: pure, allocation-light parsing and serialization.
//!
//! Role: turn bytes read from an HTTP/1.1 peer into validated values and back,
//! with the strictness a request-smuggling-proof proxy needs. No IO happens
//! here; the connection code (`h1::conn`, elsewhere) owns the sockets and
//! buffers and calls into these functions.
//!
//! - [`head`]: request / response heads (`parse_request`, `parse_response`):
//!   httparse tokenizes them inside a strict layer (pre-scan, strict
//!   configuration, semantic checks; see its module doc), plus header lookup
//!   helpers, limits and [`ParseError`] (carrying the status to answer).
//! - [`body`]: message framing decisions (`request_framing`,
//!   `response_framing`), the incremental [`BodyDecoder`] and the
//!   [`BodyEncoder`].
//! - [`write`](mod@write): head serializers and canonical reason phrases.
//!
//! Invariants: nothing in this module panics on input-derived data, every
//! decoder is incremental (splitting the input anywhere gives the same
//! result), and every value the parsers return re-serializes to bytes the
//! parsers accept again as the same value.

pub mod body;
mod chunked;
pub mod head;
pub(crate) mod syntax;
#[cfg(test)]
mod testing;
pub mod write;

pub use body::{
    request_framing, response_framing, BodyDecoder, BodyEncoder, BodyEncoding, BodyError,
    BodyFraming,
};
pub use head::{
    parse_request, parse_response, Header, Limits, ParseError, RequestHead, ResponseHead, Version,
};
pub use write::{reason_phrase, write_request_head, write_response_head};
