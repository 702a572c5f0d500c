//! Mutual TLS for the QUIC session, built with boring and handed to quiche.
//!
//! Both roles always verify their peer; there is no switch to turn it off.
//! - Client: trusts only the configured CA; the server certificate must match
//!   `peer.server_name` (checked by quiche for DNS names, by [`pin_server_ip`] for IP addresses).
//! - Server: requires a client certificate signed by the configured CA and, when
//!   `allowed_client_names` is set, carrying one of those names (DNS SAN; the CN only when the
//!   certificate has no SAN at all).

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use boring::error::ErrorStack;
use boring::nid::Nid;
use boring::ssl::{SslContextBuilder, SslFiletype, SslMethod, SslVerifyMode};
use boring::x509::{X509Ref, X509StoreContextRef};

use super::refusal::{Refusal, RefusalSlot};
use crate::config::{Config, TlsFiles};

/// Why a TLS context could not be set up; names the file that failed.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

fn file_error(what: &str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError(format!("tls.{what} ({}): {e}", path.display()))
}

/// Why the key file was refused; boring checks the key against the certificate as it loads it.
fn key_problem(e: &ErrorStack) -> String {
    let mismatch = e
        .errors()
        .iter()
        .any(|error| error.reason() == Some("KEY_VALUES_MISMATCH"));
    if mismatch {
        format!("does not match tls.cert: {e}")
    } else {
        e.to_string()
    }
}

/// Context shared by both roles: own certificate chain and key, and the CA that signs the peer.
fn base_context(files: &TlsFiles) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContextBuilder::new(SslMethod::tls())
        .map_err(|e| TlsError(format!("cannot create TLS context: {e}")))?;
    b.set_certificate_chain_file(&files.cert)
        .map_err(|e| file_error("cert", &files.cert, e))?;
    b.set_private_key_file(&files.key, SslFiletype::PEM)
        .map_err(|e| file_error("key", &files.key, key_problem(&e)))?;
    b.check_private_key()
        .map_err(|e| file_error("key", &files.key, format!("does not match tls.cert: {e}")))?;
    b.set_ca_file(&files.ca)
        .map_err(|e| file_error("ca", &files.ca, e))?;
    Ok(b)
}

/// Client side: verify the server against the CA (the name check is per connection).
pub fn client_context(files: &TlsFiles) -> Result<SslContextBuilder, TlsError> {
    let mut b = base_context(files)?;
    b.set_verify(SslVerifyMode::PEER);
    Ok(b)
}

/// Builds the TLS context of `config`'s role as a start does, for `--check`: the certificate,
/// the key (and that they match) and the CA are loaded from their files. Errors name the field
/// and the file.
pub fn load_for_check(config: &Config) -> Result<(), TlsError> {
    match config {
        Config::Client(c) => client_context(&c.tls).map(drop),
        Config::Server(s) => server_context(
            &s.tls,
            AllowedNames::new(s.allowed_client_names.clone()),
            RefusalSlot::default(),
        )
        .map(drop),
    }
}

/// Client certificate names the server admits (`None` = any the CA signed), shared between
/// the config and the TLS verify callback so a reload can change it for new sessions.
#[derive(Debug, Clone)]
pub struct AllowedNames(Arc<RwLock<Option<Vec<String>>>>);

impl AllowedNames {
    pub fn new(names: Option<Vec<String>>) -> Self {
        AllowedNames(Arc::new(RwLock::new(names)))
    }

    pub fn set(&self, names: Option<Vec<String>>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = names;
        }
    }

    /// Whether a leaf certificate with `names` may in. A poisoned lock admits nobody.
    fn admits(&self, names: &[String]) -> bool {
        match self.0.read() {
            Ok(guard) => match guard.as_ref() {
                None => true,
                Some(allowed) => names
                    .iter()
                    .any(|n| allowed.iter().any(|a| a.eq_ignore_ascii_case(n))),
            },
            Err(_) => false,
        }
    }
}

