//! `hookrelay-bench`: load generator and sink for hookrelay's figures.
//!
//! Each scenario starts a real release-build server on a fresh data
//! directory, sets tenants and webhooks up through the API, drives load over
//! gRPC streams into a local hyper sink, and prints one summary table (and
//! `--json FILE`). Figures live in `docs/benchmarks.md`.

mod producer;
mod report;
mod server;
mod sink;

use anyhow::Context;
use clap::{Parser, Subcommand};
use report::{cpu_seconds, latency, peak_rss_mib, Outcome};
use serde_json::json;
use server::{Server, ServerOptions};
use std::{
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

/// Loopback addresses the sink listens on (127.0.0.1 … 127.0.0.10): webhooks
/// are spread over them as customers' endpoints are spread over hosts.
const SINK_HOSTS: u8 = 10;

#[derive(Parser)]
#[command(
    name = "hookrelay-bench",
    about = "Benchmarks for hookrelay: ingest, end-to-end delivery, fan-out, steady load, dead endpoints."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Write the result as JSON here too.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// The hookrelay binary (default: the one beside this binary).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Durable events/s: N events over S gRPC streams, no webhooks.
    Ingest {
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// One flush per event (ingest.max_batch_events = 1), for comparison.
        #[arg(long)]
        no_group_commit: bool,
    },
    /// Deliveries/s and event-to-arrival latency: D devices, one webhook each.
    E2e {
        #[arg(long, default_value_t = 100)]
        devices: u64,
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
    },
    /// One device with W webhooks.
    Fanout {
        #[arg(long, default_value_t = 10)]
        webhooks: u64,
        #[arg(long, default_value_t = 20_000)]
        events: u64,
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
    },
    /// A fixed event rate for T seconds: latency under realistic load.
    Steady {
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        devices: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
    },
    /// A backlog of pending deliveries built while the sink is down: RSS and
    /// disk, restart time to the first delivery, drain rate once it is up.
    Backlog {
        #[arg(long, default_value_t = 1_000_000)]
        deliveries: u64,
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// Longest drain measured, seconds.
        #[arg(long, default_value_t = 120)]
        drain_seconds: u64,
    },
    /// Half of the webhooks never answer: deliveries/s to the healthy half,
    /// against the same run without the dead half.
    DeadEndpoint {
        #[arg(long, default_value_t = 100)]
        devices: u64,
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// Webhook timeout of every endpoint, seconds.
        #[arg(long, default_value_t = 2)]
        timeout: u32,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bin = cli
        .server_bin
        .clone()
        .unwrap_or_else(server::default_binary);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(run(cli.scenario, bin))?;
    outcome.print();
    if let Some(path) = cli.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&outcome)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn run(scenario: Scenario, bin: PathBuf) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    match scenario {
        Scenario::Ingest {
            events,
            streams,
            size,
            no_group_commit,
        } => {
            let mut opts = ServerOptions::default();
            if no_group_commit {
                opts = opts.set("ingest", "max_batch_events", "1");
            }
            let server = Server::start(&bin, &data, &opts)?;
            let start = Instant::now();
            let acked = publish(
                &server,
                events,
                streams,
                size,
                |_| "bench-device".to_owned(),
                None,
            )
            .await?;
            let secs = start.elapsed().as_secs_f64();
            Ok(finish(
                "ingest",
                json!({"events": events, "streams": streams, "size": size, "group_commit": !no_group_commit}),
                acked,
                secs,
                "events",
                None,
                &server,
                json!(null),
            ))
        }
        Scenario::E2e {
            devices,
            events,
            streams,
            size,
        } => {
            let server = Server::start(&bin, &data, &ServerOptions::default())?;
            let stats = devices_to_sink(&server, devices).await?;
            let start_us = sink::now_us();
            let start = Instant::now();
            publish(
                &server,
                events,
                streams,
                size,
                move |i| format!("dev-{}", i % devices),
                None,
            )
            .await?;
            let ingest_s = start.elapsed().as_secs_f64();
            let params =
                json!({"devices": devices, "events": events, "streams": streams, "size": size});
            let extra = json!({"ingest_seconds": ingest_s});
            Ok(sink_outcome("e2e", params, &stats, events, start_us, &server, extra).await)
        }
        Scenario::Fanout {
            webhooks,
            events,
            streams,
            size,
        } => {
            let server = Server::start(&bin, &data, &ServerOptions::default())?;
            let (addrs, stats) = sink::start(SINK_HOSTS).await?;
            let admin = server.organization().await?;
            let token = server.device(&admin, "fan").await?;
            server
                .webhook(&token, &format!("http://{}/w0", addrs[0]), 10)
                .await?;
            for w in 1..webhooks {
                server
                    .extra_webhook(
                        &admin.admin_key,
                        "fan",
                        &format!("http://{}/w{w}", addrs[w as usize % addrs.len()]),
                    )
                    .await?;
            }
            let start_us = sink::now_us();
            publish(&server, events, streams, size, |_| "fan".to_owned(), None).await?;
            let params =
                json!({"webhooks": webhooks, "events": events, "streams": streams, "size": size});
            let expected = events * webhooks;
            Ok(sink_outcome(
                "fanout",
                params,
                &stats,
                expected,
                start_us,
                &server,
                json!(null),
            )
            .await)
        }
        Scenario::Steady {
            rate,
            seconds,
            devices,
            size,
        } => {
            let server = Server::start(&bin, &data, &ServerOptions::default())?;
            let stats = devices_to_sink(&server, devices).await?;
            let events = (rate * seconds as f64) as u64;
            let streams = 4;
            let per_stream_rate = rate / streams as f64;
            let start = Instant::now();
            publish(
                &server,
                events,
                streams,
                size,
                move |i| format!("dev-{}", i % devices),
                Some(per_stream_rate),
            )
            .await?;
            wait_for(&stats, events, Duration::from_secs(120)).await;
            let secs = start.elapsed().as_secs_f64();
            let lat = take_latency(&stats);
            Ok(finish(
                "steady",
                json!({"rate": rate, "seconds": seconds, "devices": devices, "size": size}),
                stats.count.load(Ordering::Relaxed),
                secs,
                "deliveries",
                Some(lat),
                &server,
                json!(null),
            ))
        }
        Scenario::Backlog {
            deliveries,
            streams,
            size,
            drain_seconds,
        } => backlog(&bin, &data, deliveries, streams, size, drain_seconds).await,
        Scenario::DeadEndpoint {
            devices,
            events,
            streams,
            size,
            timeout,
        } => {
            let healthy = devices / 2;
            // Baseline: only the healthy half exists.
            let solo = dead_endpoint_run(
                &bin,
                &dir.path().join("solo"),
                healthy,
                0,
                events / 2,
                streams,
                size,
                timeout,
            )
            .await?;
            let mixed = dead_endpoint_run(
                &bin,
                &data,
                healthy,
                devices - healthy,
                events,
                streams,
                size,
                timeout,
            )
            .await?;
            let ratio = if solo.0 > 0.0 { mixed.0 / solo.0 } else { 0.0 };
            let mut o = mixed.1;
            o.extra = json!({"healthy_rate_solo": solo.0, "healthy_rate_with_dead_half": mixed.0, "ratio": ratio});
            Ok(o)
        }
    }
}

