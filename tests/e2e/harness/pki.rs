//! A private PKI made at test time (boring): a CA, the server's certificate for `localhost`,
//! and client certificates with whatever SANs a test needs (DNS names, URIs such as SPIFFE
//! IDs), for the access-control tests.

use std::path::{Path, PathBuf};

use boring::asn1::Asn1Time;
use boring::bn::BigNum;
use boring::ec::{EcGroup, EcKey};
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::{PKey, Private};
use boring::x509::extension::{BasicConstraints, SubjectAlternativeName};
use boring::x509::{X509Builder, X509NameBuilder, X509};

pub struct TestPki {
    dir: PathBuf,
    ca: X509,
    ca_key: PKey<Private>,
    serial: u32,
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

impl TestPki {
    /// A fresh CA in `dir` (`ca.pem`) and the server's `server.pem`/`server.key`.
    pub fn new(dir: &Path) -> TestPki {
        let ca_key = key();
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, "test CA")
            .expect("cn");
        let name = name.build();
        let mut b = X509Builder::new().expect("builder");
        b.set_version(2).expect("version");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&ca_key).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
            .expect("na");
        let bc = BasicConstraints::new().critical().ca().build().expect("bc");
        b.append_extension(bc).expect("ext");
        b.sign(&ca_key, MessageDigest::sha256()).expect("sign");
        let ca = b.build();
        std::fs::write(dir.join("ca.pem"), ca.to_pem().expect("pem")).expect("write");
        let mut pki = TestPki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
            serial: 1,
        };
        pki.leaf("server", "localhost", &["localhost"]);
        pki
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `STEM.pem` and `STEM.key` for a leaf named `cn` with `sans` (`scheme://...` is a URI,
    /// anything else a DNS name); returns (cert, key).
    pub fn leaf(&mut self, stem: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = key();
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
        let name = name.build();
        let mut b = X509Builder::new().expect("builder");
        b.set_version(2).expect("version");
        self.serial += 1;
        let serial = BigNum::from_u32(self.serial)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial");
        b.set_serial_number(&serial).expect("serial");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(self.ca.subject_name()).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
            .expect("nb");
        b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
            .expect("na");
        if !sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                if s.contains("://") {
                    san.uri(s);
                } else {
                    san.dns(s);
                }
            }
            let san = san
                .build(&b.x509v3_context(Some(&self.ca), None))
                .expect("san");
            b.append_extension(san).expect("ext");
        }
        b.sign(&self.ca_key, MessageDigest::sha256()).expect("sign");
        let cert = b.build();
        let (cert_path, key_path) = (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.to_pem().expect("pem")).expect("write");
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("pem")).expect("write");
        (cert_path, key_path)
    }
}
