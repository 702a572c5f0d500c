//! The optional shared zstd dictionary of link compression (issue #15 item 2).
//!
//! ```text
//! config:      http.compression.dictionary = FILE (same file on both ends) -> Dictionary::load:
//!              checked once, prepared once (a CDict and a DDict shared by every stream)
//! negotiation: an end announcing link compression with a dictionary also announces
//!              SETTING_LINK_ZSTD_DICTIONARY = the file's id (SHA-256, first 62 bits); the
//!              dictionary is used on a session only when both ends announced the same id
//! sender:      Compressor::new(.., Some(dictionary)) -> marks the message `zstd-d`
//! receiver:    `zstd-d` and the session's agreed dictionary -> decoded with it;
//!              `zstd-d` without one -> refused (the stream is reset), never guessed
//! ```
//!
//! A session keeps the dictionary it announced for its whole life (a reload that changes the
//! file applies to new sessions), so both ends of a session always hold the same bytes.
//! Memory per loaded dictionary, once per process: the file's bytes twice (CDict and DDict
//! each keep a copy) plus the CDict's tables at [`super::LEVEL`], at most
//! [`PREPARED_BASE_BYTES`] + twice the file ([`Dictionary::memory`]: 661 KB for zstd's default
//! 110 KiB); at most [`MAX_DICTIONARY_BYTES`] of file. A reload that loads a new file holds
//! both until the last session announcing the old one ends. Streams reference the prepared
//! dictionary: a compression context copies or attaches its tables within the bounds of
//! [`super::COMPRESSOR_BYTES`], a decompression context only references it.

use std::path::Path;
use std::sync::Arc;

use zstd::zstd_safe::{CDict, DDict};

/// The private HTTP/3 setting by which an end announces the id of its dictionary (next to
/// [`super::SETTING_LINK_ZSTD`]; an older peer ignores it and never uses a dictionary).
pub const SETTING_LINK_ZSTD_DICTIONARY: u64 = 0x7074_7a74;
/// Largest dictionary file accepted (zstd's trainer makes ~110 KiB by default).
pub const MAX_DICTIONARY_BYTES: usize = 1024 * 1024;
/// Memory of a prepared dictionary beyond twice its size: the compression tables at
/// [`super::LEVEL`] (measured: 468 KB for a 16 KiB dictionary, 661 KB for 110 KiB).
pub const PREPARED_BASE_BYTES: usize = 512 * 1024;
/// zstd's magic number at the start of a dictionary (as made by its trainer), little-endian.
const DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xa4, 0x30, 0xec];
/// The id is a QUIC varint, hence below 2^62.
const ID_MASK: u64 = (1 << 62) - 1;

/// One loaded dictionary, prepared for compression and decompression.
pub struct Dictionary {
    /// The negotiation id: [`id_of`] the file's bytes.
    id: u64,
    /// The file's size.
    size: usize,
    cdict: CDict<'static>,
    ddict: DDict<'static>,
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &format_args!("{}", self.id_hex()))
            .field("size", &self.size)
            .finish()
    }
}

/// Two dictionaries are the same when their bytes are (their ids are equal).
impl PartialEq for Dictionary {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Dictionary {}

/// The negotiation id of a dictionary's bytes: the first 8 bytes of their SHA-256, as a
/// big-endian number masked to 62 bits (a QUIC varint).
pub fn id_of(bytes: &[u8]) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first) & ID_MASK
}

impl Dictionary {
    /// Checks and prepares `bytes`: a zstd dictionary (magic number, entropy tables zstd
    /// accepts) of at most [`MAX_DICTIONARY_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_DICTIONARY_BYTES {
            return Err(format!(
                "{} bytes: larger than the {MAX_DICTIONARY_BYTES} bytes accepted",
                bytes.len()
            ));
        }
        if !bytes.starts_with(&DICTIONARY_MAGIC) {
            return Err(
                "not a zstd dictionary (no dictionary magic number; make one with \
                 `ptproxy train-dictionary`)"
                    .into(),
            );
        }
        let not_valid = || "not a valid zstd dictionary (zstd refuses its tables)".to_string();
        let cdict = CDict::try_create(bytes, super::LEVEL).ok_or_else(not_valid)?;
        let ddict = DDict::try_create(bytes).ok_or_else(not_valid)?;
        Ok(Dictionary {
            id: id_of(bytes),
            size: bytes.len(),
            cdict,
            ddict,
        })
    }

    /// Reads and prepares the file at `path` (see [`Dictionary::from_bytes`]).
    pub fn load(path: &Path) -> Result<Arc<Self>, String> {
        let too_large = || format!("larger than the {MAX_DICTIONARY_BYTES} bytes accepted");
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
        if meta.len() > MAX_DICTIONARY_BYTES as u64 {
            return Err(too_large());
        }
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        Self::from_bytes(&bytes).map(Arc::new)
    }

    /// The negotiation id ([`id_of`] its bytes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The id as users see it (16 hex digits), e.g. in `ptproxy train-dictionary`'s output.
    pub fn id_hex(&self) -> String {
        format!("{:016x}", self.id)
    }

    /// The file's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes held by the prepared dictionary (both directions).
    pub fn memory(&self) -> usize {
        self.cdict.sizeof() + self.ddict.sizeof()
    }

    pub(super) fn cdict(&self) -> &CDict<'static> {
        &self.cdict
    }

    pub(super) fn ddict(&self) -> &DDict<'static> {
        &self.ddict
    }
}

/// The settings an end announcing link compression adds for its dictionary.
pub fn announcement(dictionary: Option<&Dictionary>) -> Vec<(u64, u64)> {
    dictionary
        .map(|d| (SETTING_LINK_ZSTD_DICTIONARY, d.id))
        .into_iter()
        .collect()
}

/// The dictionary id the peer's raw SETTINGS announce, if any.
pub fn peer_dictionary(settings: Option<&[(u64, u64)]>) -> Option<u64> {
    settings?
        .iter()
        .find(|(id, _)| *id == SETTING_LINK_ZSTD_DICTIONARY)
        .map(|(_, value)| *value)
}

/// `ours` when the peer announced the same id: the dictionary both ends use on the session.
pub fn agreed(
    ours: Option<&Arc<Dictionary>>,
    settings: Option<&[(u64, u64)]>,
) -> Option<Arc<Dictionary>> {
    let ours = ours?;
    (peer_dictionary(settings) == Some(ours.id)).then(|| Arc::clone(ours))
}

#[cfg(test)]
mod tests;