/// `devices` apps `dev-0…`, each with a webhook to the sink, spread over the
/// sink's hosts; returns the sink's counters.
async fn devices_to_sink(server: &Server, devices: u64) -> anyhow::Result<Arc<sink::SinkStats>> {
    let (addrs, stats) = sink::start(SINK_HOSTS).await?;
    let admin = server.organization().await?;
    for d in 0..devices {
        let token = server.device(&admin, &format!("dev-{d}")).await?;
        let addr = addrs[d as usize % addrs.len()];
        server
            .webhook(&token, &format!("http://{addr}/d{d}"), 10)
            .await?;
    }
    Ok(stats)
}

/// One dead-endpoint run: `healthy` devices to a live sink, `dead` devices to
/// a sink that never answers; events alternate between them. Returns the
/// healthy deliveries/s.
#[allow(clippy::too_many_arguments)]
async fn dead_endpoint_run(
    bin: &std::path::Path,
    data: &std::path::Path,
    healthy: u64,
    dead: u64,
    events: u64,
    streams: u64,
    size: usize,
    timeout: u32,
) -> anyhow::Result<(f64, Outcome)> {
    let server = Server::start(bin, data, &ServerOptions::default())?;
    let (addrs, stats) = sink::start(SINK_HOSTS).await?;
    let dead_addr = sink::start_dead().await?;
    let admin = server.organization().await?;
    for d in 0..healthy {
        let token = server.device(&admin, &format!("ok-{d}")).await?;
        server
            .webhook(
                &token,
                &format!("http://{}/d{d}", addrs[d as usize % addrs.len()]),
                timeout,
            )
            .await?;
    }
    for d in 0..dead {
        let token = server.device(&admin, &format!("dead-{d}")).await?;
        server
            .webhook(&token, &format!("http://{dead_addr}/d{d}"), timeout)
            .await?;
    }
    let total = healthy + dead;
    let start_us = sink::now_us();
    publish(
        &server,
        events,
        streams,
        size,
        move |i| {
            let k = i % total;
            if k < healthy {
                format!("ok-{k}")
            } else {
                format!("dead-{}", k - healthy)
            }
        },
        None,
    )
    .await?;
    let expected = events * healthy / total;
    wait_for(&stats, expected, Duration::from_secs(300)).await;
    let secs = (stats
        .last_arrival_us
        .load(Ordering::Relaxed)
        .saturating_sub(start_us)) as f64
        / 1e6;
    let count = stats.count.load(Ordering::Relaxed);
    let rate = count as f64 / secs.max(1e-9);
    let lat = take_latency(&stats);
    let o = finish(
        "dead-endpoint",
        json!({"healthy_devices": healthy, "dead_devices": dead, "events": events, "timeout_s": timeout}),
        count,
        secs,
        "healthy deliveries",
        Some(lat),
        &server,
        json!(null),
    );
    Ok((rate, o))
}

