//! `ptproxy gen-certs`: a private CA plus one server and one client certificate for the mutual
//! TLS of the QUIC session, made with boring (the same files as `conf/make-certs.sh`).
//!
//! - Keys are ECDSA P-256 (PKCS#8 PEM), signatures ECDSA with SHA-256.
//! - The CA is valid [`CA_VALIDITY_DAYS`], the leaves [`LEAF_VALIDITY_DAYS`]; every serial
//!   number is 128 random bits.
//! - CA: `basicConstraints` critical CA:TRUE, pathlen 0; `keyUsage` critical keyCertSign, cRLSign.
//!   Leaves: `basicConstraints` critical CA:FALSE; `keyUsage` critical digitalSignature;
//!   `extendedKeyUsage` serverAuth (server) or clientAuth (client).
//! - The server name goes into the CN and into an IP SAN when it is an IP address, a DNS SAN
//!   otherwise; the client name into the CN and a DNS SAN (what `tls.allowed_client_names` matches).
//!
//! Nothing is ever overwritten: every target file is checked before anything is written, and
//! each file is created with `create_new` (O_EXCL). Keys are 0600, certificates 0644, and the
//! directory is created 0700 when missing. When a write fails, the files this run created are
//! removed again.
//!
//! `names` checks the names given on the command line, `issue` makes the keys and
//! certificates, `files` writes them; [`generate`] runs the three in that order.

mod files;
mod issue;
mod names;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use boring::error::ErrorStack;

pub use files::{Generated, FILE_NAMES};
pub use names::{check_client_name, ServerName};

use files::{
    CA_CERT, CA_KEY, CERT_MODE, CLIENT_CERT, CLIENT_KEY, KEY_MODE, SERVER_CERT, SERVER_KEY,
};

/// Validity of the CA certificate, in days (about 10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Validity of the server and client certificates, in days (the usual 825-day ceiling for leaves).
pub const LEAF_VALIDITY_DAYS: u32 = 825;
/// Client certificate name when `--client-name` is not given.
pub const DEFAULT_CLIENT_NAME: &str = "ptproxy-client";

/// Why `gen-certs` failed.
#[derive(Debug)]
pub enum CertsError {
    /// A name given on the command line cannot go into a certificate.
    InvalidName {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// A target file already exists; nothing was written.
    Exists(PathBuf),
    /// The directory's path cannot be written into a JSON config.
    NotUtf8(PathBuf),
    /// A file-system operation failed.
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    /// boring could not build a key or certificate.
    Crypto { what: &'static str, err: ErrorStack },
}

impl CertsError {
    /// Whether the command line itself was wrong (exit status 2) rather than the operation (1).
    pub fn is_usage(&self) -> bool {
        matches!(self, CertsError::InvalidName { .. })
    }
}

impl fmt::Display for CertsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertsError::InvalidName { what, name, reason } => {
                write!(f, "invalid {what} {name:?}: {reason}")
            }
            CertsError::Exists(path) => write!(
                f,
                "{} already exists, refusing to overwrite it (nothing was written; \
                 choose another directory or move the old files away)",
                path.display()
            ),
            CertsError::NotUtf8(path) => write!(
                f,
                "{}: path is not valid UTF-8 and cannot be written into a JSON config",
                path.display()
            ),
            CertsError::Io { path, op, err } => write!(f, "{}: cannot {op}: {err}", path.display()),
            CertsError::Crypto { what, err } => write!(f, "cannot {what}: {err}"),
        }
    }
}

impl std::error::Error for CertsError {}

