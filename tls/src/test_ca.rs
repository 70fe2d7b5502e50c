//! A throwaway CA for tests and benchmarks: it issues certificates for
//! any role and names, in memory or as the PEM files an operator would
//! give (`--tls-ca`, `--tls-cert`, `--tls-key`). Never for production:
//! its key lives in memory and dies with it.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::TlsError;
use crate::identity::{TlsFiles, TlsIdentity};

/// A CA (see the module doc).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// A certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn config(e: rcgen::Error) -> TlsError {
    TlsError::Config(format!("test CA: {e}"))
}

impl TestCa {
    pub fn new(name: &str) -> Result<TestCa, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(config)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(config)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(config)?;
        Ok(TestCa { issuer })
    }

    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate whose subject is `CN=cn, OU=ou`, valid for the names
    /// and addresses `sans` (an address where one parses), as server and
    /// as client.
    pub fn issue(&self, ou: &str, cn: &str, sans: &[&str]) -> Result<Issued, TlsError> {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(config)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, ou);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(config)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(config)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// An identity of role `ou` for `sans`, in memory.
    pub fn identity(&self, ou: &str, sans: &[&str]) -> Result<Arc<TlsIdentity>, TlsError> {
        let issued = self.issue(ou, &format!("test {ou}"), sans)?;
        TlsIdentity::from_pem(
            self.ca_pem().into_bytes(),
            issued.cert_pem.into_bytes(),
            issued.key_pem.into_bytes(),
            None,
        )
    }

    /// Writes `dir/ca.pem`, `dir/<name>.pem` and `dir/<name>.key` (mode
    /// 0600) for a certificate of role `ou`, and names them.
    pub fn write_files(
        &self,
        dir: &Path,
        name: &str,
        ou: &str,
        sans: &[&str],
    ) -> Result<TlsFiles, TlsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let issued = self.issue(ou, name, sans)?;
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        let write = |path: &Path, bytes: &[u8], mode: u32| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(path)
                .and_then(|mut f| f.write_all(bytes))
                .map_err(|source| TlsError::Read {
                    what: "writing",
                    path: path.to_path_buf(),
                    source,
                })
        };
        write(&files.ca, self.ca_pem().as_bytes(), 0o644)?;
        write(&files.cert, issued.cert_pem.as_bytes(), 0o644)?;
        write(&files.key, issued.key_pem.as_bytes(), 0o600)?;
        Ok(files)
    }
}