async fn publish(
    server: &Server,
    events: u64,
    streams: u64,
    size: usize,
    device_of: impl Fn(u64) -> String + Send + Sync + 'static,
    rate_per_stream: Option<f64>,
) -> anyhow::Result<u64> {
    let device_of = Arc::new(device_of);
    let mut handles = Vec::new();
    for s in 0..streams {
        let n = events / streams + u64::from(s < events % streams);
        let d = device_of.clone();
        let grpc = server.grpc;
        handles.push(tokio::spawn(async move {
            producer::stream(grpc, n, size, move |i| d(i * streams + s), rate_per_stream).await
        }));
    }
    let mut acked = 0;
    for h in handles {
        acked += h.await.context("producer task")??;
    }
    Ok(acked)
}

/// Waits for `expected` deliveries at the sink, then measures from
/// `start_us` (first publish) to the last arrival.
async fn sink_outcome(
    scenario: &str,
    params: serde_json::Value,
    stats: &sink::SinkStats,
    expected: u64,
    start_us: u64,
    server: &Server,
    extra: serde_json::Value,
) -> Outcome {
    wait_for(stats, expected, Duration::from_secs(300)).await;
    let last = stats.last_arrival_us.load(Ordering::Relaxed);
    let secs = last.saturating_sub(start_us) as f64 / 1e6;
    let count = stats.count.load(Ordering::Relaxed);
    let lat = take_latency(stats);
    finish(
        scenario,
        params,
        count,
        secs,
        "deliveries",
        Some(lat),
        server,
        extra,
    )
}

