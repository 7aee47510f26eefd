//! The listeners: gRPC ingest, the REST API (and HTTP ingest, and the
//! console), each vendor profile's REST listener, and the operator's
//! `/metrics`; each a supervised task under its connection caps.

use crate::{
    config::Config,
    engine::Engine,
    shutdown::Shutdown,
    tls::{self, Reloadable, TlsFiles},
};
use anyhow::Context;
use axum::{routing::get, Router};
use hookrelay_core::metric;
use hookrelay_ingest::{
    proto::{ingest_service_server::IngestServiceServer, FILE_DESCRIPTOR_SET},
    IngestGrpc, IngestKeys,
};
use metrics_exporter_prometheus::PrometheusHandle;
use std::{convert::Infallible, net::SocketAddr, sync::Arc};
use tokio::{sync::watch, task::JoinHandle};

/// The listeners running, and where.
pub(crate) struct Listeners {
    pub(crate) grpc_addr: SocketAddr,
    pub(crate) http_addr: SocketAddr,
    pub(crate) metrics_addr: SocketAddr,
    /// `profile:<name>=<addr>` of each profile listener.
    pub(crate) profile_addrs: Vec<String>,
    /// The certificates SIGHUP reloads.
    pub(crate) reloadable: Vec<Arc<Reloadable>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Listeners {
    /// Waits until every listener has stopped (after `shutdown.listeners`).
    pub(crate) async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds and serves every listener of `config` in front of `engine`;
/// `metrics` renders `/metrics`.
pub(crate) async fn start_listeners(
    config: &Config,
    engine: &Engine,
    shutdown: &Shutdown,
    metrics: PrometheusHandle,
) -> anyhow::Result<Listeners> {
    // gRPC.
    let ingest = IngestGrpc::new(
        engine.committer.clone(),
        IngestKeys::new(&config.ingest.keys, Some(engine.store.config.clone()))
            .with_shares(engine.shares.clone()),
        engine.catalog.clone(),
        &config.ingest,
        engine.tasks.clone(),
    )
    .limit_auth_failures(
        config.api.auth_failures_per_second,
        config.api.auth_failures_burst,
    );
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen on grpc.listen {}", config.grpc.listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<IngestServiceServer<IngestGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build gRPC reflection")?;
    // The ingest key is checked by the interceptor, before the message is
    // read; the message limit follows from the request limits.
    let ingest_svc = tonic::service::interceptor::InterceptedService::new(
        IngestServiceServer::new(ingest.clone())
            .max_decoding_message_size(config.ingest.max_message_bytes()),
        ingest.interceptor(),
    );
    let listener_limits = crate::conn::fit_to_descriptors(config);
    let grpc = tonic::transport::Server::builder()
        // A quiet connection is pinged; one that does not answer is closed.
        .http2_keepalive_interval(Some(config.grpc.keepalive_interval))
        .http2_keepalive_timeout(Some(config.grpc.keepalive_timeout))
        // A span per call with its request id (the producer's
        // `x-request-id` metadata, or a new one).
        .trace_fn(|req| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map_or_else(hookrelay_core::new_request_id, str::to_owned);
            tracing::info_span!("grpc", request_id = %id, path = %req.uri().path())
        })
        .max_concurrent_streams(Some(config.grpc.max_concurrent_streams))
        .concurrency_limit_per_connection(config.grpc.concurrency_per_connection)
        .timeout(config.grpc.request_timeout)
        // Calls keep their connection's idle timer at bay (see `conn`).
        .layer(crate::conn::TrackLayer)
        .add_service(ingest_svc)
        .add_service(health_svc)
        .add_service(reflection);
    let grpc_stop = shutdown.listeners.clone();
    let grpc_tls = match (&config.grpc.tls_cert, &config.grpc.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            Reloadable::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.grpc.client_ca.clone(),
                alpn: vec![b"h2".to_vec()],
            })
            .context("grpc TLS")?,
        )),
        _ => None,
    };
    let grpc_gate = crate::conn::Gate::new("grpc", listener_limits.grpc);
    let grpc_task = match &grpc_tls {
        Some(tls) => {
            let conns = tls::accept(
                grpc_listener,
                tls.clone(),
                grpc_gate,
                grpc_stop.clone(),
                &engine.tasks,
            );
            engine.tasks.spawn(engine.sup.watch(
                "gRPC listener",
                shutdown.begun.clone(),
                async move {
                    grpc.serve_with_incoming_shutdown(tls::incoming(conns), grpc_stop.cancelled())
                        .await
                },
            ))
        }
        None => engine.tasks.spawn(engine.sup.watch(
            "gRPC listener",
            shutdown.begun.clone(),
            async move {
                let incoming = crate::conn::incoming(grpc_listener, grpc_gate);
                grpc.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled())
                    .await
            },
        )),
    };

    // The log's gauges are read when scraped, not on the scheduler's tick:
    // a scrape right after a publish shows it.
    // Every partition's head: the gauge is the highest of them.
    let scrape_heads: Vec<watch::Receiver<hookrelay_core::Seq>> =
        (0..engine.store.log.partitions())
            .map(|p| engine.store.log.durable_head(p))
            .collect();

    let scrape_store = engine.store.clone();
    let scrape_lag = engine.lag.clone();
    let scrape_handles = engine.handles.clone();
    let metrics_route = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            let head = scrape_heads.iter().map(|h| *h.borrow()).max().unwrap_or(0);
            let lag = scrape_lag.lag();
            let pending = scrape_lag.pending();
            let (open, busiest) = {
                let handles = scrape_handles.read().unwrap_or_else(|e| e.into_inner());
                let open: usize = handles
                    .values()
                    .map(hookrelay_scheduler::SchedulerHandle::open_circuits)
                    .sum();
                let busiest: Vec<_> = handles
                    .values()
                    .map(hookrelay_scheduler::SchedulerHandle::busiest_hosts)
                    .collect();
                (open, busiest)
            };
            let s = scrape_store.housekeeping.clone();
            async move {
                // One consistent picture: all three from the same moment.
                metrics::gauge!(metric::LOG_SEQUENCE).set(head as f64);
                metrics::gauge!(metric::FANOUT_LAG).set(lag as f64);
                metrics::gauge!(metric::DELIVERIES_PENDING).set(pending as f64);
                metrics::gauge!(metric::CIRCUITS_OPEN).set(open as f64);
                metrics::gauge!(metric::STORE_BYTES).set(s.size_on_disk().await as f64);
                let mut text = m.render();
                text.push_str(&crate::telemetry::host_concurrency_text(busiest));
                text
            }
        }),
    );
    let mut routes =
        hookrelay_api::router(engine.api.clone()).merge(hookrelay_ingest::http_router(ingest));
    if config.http.console {
        routes = routes.merge(hookrelay_console::router());
    }
    let app = hookrelay_api::finish(routes, engine.api.clone());
    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    let http_addr = http_listener.local_addr()?;
    let http_stop = shutdown.listeners.clone();
    let http_tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            Reloadable::load(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: None,
                alpn: vec![b"http/1.1".to_vec()],
            })
            .context("http TLS")?,
        )),
        _ => None,
    };
    // The main listener and each vendor profile's, served alike.
    let spawn_rest = |listener: tokio::net::TcpListener,
                      app: Router,
                      what: &'static str,
                      label: &'static str| {
        let gate = crate::conn::Gate::new(label, listener_limits.http);
        let conns = match &http_tls {
            Some(tls) => crate::http::Connections::Tls(tls::accept(
                listener,
                tls.clone(),
                gate,
                http_stop.clone(),
                &engine.tasks,
            )),
            None => crate::http::Connections::Tcp(listener, gate),
        };
        let serve = crate::http::serve(
            conns,
            app,
            config.http.header_read_timeout,
            http_stop.clone(),
            shutdown.listener_drain(),
        );
        engine
            .tasks
            .spawn(engine.sup.watch(what, shutdown.begun.clone(), async move {
                serve.await;
                Ok::<(), Infallible>(())
            }))
    };
    let http_task = spawn_rest(http_listener, app, "REST listener", "rest");
    // The operator's listener: `/metrics` only, plain HTTP, never TLS'd
    // with the tenants' certificate, under its own connection caps.
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics.listen)
        .await
        .with_context(|| format!("cannot listen on metrics.listen {}", config.metrics.listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics_gate = crate::conn::Gate::new("metrics", listener_limits.http);
    let metrics_serve = crate::http::serve::<tokio::net::TcpStream>(
        crate::http::Connections::Tcp(metrics_listener, metrics_gate),
        metrics_route,
        config.http.header_read_timeout,
        http_stop.clone(),
        shutdown.listener_drain(),
    );
    let metrics_task = engine.tasks.spawn(engine.sup.watch(
        "metrics listener",
        shutdown.begun.clone(),
        async move {
            metrics_serve.await;
            Ok::<(), Infallible>(())
        },
    ));
    let mut profile_addrs = Vec::new();
    let mut profile_tasks = Vec::new();
    for p in &config.profiles {
        let app = hookrelay_api::profile_app(&p.name, engine.api.clone())
            .with_context(|| format!("unknown profile {:?}", p.name))?;
        let listener = tokio::net::TcpListener::bind(p.listen)
            .await
            .with_context(|| format!("cannot listen on the {} profile's {}", p.name, p.listen))?;
        profile_addrs.push(format!("profile:{}={}", p.name, listener.local_addr()?));
        profile_tasks.push(spawn_rest(listener, app, "profile listener", "profile"));
    }
    let reloadable: Vec<Arc<Reloadable>> =
        grpc_tls.iter().chain(http_tls.iter()).cloned().collect();
    let mut tasks = vec![grpc_task, http_task, metrics_task];
    tasks.extend(profile_tasks);
    Ok(Listeners {
        grpc_addr,
        http_addr,
        metrics_addr,
        profile_addrs,
        reloadable,
        tasks,
    })
}
