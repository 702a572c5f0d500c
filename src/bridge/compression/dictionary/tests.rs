use quiche::h3::NameValue;

use super::*;
use crate::bridge::compression::tests::marked;
use crate::bridge::compression::{
    decompressor_for, CodecError, Compressor, Decompressor, COMPRESSED_DICTIONARY_VALUE,
    COMPRESSED_FIELD,
};
use crate::bridge::headers::Field;

/// xorshift64*: deterministic varied test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// About `len` bytes of API-like JSON records, different for each `seed`.
fn json_records(len: usize, seed: u64) -> Vec<u8> {
    const NAMES: &[&str] = &["Ana", "Bruno", "Chen", "Dara", "Emil", "Fatima", "Goran"];
    const STATUS: &[&str] = &["active", "suspended", "pending", "closed"];
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = b"{\"items\":[".to_vec();
    while out.len() < len {
        let name = NAMES[r.next(NAMES.len() as u64) as usize];
        out.extend_from_slice(
            format!(
                "{{\"id\":{},\"name\":\"{name}\",\"email\":\"{}{}@example.com\",\"status\":\"{}\",\
                 \"balance\":{}.{:02},\"verified\":{},\"created_at\":\"2026-{:02}-{:02}T10:00:00Z\"}},",
                r.next(1_000_000),
                name.to_lowercase(),
                r.next(100),
                STATUS[r.next(4) as usize],
                r.next(100_000),
                r.next(100),
                r.next(2) == 1,
                1 + r.next(12),
                1 + r.next(28),
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

/// A dictionary trained on 300 bodies like [`json_records`] makes (seeds from `seed`).
fn trained(size: usize, seed: u64) -> Dictionary {
    let samples: Vec<Vec<u8>> = (0..300)
        .map(|i| json_records(300 + (i as usize * 7) % 900, seed + i))
        .collect();
    let bytes = zstd::dict::from_samples(&samples, size).expect("trains");
    Dictionary::from_bytes(&bytes).expect("loads")
}

fn compress(plain: &[u8], dictionary: Option<Arc<Dictionary>>) -> Vec<u8> {
    let mut c = Compressor::with_dictionary(Some(plain.len() as u64), dictionary).unwrap();
    let mut out = Vec::new();
    c.feed(plain, &mut out).unwrap();
    c.finish(&mut out).unwrap();
    out
}

fn decompress(wire: &[u8], d: Decompressor) -> Result<Vec<u8>, CodecError> {
    crate::bridge::compression::tests::decompress_with(d, wire, usize::MAX, 4096)
}

#[test]
fn round_trip_with_the_dictionary_is_smaller_for_small_bodies() {
    let dict = Arc::new(trained(16 * 1024, 1000));
    println!(
        "dictionary {} bytes, prepared {} bytes",
        dict.size(),
        dict.memory()
    );
    println!("body  plain-zstd  dict-zstd");
    for len in [128, 256, 384, 512, 768, 1024, 2048] {
        let plain = json_records(len, 7 + len as u64);
        let without = compress(&plain, None);
        let with = compress(&plain, Some(Arc::clone(&dict)));
        println!("{len:5} {:10} {:10}", without.len(), with.len());
        let back = decompress(
            &with,
            Decompressor::with_dictionary(Arc::clone(&dict)).unwrap(),
        );
        assert_eq!(back.unwrap(), plain);
        assert_eq!(
            decompress(&without, Decompressor::new().unwrap()).unwrap(),
            plain
        );
        if len >= 256 {
            assert!(with.len() * 2 < plain.len(), "{len}: {} bytes", with.len());
            assert!(
                with.len() < without.len(),
                "{len}: {} vs {}",
                with.len(),
                without.len()
            );
        }
    }
}

#[test]
fn a_frame_made_with_a_dictionary_never_decodes_without_it_or_with_another() {
    let dict = Arc::new(trained(8 * 1024, 1000));
    let other = Arc::new(trained(8 * 1024, 5000));
    assert_ne!(dict.id(), other.id());
    for seed in 0..20 {
        let plain = json_records(600, seed);
        let wire = compress(&plain, Some(Arc::clone(&dict)));
        let without = decompress(&wire, Decompressor::new().unwrap());
        assert!(
            without.is_err(),
            "seed {seed}: decoded without the dictionary"
        );
        let wrong = decompress(
            &wire,
            Decompressor::with_dictionary(Arc::clone(&other)).unwrap(),
        );
        assert!(
            wrong.is_err(),
            "seed {seed}: decoded with another dictionary"
        );
    }
}

#[test]
fn the_mark_says_which_decoder_and_a_missing_dictionary_is_refused() {
    let dict = Arc::new(trained(8 * 1024, 1000));
    let list = vec![Field::new(b":status", b"200")];
    let with = Compressor::with_dictionary(None, Some(Arc::clone(&dict))).unwrap();
    let fields = marked(&list, &with);
    assert!(fields.iter().any(
        |f| f.name() == COMPRESSED_FIELD.as_bytes() && f.value() == COMPRESSED_DICTIONARY_VALUE
    ));
    assert!(decompressor_for(&fields, Some(&dict)).unwrap().is_some());
    let refused = decompressor_for(&fields, None).unwrap_err();
    assert!(refused.0.contains("dictionary"), "{refused:?}");
    let plain_mark = marked(&list, &Compressor::new(None).unwrap());
    assert!(decompressor_for(&plain_mark, None).unwrap().is_some());
    assert!(decompressor_for(&plain_mark, Some(&dict))
        .unwrap()
        .is_some());
    assert!(decompressor_for(&list, None).unwrap().is_none());
    let mut unknown = list.clone();
    unknown.push(Field::new(COMPRESSED_FIELD.as_bytes(), b"zstd-x"));
    let refused = decompressor_for(&unknown, Some(&dict)).unwrap_err();
    assert!(refused.0.contains("unknown link encoding"), "{refused:?}");
}

#[test]
fn negotiation_agrees_only_on_the_same_id() {
    let dict = Arc::new(trained(8 * 1024, 1000));
    let ours = announcement(Some(&dict));
    assert_eq!(ours, vec![(SETTING_LINK_ZSTD_DICTIONARY, dict.id())]);
    assert!(announcement(None).is_empty());
    let same = [(6, 1000), (SETTING_LINK_ZSTD_DICTIONARY, dict.id())];
    assert_eq!(agreed(Some(&dict), Some(&same)).as_deref(), Some(&*dict));
    let other = [(SETTING_LINK_ZSTD_DICTIONARY, dict.id() ^ 1)];
    assert!(agreed(Some(&dict), Some(&other)).is_none());
    assert!(
        agreed(Some(&dict), Some(&[(6, 1000)])).is_none(),
        "an older peer"
    );
    assert!(agreed(Some(&dict), None).is_none());
    assert!(agreed(None, Some(&same)).is_none());
}

#[test]
fn only_valid_dictionaries_of_bounded_size_load_and_ids_are_varints() {
    let dict = trained(8 * 1024, 1000);
    assert!(dict.id() < 1 << 62);
    assert_eq!(dict.id_hex().len(), 16);
    let garbage = Dictionary::from_bytes(b"{\"not\": \"a dictionary\"}").unwrap_err();
    assert!(garbage.contains("not a zstd dictionary"), "{garbage}");
    let mut broken = DICTIONARY_MAGIC.to_vec();
    broken.extend_from_slice(&[0xff; 64]);
    let broken = Dictionary::from_bytes(&broken).unwrap_err();
    assert!(broken.contains("not a valid zstd dictionary"), "{broken}");
    let mut large = DICTIONARY_MAGIC.to_vec();
    large.resize(MAX_DICTIONARY_BYTES + 1, 0);
    assert!(Dictionary::from_bytes(&large)
        .unwrap_err()
        .contains("larger than"));
    assert_eq!(id_of(b"abc"), id_of(b"abc"));
    assert_ne!(id_of(b"abc"), id_of(b"abd"));
}

#[test]
fn prepared_memory_stays_within_the_documented_bound() {
    for size in [16 * 1024, 64 * 1024, 110 * 1024] {
        let samples: Vec<Vec<u8>> = (0..2000)
            .map(|i| json_records(300 + (i as usize * 7) % 1700, 77 + i))
            .collect();
        let bytes = zstd::dict::from_samples(&samples, size).expect("trains");
        let d = Dictionary::from_bytes(&bytes).expect("loads");
        println!(
            "dictionary {} bytes: prepared {} bytes",
            d.size(),
            d.memory()
        );
        assert!(
            d.memory() <= PREPARED_BASE_BYTES + 2 * d.size(),
            "{}",
            d.memory()
        );
    }
}

#[test]
fn a_context_with_the_dictionary_stays_within_the_documented_memory() {
    let dict = Arc::new(trained(16 * 1024, 1000));
    for len in [600, 4 * 1024 * 1024] {
        let plain = json_records(len, 3);
        let mut c = Compressor::with_dictionary(None, Some(Arc::clone(&dict))).unwrap();
        let mut out = Vec::new();
        for part in plain.chunks(64 * 1024) {
            c.feed(part, &mut out).unwrap();
            out.clear();
        }
        let size = c.cctx.sizeof();
        println!("{len} bytes with the dictionary: context {size} bytes");
        assert!(
            size <= crate::bridge::compression::COMPRESSOR_BYTES,
            "{size} bytes"
        );
    }
}
