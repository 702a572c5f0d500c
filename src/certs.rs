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

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use boring::asn1::Asn1Time;
use boring::bn::{BigNum, MsbOption};
use boring::ec::{EcGroup, EcKey};
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use boring::x509::{X509Builder, X509Name, X509NameBuilder, X509Ref, X509};

/// Validity of the CA certificate, in days (about 10 years).
pub const CA_VALIDITY_DAYS: u32 = 3650;
/// Validity of the server and client certificates, in days (the usual 825-day ceiling for leaves).
pub const LEAF_VALIDITY_DAYS: u32 = 825;
/// Client certificate name when `--client-name` is not given.
pub const DEFAULT_CLIENT_NAME: &str = "ptproxy-client";
/// How far `notBefore` lies in the past, to tolerate clock skew between the two machines.
const BACKDATE_SECS: u64 = 3600;

/// The files written into the target directory, in writing order (as `conf/make-certs.sh`).
pub const FILE_NAMES: [&str; 6] = [
    CA_CERT,
    CA_KEY,
    SERVER_CERT,
    SERVER_KEY,
    CLIENT_CERT,
    CLIENT_KEY,
];
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

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

/// What the server certificate is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    Dns(String),
    Ip(IpAddr),
}

impl ServerName {
    /// Parses `--server-name`: an IP address, or a DNS name.
    pub fn parse(name: &str) -> Result<ServerName, CertsError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        check_dns_name(name).map_err(|reason| CertsError::InvalidName {
            what: "server name",
            name: name.to_string(),
            reason: format!("{reason} (expected a DNS name or an IP address)"),
        })?;
        Ok(ServerName::Dns(name.to_string()))
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerName::Dns(name) => f.write_str(name),
            ServerName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Checks `--client-name`: a DNS-style name, since the server matches
/// `tls.allowed_client_names` against the certificate's DNS names.
pub fn check_client_name(name: &str) -> Result<(), CertsError> {
    let reason = if name.parse::<IpAddr>().is_ok() {
        Some("an IP address cannot be a client name (the server matches DNS names)".to_string())
    } else {
        check_dns_name(name).err()
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(CertsError::InvalidName {
            what: "client name",
            name: name.to_string(),
            reason,
        }),
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters (no leading or
/// trailing hyphen), 253 characters at most, not all-numeric (a mistyped IP address).
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or double dot)".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "character {c:?} is not allowed (letters, digits, '-' and '.' only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    if name.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err("looks like an IP address but is not a valid one".into());
    }
    Ok(())
}

/// The absolute paths of the files written by [`generate`].
#[derive(Debug, Clone)]
pub struct Generated {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub server_name: String,
    pub client_name: String,
}

impl Generated {
    /// The client side's `peer.server_name` and `tls`, as a JSON object to merge into its config.
    pub fn client_snippet(&self) -> serde_json::Value {
        serde_json::json!({
            "peer": { "server_name": self.server_name },
            "tls": {
                "ca": path_str(&self.ca_cert),
                "cert": path_str(&self.client_cert),
                "key": path_str(&self.client_key),
            },
        })
    }

    /// The server side's `tls` (with `allowed_client_names`), as a JSON object to merge.
    pub fn server_snippet(&self) -> serde_json::Value {
        serde_json::json!({
            "tls": {
                "ca": path_str(&self.ca_cert),
                "cert": path_str(&self.server_cert),
                "key": path_str(&self.server_key),
                "allowed_client_names": [self.client_name],
            },
        })
    }

    /// The report printed by `ptproxy gen-certs`: what was written and both config snippets.
    pub fn report(&self) -> String {
        let pretty = |v: &serde_json::Value| {
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        };
        format!(
            "gen-certs: wrote {dir}/{{{files}}}\n\
             CA valid {ca} days, server {server:?} and client {client:?} certificates {leaf} days.\n\
             Keep {ca_key} offline: it can mint certificates both sides trust.\n\
             \n\
             Client config (merge into the client's JSON file, next to peer.address):\n\
             {client_json}\n\
             \n\
             Server config (merge into the server's JSON file):\n\
             {server_json}\n",
            dir = self.dir.display(),
            files = FILE_NAMES.join(","),
            ca = CA_VALIDITY_DAYS,
            leaf = LEAF_VALIDITY_DAYS,
            server = self.server_name,
            client = self.client_name,
            ca_key = self.ca_key.display(),
            client_json = pretty(&self.client_snippet()),
            server_json = pretty(&self.server_snippet()),
        )
    }
}

/// Paths are checked to be UTF-8 before anything is written, so this is lossless.
fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// One certificate and its key.
struct Issued {
    cert: X509,
    key: PKey<Private>,
}

impl Issued {
    /// (certificate PEM, PKCS#8 key PEM)
    fn to_pem(&self) -> Result<(Vec<u8>, Vec<u8>), CertsError> {
        Ok((
            self.cert.to_pem().map_err(crypto("encode a certificate"))?,
            self.key
                .private_key_to_pem_pkcs8()
                .map_err(crypto("encode a private key"))?,
        ))
    }
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

    match fs::symlink_metadata(dir) {
        Ok(_) => {}
        // Missing parents are created too, with the same mode.
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io_err(dir, "create directory"))?,
        Err(e) => return Err(io_err(dir, "check")(e)),
    }
    let dir = fs::canonicalize(dir).map_err(io_err(dir, "resolve directory"))?;
    if !dir.is_dir() {
        return Err(CertsError::Io {
            path: dir,
            op: "use as output directory",
            err: io::Error::other("not a directory"),
        });
    }
    if dir.to_str().is_none() {
        return Err(CertsError::NotUtf8(dir));
    }

    // Check every target before writing any (symlink_metadata: a dangling link counts too).
    for name in FILE_NAMES {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(CertsError::Exists(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, "check")(e)),
        }
    }

