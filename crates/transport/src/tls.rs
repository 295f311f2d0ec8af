//! The TLS client configuration every upstream connection uses, reqwest's and the direct transport's alike, so
//! both trust exactly the same roots.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use anyhow::Context;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Mozilla's roots (as shipped in `webpki-roots`), the system's roots, and the configured CA bundle (a
/// corporate TLS-inspecting proxy's CA, or a test upstream's). ALPN is left empty: each connector sets its
/// own protocols.
pub fn client_config(ca_bundle: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let roots = roots(ca_bundle)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

/// TLS over `tcp` to `uri`'s host (an IPv6 literal without its brackets).
pub(crate) async fn connect<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &tokio_rustls::TlsConnector,
    uri: &http::Uri,
    tcp: IO,
) -> Result<tokio_rustls::client::TlsStream<IO>, crate::TransportError> {
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(crate::TransportError::of)?;
    tls.connect(name, tcp).await.map_err(crate::TransportError::of)
}

/// `connecting` (TCP, TLS, a protocol's handshake), given at most [`crate::CONNECT_TIMEOUT`].
pub(crate) async fn within_connect_timeout<T>(
    connecting: impl Future<Output = Result<T, crate::TransportError>>,
) -> Result<T, crate::TransportError> {
    match tokio::time::timeout(crate::CONNECT_TIMEOUT, connecting).await {
        Ok(result) => result,
        Err(_) => {
            Err(crate::TransportError::described(crate::TransportKind::Timeout, "connecting to the upstream timed out"))
        }
    }
}

/// The root store for a CA bundle (or none), read once per process and shared by every client built from it:
/// the reqwest client, the direct transport and one client per distinct proxy would otherwise each read and
/// parse the system's certificates (~150 files, a few hundred KB of parsed roots each).
fn roots(ca_bundle: Option<&Path>) -> anyhow::Result<Arc<RootCertStore>> {
    static LOADED: LazyLock<Mutex<HashMap<Option<PathBuf>, Arc<RootCertStore>>>> = LazyLock::new(Default::default);
    let key = ca_bundle.map(Path::to_path_buf);
    if let Some(roots) = LOADED.lock().get(&key) {
        return Ok(roots.clone());
    }
    // Loaded outside the lock: two first callers may both read the files; the second's result is kept, both
    // are equal.
    let roots = Arc::new(load_roots(ca_bundle)?);
    LOADED.lock().insert(key, roots.clone());
    Ok(roots)
}

fn load_roots(ca_bundle: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    // Unreadable or malformed system certificates are skipped, as reqwest does: the bundled roots remain.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path).with_context(|| format!("cannot read CA bundle {}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.with_context(|| format!("{} is not a PEM certificate bundle", path.display()))?;
            roots.add(cert).with_context(|| format!("{} holds a certificate that cannot be a root", path.display()))?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "{} holds no PEM certificate", path.display());
    }
    Ok(roots)
}
