//! Serving the REST router: plain TCP or TLS connections under the
//! listener's connection caps and idle timer (`conn`), each through hyper's
//! HTTP/1 with a header-read timeout (a client that trickles its request
//! head — slowloris — is cut off), and a graceful shutdown. Request bodies
//! have their own deadline (the API's body middleware).

use crate::conn::{Gate, Guarded, TrackLayer};
use axum::Router;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::mpsc,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Where connections come from.
pub(crate) enum Connections<T> {
    /// Plain TCP, admitted by the listener's gate.
    Tcp(TcpListener, Arc<Gate>),
    /// Already admitted and TLS-handshaken streams (see `tls::accept`).
    Tls(mpsc::Receiver<(Guarded<T>, SocketAddr)>),
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
    // Every connection's task, reaped as it ends; those still open past
    // the drain deadline are aborted when the set is dropped.
    let mut open = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = open.join_next(), if !open.is_empty() => {}
            next = next_conn(&mut conns) => match next {
                Some(Conn::Tcp(io, peer)) => {
                    open.spawn(conn_task(io, peer, &app, header_read_timeout, &graceful));
                }
                Some(Conn::Tls(io, peer)) => {
                    open.spawn(conn_task(io, peer, &app, header_read_timeout, &graceful));
                }
                None => break,
            },
        }
    }
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            connections = open.len(),
            "REST connections still open at the drain deadline"
        );
    }
}

enum Conn<T> {
    Tcp(Guarded<tokio::net::TcpStream>, SocketAddr),
    Tls(Guarded<T>, SocketAddr),
}

async fn next_conn<T>(conns: &mut Connections<T>) -> Option<Conn<T>> {
    match conns {
        Connections::Tcp(listener, gate) => {
            let (io, peer, permit) = crate::conn::accept(listener, gate).await;
            Some(Conn::Tcp(Guarded::new(io, peer, permit), peer))
        }
        Connections::Tls(rx) => rx.recv().await.map(|(io, peer)| Conn::Tls(io, peer)),
    }
}

/// Serving one connection: the task `serve` runs for it.
fn conn_task<I>(
    io: Guarded<I>,
    peer: SocketAddr,
    app: &Router,
    header_read_timeout: Duration,
    graceful: &GracefulShutdown,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // Who the connection is (its address, for the per-address limits; its
    // activity, for its idle timer), as tonic gives it to gRPC calls.
    let info = io.peer();
    let svc = tower::ServiceBuilder::new()
        .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            req
        })
        .layer(TrackLayer)
        .service(app.clone());
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    let conn = graceful.watch(conn);
    async move {
        if let Err(e) = conn.await {
            debug!(peer = %peer, error = %e, "REST connection ended with an error");
        }
    }
}