    let ca = make_ca()?;
    let server = make_leaf(
        &ca,
        &server_name.to_string(),
        san_for_server(server_name),
        Leaf::Server,
    )?;
    let mut client_san = SubjectAlternativeName::new();
    client_san.dns(client_name);
    let client = make_leaf(&ca, client_name, client_san, Leaf::Client)?;
    let (ca_pem, ca_key_pem) = ca.to_pem()?;
    let (server_pem, server_key_pem) = server.to_pem()?;
    let (client_pem, client_key_pem) = client.to_pem()?;

    let files: [(&str, &[u8], u32); 6] = [
        (CA_CERT, &ca_pem, CERT_MODE),
        (CA_KEY, &ca_key_pem, KEY_MODE),
        (SERVER_CERT, &server_pem, CERT_MODE),
        (SERVER_KEY, &server_key_pem, KEY_MODE),
        (CLIENT_CERT, &client_pem, CERT_MODE),
        (CLIENT_KEY, &client_key_pem, KEY_MODE),
    ];
    let mut created: Vec<PathBuf> = Vec::with_capacity(files.len());
    for (name, contents, mode) in files {
        let path = dir.join(name);
        if let Err(e) = write_new(&path, contents, mode, &mut created) {
            for path in &created {
                let _ = fs::remove_file(path);
            }
            return Err(e);
        }
    }

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

/// Creates `path` exclusively with `mode` (explicitly set, whatever the umask), writes and syncs.
/// Pushes the path onto `created` as soon as the file exists, so a failure can remove it.
fn write_new(
    path: &Path,
    contents: &[u8],
    mode: u32,
    created: &mut Vec<PathBuf>,
) -> Result<(), CertsError> {
    let mut file: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                CertsError::Exists(path.to_path_buf())
            } else {
                io_err(path, "create")(err)
            }
        })?;
    created.push(path.to_path_buf());
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(path, "set permissions of"))?;
    file.write_all(contents).map_err(io_err(path, "write"))?;
    file.sync_all().map_err(io_err(path, "sync"))?;
    Ok(())
}

fn san_for_server(name: &ServerName) -> SubjectAlternativeName {
    let mut san = SubjectAlternativeName::new();
    match name {
        ServerName::Dns(dns) => san.dns(dns),
        ServerName::Ip(ip) => san.ip(&ip.to_string()),
    };
    san
}

#[derive(Clone, Copy)]
enum Leaf {
    Server,
    Client,
}

fn new_key() -> Result<PKey<Private>, CertsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
        .map_err(crypto("set up the P-256 curve"))?;
    let ec = EcKey::generate(&group).map_err(crypto("generate an ECDSA P-256 key"))?;
    PKey::from_ec_key(ec).map_err(crypto("wrap the ECDSA key"))
}

fn name_with_cn(cn: &str) -> Result<X509Name, CertsError> {
    let mut b = X509NameBuilder::new().map_err(crypto("build a certificate name"))?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn)
        .map_err(crypto("set the certificate common name"))?;
    Ok(b.build())
}

