use super::*;

fn policy() -> Policy {
    Policy {
        enabled: true,
        min_bytes: 1024,
        types: vec!["text/*".into(), "application/json".into(), "+json".into()],
        ..Policy::default()
    }
}

fn fields(list: &[(&str, &str)]) -> Vec<Field> {
    list.iter()
        .map(|(n, v)| Field::new(n.as_bytes(), v.as_bytes()))
        .collect()
}

fn compress_all(plain: &[u8], piece: usize, length: Option<u64>) -> Vec<u8> {
    let mut c = Compressor::new(length).expect("a context");
    let mut out = Vec::new();
    for part in plain.chunks(piece) {
        c.feed(part, &mut out).expect("feeds");
    }
    c.finish(&mut out).expect("ends");
    out
}

/// `fields` with the mark of a body `c` compresses, as sent.
pub(super) fn marked(fields: &[Field], c: &Compressor) -> Vec<Field> {
    let mut out = fields.to_vec();
    add_mark(&mut out, c);
    out
}

/// Decompresses `wire` handed over `piece` bytes at a time into outputs of `room` bytes.
fn decompress_all(wire: &[u8], piece: usize, room: usize) -> Result<Vec<u8>, CodecError> {
    decompress_with(Decompressor::new()?, wire, piece, room)
}

/// [`decompress_all`] with decompressor `d` (one with a dictionary, say).
pub(super) fn decompress_with(
    mut d: Decompressor,
    wire: &[u8],
    piece: usize,
    room: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut at = 0;
    let mut plain = Vec::new();
    let mut buf = vec![0u8; room];
    for _ in 0..1_000_000 {
        let n = d.read(
            &mut buf,
            |into: &mut [u8]| {
                let n = piece.min(into.len()).min(wire.len() - at);
                into[..n].copy_from_slice(&wire[at..at + n]);
                at += n;
                Ok(n)
            },
            |e| e,
        )?;
        if n == 0 {
            d.finish()?;
            return Ok(plain);
        }
        plain.extend_from_slice(&buf[..n]);
    }
    panic!("decompression did not end");
}

fn json_body(len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"item {i}\",\"ok\":true}},").as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

#[test]
fn round_trip_in_small_pieces_and_small_output_room() {
    let plain = json_body(300_000);
    let wire = compress_all(&plain, 777, None);
    assert!(
        wire.len() * 5 < plain.len(),
        "{} -> {}",
        plain.len(),
        wire.len()
    );
    assert_eq!(decompress_all(&wire, 13, 100).unwrap(), plain);
    assert_eq!(decompress_all(&wire, 16 * 1024, 64 * 1024).unwrap(), plain);
}

#[test]
fn round_trip_with_a_known_length_and_flushes() {
    let plain = json_body(5000);
    let mut c = Compressor::new(Some(plain.len() as u64)).unwrap();
    let mut wire = Vec::new();
    c.feed(&plain[..100], &mut wire).unwrap();
    assert!(c.has_unflushed());
    c.flush(&mut wire).unwrap();
    assert!(!c.has_unflushed());
    // What was flushed decodes before the rest is sent.
    let mut d = Decompressor::new().unwrap();
    let mut buf = [0u8; 4096];
    let mut given = false;
    let n = d
        .read(
            &mut buf,
            |into: &mut [u8]| {
                if given {
                    return Ok::<usize, CodecError>(0);
                }
                given = true;
                into[..wire.len()].copy_from_slice(&wire);
                Ok(wire.len())
            },
            |e| e,
        )
        .unwrap();
    // All but the last byte, held back until the frame's checksum is checked.
    assert_eq!(&buf[..n], &plain[..99]);
    assert!(
        d.finish().is_err(),
        "a frame cut after a flush is truncated"
    );
    c.feed(&plain[100..], &mut wire).unwrap();
    c.finish(&mut wire).unwrap();
    assert_eq!(decompress_all(&wire, 1000, 1000).unwrap(), plain);
}

#[test]
fn corrupt_data_is_an_error_never_other_bytes() {
    let plain = json_body(100_000);
    let wire = compress_all(&plain, 4096, None);
    for at in [0usize, 5, 20, wire.len() / 2, wire.len() - 2] {
        let mut bad = wire.clone();
        bad[at] ^= 0x5a;
        match decompress_all(&bad, 1000, 4096) {
            Err(_) => {}
            Ok(out) => panic!(
                "corruption at {at} gave {} bytes (same: {})",
                out.len(),
                out == plain
            ),
        }
    }
}

