//! Address validation after a NAT rebinding, done by ptproxy itself (RFC 9000 §8.2 in spirit):
//! the server sends a challenge datagram to the client's new address, and only the client of
//! that session can answer it, because the answer is keyed by the session's TLS exporter
//! secret. Both datagrams sit beside QUIC on the same sockets: their first byte is 0, which no
//! QUIC v1 packet has (the fixed bit 0x40 is always set), so quiche never sees them.
//!
//! Why not quiche's own path validation: quiche 0.30 keeps every path it ever validated (up to
//! `active_connection_id_limit`) and never evicts one still holding a connection ID, so after a
//! few rebindings it drops the packets of the next new address (see `server::peer_address`).
//!
//! Wire format: challenge = `CHALLENGE` tag, 16-byte nonce; response = `RESPONSE` tag, nonce,
//! first 16 bytes of HMAC-SHA256(exporter key, nonce).

use ring::hmac;

/// Nonce of one challenge.
pub type Nonce = [u8; 16];

const CHALLENGE: [u8; 4] = [0, b'p', b'v', b'c'];
const RESPONSE: [u8; 4] = [0, b'p', b'v', b'r'];
const TAG_LEN: usize = 16;
/// RFC 5705 exporter label: both ends derive the same key from the session's TLS secrets.
const EXPORTER_LABEL: &str = "EXPORTER-ptproxy-path-validation";

pub const CHALLENGE_LEN: usize = CHALLENGE.len() + 16;
pub const RESPONSE_LEN: usize = RESPONSE.len() + 16 + TAG_LEN;

/// True when `data` cannot be a QUIC v1 packet and is one of ours (or noise to drop).
pub fn is_ours(data: &[u8]) -> bool {
    data.first() == Some(&0)
}

pub fn challenge(nonce: &Nonce) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out[..CHALLENGE.len()].copy_from_slice(&CHALLENGE);
    out[CHALLENGE.len()..].copy_from_slice(nonce);
    out
}

/// The nonce of a challenge datagram.
pub fn parse_challenge(data: &[u8]) -> Option<Nonce> {
    let rest = data.strip_prefix(&CHALLENGE)?;
    rest.try_into().ok()
}

/// The answer to a challenge, keyed by this session; None before the handshake is done.
pub fn response(conn: &mut quiche::Connection, nonce: &Nonce) -> Option<[u8; RESPONSE_LEN]> {
    let key = session_key(conn)?;
    let tag = hmac::sign(&key, nonce);
    let mut out = [0u8; RESPONSE_LEN];
    out[..RESPONSE.len()].copy_from_slice(&RESPONSE);
    out[RESPONSE.len()..RESPONSE.len() + 16].copy_from_slice(nonce);
    out[RESPONSE.len() + 16..].copy_from_slice(&tag.as_ref()[..TAG_LEN]);
    Some(out)
}

/// The nonce a response datagram answers (not yet verified).
pub fn response_nonce(data: &[u8]) -> Option<Nonce> {
    let rest = data.strip_prefix(&RESPONSE)?;
    if rest.len() != 16 + TAG_LEN {
        return None;
    }
    rest[..16].try_into().ok()
}

/// True when `data` is this session's answer to `nonce`.
pub fn verify(conn: &mut quiche::Connection, nonce: &Nonce, data: &[u8]) -> bool {
    let (Some(key), Some(got)) = (session_key(conn), response_nonce(data)) else {
        return false;
    };
    got == *nonce && tag_matches(&key, nonce, &data[RESPONSE.len() + 16..])
}

/// ring verifies full-length tags only; ours is truncated, so compare in constant time here.
fn tag_matches(key: &hmac::Key, nonce: &Nonce, tag: &[u8]) -> bool {
    let full = hmac::sign(key, nonce);
    let expected = &full.as_ref()[..TAG_LEN];
    tag.len() == TAG_LEN
        && expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The HMAC key both ends derive from the session (TLS exporter), once the handshake is done.
fn session_key(conn: &mut quiche::Connection) -> Option<hmac::Key> {
    if !conn.is_established() {
        return None;
    }
    let mut secret = [0u8; 32];
    let ssl: &mut boring::ssl::SslRef = conn.as_mut();
    ssl.export_keying_material(&mut secret, EXPORTER_LABEL, None)
        .ok()?;
    Some(hmac::Key::new(hmac::HMAC_SHA256, &secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_round_trip_and_are_not_quic() {
        let nonce = [7u8; 16];
        let c = challenge(&nonce);
        assert!(is_ours(&c));
        assert_eq!(parse_challenge(&c), Some(nonce));
        assert_eq!(parse_challenge(&c[..CHALLENGE_LEN - 1]), None);
        assert_eq!(response_nonce(&c), None, "a challenge is no response");
        // Every QUIC v1 packet has the fixed bit set.
        assert!(!is_ours(&[0x40, 1, 2]) && !is_ours(&[0xc0, 0, 0, 0, 1]));
        assert!(!is_ours(&[]));
    }

    #[test]
    fn truncated_tags_compare_exactly() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let nonce = [1u8; 16];
        let tag = hmac::sign(&key, &nonce);
        let tag = &tag.as_ref()[..TAG_LEN];
        assert!(tag_matches(&key, &nonce, tag));
        let mut bad = tag.to_vec();
        bad[15] ^= 1;
        assert!(!tag_matches(&key, &nonce, &bad));
        assert!(!tag_matches(&key, &nonce, &tag[..15]));
        assert!(!tag_matches(&key, &[2u8; 16], tag));
    }
}