fn crypto(what: &'static str) -> impl FnOnce(ErrorStack) -> CertsError {
    move |err| CertsError::Crypto { what, err }
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> CertsError {
    let path = path.to_path_buf();
    move |err| CertsError::Io { path, op, err }
}

/// Creates `dir` (0700) when missing, refuses when any target file exists, then makes the CA,
/// server and client certificates and writes them.
pub fn generate(
    dir: &Path,
    server_name: &ServerName,
    client_name: &str,
) -> Result<Generated, CertsError> {
    check_client_name(client_name)?;
    if let ServerName::Dns(name) = server_name {
        ServerName::parse(name)?;
    }
    let dir = files::prepare_dir(dir)?;
    files::check_targets_absent(&dir)?;

    let set = issue::issue_set(server_name, client_name)?;
    let (ca_pem, ca_key_pem) = set.ca.to_pem()?;
    let (server_pem, server_key_pem) = set.server.to_pem()?;
    let (client_pem, client_key_pem) = set.client.to_pem()?;
    files::write_files(
        &dir,
        &[
            (CA_CERT, &ca_pem, CERT_MODE),
            (CA_KEY, &ca_key_pem, KEY_MODE),
            (SERVER_CERT, &server_pem, CERT_MODE),
            (SERVER_KEY, &server_key_pem, KEY_MODE),
            (CLIENT_CERT, &client_pem, CERT_MODE),
            (CLIENT_KEY, &client_key_pem, KEY_MODE),
        ],
    )?;

    Ok(Generated {
        ca_cert: dir.join(CA_CERT),
        ca_key: dir.join(CA_KEY),
        server_cert: dir.join(SERVER_CERT),
        server_key: dir.join(SERVER_KEY),
        client_cert: dir.join(CLIENT_CERT),
        client_key: dir.join(CLIENT_KEY),
        dir,
        server_name: server_name.to_string(),
        client_name: client_name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use boring::pkey::PKey;
    use boring::stack::Stack;
    use boring::x509::store::X509StoreBuilder;
    use boring::x509::{X509StoreContext, X509};

    fn tmp(tag: &str) -> PathBuf {
        let mut r = [0u8; 8];
        boring::rand::rand_bytes(&mut r).unwrap();
        std::env::temp_dir().join(format!(
            "ptproxy-certs-unit-{tag}-{}-{}",
            std::process::id(),
            r.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ))
    }

    fn verify(ca: &X509, leaf: &X509) -> bool {
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(ca.clone()).unwrap();
        let store = store.build();
        let mut ctx = X509StoreContext::new().unwrap();
        let chain = Stack::new().unwrap();
        ctx.init(&store, leaf, &chain, |c| c.verify_cert()).unwrap()
    }

    #[test]
    fn generates_a_verifiable_set() {
        let dir = tmp("set").join("nested");
        let g = generate(&dir, &ServerName::parse("127.0.0.1").unwrap(), "c.example").unwrap();
        let read = |p: &Path| X509::from_pem(&fs::read(p).unwrap()).unwrap();
        let ca = read(&g.ca_cert);
        let server = read(&g.server_cert);
        let client = read(&g.client_cert);
        assert!(verify(&ca, &server));
        assert!(verify(&ca, &client));
        assert!(server.check_ip_asc("127.0.0.1").unwrap());
        assert_eq!(
            crate::quic::tls::certificate_names(&client),
            vec!["c.example"]
        );
        assert_ne!(
            server.serial_number().to_bn().unwrap(),
            client.serial_number().to_bn().unwrap()
        );
        assert!(server.serial_number().to_bn().unwrap().num_bits() == 128);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&g.dir), 0o700);
        assert_eq!(mode(&g.ca_key), 0o600);
        assert_eq!(mode(&g.ca_cert), 0o644);
        // Keys match their certificates.
        let key = PKey::private_key_from_pem(&fs::read(&g.server_key).unwrap()).unwrap();
        assert!(server.public_key().unwrap().public_eq(&key));
        let dns = generate(&tmp("dns"), &ServerName::parse("localhost").unwrap(), "c").unwrap();
        let server = read(&dns.server_cert);
        assert!(server.check_host("localhost").unwrap());
        // A second run refuses and names the first file.
        match generate(
            &g.dir,
            &ServerName::parse("127.0.0.1").unwrap(),
            "c.example",
        ) {
            Err(CertsError::Exists(p)) => assert_eq!(p, g.dir.join(CA_CERT)),
            other => panic!("expected Exists, got {other:?}"),
        }
        let _ = fs::remove_dir_all(g.dir.parent().unwrap());
        let _ = fs::remove_dir_all(&dns.dir);
    }
}
