//! Connection hygiene of every listener (REST, gRPC, each profile's; TLS or
//! not), so that no client can take the engine's descriptors or attention
//! away from the others (docs/security.md, "Availability"):
//!
//! - a cap on the connections a listener holds open, and on those of one
//!   client address; a connection past either is closed at once, logged
//!   (at most once a second per listener) and counted in
//!   `hookrelay_connections_refused_total{listener,reason}`. A full listener
//!   first makes room by closing its oldest connection that has not sent a
//!   request yet: connections that only hold a descriptor (an HTTP/2
//!   preface and nothing else) cannot keep a client that sends requests
//!   out, however many addresses they come from;
//! - an idle timer per connection: one that has sent no request within
//!   `first_request_timeout` of its accept, or none for `idle_timeout` since
//!   its last answer, is closed. A request in flight (a gRPC stream
//!   included, until its answer's body ends) keeps the connection open.
//!   Only requests count: bytes alone (an HTTP/2 preface, pings, settings)
//!   do not.
//!
//! [`Gate::admit`] takes the permits; [`Guarded`] wraps the stream, owns
//! them (dropped with the connection) and runs the idle timer in its reads;
//! [`TrackLayer`] marks requests in and out from the [`PeerInfo`] the
//! connection carries in each request's extensions.

use hookrelay_core::metric;
use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};
use tracing::{debug, warn};

/// What one listener allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most connections open at once (0: no cap).
    pub(crate) max: usize,
    /// Most connections of one client address open at once (0: no cap).
    pub(crate) max_per_address: usize,
    /// Longest a new connection may go without sending a request.
    pub(crate) first_request: Duration,
    /// Longest a connection may stay open with no request in flight.
    pub(crate) idle: Duration,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener holds its `max` connections.
    Listener,
    /// The client address holds its `max_per_address`.
    Address,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::Listener => "listener_full",
            Self::Address => "address_full",
        }
    }
}

/// The connection accounting of one listener.
pub(crate) struct Gate {
    name: &'static str,
    limits: Limits,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Connections in accept order, for eviction: those that have sent no
    /// request yet are closed first when the listener is full.
    admitted: Mutex<std::collections::VecDeque<std::sync::Weak<Activity>>>,
    /// The last refusal logged, and how many went unlogged since.
    refusals: Mutex<(Option<Instant>, u64)>,
}

impl Gate {
    /// The gate of the listener `name` (a metric label).
    pub(crate) fn new(name: &'static str, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            name,
            limits,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            admitted: Mutex::new(std::collections::VecDeque::new()),
            refusals: Mutex::new((None, 0)),
        })
    }

    /// The permits for a connection from `peer`, or why not (logged and
    /// counted here).
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Permit, Refusal> {
        let ip = canonical(peer.ip());
        let verdict = self.take(ip);
        match verdict {
            Ok(()) => {
                metrics::gauge!(metric::CONNECTIONS_OPEN, "listener" => self.name).increment(1.0);
                let activity = Activity::new();
                let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
                if admitted.len() >= self.limits.max.max(1024) * 2 {
                    admitted.retain(|a| a.upgrade().is_some_and(|a| a.fresh()));
                }
                admitted.push_back(Arc::downgrade(&activity));
                Ok(Permit {
                    gate: self.clone(),
                    ip,
                    activity,
                })
            }
            Err(why) => {
                metrics::counter!(metric::CONNECTIONS_REFUSED, "listener" => self.name, "reason" => why.label())
                    .increment(1);
                self.log_refusal(peer, why);
                Err(why)
            }
        }
    }

    fn take(&self, ip: IpAddr) -> Result<(), Refusal> {
        let mut per = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let here = per.get(&ip).copied().unwrap_or(0);
        if self.limits.max_per_address > 0 && here >= self.limits.max_per_address {
            return Err(Refusal::Address);
        }
        // Under the address lock, so two accepts cannot both take the last.
        if self.limits.max > 0
            && self.open.load(Ordering::Relaxed) >= self.limits.max
            && !self.evict_one()
        {
            return Err(Refusal::Listener);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        per.insert(ip, here + 1);
        Ok(())
    }

    /// Closes the oldest connection that has sent no request yet; `false`
    /// when there is none. The new one takes its place at once: the count
    /// runs over the cap only until the evicted connection's next read.
    fn evict_one(&self) -> bool {
        let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(weak) = admitted.pop_front() {
            let Some(a) = weak.upgrade() else { continue };
            if a.fresh() {
                a.evict();
                metrics::counter!(metric::CONNECTIONS_IDLE_CLOSED, "listener" => self.name, "reason" => "evicted")
                    .increment(1);
                return true;
            }
        }
        false
    }

    fn release(&self, ip: IpAddr) {
        let mut per = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        match per.get_mut(&ip) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                per.remove(&ip);
            }
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(metric::CONNECTIONS_OPEN, "listener" => self.name).decrement(1.0);
    }

    /// One warning a second at most, with the count of those it stands for.
    fn log_refusal(&self, peer: SocketAddr, why: Refusal) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.1 += 1;
        let now = Instant::now();
        if r.0
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            warn!(
                listener = self.name,
                peer = %peer.ip(),
                reason = why.label(),
                refused = r.1,
                open = self.open.load(Ordering::Relaxed),
                "connections refused"
            );
            *r = (Some(now), 0);
        }
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The limits of the gRPC listener and of each REST listener (the main one
/// and every profile's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListenerLimits {
    pub(crate) grpc: Limits,
    pub(crate) http: Limits,
}