/// A builder with version 3, a random 128-bit serial, the validity and the subject's key set.
fn base_builder(
    subject: &X509Name,
    key: &PKey<Private>,
    days: u32,
) -> Result<X509Builder, CertsError> {
    let mut b = X509Builder::new().map_err(crypto("start a certificate"))?;
    b.set_version(2)
        .map_err(crypto("set the certificate version"))?;
    let mut serial = BigNum::new().map_err(crypto("allocate a serial number"))?;
    // Top bit set: always exactly 128 bits, never zero; positive, 17 DER bytes at most.
    serial
        .rand(128, MsbOption::ONE, false)
        .map_err(crypto("draw a random serial number"))?;
    let serial = serial
        .to_asn1_integer()
        .map_err(crypto("encode the serial number"))?;
    b.set_serial_number(&serial)
        .map_err(crypto("set the serial number"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let not_before =
        libc::time_t::try_from(now.saturating_sub(BACKDATE_SECS)).unwrap_or(libc::time_t::MAX);
    let not_before = Asn1Time::from_unix(not_before).map_err(crypto("encode notBefore"))?;
    b.set_not_before(&not_before)
        .map_err(crypto("set notBefore"))?;
    let not_after = Asn1Time::days_from_now(days).map_err(crypto("encode notAfter"))?;
    b.set_not_after(&not_after)
        .map_err(crypto("set notAfter"))?;
    b.set_subject_name(subject)
        .map_err(crypto("set the subject name"))?;
    b.set_pubkey(key).map_err(crypto("set the public key"))?;
    Ok(b)
}

/// The self-signed CA (a random suffix in the CN keeps separate CAs apart in one trust store).
fn make_ca() -> Result<Issued, CertsError> {
    let key = new_key()?;
    let mut tag = [0u8; 4];
    boring::rand::rand_bytes(&mut tag).map_err(crypto("draw random bytes"))?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let subject = name_with_cn(&format!("ptproxy CA {tag}"))?;
    let mut b = base_builder(&subject, &key, CA_VALIDITY_DAYS)?;
    b.set_issuer_name(&subject)
        .map_err(crypto("set the issuer name"))?;
    let bc = BasicConstraints::new()
        .critical()
        .ca()
        .pathlen(0)
        .build()
        .map_err(crypto("build basicConstraints"))?;
    b.append_extension(bc)
        .map_err(crypto("add basicConstraints"))?;
    let ku = KeyUsage::new()
        .critical()
        .key_cert_sign()
        .crl_sign()
        .build()
        .map_err(crypto("build keyUsage"))?;
    b.append_extension(ku).map_err(crypto("add keyUsage"))?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(None, None))
        .map_err(crypto("build subjectKeyIdentifier"))?;
    b.append_extension(ski)
        .map_err(crypto("add subjectKeyIdentifier"))?;
    b.sign(&key, MessageDigest::sha256())
        .map_err(crypto("sign the CA certificate"))?;
    Ok(Issued {
        cert: b.build(),
        key,
    })
}

fn make_leaf(
    ca: &Issued,
    cn: &str,
    san: SubjectAlternativeName,
    kind: Leaf,
) -> Result<Issued, CertsError> {
    let key = new_key()?;
    let subject = name_with_cn(cn)?;
    let days = LEAF_VALIDITY_DAYS;
    let mut b = base_builder(&subject, &key, days)?;
    let ca_cert: &X509Ref = &ca.cert;
    b.set_issuer_name(ca_cert.subject_name())
        .map_err(crypto("set the issuer name"))?;
    let bc = BasicConstraints::new()
        .critical()
        .build()
        .map_err(crypto("build basicConstraints"))?;
    b.append_extension(bc)
        .map_err(crypto("add basicConstraints"))?;
    let ku = KeyUsage::new()
        .critical()
        .digital_signature()
        .build()
        .map_err(crypto("build keyUsage"))?;
    b.append_extension(ku).map_err(crypto("add keyUsage"))?;
    let mut eku = ExtendedKeyUsage::new();
    match kind {
        Leaf::Server => eku.server_auth(),
        Leaf::Client => eku.client_auth(),
    };
    let eku = eku.build().map_err(crypto("build extendedKeyUsage"))?;
    b.append_extension(eku)
        .map_err(crypto("add extendedKeyUsage"))?;
    let san = san
        .build(&b.x509v3_context(Some(ca_cert), None))
        .map_err(crypto("build subjectAltName"))?;
    b.append_extension(san)
        .map_err(crypto("add subjectAltName"))?;
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(ca_cert), None))
        .map_err(crypto("build subjectKeyIdentifier"))?;
    b.append_extension(ski)
        .map_err(crypto("add subjectKeyIdentifier"))?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(ca_cert), None))
        .map_err(crypto("build authorityKeyIdentifier"))?;
    b.append_extension(aki)
        .map_err(crypto("add authorityKeyIdentifier"))?;
    b.sign(&ca.key, MessageDigest::sha256())
        .map_err(crypto("sign a certificate"))?;
    Ok(Issued {
        cert: b.build(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use boring::stack::Stack;
    use boring::x509::store::X509StoreBuilder;
    use boring::x509::X509StoreContext;

    #[test]
    fn names() {
        assert_eq!(
            ServerName::parse("127.0.0.1").unwrap(),
            ServerName::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            ServerName::parse("::1").unwrap(),
            ServerName::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            ServerName::parse("b.example.internal").unwrap(),
            ServerName::Dns("b.example.internal".into())
        );
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a b",
            "*.x",
            "a_b",
            "1.2.3.256",
            "é.x",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_client_name(DEFAULT_CLIENT_NAME).is_ok());
        assert!(check_client_name("client-a.example.internal").is_ok());
        assert!(check_client_name("10.0.0.1").is_err());
        assert!(check_client_name("a/b").is_err());
        assert!(ServerName::parse(&"a".repeat(64)).is_err());
        assert!(ServerName::parse(&["a"; 128].join(".")).is_err());
    }

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
