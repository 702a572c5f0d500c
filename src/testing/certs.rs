//! Self-signed certificates with chosen names, for the unit tests that read names out of a
//! certificate (TLS admission, access-control identities).

use boring::asn1::Asn1Time;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::PKey;
use boring::x509::extension::SubjectAlternativeName;
use boring::x509::{X509Builder, X509NameBuilder, X509};

/// A self-signed certificate with `cn` and, when `sans` is given, a subjectAltName holding
/// those entries: `ip:` prefix for an IP address, `email:` for an e-mail, a `scheme://` value
/// for a URI, anything else a DNS name.
pub fn self_signed(cn: &str, sans: Option<&[&str]>) -> X509 {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("not after");
    if let Some(sans) = sans {
        let mut san = SubjectAlternativeName::new();
        for entry in sans {
            if let Some(ip) = entry.strip_prefix("ip:") {
                san.ip(ip);
            } else if let Some(email) = entry.strip_prefix("email:") {
                san.email(email);
            } else if entry.contains("://") {
                san.uri(entry);
            } else {
                san.dns(entry);
            }
        }
        let san = san.build(&b.x509v3_context(None, None)).expect("san");
        b.append_extension(san).expect("extension");
    }
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    b.build()
}
