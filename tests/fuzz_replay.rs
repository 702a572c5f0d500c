//! Replays the fuzzing inputs kept in the repository through the fuzz targets' checks, on
//! stable Rust: every file in `fuzz/regressions/<target>/` (crash inputs, see the README there)
//! and every `fuzz/corpus/<target>/seed-*`. The checks are the very code the cargo-fuzz targets
//! run (`fuzz/src/lib.rs`, included below), so a regression input fails here exactly when it
//! would crash the fuzz target.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod checks;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// `(target, file)` for every input to replay; fails on a directory that names no target.
fn inputs() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for (kind, only_seeds) in [("regressions", false), ("corpus", true)] {
        let Ok(dirs) = fs::read_dir(root().join(kind)) else {
            continue;
        };
        for dir in dirs {
            let dir = dir.unwrap().path();
            if !dir.is_dir() {
                continue;
            }
            let target = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                checks::TARGETS.contains(&target.as_str()),
                "{} does not name a fuzz target (one of {:?})",
                dir.display(),
                checks::TARGETS
            );
            for file in fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let wanted = if only_seeds {
                    name.starts_with("seed-")
                } else {
                    !name.starts_with('.') && name != "README.md"
                };
                if wanted && path.is_file() {
                    found.push((target.clone(), path));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn fuzz_inputs_pass_the_fuzz_checks() {
    let inputs = inputs();
    for target in checks::TARGETS {
        let seeds = inputs
            .iter()
            .filter(|(t, p)| t == target && p.to_string_lossy().contains("/corpus/"))
            .count();
        assert!(seeds > 0, "no fuzz/corpus/{target}/seed-* file");
    }
    // The messages are collected below; the default hook would print each one with a backtrace.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (target, path) in &inputs {
        let data = fs::read(path).unwrap();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| checks::run(target, &data)));
        match outcome {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{}: unknown target {target}", path.display())),
            Err(cause) => {
                let message = cause
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| cause.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)");
                failures.push(format!("{} [{target}]: {message}", path.display()));
            }
        }
    }
    panic::set_hook(default_hook);
    assert!(
        failures.is_empty(),
        "{} of {} fuzz inputs fail their checks:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// Runs `check` over `count` deterministic random scripts from `random`: a bounded stand-in
/// for a fuzzing run on stable Rust. A failing seed is reported with its input.
fn survives_random_scripts(count: u64, random: fn(u64) -> Vec<u8>, check: fn(&[u8])) {
    for seed in 0..count {
        let script = random(seed);
        let outcome = panic::catch_unwind(|| check(&script));
        assert!(
            outcome.is_ok(),
            "seed {seed} fails; input (hex): {}",
            script
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
}

/// The committed `fuzz/corpus/<target>/seed-*` are the ones `seeds` builds; with `rewrite`
/// set in the environment they are written first.
fn seeds_are_the_built_ones(target: &str, rewrite: &str, seeds: Vec<(&str, Vec<u8>)>) {
    let dir = root().join("corpus").join(target);
    for (name, bytes) in seeds {
        let path = dir.join(name);
        if std::env::var_os(rewrite).is_some() {
            fs::create_dir_all(&dir).unwrap();
            fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(fs::read(&path).ok(), Some(bytes), "{}", path.display());
    }
}

/// Scripts run by [`body_pumps_survive_random_scripts`]; each is a few KiB at most but for
/// the rare big fills.
const RANDOM_PUMP_SCRIPTS: u64 = 20_000;

/// The `body_pumps` checks over random scripts around real bodies (valid, corrupted,
/// truncated, over a limit).
#[test]
fn body_pumps_survive_random_scripts() {
    survives_random_scripts(
        RANDOM_PUMP_SCRIPTS,
        checks::pump_scripts::random,
        checks::body_pumps,
    );
}

/// To rewrite the seeds after changing `pump_scripts::seeds`:
/// `WRITE_BODY_PUMP_SEEDS=1 cargo test --release --test fuzz_replay body_pumps_seeds`.
#[test]
fn body_pumps_seeds_are_the_built_ones() {
    seeds_are_the_built_ones(
        "body_pumps",
        "WRITE_BODY_PUMP_SEEDS",
        checks::pump_scripts::seeds(),
    );
}

/// Scripts run by [`exchange_survives_random_scripts`].
const RANDOM_EXCHANGE_SCRIPTS: u64 = 5_000;

/// The `exchange` checks over random scripts of either role.
#[test]
fn exchange_survives_random_scripts() {
    survives_random_scripts(
        RANDOM_EXCHANGE_SCRIPTS,
        checks::exchange_scripts::random,
        checks::exchange,
    );
}

/// To rewrite the seeds after changing `exchange_scripts::seeds`:
/// `WRITE_EXCHANGE_SEEDS=1 cargo test --release --test fuzz_replay exchange_seeds`.
#[test]
fn exchange_seeds_are_the_built_ones() {
    seeds_are_the_built_ones(
        "exchange",
        "WRITE_EXCHANGE_SEEDS",
        checks::exchange_scripts::seeds(),
    );
}