/// Descriptors kept out of the listeners' share: the store's files, the
/// NATS connection, logs, and the delivery client's connections (counted
/// apart, from `delivery.concurrency`).
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the process's soft descriptor limit to its hard limit (as Go's
/// runtime and nginx do), then lowers the listeners' connection caps where
/// their sum would not fit what is left beside the delivery client's
/// connections and a reserve: a flood of connections then meets the cap
/// (and its eviction of idle ones), never `EMFILE` on every accept.
pub(crate) fn fit_to_descriptors(config: &crate::config::Config) -> ListenerLimits {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    // gRPC, REST, metrics and each profile's.
    let listeners = 3 + config.profiles.len() as u64;
    let delivery = (config.delivery.concurrency as u64).min(soft / 4);
    let usable = soft.saturating_sub(RESERVED_DESCRIPTORS + delivery);
    let mut grpc = Limits {
        max: config.grpc.max_connections,
        max_per_address: config.grpc.max_connections_per_address,
        first_request: config.grpc.first_request_timeout,
        idle: config.grpc.idle_timeout,
    };
    let mut http = Limits {
        max: config.http.max_connections,
        max_per_address: config.http.max_connections_per_address,
        // A REST client's first request is its head, which
        // `header_read_timeout` bounds too.
        first_request: config.http.header_read_timeout,
        idle: config.http.idle_timeout,
    };
    let uncapped = |l: &Limits| {
        if l.max == 0 {
            u64::MAX / 8
        } else {
            l.max as u64
        }
    };
    let wanted = uncapped(&grpc) + uncapped(&http) * (listeners - 1);
    if wanted > usable {
        let share = |max: u64| -> usize {
            let fitted = u128::from(max) * u128::from(usable) / u128::from(wanted);
            usize::try_from(fitted).unwrap_or(usize::MAX).max(16)
        };
        grpc.max = share(uncapped(&grpc));
        http.max = share(uncapped(&http));
        warn!(
            descriptor_limit = soft,
            grpc_max_connections = grpc.max,
            http_max_connections = http.max,
            "the descriptor limit is too low for the configured connection caps; lowered them (raise LimitNOFILE)"
        );
    }
    for l in [&mut grpc, &mut http] {
        if l.max > 0 && l.max_per_address > l.max {
            l.max_per_address = l.max;
        }
    }
    ListenerLimits { grpc, http }
}

