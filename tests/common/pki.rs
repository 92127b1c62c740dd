//! Test helper: a CA, a server certificate it signed, and an unrelated CA,
//! made with rcgen and written as PEM files to a private temporary folder
//! (removed when the value is dropped), for a TLS memcached.
//!
//! Include it with `#[path = "common/pki.rs"] mod pki;` (needs rcgen).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// The files of one test's PKI.
pub struct Pki {
    dir: PathBuf,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing here: trusting it alone, the server's
    /// certificate does not verify.
    pub other_ca: PathBuf,
    /// The server's certificate followed by the CA's (PEM), for memcached's
    /// `ssl_chain_cert`.
    pub chain: PathBuf,
    /// The server's private key (PEM), for memcached's `ssl_key`.
    pub key: PathBuf,
}

/// The names the server's certificate carries.
pub const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "memcached.test"];

impl Pki {
    /// Makes the CAs and the server certificate (for [`SERVER_NAMES`]:
    /// 127.0.0.1 as an IP address name) in a fresh folder.
    pub fn new() -> Pki {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "nearfar-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI folder");

        let (ca, ca_key) = make_ca("nearfar test CA");
        let (other_ca, _) = make_ca("nearfar unrelated CA");
        let server_key = KeyPair::generate().expect("server key");
        let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server names");
        params
            .distinguished_name
            .push(DnType::CommonName, "memcached test server");
        let server = params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("sign the server certificate");

        let pki = Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            chain: dir.join("server-chain.pem"),
            key: dir.join("server-key.pem"),
            dir,
        };
        write(&pki.ca, &ca.pem());
        write(&pki.other_ca, &other_ca.pem());
        write(&pki.chain, &format!("{}{}", server.pem(), ca.pem()));
        write(&pki.key, &server_key.serialize_pem());
        pki
    }

    /// memcached's arguments to serve TLS with this PKI's server
    /// certificate (`-Z -o ssl_chain_cert=...,ssl_key=...`).
    pub fn memcached_args(&self) -> Vec<String> {
        vec![
            "-Z".to_owned(),
            "-o".to_owned(),
            format!(
                "ssl_chain_cert={},ssl_key={}",
                self.chain.display(),
                self.key.display()
            ),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign the CA");
    (cert, key)
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