async fn wait_for(stats: &sink::SinkStats, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while stats.count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if stats.count.load(Ordering::Relaxed) < n {
        eprintln!(
            "warning: only {} of {n} deliveries arrived within {limit:?}",
            stats.count.load(Ordering::Relaxed)
        );
    }
}

fn take_latency(stats: &sink::SinkStats) -> report::Latency {
    let v = stats
        .latencies
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    latency(v)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    scenario: &str,
    params: serde_json::Value,
    count: u64,
    secs: f64,
    unit: &str,
    lat: Option<report::Latency>,
    server: &Server,
    extra: serde_json::Value,
) -> Outcome {
    let pid = server.pid();
    Outcome {
        scenario: scenario.to_owned(),
        params,
        rate_per_s: count as f64 / secs.max(1e-9),
        rate_unit: unit.to_owned(),
        count,
        seconds: secs,
        latency: lat,
        server_peak_rss_mib: peak_rss_mib(pid),
        server_cpu_s: cpu_seconds(pid),
        extra,
    }
}

/// The backlog scenario: N events logged, then replayed to a webhook whose
/// sink is down (N pending deliveries); restart with the sink up.
async fn backlog(
    bin: &std::path::Path,
    data: &std::path::Path,
    n: u64,
    streams: u64,
    size: usize,
    drain_seconds: u64,
) -> anyhow::Result<Outcome> {
    let opts = ServerOptions::default()
        .set("ingest", "max_backlog", "100000000")
        .set("ingest", "max_pending_deliveries", "100000000");
    let server = Server::start(bin, data, &opts)?;
    let admin = server.organization().await?;
    let token = server.device(&admin, "backlog").await?;
    publish(&server, n, streams, size, |_| "backlog".to_owned(), None).await?;
    // A port nothing listens on: every attempt is refused while it is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let webhook = server
        .v1_webhook(&token, &format!("http://{down}/"))
        .await?;
    let built = Instant::now();
    let replayed = server.replay_all(&token, &webhook).await?;
    let build_s = built.elapsed().as_secs_f64();
    // Let the refused attempts open the breaker and settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending = server
        .metric("hookrelay_deliveries_pending")
        .await
        .unwrap_or(0.0);
    let pid = server.pid();
    let rss_built = peak_rss_mib(pid);
    let cpu_build = cpu_seconds(pid);
    server.stop();
    let disk_mib = dir_size(data) as f64 / (1 << 20) as f64;

    let stats = sink::start_at(down).await?;
    let restart = Instant::now();
    let server = Server::start(bin, data, &opts)?;
    let limit = Duration::from_secs(60);
    while stats.count.load(Ordering::Relaxed) == 0 && restart.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first_delivery_s = restart.elapsed().as_secs_f64();
    let drain_start = Instant::now();
    let start_count = stats.count.load(Ordering::Relaxed);
    let deadline = Duration::from_secs(drain_seconds);
    while stats.count.load(Ordering::Relaxed) < replayed && drain_start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = stats.count.load(Ordering::Relaxed) - start_count;
    let drain_s = drain_start.elapsed().as_secs_f64();
    let mut o = finish(
        "backlog",
        json!({"deliveries": n, "size": size}),
        drained,
        drain_s,
        "drained deliveries",
        None,
        &server,
        json!(null),
    );
    o.server_peak_rss_mib = o.server_peak_rss_mib.max(rss_built);
    o.extra = json!({
        "replayed": replayed,
        "pending_before_restart": pending,
        "build_replay_seconds": build_s,
        "server_cpu_build_s": cpu_build,
        "rss_while_built_mib": rss_built,
        "disk_mib": disk_mib,
        "restart_to_first_delivery_s": first_delivery_s,
        "delivered_total": stats.count.load(Ordering::Relaxed),
    });
    Ok(o)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