/// The next connection of `listener` that `gate` admits, with its permit.
/// A failed accept (out of descriptors, say) is logged and retried after a
/// pause; a refused connection is closed at once.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    gate: &Arc<Gate>,
) -> (tokio::net::TcpStream, SocketAddr, Permit) {
    loop {
        match listener.accept().await {
            Ok((io, peer)) => match gate.admit(peer) {
                Ok(permit) => {
                    let _ = io.set_nodelay(true);
                    return (io, peer, permit);
                }
                Err(_) => drop(io),
            },
            Err(e) => {
                warn!(listener = gate.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The accepted connections of a plain listener, for tonic's
/// `serve_with_incoming_shutdown`.
pub(crate) fn incoming(
    listener: tokio::net::TcpListener,
    gate: Arc<Gate>,
) -> impl tokio_stream::Stream<Item = std::io::Result<Guarded<tokio::net::TcpStream>>> {
    futures_util::stream::unfold((listener, gate), |(listener, gate)| async move {
        let (io, peer, permit) = accept(&listener, &gate).await;
        Some((Ok(Guarded::new(io, peer, permit)), (listener, gate)))
    })
}

/// An IPv4 client seen through an IPv4-mapped IPv6 address counts as itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A connection's place under its listener's caps, given back on drop.
pub(crate) struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
    activity: Arc<Activity>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(self.ip);
    }
}

/// What a connection's requests report to its idle timer.
#[derive(Debug)]
pub(crate) struct Activity {
    /// Requests in flight (until their answer's body ends).
    requests: AtomicUsize,
    /// Milliseconds after `born` when the last request ended (0: none yet).
    last_ms: AtomicU64,
    born: Instant,
    /// Closed by its gate to make room.
    evicted: std::sync::atomic::AtomicBool,
    /// The connection's reader, woken by an eviction.
    reader: futures_util::task::AtomicWaker,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            requests: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            born: Instant::now(),
            evicted: std::sync::atomic::AtomicBool::new(false),
            reader: futures_util::task::AtomicWaker::new(),
        })
    }

    /// Whether no request has begun on it yet.
    fn fresh(&self) -> bool {
        !self.evicted.load(Ordering::Acquire)
            && self.requests.load(Ordering::Acquire) == 0
            && self.last_ms.load(Ordering::Acquire) == 0
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.reader.wake();
    }

    /// A request began; it ends when the guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection may be closed if nothing happens meanwhile
    /// (`None` while a request is in flight).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.requests.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.last_ms.load(Ordering::Acquire) {
            0 => Some(self.born + limits.first_request),
            ms => Some(self.born + Duration::from_millis(ms) + limits.idle),
        }
    }
}

/// A request in flight on its connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        // At least 1: 0 means "no request yet".
        let ms = (a.born.elapsed().as_millis() as u64).max(1);
        a.last_ms.store(ms, Ordering::Release);
        a.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Who a request's connection is: in every request's extensions (tonic
/// puts it there as the connection's `ConnectInfo`; the REST server does
/// the same).
#[derive(Clone, Debug)]
pub(crate) struct PeerInfo {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    pub(crate) activity: Arc<Activity>,
}

/// A connection under its listener's caps and idle timer.
pub(crate) struct Guarded<IO> {
    io: IO,
    peer: PeerInfo,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    closed: bool,
    /// Reads that returned bytes (for [`READS_PER_CHECK`]).
    reads: u32,
    permit: Permit,
}

impl<IO> Guarded<IO> {
    /// `io` from `peer`, holding `permit`.
    pub(crate) fn new(io: IO, peer: SocketAddr, permit: Permit) -> Self {
        let activity = permit.activity.clone();
        let limits = permit.gate.limits;
        let first = activity.born + limits.first_request;
        Self {
            io,
            peer: PeerInfo {
                addr: peer,
                activity,
            },
            limits,
            timer: Box::pin(tokio::time::sleep_until(first)),
            closed: false,
            reads: 0,
            permit,
        }
    }

    /// What its requests carry.
    pub(crate) fn peer(&self) -> PeerInfo {
        self.peer.clone()
    }

    /// Whether the idle timer has run out; otherwise the timer is set for
    /// the next check (and registered with `cx`).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.peer.activity.reader.register(cx.waker());
        // An eviction between the first look and the registration.
        if self.peer.activity.evicted.load(Ordering::Acquire) {
            return true;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            match self.peer.activity.deadline(&self.limits) {
                Some(at) if at <= now => return true,
                Some(at) => self.timer.as_mut().reset(at),
                // A request is in flight: look again an idle period later.
                None => self.timer.as_mut().reset(now + self.limits.idle),
            }
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.closed || self.peer.activity.evicted.load(Ordering::Acquire) {
            return self.close();
        }
        // While bytes flow the timer is left alone (a read costs one atomic
        // load), but the deadline is still looked at every few reads, so a
        // client that streams bytes without requests is closed too; once
        // the connection waits for bytes, the timer is armed.
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending if self.idle_expired(cx) => self.close(),
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                self.reads = self.reads.wrapping_add(1);
                if self.reads.is_multiple_of(READS_PER_CHECK) && self.past_deadline() {
                    return self.close();
                }
                Poll::Ready(r)
            }
        }
    }
}

