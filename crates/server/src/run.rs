//! `hookrelay serve`: open the store, wire ingest, scheduler, workers and the
//! REST API together, serve, and shut down in order.
//!
//! Shutdown (SIGINT/SIGTERM): `/readyz` turns 503 and the workers stop
//! taking tasks at once (no attempt starts after the stop begins); the
//! listeners close and the committer finishes the batches it holds; attempts
//! in flight finish until the drain deadline while the scheduler keeps
//! recording their outcomes; then the scheduler writes what it has and the
//! store is flushed (a failed flush exits non-zero). Whatever is still
//! unanswered comes back after a restart; nothing answered is sent again.

use crate::{
    config::Config,
    dev,
    notify::Notifier,
    supervise::Supervisor,
    telemetry::{self, LogHandle},
    tls::{self, Reloadable, TlsFiles},
};
use anyhow::Context;
use axum::{routing::get, Router};
use hookrelay_api::{ApiConfig, ApiDeps, ApiState, RateLimit};
use hookrelay_core::{metric, Catalog, Progress};
use hookrelay_ingest::{
    proto::{ingest_service_server::IngestServiceServer, FILE_DESCRIPTOR_SET},
    Committer, IngestGrpc, IngestKeys,
};
use hookrelay_scheduler::Partitions;
use hookrelay_store::Housekeeping;
use hookrelay_worker::WorkerPool;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::sync::{mpsc, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

/// How long a failed engine keeps answering `/readyz` 503 before it shuts
/// down.
const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// Runs the server until a shutdown signal or an engine failure. `config_path` is re-read on
/// SIGHUP for the log level.
pub(crate) async fn serve(
    mut config: Config,
    dev_mode: bool,
    config_path: Option<std::path::PathBuf>,
    logs: LogHandle,
) -> anyhow::Result<()> {
    let creds = if dev_mode {
        Some(dev::prepare(&mut config)?)
    } else {
        None
    };
    let metrics = telemetry::init_metrics().context("cannot install the metrics recorder")?;
    // The stores, from the embedded data directory or the cluster.
    let store = crate::backend::open_backend(&config).await?;
    if let Some(c) = &creds {
        dev::ensure(&store, c).await?;
    }
    let catalog = Arc::new(Catalog::with_extra(&config.catalog.extra));

    let tasks = TaskTracker::new();
    // Cancelled first when the shutdown begins: after it, engine tasks may
    // end (in the shutdown's order) without that being a failure.
    let shutting_down = CancellationToken::new();
    let stop_listeners = CancellationToken::new();
    let stop_ingest = CancellationToken::new();
    let stop_workers = CancellationToken::new();
    let stop_scheduler = CancellationToken::new();

    // Ingest → log; scheduler progress → ingest (back-pressure).
    let (progress_tx, progress_rx) = watch::channel(Progress::default());
    let (committer, committer_handle) =
        Committer::new(store.log.clone(), &config.ingest, progress_rx);

    // Scheduler ⇄ workers.
    let (task_tx, task_rx) = mpsc::channel(config.scheduler.task_channel);
    let (report_tx, report_rx) = mpsc::channel(config.scheduler.report_channel);
    let mut scheduler_cfg = config.scheduler.clone();
    if store.coordination.is_some() {
        // A NATS server's death stalls writes while its streams elect new
        // leaders: ride it out rather than take every node down at once.
        scheduler_cfg.storage_give_up = scheduler_cfg.storage_give_up.max(Duration::from_secs(60));
    }
    // Each tenant's share of the pending deliveries: counted by the
    // schedulers, enforced by ingest, replay and manual retry.
    let shares = Arc::new(hookrelay_core::PendingShares::new(
        config.ingest.share_limits(),
    ));
    let mut partitions = Partitions::new(
        store.log.clone(),
        store.config.clone(),
        store.deliveries.clone(),
        catalog.clone(),
        scheduler_cfg,
        &config.delivery,
    )
    .sharing(shares.clone());
    // Which partitions this node drives: the one of the embedded store for
    // ever, or its share of those of a backend other nodes share.
    let stop_leases = CancellationToken::new();
    let mut membership = None;
    let (owned_fixed, mut owned) = watch::channel(std::collections::BTreeSet::from([0]));
    if let Some(coordination) = &store.coordination {
        let joined = coordination
            .join(partitions.running())
            .await
            .context("cannot join the other nodes")?;
        owned = joined.owned.clone();
        membership = Some(joined);
        partitions = partitions.serving_commands(coordination.clone());
    }
    let scrape_lag = partitions.fanout_lag();
    let scrape_handles = partitions.handles();
    let control = hookrelay_scheduler::Router::new(
        store.log.partitions(),
        partitions.handles(),
        store.coordination.clone(),
        store.config.clone(),
    );

    // REST state first: the supervisor reports failure through `/readyz`.
    let api_state = ApiState::new(
        ApiDeps {
            config: store.config.clone(),
            log: store.log.clone(),
            deliveries: store.deliveries.clone(),
            control: Arc::new(control),
            catalog: catalog.clone(),
            health: Some(store.health.clone()),
        },
        api_config(&config),
    );
    let sup = Supervisor::new(api_state.clone());
    let committer_stop = stop_ingest.clone();
    let committer_task = tasks.spawn(sup.watch("committer", shutting_down.clone(), async move {
        committer.run(committer_stop).await;
        Ok::<(), Infallible>(())
    }));
    // A node that stopped renewing its leases would drive partitions others
    // take over: their task ending before the shutdown fails the engine.
    let leases_task = membership.map(|m| {
        let keep = (m.keep)(stop_leases.clone());
        tasks.spawn(
            sup.watch("partition leases", shutting_down.clone(), async move {
                keep.await;
                Ok::<(), Infallible>(())
            }),
        )
    });
    let scheduler_stop = stop_scheduler.clone();
    let scheduler_task = tasks.spawn(sup.watch(
        "scheduler",
        shutting_down.clone(),
        partitions.run(owned, task_tx, report_rx, progress_tx, scheduler_stop),
    ));
    let client = hookrelay_worker::build_client(
        config.delivery.allow_private_targets,
        config.delivery.most_per_host(),
    )
    .context("cannot build the HTTP client")?;
    let pool = Arc::new(WorkerPool::new(
        client,
        config.delivery.concurrency,
        config.delivery.allow_private_targets,
    ));
    let pool_run = pool.clone();
    let workers_stop = stop_workers.clone();
    let workers_task = tasks.spawn(sup.watch("workers", shutting_down.clone(), async move {
        pool_run.run(task_rx, report_tx, workers_stop).await;
        Ok::<(), Infallible>(())
    }));

    // gRPC.
    let ingest = IngestGrpc::new(
        committer_handle,
        IngestKeys::new(&config.ingest.keys, Some(store.config.clone())).with_shares(shares),
        catalog.clone(),
        &config.ingest,
        tasks.clone(),
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
    let listener_limits = crate::conn::fit_to_descriptors(&config);
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
    let grpc_stop = stop_listeners.clone();
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
                &tasks,
            );
            tasks.spawn(
                sup.watch("gRPC listener", shutting_down.clone(), async move {
                    grpc.serve_with_incoming_shutdown(tls::incoming(conns), grpc_stop.cancelled())
                        .await
                }),
            )
        }
        None => tasks.spawn(
            sup.watch("gRPC listener", shutting_down.clone(), async move {
                let incoming = crate::conn::incoming(grpc_listener, grpc_gate);
                grpc.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled())
                    .await
            }),
        ),
    };

    // REST.
    // Without the exporter's own HTTP listener nobody drains histogram
    // samples into buckets between scrapes: do it here, or memory grows.
    let upkeep = metrics.clone();
    let upkeep_stop = stop_scheduler.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                () = upkeep_stop.cancelled() => break,
            }
        }
    });
    // The log's gauges are read when scraped, not on the scheduler's tick:
    // a scrape right after a publish shows it.
    // Every partition's head: the gauge is the highest of them.
    let scrape_heads: Vec<watch::Receiver<hookrelay_core::Seq>> = (0..store.log.partitions())
        .map(|p| store.log.durable_head(p))
        .collect();

    let scrape_store = store.clone();
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
        hookrelay_api::router(api_state.clone()).merge(hookrelay_ingest::http_router(ingest));
    if config.http.console {
        routes = routes.merge(hookrelay_console::router());
    }
    let app = hookrelay_api::finish(routes, api_state.clone());
    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    let http_addr = http_listener.local_addr()?;
    let http_stop = stop_listeners.clone();
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
                &tasks,
            )),
            None => crate::http::Connections::Tcp(listener, gate),
        };
        let serve = crate::http::serve(
            conns,
            app,
            config.http.header_read_timeout,
            http_stop.clone(),
            config.shutdown.timeout / 4,
        );
        tasks.spawn(sup.watch(what, shutting_down.clone(), async move {
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
        config.shutdown.timeout / 4,
    );
    let metrics_task =
        tasks.spawn(
            sup.watch("metrics listener", shutting_down.clone(), async move {
                metrics_serve.await;
                Ok::<(), Infallible>(())
            }),
        );
    let mut profile_addrs = Vec::new();
    let mut profile_tasks = Vec::new();
    for p in &config.profiles {
        let app = hookrelay_api::profile_app(&p.name, api_state.clone())
            .with_context(|| format!("unknown profile {:?}", p.name))?;
        let listener = tokio::net::TcpListener::bind(p.listen)
            .await
            .with_context(|| format!("cannot listen on the {} profile's {}", p.name, p.listen))?;
        profile_addrs.push(format!("profile:{}={}", p.name, listener.local_addr()?));
        profile_tasks.push(spawn_rest(listener, app, "profile listener", "profile"));
    }

    tasks.spawn(sup.watch(
        "retention",
        shutting_down.clone(),
        maintain(
            store.housekeeping.clone(),
            config.store.retention,
            config.store.compact_interval,
            stop_scheduler.clone(),
        ),
    ));

    let notifier = Notifier::from_env();
    if let Some(every) = notifier.watchdog_interval() {
        let stop = stop_scheduler.clone();
        let pinger = Notifier::from_env();
        let watched = sup.clone();
        // Fed only while the engine is healthy: a failed task stops it.
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => pinger.watchdog(),
                    () = stop.cancelled() => break,
                    () = watched.failed() => break,
                }
            }
        });
    }
    let reloadable: Vec<Arc<Reloadable>> =
        grpc_tls.iter().chain(http_tls.iter()).cloned().collect();
    // Signal handlers are installed here, before the process says it is
    // ready: a SIGHUP or SIGTERM sent right after READY=1 would otherwise
    // meet the default action and end the process (no drain, no
    // STOPPING=1, a non-zero exit).
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tasks.spawn(reload_on_hup(
        hup,
        config_path,
        logs,
        reloadable,
        stop_scheduler.clone(),
    ));
    if sup.failure().is_none() {
        api_state.set_ready(true);
    }
    notifier.ready(&format!("serving http={http_addr} grpc={grpc_addr}"));
    info!(http = %http_addr, grpc = %grpc_addr, backend = ?config.store.backend, "hookrelay started");
    // One machine-readable line for scripts and tests.
    println!(
        "hookrelay listening http={http_addr} grpc={grpc_addr} metrics={metrics_addr}{}",
        profile_addrs
            .iter()
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    if let Some(c) = &creds {
        println!("{}", dev::banner(c, http_addr, grpc_addr));
    }

    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
        () = sup.failed() => {
            notifier.status("engine task failed; stopping");
            // Probes and load balancers see `/readyz` 503 before the port closes.
            tokio::time::sleep(FAILURE_LINGER).await;
        }
    }
    let deadline = tokio::time::Instant::now() + config.shutdown.timeout;
    info!(timeout = ?config.shutdown.timeout, "shutting down");
    notifier.stopping();
    api_state.set_ready(false);
    shutting_down.cancel();
    // No attempt starts after the stop begins; those in flight finish (and
    // are recorded) until the drain deadline.
    stop_workers.cancel();
    stop_listeners.cancel();
    // Listeners finish the requests they hold, but an idle client connection
    // must not eat the whole deadline (tonic waits for clients to hang up).
    let listeners_deadline = tokio::time::Instant::now() + config.shutdown.timeout / 4;
    let _ = tokio::time::timeout_at(listeners_deadline, async {
        let _ = grpc_task.await;
        let _ = http_task.await;
        let _ = metrics_task.await;
        for t in profile_tasks {
            let _ = t.await;
        }
    })
    .await;
    stop_ingest.cancel();
    let _ = tokio::time::timeout_at(deadline, committer_task).await;
    let _ = workers_task.await;
    // In-flight attempts get what is left of the deadline, minus a moment to
    // record their outcomes.
    let drain_deadline = deadline - Duration::from_millis(500).min(config.shutdown.timeout / 4);
    if tokio::time::timeout_at(drain_deadline, pool.drain())
        .await
        .is_err()
    {
        warn!(
            "shutdown deadline reached with attempts in flight; they will be retried after restart"
        );
    }
    stop_scheduler.cancel();
    let _ = tokio::time::timeout_at(deadline, scheduler_task).await;
    // Leases go once their partitions stopped: the others take them at once.
    stop_leases.cancel();
    if let Some(t) = leases_task {
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), t).await;
    }
    drop(owned_fixed);
    tasks.close();
    if let Err(e) = store.housekeeping.flush().await {
        sup.fail("final flush", e);
    }
    if let Some(failure) = sup.failure() {
        error!("hookrelay stopped after a failure");
        anyhow::bail!(failure);
    }
    info!("hookrelay stopped");
    Ok(())
}

