//! A backlog of pending deliveries built while the sink is down: RSS and
//! disk, restart time to the first delivery, drain rate once it is up.

use crate::{
    progress::{Counters, Progress},
    report::{cpu_seconds, peak_rss_mib, Outcome},
    server::{Server, ServerOptions},
    setup::{dir_size, finish, publish, Load, Measured},
    sink,
};
use serde_json::json;
use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// N events logged, then replayed to a webhook whose sink is down (N pending
/// deliveries); restart with the sink up and drain for at most
/// `drain_seconds`.
pub(crate) async fn run(
    bin: &Path,
    data: &Path,
    load: Load,
    drain_seconds: u64,
) -> anyhow::Result<Outcome> {
    let opts = ServerOptions::default()
        .set("ingest", "max_backlog", "100000000")
        .set("ingest", "max_pending_deliveries", "100000000");
    let server = Server::start(bin, data, &opts)?;
    let admin = server.organization().await?;
    let token = server.device(&admin, "backlog").await?;
    let counters = Counters::default();
    {
        let _progress = Progress::start("backlog: logging", counters.clone());
        publish(&server, load, |_| "backlog".to_owned(), None, &counters).await?;
    }
    // A port nothing listens on: every attempt is refused while it is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let webhook = server
        .v1_webhook(&token, &format!("http://{down}/"))
        .await?;
    let built = Instant::now();
    let replayed = server.replay_all(&token, &webhook).await?;
    // The replay is answered at once and fed in the background: wait until
    // every replayed delivery is pending (or the count stops growing), then
    // let the refused attempts open the breaker and settle.
    let mut pending = 0.0;
    let mut still = 0;
    while (pending as u64) < replayed && still < 30 && built.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = server
            .metric("hookrelay_deliveries_pending")
            .await
            .unwrap_or(0.0);
        still = if now > pending { 0 } else { still + 1 };
        pending = now;
    }
    let build_s = built.elapsed().as_secs_f64();
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
    let _progress = Progress::start("backlog: draining", Counters::with_sink(stats.clone()));
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
        json!({"deliveries": load.events, "size": load.size}),
        Measured {
            count: drained,
            secs: drain_s,
            unit: "drained deliveries",
            latency: None,
        },
        &server,
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