/// Reads between two looks at the idle deadline while bytes flow.
const READS_PER_CHECK: u32 = 64;

impl<IO> Guarded<IO> {
    /// Whether the idle deadline has passed (without arming the timer).
    fn past_deadline(&self) -> bool {
        self.peer
            .activity
            .deadline(&self.limits)
            .is_some_and(|at| at <= Instant::now())
    }

    /// Ends the connection: end of stream, and the server closes it.
    fn close(&mut self) -> Poll<std::io::Result<()>> {
        if !self.closed {
            debug!(peer = %self.peer.addr, "idle connection closed");
            if !self.peer.activity.evicted.load(Ordering::Acquire) {
                metrics::counter!(metric::CONNECTIONS_IDLE_CLOSED, "listener" => self.permit.gate.name, "reason" => "idle")
                    .increment(1);
            }
            self.closed = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer()
    }
}

/// Marks each request in flight on its connection's [`Activity`] until its
/// answer's body is done, and puts its [`hookrelay_core::ClientAddr`] in
/// its extensions (a request without [`PeerInfo`] passes untracked).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track(inner)
    }
}

/// See [`TrackLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Track<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for Track<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Tracked<R>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req.extensions().get::<PeerInfo>().cloned();
        let guard = peer.map(|p| {
            req.extensions_mut()
                .insert(hookrelay_core::ClientAddr(canonical(p.addr.ip())));
            p.activity.begin()
        });
        let fut = self.0.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| Tracked {
                body,
                _guard: guard,
            }))
        })
    }
}

