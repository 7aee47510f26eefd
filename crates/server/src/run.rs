//! `hookrelay serve`, in phases: open the backend (`backend`), start the
//! engine (`engine`), start the listeners (`listen`), start the upkeep,
//! serve until a signal or a failure, and shut down in order (`shutdown`).

use crate::{
    config::Config,
    dev,
    engine::{start_engine, Engine},
    listen::start_listeners,
    notify::Notifier,
    shutdown::Shutdown,
    telemetry::{self, LogHandle},
    tls::Reloadable,
};
use anyhow::Context;
use hookrelay_api::{ApiConfig, RateLimit};
use hookrelay_store::Housekeeping;
use metrics_exporter_prometheus::PrometheusHandle;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a failed engine keeps answering `/readyz` 503 before it shuts
/// down.
const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// Runs the server until a shutdown signal or an engine failure, in
/// phases: open the backend, start the engine, start the listeners, start
/// the upkeep, say it is ready, wait, then [`Shutdown::run`]. `config_path`
/// is re-read on SIGHUP for the log level.
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
    let shutdown = Shutdown::new(config.shutdown.timeout);
    let engine = start_engine(&config, store, api_config(&config), &shutdown).await?;
    let listeners = start_listeners(&config, &engine, &shutdown, metrics.clone()).await?;
    start_upkeep(&config, &engine, &shutdown, metrics);
    // Signal handlers are installed here, before the process says it is
    // ready: a SIGHUP or SIGTERM sent right after READY=1 would otherwise
    // meet the default action and end the process (no drain, no
    // STOPPING=1, a non-zero exit).
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    engine.tasks.spawn(reload_on_hup(
        hup,
        config_path,
        logs,
        listeners.reloadable.clone(),
        shutdown.scheduler.clone(),
    ));
    let notifier = Notifier::from_env();
    if engine.sup.failure().is_none() {
        engine.api.set_ready(true);
    }
    let (http_addr, grpc_addr) = (listeners.http_addr, listeners.grpc_addr);
    notifier.ready(&format!("serving http={http_addr} grpc={grpc_addr}"));
    info!(http = %http_addr, grpc = %grpc_addr, backend = ?config.store.backend, "hookrelay started");
    // One machine-readable line for scripts and tests.
    println!(
        "hookrelay listening http={http_addr} grpc={grpc_addr} metrics={}{}",
        listeners.metrics_addr,
        listeners
            .profile_addrs
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
        () = engine.sup.failed() => {
            notifier.status("engine task failed; stopping");
            // Probes and load balancers see `/readyz` 503 before the port closes.
            tokio::time::sleep(FAILURE_LINGER).await;
        }
    }
    notifier.stopping();
    shutdown.run(engine, listeners).await
}

/// The engine's upkeep: retention passes, the histogram upkeep of the
/// metrics recorder, and the systemd watchdog while the engine is healthy.
fn start_upkeep(config: &Config, engine: &Engine, shutdown: &Shutdown, metrics: PrometheusHandle) {
    // Without the exporter's own HTTP listener nobody drains histogram
    // samples into buckets between scrapes: do it here, or memory grows.
    let stop = shutdown.scheduler.clone();
    engine.tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => metrics.run_upkeep(),
                () = stop.cancelled() => break,
            }
        }
    });
    engine.tasks.spawn(engine.sup.watch(
        "retention",
        shutdown.begun.clone(),
        maintain(
            engine.store.housekeeping.clone(),
            hookrelay_core::Clock::system(),
            config.store.retention,
            config.store.compact_interval,
            shutdown.scheduler.clone(),
        ),
    ));
    let notifier = Notifier::from_env();
    if let Some(every) = notifier.watchdog_interval() {
        let stop = shutdown.scheduler.clone();
        let watched = engine.sup.clone();
        // Fed only while the engine is healthy: a failed task stops it.
        engine.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => notifier.watchdog(),
                    () = stop.cancelled() => break,
                    () = watched.failed() => break,
                }
            }
        });
    }
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
    clock: hookrelay_core::Clock,
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
        let before = clock.unix_ms().saturating_sub(retention_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_store::{BoxFuture, CompactStats, StoreError};
    use std::sync::Mutex;

    /// Housekeeping that notes each pass's horizon and fails while told to.
    #[derive(Default)]
    struct Noting {
        horizons: Mutex<Vec<i64>>,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Housekeeping for Noting {
        fn compact(&self, before_ms: i64) -> BoxFuture<'_, Result<CompactStats, StoreError>> {
            self.horizons.lock().expect("lock").push(before_ms);
            let failing = self.failing.load(std::sync::atomic::Ordering::Relaxed);
            Box::pin(async move {
                if failing {
                    Err(StoreError::unavailable_msg("disk on fire"))
                } else {
                    Ok(CompactStats::default())
                }
            })
        }
        fn size_on_disk(&self) -> BoxFuture<'_, u64> {
            Box::pin(async { 0 })
        }
        fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retention_passes_remove_what_is_older_than_the_retention_and_give_up_after_ten_failures(
    ) {
        let h = Arc::new(Noting::default());
        let clock = hookrelay_core::Clock::starting_at(100_000_000);
        let day = Duration::from_secs(86_400);
        let task = tokio::spawn(maintain(
            h.clone(),
            clock,
            day,
            Duration::from_secs(60),
            CancellationToken::new(),
        ));
        // The first tick is at once, then one a minute.
        tokio::time::sleep(Duration::from_secs(125)).await;
        assert_eq!(
            *h.horizons.lock().expect("lock"),
            [13_600_000, 13_660_000, 13_720_000],
            "now less a day, at each pass"
        );
        h.failing.store(true, std::sync::atomic::Ordering::Relaxed);
        let ended = tokio::time::timeout(Duration::from_secs(11 * 60), task)
            .await
            .expect("ends")
            .expect("join");
        let e = ended.expect_err("ten failed passes in a row end it");
        assert!(e.to_string().contains("10 compaction passes failed"), "{e}");
    }
}
