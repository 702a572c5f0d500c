//! The `ptproxy` binary: parse arguments, load the config, start logging, run a role; or
//! `ptproxy gen-certs`, which makes a private CA and both sides' certificates; or
//! `ptproxy train-dictionary`, which builds a shared zstd dictionary for link compression.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use ptproxy::certs;
use ptproxy::config::{self, Role};

/// Point-to-point HTTP/1.1 proxy over one persistent, mutually authenticated HTTP/3 session.
#[derive(FromArgs)]
struct Args {
    /// which side this process is: `client` (next to the calling service) or `server` (next to
    /// the called service)
    #[argh(option, from_str_fn(parse_role))]
    role: Option<Role>,
    /// validate the config file and exit (0 when valid); the peer is not contacted
    #[argh(switch)]
    check: bool,
    /// with --check (client role): also resolve the peer, make one handshake and print the
    /// result (certificate names, RTT) in one line; exit 1 when it fails
    #[argh(switch)]
    connect: bool,
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    /// pin this process to CPU core N (run one process per core, see README); implies
    /// `reuse_port`
    #[argh(option)]
    cpu: Option<usize>,
    /// path to the JSON config file
    #[argh(positional)]
    config: Option<PathBuf>,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    GenCerts(GenCertsArgs),
    TrainDictionary(TrainDictionaryArgs),
}

/// Build a zstd dictionary for link compression (`http.compression.dictionary`, the same
/// file on both ends) from sample bodies, and print its id. Never overwrites a file.
#[derive(FromArgs)]
#[argh(subcommand, name = "train-dictionary")]
struct TrainDictionaryArgs {
    /// the dictionary file to write
    #[argh(option)]
    out: PathBuf,
    /// largest dictionary size in bytes (default 112640, zstd's; at most 1 MiB)
    #[argh(option, default = "ptproxy::train_dictionary::DEFAULT_SIZE")]
    size: usize,
    /// sample bodies: files, or folders read recursively (a few hundred typical bodies)
    #[argh(positional)]
    samples: Vec<PathBuf>,
}

/// Create a private CA plus the server and client certificates and keys (ECDSA P-256) in DIR,
/// and print the `tls` config of both sides. Existing files are never overwritten.
#[derive(FromArgs)]
#[argh(subcommand, name = "gen-certs")]
struct GenCertsArgs {
    /// directory for ca.pem, ca.key, server.pem, server.key, client.pem, client.key (created
    /// with mode 0700 when missing)
    #[argh(positional)]
    dir: PathBuf,
    /// DNS name or IP address of the server: the client's `peer.server_name`
    #[argh(option)]
    server_name: String,
    /// name in the client certificate: the server's `tls.allowed_client_names` (default
    /// `ptproxy-client`)
    #[argh(option, default = "certs::DEFAULT_CLIENT_NAME.to_string()")]
    client_name: String,
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
    if let Some(Command::GenCerts(cmd)) = args.command {
        if args.role.is_some() || args.check || args.config.is_some() {
            eprintln!(
                "ptproxy: gen-certs takes no --role, --check or CONFIG: \
                 ptproxy gen-certs DIR --server-name NAME [--client-name NAME]"
            );
            return ExitCode::from(2);
        }
        return gen_certs(&cmd);
    }
    if let Some(Command::TrainDictionary(cmd)) = args.command {
        if args.role.is_some() || args.check || args.config.is_some() {
            eprintln!(
                "ptproxy: train-dictionary takes no --role, --check or CONFIG: \
                 ptproxy train-dictionary --out FILE [--size BYTES] SAMPLES..."
            );
            return ExitCode::from(2);
        }
        return train_dictionary(&cmd);
    }
    let (Some(role), Some(path)) = (args.role, args.config) else {
        eprintln!(
            "ptproxy: usage: ptproxy --role client|server [--check] CONFIG.json, \
             or ptproxy gen-certs DIR --server-name NAME (see --help)"
        );
        return ExitCode::from(2);
    };
    if args.connect && !args.check {
        eprintln!(
            "ptproxy: --connect goes with --check: ptproxy --role client --check --connect CONFIG"
        );
        return ExitCode::from(2);
    }
    let load = || {
        let mut cfg = config::load(&path, role)?;
        if args.cpu.is_some() {
            // One process per core: they share the listen addresses.
            cfg.set_reuse_port();
        }
        Ok::<_, config::ConfigError>(cfg)
    };
    let cfg = match load() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ptproxy: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        return check(&cfg, &path, args.connect);
    }
    let ops = match &cfg {
        config::Config::Client(c) => &c.ops,
        config::Config::Server(s) => &s.ops,
    };
    ptproxy::logging::init(ops.log_level);
    if let Some(cpu) = args.cpu {
        if let Err(e) = ptproxy::net::pin_to_cpu(cpu) {
            log::error!("--cpu {cpu}: {e}");
            return ExitCode::from(2);
        }
        log::info!("pinned to CPU {cpu}");
    }
    let reload = load;
    match ptproxy::run(&cfg, &reload) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check [--connect]`: the file is valid and its TLS files load; with `--connect`, one
/// handshake with the peer.
fn check(cfg: &config::Config, path: &std::path::Path, connect: bool) -> ExitCode {
    if let Err(e) = ptproxy::quic::tls::load_for_check(cfg) {
        eprintln!("ptproxy: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    println!("config OK: {}", path.display());
    if let Some(d) = cfg.compression().dictionary.as_ref() {
        println!(
            "link compression dictionary: id {} ({} bytes)",
            d.id_hex(),
            d.size()
        );
    }
    let config::Config::Client(client) = cfg else {
        if connect {
            eprintln!("ptproxy: --connect checks a client's peer; use it with --role client");
            return ExitCode::from(2);
        }
        println!("(the upstream was not contacted)");
        return ExitCode::SUCCESS;
    };
    let named = |p: &config::PeerConfig| match p.name.as_str() {
        config::DEFAULT_PEER => String::new(),
        name => format!("{name}: "),
    };
    if !connect {
        for p in &client.peers {
            println!(
                "({}the peer {} was not contacted: add --connect to try a handshake)",
                named(p),
                p.address
            );
        }
        return ExitCode::SUCCESS;
    }
    let mut code = ExitCode::SUCCESS;
    for p in &client.peers {
        match ptproxy::client::probe::probe(client, p) {
            Ok(line) => println!("{}{line}", named(p)),
            Err(line) => {
                eprintln!("ptproxy: {}{line}", named(p));
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

fn train_dictionary(args: &TrainDictionaryArgs) -> ExitCode {
    match ptproxy::train_dictionary::train(&args.out, args.size, &args.samples) {
        Ok(trained) => {
            print!("{}", trained.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ptproxy train-dictionary: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen_certs(args: &GenCertsArgs) -> ExitCode {
    let result = certs::ServerName::parse(&args.server_name)
        .and_then(|server| certs::generate(&args.dir, &server, &args.client_name));
    match result {
        Ok(generated) => {
            print!("{}", generated.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ptproxy gen-certs: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