/// What the REST API takes from the configuration.
fn api_config(config: &Config) -> ApiConfig {
    ApiConfig {
        operator_key: config.auth.operator_key.clone(),
        operator_ingest_keys: config.ingest.keys.clone(),
        delivery: config.delivery.clone(),
        max_webhooks_per_app: config.api.max_webhooks_per_app,
        tenancy: config.tenancy.clone(),
        rate_limit: RateLimit {
            per_second: config.api.requests_per_second,
            burst: config.api.burst,
        },
        ingest_rate_limit: RateLimit {
            per_second: config.api.ingest_requests_per_second,
            burst: config.api.ingest_burst,
        },
        auth_failure_limit: RateLimit {
            per_second: config.api.auth_failures_per_second,
            burst: config.api.auth_failures_burst,
        },
        body_read: hookrelay_api::BodyRead {
            timeout: config.http.body_read_timeout,
            min_bytes_per_second: config.http.min_body_bytes_per_second,
        },
    }
}

/// Retention: one compaction pass per interval (small batches, off the
/// runtime threads).
async fn maintain(
    housekeeping: Arc<dyn Housekeeping>,
    retention: Duration,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    /// Consecutive failed passes tolerated (each retried on the next tick).
    const MAX_FAILURES: u32 = 10;
    let mut failures = 0u32;
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let before = hookrelay_core::now_ms().saturating_sub(retention_ms);
        // A pass is bounded work: the backend caps what one pass removes.
        match housekeeping.compact(before).await {
            Ok(stats) => {
                if stats.chunks > 0 || stats.attempts > 0 {
                    info!(
                        chunks = stats.chunks,
                        events = stats.events,
                        records = stats.records,
                        attempts = stats.attempts,
                        horizon = stats.horizon,
                        "retention removed old events"
                    );
                }
                failures = 0;
            }
            Err(hookrelay_store::StoreError::Task(e)) => {
                anyhow::bail!("compaction task panicked: {e}")
            }
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "compaction pass failed; retrying on the next tick");
                if failures >= MAX_FAILURES {
                    anyhow::bail!(
                        "{failures} compaction passes failed in a row, the last with: {e}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// SIGHUP: re-reads `log.level` from the configuration file and the TLS
/// certificates of both listeners.
async fn reload_on_hup(
    mut hup: tokio::signal::unix::Signal,
    path: Option<std::path::PathBuf>,
    logs: LogHandle,
    certificates: Vec<Arc<Reloadable>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            got = hup.recv() => if got.is_none() { break },
            () = stop.cancelled() => break,
        }
        for tls in &certificates {
            match tls.reload() {
                Ok(()) => info!("TLS certificates reloaded"),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "TLS certificates not reloaded; keeping the current ones")
                }
            }
        }
        match crate::config::load(path.as_deref()) {
            Ok(c) => match logs.set_level(&c.log.level) {
                Ok(()) => info!(level = %c.log.level, "log level reloaded"),
                Err(e) => warn!(error = %e, "log level not reloaded"),
            },
            Err(e) => warn!(error = %format!("{e:#}"), "SIGHUP: configuration not reloaded"),
        }
    }
}
