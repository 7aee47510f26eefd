//! Serving the REST router: plain TCP or TLS connections, each through
//! hyper's HTTP/1 with a header-read timeout (a client that trickles its
//! request head — slowloris — is cut off), and a graceful shutdown.

use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{net::SocketAddr, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Where connections come from.
pub(crate) enum Connections<T> {
    /// Plain TCP.
    Tcp(TcpListener),
    /// Already TLS-handshaken streams (see `tls::accept`).
    Tls(mpsc::Receiver<(T, SocketAddr)>),
}

/// Serves `app` until `stop`, then lets open requests finish for at most
/// `drain`.
pub(crate) async fn serve<T>(
    mut conns: Connections<T>,
    app: Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
    drain: Duration,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            next = next_conn(&mut conns) => match next {
                Some(Conn::Tcp(io, peer)) => spawn_conn(io, peer, &app, header_read_timeout, &graceful),
                Some(Conn::Tls(io, peer)) => spawn_conn(io, peer, &app, header_read_timeout, &graceful),
                None => break,
            },
        }
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("REST connections still open at the drain deadline");
    }
}

enum Conn<T> {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Tls(T, SocketAddr),
}

async fn next_conn<T>(conns: &mut Connections<T>) -> Option<Conn<T>> {
    match conns {
        Connections::Tcp(listener) => loop {
            match listener.accept().await {
                Ok((io, peer)) => {
                    let _ = io.set_nodelay(true);
                    return Some(Conn::Tcp(io, peer));
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        },
        Connections::Tls(rx) => rx.recv().await.map(|(io, peer)| Conn::Tls(io, peer)),
    }
}

fn spawn_conn<I>(
    io: I,
    peer: SocketAddr,
    app: &Router,
    header_read_timeout: Duration,
    graceful: &GracefulShutdown,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // The client address, for the failed-authentication limit.
    let addr = hookrelay_api::ClientAddr(peer.ip());
    let svc = tower::ServiceExt::map_request(
        app.clone(),
        move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(addr);
            req
        },
    );
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(peer = %peer, error = %e, "REST connection ended with an error");
        }
    });
}
