//! The `ptproxy` binary: parse arguments, load the config, start logging, run a role.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use ptproxy::config::{self, Role};

/// Point-to-point HTTP/1.1 proxy over one persistent, mutually authenticated HTTP/3 session.
#[derive(FromArgs)]
struct Args {
    /// which side this process is: `client` (next to the calling service) or `server` (next to
    /// the called service)
    #[argh(option, from_str_fn(parse_role))]
    role: Option<Role>,
    /// validate the config file and exit (0 when valid)
    #[argh(switch)]
    check: bool,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// path to the JSON config file
    #[argh(positional)]
    config: Option<PathBuf>,
}

fn parse_role(value: &str) -> Result<Role, String> {
    match value {
        "client" => Ok(Role::Client),
        "server" => Ok(Role::Server),
        other => Err(format!(
            "unknown role {other:?}: expected `client` or `server`"
        )),
    }
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.version {
        println!("ptproxy {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let (Some(role), Some(path)) = (args.role, args.config) else {
        eprintln!(
            "ptproxy: usage: ptproxy --role client|server [--check] CONFIG.json (see --help)"
        );
        return ExitCode::from(2);
    };
    let cfg = match config::load(&path, role) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ptproxy: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("config OK: {}", path.display());
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match ptproxy::run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