#[test]
fn truncated_data_is_an_error() {
    let plain = json_body(100_000);
    let wire = compress_all(&plain, 4096, None);
    for cut in [0usize, 3, wire.len() / 2, wire.len() - 1] {
        assert!(
            decompress_all(&wire[..cut], 1000, 4096).is_err(),
            "cut at {cut}"
        );
    }
    assert!(decompress_all(b"plain text, not zstd", 100, 100).is_err());
}

#[test]
fn a_window_over_8_mib_is_refused() {
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::WindowLog(24)).unwrap();
    cctx.set_parameter(CParameter::CompressionLevel(1)).unwrap();
    // Fed in pieces with the size unknown, the frame header declares the full 16 MiB window.
    let plain = json_body(64 * 1024);
    let mut wire = Vec::with_capacity(256 * 1024);
    let mut out = OutBuffer::around(&mut wire);
    let mut input = InBuffer::around(&plain);
    let op = zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue;
    cctx.compress_stream2(&mut out, &mut input, op).unwrap();
    let op = zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end;
    let mut none = InBuffer::around(&[]);
    while cctx.compress_stream2(&mut out, &mut none, op).unwrap() != 0 {}
    assert!(decompress_all(&wire, 1000, 4096).is_err());
}

#[test]
fn one_context_stays_within_the_documented_memory() {
    let plain = json_body(4 * 1024 * 1024);
    let mut c = Compressor::new(None).unwrap();
    let mut out = Vec::new();
    for part in plain.chunks(64 * 1024) {
        c.feed(part, &mut out).unwrap();
        out.clear();
    }
    let size = c.cctx.sizeof();
    eprintln!("compression context: {size} bytes");
    assert!(size <= COMPRESSOR_BYTES, "{size} bytes");
    assert!(
        size > COMPRESSOR_BYTES / 4,
        "{size} bytes: the documented figure is stale"
    );
}

#[test]
fn policy_takes_listed_plain_large_bodies_only() {
    let p = policy();
    let json = fields(&[
        ("content-type", "application/json; charset=utf-8"),
        ("content-length", "5000"),
    ]);
    assert!(p.compresses(&json, false));
    assert!(
        p.compresses(&fields(&[("content-type", "text/html")]), false),
        "chunked counts as large"
    );
    assert!(p.compresses(
        &fields(&[("content-type", "application/problem+json")]),
        false
    ));
    assert!(p.compresses(
        &fields(&[
            ("content-type", "Text/Plain"),
            ("content-encoding", "identity")
        ]),
        false
    ));
    assert!(!p.compresses(
        &fields(&[("content-type", "text/plain"), ("content-length", "1023")]),
        false
    ));
    assert!(!p.compresses(
        &fields(&[("content-type", "text/plain"), ("content-encoding", "gzip")]),
        false
    ));
    assert!(!p.compresses(
        &fields(&[("content-type", "application/octet-stream")]),
        false
    ));
    assert!(!p.compresses(
        &fields(&[("content-type", "application/x-protobuf")]),
        false
    ));
    assert!(
        !p.compresses(&fields(&[("content-length", "5000")]), false),
        "no type"
    );
    assert!(!p.compresses(&fields(&[("content-type", "textual")]), false));
}

#[test]
fn marks_and_announcements() {
    let list = fields(&[(":status", "200")]);
    assert!(!is_marked(&list));
    assert!(is_marked(&marked(&list, &Compressor::new(None).unwrap())));
    assert!(peer_announces(Some(&announcement())));
    assert!(!peer_announces(Some(&[(6, 1000)])));
    assert!(!peer_announces(None));
}

#[test]
fn at_most_max_compressing_contexts_live_at_once() {
    let held: Vec<Compressor> = (0..MAX_COMPRESSING)
        .map(|_| Compressor::new(None).expect("under the cap"))
        .collect();
    assert!(
        Compressor::new(None).is_none(),
        "over the cap: the body goes plain"
    );
    drop(held);
    assert!(
        Compressor::new(None).is_some(),
        "dropped contexts free their slots"
    );
}
