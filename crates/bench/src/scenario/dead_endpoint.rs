//! Half of the webhooks never answer: deliveries/s to the healthy half,
//! against the same run without the dead half.

use crate::{
    progress::{Counters, Progress},
    report::Outcome,
    server::{Server, ServerOptions},
    setup::{finish, publish, take_latency, wait_for, Load, Measured},
    sink,
};
use serde_json::json;
use std::{path::Path, sync::atomic::Ordering, time::Duration};

pub(crate) async fn run(
    bin: &Path,
    dir: &Path,
    devices: u64,
    load: Load,
    timeout: u32,
) -> anyhow::Result<Outcome> {
    let healthy = devices / 2;
    // Baseline: only the healthy half exists, with half the events.
    let solo_load = Load {
        events: load.events / 2,
        ..load
    };
    let solo = one_run(bin, &dir.join("solo"), healthy, 0, solo_load, timeout).await?;
    let mixed = one_run(
        bin,
        &dir.join("mixed"),
        healthy,
        devices - healthy,
        load,
        timeout,
    )
    .await?;
    let ratio = if solo.0 > 0.0 { mixed.0 / solo.0 } else { 0.0 };
    let mut o = mixed.1;
    o.extra = json!({"healthy_rate_solo": solo.0, "healthy_rate_with_dead_half": mixed.0, "ratio": ratio});
    Ok(o)
}

/// One run: `healthy` devices to a live sink, `dead` devices to a sink that
/// never answers; events alternate between them. Returns the healthy
/// deliveries/s.
async fn one_run(
    bin: &Path,
    data: &Path,
    healthy: u64,
    dead: u64,
    load: Load,
    timeout: u32,
) -> anyhow::Result<(f64, Outcome)> {
    let server = Server::start(bin, data, &ServerOptions::default())?;
    let (addrs, stats) = sink::start(sink::hosts()).await?;
    let dead_addr = sink::start_dead().await?;
    let admin = server.organization().await?;
    for d in 0..healthy {
        let token = server.device(&admin, &format!("ok-{d}")).await?;
        let url = format!("http://{}/d{d}", addrs[d as usize % addrs.len()]);
        server.webhook(&token, &url, timeout).await?;
    }
    for d in 0..dead {
        let token = server.device(&admin, &format!("dead-{d}")).await?;
        server
            .webhook(&token, &format!("http://{dead_addr}/d{d}"), timeout)
            .await?;
    }
    let counters = Counters::with_sink(stats.clone());
    let _progress = Progress::start("dead-endpoint", counters.clone());
    let total = healthy + dead;
    let start_us = sink::now_us();
    let device_of = move |i: u64| {
        let k = i % total;
        if k < healthy {
            format!("ok-{k}")
        } else {
            format!("dead-{}", k - healthy)
        }
    };
    publish(&server, load, device_of, None, &counters).await?;
    let expected = load.events * healthy / total;
    wait_for(&stats, expected, Duration::from_secs(300)).await;
    let last = stats.last_arrival_us.load(Ordering::Relaxed);
    let secs = last.saturating_sub(start_us) as f64 / 1e6;
    let count = stats.count.load(Ordering::Relaxed);
    let rate = count as f64 / secs.max(1e-9);
    let o = finish(
        "dead-endpoint",
        json!({"healthy_devices": healthy, "dead_devices": dead, "events": load.events, "timeout_s": timeout}),
        Measured {
            count,
            secs,
            unit: "healthy deliveries",
            latency: Some(take_latency(&stats)),
        },
        &server,
    );
    Ok((rate, o))
}
