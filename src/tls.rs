//! TLS for the HTTPS/WSS listener (rustls, `ring` provider only).
//!
//! Certificates come from `DIALTONE_TLS_CERT`/`DIALTONE_TLS_KEY`; with neither, a self-signed
//! development certificate is generated into the data directory (mode 0600 key), reused on later
//! starts, and its SHA-256 fingerprint logged so clients can pin it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::{TlsSetup, write_private_file};

const DEV_CERT: &str = "dev-cert.pem";
const DEV_KEY: &str = "dev-key.pem";

/// Make `ring` the process-wide rustls provider (idempotent). Two providers would make rustls
/// panic when it has to choose.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A ready server TLS configuration.
pub struct ServerTls {
    pub config: rustls::ServerConfig,
    /// SHA-256 of the leaf certificate, `AA:BB:…`.
    pub fingerprint: String,
    /// The certificate is the generated development one.
    pub self_signed: bool,
}

/// Load or generate the listener's TLS configuration; `None` when TLS is disabled.
pub fn load(setup: &TlsSetup) -> anyhow::Result<Option<ServerTls>> {
    let (chain, key, self_signed) = match setup {
        TlsSetup::Disabled => return Ok(None),
        TlsSetup::Files { cert, key } => {
            let chain = read_chain(cert)
                .with_context(|| format!("DIALTONE_TLS_CERT: {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("DIALTONE_TLS_KEY: {}", key.display()))?;
            (chain, key, false)
        }
        TlsSetup::SelfSigned { dir } => {
            let (chain, key) = dev_certificate(dir)?;
            (chain, key, true)
        }
    };
    let Some(leaf) = chain.first() else {
        bail!("DIALTONE_TLS_CERT: no certificate in the file");
    };
    let fingerprint = fingerprint(leaf);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("DIALTONE_TLS_KEY does not match DIALTONE_TLS_CERT")?;
    // WebSockets need HTTP/1.1 (the upgrade); dialtone serves nothing over h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(ServerTls {
        config,
        fingerprint,
        self_signed,
    }))
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_file_iter(path)?.collect::<Result<Vec<_>, _>>()?;
    Ok(chain)
}

/// The development certificate in `dir`, generated on first use.
fn dev_certificate(
    dir: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert_path = dir.join(DEV_CERT);
    let key_path = dir.join(DEV_KEY);
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("DIALTONE_DATA_DIR: cannot create {}", dir.display()))?;
        let names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        let generated = rcgen::generate_simple_self_signed(names)
            .context("generating the development certificate")?;
        // A half-written pair from an interrupted start is replaced.
        let _ = std::fs::remove_file(&key_path);
        write_private_file(&key_path, generated.signing_key.serialize_pem().as_bytes())
            .with_context(|| format!("writing {}", key_path.display()))?;
        std::fs::write(&cert_path, generated.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        tracing::info!(path = %cert_path.display(), "generated a self-signed development certificate");
    }
    let chain =
        read_chain(&cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok((chain, key))
}

/// `AA:BB:…` SHA-256 of a DER certificate (what `openssl x509 -fingerprint -sha256` prints).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
