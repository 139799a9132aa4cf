//! Certificates for loopback TLS (the mock exchange, the tests), made with `rcgen`: a
//! CA (give `ca.pem` to the relay as a feed's `ca_file`, or to a client) and a server
//! certificate it signed for the names asked for. Not for production keys.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The files written.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate (trust root for clients).
    pub ca: PathBuf,
    /// The server's certificate chain (server, then CA).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

/// What making certificates can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused (a name it cannot encode).
    #[error("making certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Makes a fresh CA and a server certificate for `names` (DNS names or IP addresses)
/// in `dir` (created if missing): `ca.pem`, `cert.pem`, `key.pem`.
pub fn write_self_signed(dir: &Path, names: &[String]) -> Result<CertFiles, CertError> {
    let write = |name: &str, text: &str| -> Result<PathBuf, CertError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| CertError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    // A name of its own per CA: two CAs with one name would make a certificate from the
    // other look like a bad signature rather than an unknown issuer.
    let id = crate::io::rt::random_u64();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("feedrelay mock exchange CA {id:016x}"),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "feedrelay mock exchange");
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertFiles {
        ca: write("ca.pem", &ca_cert.pem())?,
        cert: write("cert.pem", &format!("{}{}", cert.pem(), ca_cert.pem()))?,
        key: write("key.pem", &key.serialize_pem())?,
    })
}