/// An answer's body that keeps its request in flight until it is dropped.
pub(crate) struct Tracked<B> {
    body: B,
    _guard: Option<InFlight>,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            max: 3,
            max_per_address: 2,
            first_request: Duration::from_secs(5),
            idle: Duration::from_secs(60),
        }
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 4000))
    }

    #[test]
    fn caps_per_address_and_per_listener_and_permits_give_back() {
        let gate = Gate::new("test", limits());
        let a1 = gate.admit(peer(1)).expect("first");
        let a2 = gate.admit(peer(1)).expect("second");
        assert_eq!(gate.admit(peer(1)).err(), Some(Refusal::Address));
        // The mapped form of the same client is the same client.
        let mapped = SocketAddr::from((std::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped(), 1));
        assert_eq!(gate.admit(mapped).err(), Some(Refusal::Address));
        let b = gate.admit(peer(2)).expect("another address");
        // Full, and every connection has had a request: refused.
        let _busy: Vec<_> = [&a1, &a2, &b].iter().map(|p| p.activity.begin()).collect();
        assert_eq!(gate.admit(peer(3)).err(), Some(Refusal::Listener));
        assert_eq!(gate.open(), 3);
        drop(a1);
        let _a3 = gate.admit(peer(1)).expect("a place came back");
        drop((a2, b));
        assert_eq!(gate.open(), 1);
    }

    #[test]
    fn a_full_listener_closes_its_oldest_connection_without_a_request_to_make_room() {
        let gate = Gate::new("test", limits());
        let served = gate.admit(peer(1)).expect("admitted");
        let _request = served.activity.begin();
        let idle_old = gate.admit(peer(2)).expect("admitted");
        let idle_new = gate.admit(peer(3)).expect("admitted");
        let _fourth = gate.admit(peer(4)).expect("room made");
        assert!(
            idle_old.activity.evicted.load(Ordering::Acquire),
            "the oldest fresh one goes"
        );
        assert!(
            !served.activity.evicted.load(Ordering::Acquire),
            "one with a request stays"
        );
        assert!(!idle_new.activity.evicted.load(Ordering::Acquire));
    }

    #[test]
    fn zero_means_no_cap() {
        let gate = Gate::new(
            "test",
            Limits {
                max: 0,
                max_per_address: 0,
                ..limits()
            },
        );
        let held: Vec<_> = (0..100)
            .map(|_| gate.admit(peer(1)).expect("admitted"))
            .collect();
        assert_eq!(gate.open(), held.len());
    }

    /// A guarded in-memory connection and the client's end.
    fn pipe(gate: &Arc<Gate>) -> (Guarded<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(64);
        let permit = gate.admit(peer(9)).expect("admitted");
        (Guarded::new(server, peer(9), permit), client)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_is_closed_after_the_first_request_timeout() {
        let gate = Gate::new("test", limits());
        let (mut conn, mut client) = pipe(&gate);
        // Bytes are not requests: a preface does not keep it open.
        client
            .write_all(b"PRI * HTTP/2.0\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        let mut buf = [0u8; 64];
        assert!(conn.read(&mut buf).await.expect("read") > 0);
        assert_eq!(conn.read(&mut buf).await.expect("read"), 0, "closed");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(conn);
        assert_eq!(gate.open(), 0, "its permit went with it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_streams_bytes_without_requests_is_closed_too() {
        let gate = Gate::new("test", limits());
        let (server, mut client) = tokio::io::duplex(4096);
        let permit = gate.admit(peer(9)).expect("admitted");
        let mut conn = Guarded::new(server, peer(9), permit);
        // Past the first-request timeout, bytes keep arriving: no read
        // waits, so the timer is never armed; the every-64-reads look ends it.
        tokio::time::advance(Duration::from_secs(6)).await;
        client.write_all(&[0u8; 1000]).await.expect("write");
        let mut buf = [0u8; 1];
        let mut reads = 0;
        while conn.read(&mut buf).await.expect("read") == 1 {
            reads += 1;
            assert!(reads < 1000, "never closed");
        }
        // The read that looked still hands over its byte; the next is the end.
        assert!(
            reads <= READS_PER_CHECK as usize,
            "closed after {reads} reads"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_connection_reads_end_of_stream_at_once() {
        let gate = Gate::new("test", Limits { max: 1, ..limits() });
        let (mut conn, _client) = pipe(&gate);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            conn.read(&mut buf).await.expect("read")
        });
        tokio::task::yield_now().await;
        let started = Instant::now();
        let _other = gate.admit(peer(10)).expect("room made");
        assert_eq!(reader.await.expect("reader"), 0);
        assert_eq!(started.elapsed(), Duration::ZERO, "not by its timer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_keeps_it_open_and_the_idle_timer_starts_at_its_end() {
        let gate = Gate::new("test", limits());
        let (mut conn, _client) = pipe(&gate);
        let activity = conn.peer().activity;
        let started = Instant::now();
        let request = activity.begin();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = conn.read(&mut buf).await.expect("read");
            (n, Instant::now())
        });
        // Long past both timeouts, the request is still in flight.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(!reader.is_finished());
        drop(request);
        let (n, closed_at) = reader.await.expect("reader");
        assert_eq!(n, 0);
        assert_eq!(closed_at - started, Duration::from_secs(360));
    }
}
