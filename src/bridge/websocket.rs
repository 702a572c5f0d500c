//! The RFC 6455 handshake values both roles need to carry a WebSocket over HTTP/3 extended
//! CONNECT (RFC 9220): the `Sec-WebSocket-Accept` a key calls for, a fresh key for an upgrade
//! the server makes on behalf of a caller that sent none (RFC 8441 §5: the key and the accept
//! do not travel over HTTP/2 or HTTP/3), and the check that a key is 16 bytes in base64.

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The `:protocol` (and HTTP/1.1 `Upgrade`) token of WebSocket.
pub const PROTOCOL: &str = "websocket";

/// The only WebSocket version (RFC 6455 §4.1).
pub const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(ACCEPT_GUID);
    base64(ctx.finish().as_ref())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (from the process's one random
/// source, [`crate::quic::random_bytes`]).
pub fn new_key() -> String {
    let mut nonce = [0u8; 16];
    crate::quic::random_bytes(&mut nonce);
    base64(&nonce)
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 (with padding) of exactly 16 bytes.
pub fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes are 22 characters of the alphabet and `==`; the last one carries 2 bits only.
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| ALPHABET.contains(b))
        && ALPHABET
            .iter()
            .position(|c| *c == key[21])
            .is_some_and(|v| v & 0x0f == 0)
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 0x3f]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_6455_example_accept() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_pads_every_length() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn keys_are_16_bytes_of_base64() {
        let key = new_key();
        assert!(is_valid_key(key.as_bytes()), "{key}");
        assert_ne!(new_key(), key, "two keys must differ");
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b"dGhlIHNhbXBsZSBub25jZQ"[..], // no padding
            b"dGhlIHNhbXBsZSBub25jZR==",    // stray low bits
            b"dGhlIHNhbXBsZSBub25j!Q==",    // outside the alphabet
            b"dGhlIHNhbXBsZSBub25jZWZn",    // 18 bytes
            b"",
        ] {
            assert!(!is_valid_key(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}
