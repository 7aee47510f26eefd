//! A recording webhook receiver with a scripted sequence of answers.

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, Router};
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("delivery body is JSON")
    }
}

#[derive(Default)]
struct Inner {
    got: Vec<Received>,
    script: VecDeque<u16>,
    default_status: u16,
    /// While set, requests wait (unanswered) until it is closed.
    hold: Option<Arc<tokio::sync::Semaphore>>,
    /// Time taken to answer each request after recording it.
    delay: std::time::Duration,
}

/// A receiver on 127.0.0.1; stops when dropped.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hold = inner.lock().expect("lock").hold.clone();
    if let Some(gate) = hold {
        // A closed semaphore lets every waiter through, present and future.
        let _ = gate.acquire().await;
    }
    let (status, delay) = {
        let mut g = inner.lock().expect("lock");
        let status = g.script.pop_front().unwrap_or(g.default_status);
        g.got.push(Received {
            headers,
            body,
            at: Instant::now(),
            status,
        });
        (status, g.delay)
    };
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

impl Receiver {
    /// A receiver answering 200 unless scripted otherwise.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// A receiver on a given address (to come back on the same port).
    pub async fn start_on(addr: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            default_status: 200,
            ..Inner::default()
        }));
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            inner,
            addr,
            _stop: Arc::new(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Answers `statuses` in order, then the default.
    pub fn script(&self, statuses: &[u16]) {
        self.inner.lock().expect("lock").script.extend(statuses);
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, status: u16) {
        self.inner.lock().expect("lock").default_status = status;
    }

    /// Takes `delay` to answer each request (recorded on arrival).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.inner.lock().expect("lock").delay = delay;
    }

    /// Holds every request unanswered until [`Receiver::release`].
    pub fn hold(&self) {
        self.inner.lock().expect("lock").hold = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Answers the held requests and stops holding.
    pub fn release(&self) {
        if let Some(gate) = self.inner.lock().expect("lock").hold.take() {
            gate.close();
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").got.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().expect("lock").got.len()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        super::eventually(secs, &format!("{n} deliveries"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}
