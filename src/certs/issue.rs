//! Keys and certificates, made with boring: ECDSA P-256 keys, the self-signed CA and the server
//! and client certificates it signs, with the extensions listed in the [parent module's
//! doc](super).

use std::time::{SystemTime, UNIX_EPOCH};

use boring::asn1::Asn1Time;
use boring::bn::{BigNum, MsbOption};
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use boring::x509::{X509Builder, X509Name, X509NameBuilder, X509Ref, X509};

use super::{crypto, CertsError, ServerName, CA_VALIDITY_DAYS, LEAF_VALIDITY_DAYS};

/// How far `notBefore` lies in the past, to tolerate clock skew between the two machines.
const BACKDATE_SECS: u64 = 3600;

/// The three certificates of one `gen-certs` run, with their keys.
pub(super) struct IssuedSet {
    pub ca: Issued,
    pub server: Issued,
    pub client: Issued,
}

/// Makes the CA, then the server certificate for `server_name` and the client certificate for
/// `client_name`, both signed by that CA.
pub(super) fn issue_set(
    server_name: &ServerName,
    client_name: &str,
) -> Result<IssuedSet, CertsError> {
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
    Ok(IssuedSet { ca, server, client })
}

/// One certificate and its key.
pub(super) struct Issued {
    cert: X509,
    key: PKey<Private>,
}

impl Issued {
    /// (certificate PEM, PKCS#8 key PEM)
    pub(super) fn to_pem(&self) -> Result<(Vec<u8>, Vec<u8>), CertsError> {
        Ok((
            self.cert.to_pem().map_err(crypto("encode a certificate"))?,
            self.key
                .private_key_to_pem_pkcs8()
                .map_err(crypto("encode a private key"))?,
        ))
    }
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
