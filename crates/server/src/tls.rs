//! TLS for the listeners (rustls with ring), reloadable on SIGHUP.
//!
//! A task accepts TCP connections and completes each handshake under a
//! timeout, then hands the stream over a bounded channel: the REST server
//! takes it in `http::serve`, tonic through [`incoming`]. The rustls config
//! lives behind a lock, so a reload applies to the next connection.

use crate::conn::{self, Gate, Guarded};
use anyhow::{bail, Context};
use rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::debug;

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting to be served.
const BACKLOG: usize = 128;

/// Where a listener's certificate, key and (optionally) client CA are.
#[derive(Clone, Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Require client certificates signed by this CA.
    pub(crate) client_ca: Option<PathBuf>,
    /// ALPN protocols to offer (`h2` for gRPC, `http/1.1` for REST).
    pub(crate) alpn: Vec<Vec<u8>>,
}

/// A TLS configuration that can be reloaded from its files.
pub(crate) struct Reloadable {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

fn build(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate PEM in {}", files.cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("no usable private key in {}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read {}", ca.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("bad CA PEM in {}", ca.display()))?)
                    .context("unusable CA certificate")?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key),
    }
    .context("certificate and key do not form a usable identity")?;
    config.alpn_protocols = files.alpn.clone();
    Ok(config)
}

impl Reloadable {
    /// Loads the files now (errors name the file).
    pub(crate) fn load(files: TlsFiles) -> anyhow::Result<Self> {
        let config = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads the files; on error the current configuration stays.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        let config = build(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// Accepts connections that `gate` admits and handshakes them until `stop`.
pub(crate) fn accept(
    listener: TcpListener,
    tls: Arc<Reloadable>,
    gate: Arc<Gate>,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> mpsc::Receiver<(Guarded<TlsStream<TcpStream>>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    let handshakes = tasks.clone();
    tasks.spawn(async move {
        loop {
            let (tcp, peer, permit) = tokio::select! {
                c = conn::accept(&listener, &gate) => c,
                () = stop.cancelled() => break,
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            handshakes.spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((Guarded::new(stream, peer, permit), peer)).await;
                    }
                    Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// The gRPC listener over TLS, for `serve_with_incoming_shutdown`.
pub(crate) fn incoming(
    rx: mpsc::Receiver<(Guarded<TlsStream<TcpStream>>, SocketAddr)>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Guarded<TlsStream<TcpStream>>>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::ReceiverStream::new(rx).map(|(s, _)| Ok(s))
}
