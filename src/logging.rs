//! Logging setup: env_logger on stderr. `RUST_LOG`, when set, decides everything (per-module
//! filters included); otherwise the config's `log_level` applies and SIGHUP can change it.

use log::LevelFilter;

/// Whether `RUST_LOG` fixed the filters at start (then `log_level` changes are ignored).
fn env_rules() -> bool {
    std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty())
}

pub fn init(level: LevelFilter) {
    let mut builder = env_logger::Builder::new();
    if env_rules() {
        builder.parse_env("RUST_LOG");
    } else {
        builder.filter_level(LevelFilter::Trace);
    }
    builder.init();
    if !env_rules() {
        log::set_max_level(level);
    }
}

/// Applies a new level from a reloaded config.
pub fn set_level(level: LevelFilter) {
    if env_rules() {
        log::warn!("log_level changed to {level}, but RUST_LOG is set and decides the filters");
        return;
    }
    if log::max_level() != level {
        // Said before and after, so it is visible whichever way the level moved.
        log::info!("log level: {} -> {level}", log::max_level());
        log::set_max_level(level);
        log::info!("log level is now {level}");
    }
}
