//! Retry tokens (RFC 9000 §8.1.2): stateless proof that a client receives at the address it
//! claims. The token carries the client's original destination CID and an expiry time, and an
//! HMAC over those, the client's address (IP and port) and the CID the Retry told the client
//! to use; the key derives from the server's TLS key, so every process of a `SO_REUSEPORT` group
//! and a restarted server accept each other's tokens, and nobody else can make one.
//!
//! Layout: version (1) | expiry, Unix seconds (8, big endian) | ODCID length (1) | ODCID |
//! tag (32).

use std::net::{IpAddr, SocketAddr};

use ring::hmac;

const VERSION: u8 = 1;
/// The whole HMAC-SHA256 tag (so `hmac::verify` compares it in constant time).
const TAG_LEN: usize = 32;
const HEAD_LEN: usize = 1 + 8 + 1;
/// Longest connection ID QUIC v1 allows.
const MAX_CID_LEN: usize = 20;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// Made for another address or CID, or not by us.
    Forged,
    Expired,
}

pub struct TokenKey(hmac::Key);

impl TokenKey {
    /// The token key of a server whose TLS private key (PEM) is `tls_key`.
    pub fn from_tls_key(tls_key: &[u8]) -> Self {
        let secret = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"ptproxy retry token v1"),
            tls_key,
        );
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()))
    }

    /// A token for a client at `addr` whose first Initial went to `odcid`, told by the Retry to
    /// use `retry_scid`, valid until `expiry` (Unix seconds).
    pub fn mint(&self, addr: SocketAddr, odcid: &[u8], retry_scid: &[u8], expiry: u64) -> Vec<u8> {
        let odcid = &odcid[..odcid.len().min(MAX_CID_LEN)];
        let mut token = Vec::with_capacity(HEAD_LEN + odcid.len() + TAG_LEN);
        token.push(VERSION);
        token.extend_from_slice(&expiry.to_be_bytes());
        token.push(odcid.len() as u8);
        token.extend_from_slice(odcid);
        let signed = [&token[..], &addr_bytes(addr), retry_scid].concat();
        token.extend_from_slice(hmac::sign(&self.0, &signed).as_ref());
        token
    }

    /// The original destination CID the token carries, if the token was made by us for a
    /// client at `addr` now using `dcid`, and has not expired at `now` (Unix seconds).
    pub fn check(
        &self,
        token: &[u8],
        addr: SocketAddr,
        dcid: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, TokenError> {
        if token.len() < HEAD_LEN + TAG_LEN || token[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let odcid_len = token[HEAD_LEN - 1] as usize;
        if odcid_len > MAX_CID_LEN || token.len() != HEAD_LEN + odcid_len + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = token.split_at(HEAD_LEN + odcid_len);
        let signed = [body, &addr_bytes(addr), dcid].concat();
        hmac::verify(&self.0, &signed, tag).map_err(|_| TokenError::Forged)?;
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&body[1..9]);
        if u64::from_be_bytes(expiry) < now {
            return Err(TokenError::Expired);
        }
        Ok(body[HEAD_LEN..].to_vec())
    }
}

/// The address bytes the tag covers: IP octets and port.
fn addr_bytes(addr: SocketAddr) -> Vec<u8> {
    let mut v = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&addr.port().to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::from_tls_key(b"-----BEGIN PRIVATE KEY----- test")
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    const ODCID: &[u8] = b"original-dcid";
    const SCID: &[u8] = b"retry-scid-0123456789";

    #[test]
    fn a_token_is_accepted_from_its_address_before_expiry() {
        let k = key();
        let a = addr("192.0.2.1:4433");
        let t = k.mint(a, ODCID, SCID, 1_000);
        assert_eq!(k.check(&t, a, SCID, 999), Ok(ODCID.to_vec()));
        assert_eq!(k.check(&t, a, SCID, 1_000), Ok(ODCID.to_vec()));
        let v6 = addr("[2001:db8::1]:443");
        let t6 = k.mint(v6, ODCID, SCID, 1_000);
        assert_eq!(k.check(&t6, v6, SCID, 1_000), Ok(ODCID.to_vec()));
    }

    #[test]
    fn a_token_is_bound_to_address_port_cid_and_key() {
        let k = key();
        let a = addr("192.0.2.1:4433");
        let t = k.mint(a, ODCID, SCID, 1_000);
        for (other, dcid) in [
            (addr("192.0.2.2:4433"), SCID),
            (addr("192.0.2.1:4434"), SCID),
            (a, b"another-scid".as_slice()),
        ] {
            assert_eq!(k.check(&t, other, dcid, 0), Err(TokenError::Forged));
        }
        let stranger = TokenKey::from_tls_key(b"another key");
        assert_eq!(stranger.check(&t, a, SCID, 0), Err(TokenError::Forged));
    }

    #[test]
    fn an_expired_or_altered_token_is_refused() {
        let k = key();
        let a = addr("192.0.2.1:4433");
        let t = k.mint(a, ODCID, SCID, 1_000);
        assert_eq!(k.check(&t, a, SCID, 1_001), Err(TokenError::Expired));
        let mut later = t.clone();
        later[8] ^= 1; // push the expiry: the tag no longer matches
        assert_eq!(k.check(&later, a, SCID, 0), Err(TokenError::Forged));
        let mut cid = t.clone();
        cid[HEAD_LEN] ^= 1;
        assert_eq!(k.check(&cid, a, SCID, 0), Err(TokenError::Forged));
        for bad in [&t[..5], &t[..t.len() - 1], &[]] {
            assert_eq!(k.check(bad, a, SCID, 0), Err(TokenError::Malformed));
        }
        let mut version = t.clone();
        version[0] = 9;
        assert_eq!(k.check(&version, a, SCID, 0), Err(TokenError::Malformed));
    }
}