/// Server side: demand a client certificate from the CA, and one of the allowed names. Why a
/// certificate was refused goes to `refusals` (the server logs and counts it).
pub fn server_context(
    files: &TlsFiles,
    allowed: AllowedNames,
    refusals: RefusalSlot,
) -> Result<SslContextBuilder, TlsError> {
    let mut b = base_context(files)?;
    let mode = SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT;
    b.set_verify_callback(mode, move |chain_ok, ctx| {
        if !chain_ok {
            if let Err(e) = ctx.verify_result() {
                refusals.put(Refusal::from_verify_error(e));
            }
            return false;
        }
        ctx.error_depth() != 0 || leaf_has_allowed_name(ctx, &allowed, &refusals)
    });
    Ok(b)
}

fn leaf_has_allowed_name(
    ctx: &mut X509StoreContextRef,
    allowed: &AllowedNames,
    refusals: &RefusalSlot,
) -> bool {
    let Some(cert) = ctx.current_cert() else {
        return false;
    };
    let names = certificate_names(cert);
    let ok = allowed.admits(&names);
    if !ok {
        refusals.put(Refusal::NameNotAllowed(names));
    }
    ok
}

/// Why our own certificate check refused the peer (client side: no callback records it).
pub fn local_verify_failure(conn: &mut quiche::Connection) -> Option<&'static str> {
    let ssl: &mut boring::ssl::SslRef = conn.as_mut();
    ssl.verify_result().err().map(|e| e.error_string())
}

/// The names a certificate is known by: the DNS entries of its subjectAltName, or its CN when
/// it has no subjectAltName at all. Any subjectAltName (even one holding only IP addresses or
/// e-mail addresses) means the CN is not a name (RFC 6125 §6.4.4): a certificate whose only SAN
/// is an IP address has no names and matches no `tls.allowed_client_names` entry.
pub fn certificate_names(cert: &X509Ref) -> Vec<String> {
    match cert.subject_alt_names() {
        Some(sans) => sans
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_owned))
            .collect(),
        None => cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| e.data().as_utf8().ok().map(|s| s.to_string()))
            .collect(),
    }
}

/// For a server named by IP address: quiche checks DNS names only, so pin the IP in the
/// connection's verify parameters (the handshake then fails unless the certificate carries it).
pub fn pin_server_ip(conn: &mut quiche::Connection, ip: IpAddr) -> Result<(), TlsError> {
    let ssl: &mut boring::ssl::SslRef = conn.as_mut();
    ssl.verify_param_mut()
        .set_ip(ip)
        .map_err(|e| TlsError(format!("cannot pin server IP {ip}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::certs::self_signed as certificate;

    #[test]
    fn san_first_and_the_cn_only_without_any_san() {
        let cases: &[(Option<&[&str]>, &[&str])] = &[
            (None, &["client.cn"]),
            (Some(&["a.test", "b.test"]), &["a.test", "b.test"]),
            (Some(&["ip:192.0.2.7", "a.test"]), &["a.test"]),
            // any SAN keeps the CN out, even one without a DNS entry
            (Some(&["ip:192.0.2.7"]), &[]),
            (Some(&["ip:2001:db8::1"]), &[]),
            (Some(&["email:ops@client.cn"]), &[]),
        ];
        for (sans, expected) in cases {
            let cert = certificate("client.cn", *sans);
            assert_eq!(certificate_names(&cert), *expected, "SAN {sans:?}");
        }
    }

    #[test]
    fn an_ip_only_san_certificate_is_not_admitted_by_its_cn() {
        let allowed = AllowedNames::new(Some(vec!["client.cn".into()]));
        let ip_only = certificate("client.cn", Some(&["ip:192.0.2.7"]));
        assert!(!allowed.admits(&certificate_names(&ip_only)));
        let cn_only = certificate("client.cn", None);
        assert!(allowed.admits(&certificate_names(&cn_only)));
        assert!(AllowedNames::new(None).admits(&certificate_names(&ip_only)));
    }
}
