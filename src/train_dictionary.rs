//! `ptproxy train-dictionary`: builds a shared zstd dictionary for link compression
//! (`http.compression.dictionary`) from sample bodies with zstd's trainer, writes it, and
//! reports its id (the one both ends announce, so users can check that their files match).
//!
//! ```text
//! FILES and DIRS (read recursively) --collect--> samples (bounded in count and bytes)
//!   --zstd::dict::from_samples--> dictionary bytes --Dictionary::from_bytes (checked as a
//!   config would load it)--> written to --out (never over an existing file)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::bridge::compression::dictionary::MAX_DICTIONARY_BYTES;
use crate::bridge::compression::Dictionary;

/// Dictionary size by default: zstd's own default (110 KiB).
pub const DEFAULT_SIZE: usize = 112_640;
/// The smallest dictionary size accepted (zstd needs room for its entropy tables).
pub const MIN_SIZE: usize = 1024;
/// Fewest samples to train from: zstd's trainer refuses fewer than a handful, and a
/// dictionary from few bodies fits them, not the traffic.
pub const MIN_SAMPLES: usize = 8;
/// Most sample files read, and their most bytes in all (the trainer keeps them in memory).
pub const MAX_SAMPLES: usize = 100_000;
pub const MAX_SAMPLE_BYTES: u64 = 512 * 1024 * 1024;
/// Deepest folder level read below a given DIR.
const MAX_DEPTH: usize = 16;

/// What was trained.
#[derive(Debug)]
pub struct Trained {
    pub out: PathBuf,
    pub size: usize,
    pub samples: usize,
    pub sample_bytes: u64,
    pub id_hex: String,
}

impl Trained {
    /// The lines printed for the user.
    pub fn report(&self) -> String {
        format!(
            "wrote {}: {} bytes, trained from {} samples ({} bytes)\n\
             dictionary id {} (both ends' `http.compression.dictionary` must have this id; \
             `ptproxy --check` prints it)\n",
            self.out.display(),
            self.size,
            self.samples,
            self.sample_bytes,
            self.id_hex
        )
    }
}

/// Trains a dictionary of at most `size` bytes from the files in `inputs` (folders read
/// recursively, empty files skipped) and writes it to `out`.
pub fn train(out: &Path, size: usize, inputs: &[PathBuf]) -> Result<Trained, String> {
    if !(MIN_SIZE..=MAX_DICTIONARY_BYTES).contains(&size) {
        return Err(format!(
            "--size {size}: must be between {MIN_SIZE} and {MAX_DICTIONARY_BYTES} bytes"
        ));
    }
    if inputs.is_empty() {
        return Err("no samples given: name sample files or folders of them".into());
    }
    if out.exists() {
        return Err(format!(
            "{} exists: it is never overwritten (remove it or choose another --out)",
            out.display()
        ));
    }
    let samples = collect(inputs)?;
    if samples.len() < MIN_SAMPLES {
        return Err(format!(
            "too few samples: {} non-empty files (at least {MIN_SAMPLES}; a few hundred \
             typical bodies train a useful dictionary)",
            samples.len()
        ));
    }
    let sample_bytes: u64 = samples.iter().map(|s| s.len() as u64).sum();
    let bytes = zstd::dict::from_samples(&samples, size).map_err(|e| {
        format!(
            "zstd could not train a dictionary from {} samples ({sample_bytes} bytes): {e} \
             (give more or larger samples, or a smaller --size)",
            samples.len()
        )
    })?;
    let dictionary = Dictionary::from_bytes(&bytes)
        .map_err(|e| format!("the trained dictionary does not load: {e}"))?;
    write_new(out, &bytes)?;
    Ok(Trained {
        out: out.to_path_buf(),
        size: bytes.len(),
        samples: samples.len(),
        sample_bytes,
        id_hex: dictionary.id_hex(),
    })
}

/// The non-empty files of `inputs`, folders read recursively (in name order).
fn collect(inputs: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    let mut samples = Vec::new();
    let mut total = 0u64;
    for input in inputs {
        add(input, 0, &mut samples, &mut total)?;
    }
    Ok(samples)
}

fn add(
    path: &Path,
    depth: usize,
    samples: &mut Vec<Vec<u8>>,
    total: &mut u64,
) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if meta.is_dir() {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "{}: folders nest deeper than {MAX_DEPTH}",
                path.display()
            ));
        }
        let mut entries = std::fs::read_dir(path)
            .map_err(cannot)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(cannot)?;
        entries.sort();
        for entry in entries {
            add(&entry, depth + 1, samples, total)?;
        }
        return Ok(());
    }
    if meta.len() == 0 {
        return Ok(());
    }
    if samples.len() >= MAX_SAMPLES || *total + meta.len() > MAX_SAMPLE_BYTES {
        return Err(format!(
            "more than {MAX_SAMPLES} samples or {MAX_SAMPLE_BYTES} bytes of them: give a subset"
        ));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    *total += bytes.len() as u64;
    samples.push(bytes);
    Ok(())
}

/// Writes `bytes` to a new file at `out` (never over an existing one).
fn write_new(out: &Path, bytes: &[u8]) -> Result<(), String> {
    let cannot = |e: std::io::Error| format!("cannot write {}: {e}", out.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(cannot)?;
    file.write_all(bytes).map_err(cannot)?;
    file.sync_all().map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ptproxy-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn trains_from_a_folder_and_the_result_loads() {
        let dir = temp_dir("ok");
        let samples = dir.join("samples");
        std::fs::create_dir(&samples).unwrap();
        for i in 0..200 {
            let body = format!(
                "{{\"id\":{i},\"name\":\"user {i}\",\"email\":\"user{i}@example.com\",\
                 \"status\":\"active\",\"tags\":[\"a\",\"b\"],\"balance\":{}.{:02}}}",
                i * 37 % 1000,
                i % 100
            );
            std::fs::write(samples.join(format!("{i}.json")), body).unwrap();
        }
        let out = dir.join("dict");
        let t = train(&out, 4096, std::slice::from_ref(&samples)).expect("trains");
        assert_eq!(t.samples, 200);
        let loaded = Dictionary::load(&out).expect("loads");
        assert_eq!(loaded.id_hex(), t.id_hex);
        assert!(t.report().contains(&t.id_hex));
        let again = train(&out, 4096, &[samples]).unwrap_err();
        assert!(again.contains("never overwritten"), "{again}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let dir = temp_dir("bad");
        let out = dir.join("dict");
        assert!(train(&out, 4096, &[]).unwrap_err().contains("no samples"));
        let missing = train(&out, 4096, &[dir.join("nope")]).unwrap_err();
        assert!(
            missing.contains("cannot read") && missing.contains("nope"),
            "{missing}"
        );
        std::fs::write(dir.join("one"), b"{}").unwrap();
        let few = train(&out, 4096, &[dir.join("one")]).unwrap_err();
        assert!(few.contains("too few samples"), "{few}");
        assert!(train(&out, 10, &[dir.join("one")])
            .unwrap_err()
            .contains("--size"));
        assert!(!out.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
