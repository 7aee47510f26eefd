//! A fixed event rate for a while: latency and CPU under realistic load.

use crate::{
    progress::{Counters, Progress},
    report::Outcome,
    server::{Server, ServerOptions},
    setup::{devices_to_sink, finish, publish, take_latency, wait_for, Load, Measured},
};
use serde_json::json;
use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// Producer streams the rate is spread over.
const STREAMS: u64 = 4;

pub(crate) async fn run(
    bin: &Path,
    data: &Path,
    rate: f64,
    seconds: u64,
    devices: u64,
    size: usize,
) -> anyhow::Result<Outcome> {
    let server = Server::start(bin, data, &ServerOptions::default())?;
    let stats = devices_to_sink(&server, devices).await?;
    let counters = Counters::with_sink(stats.clone());
    let _progress = Progress::start("steady", counters.clone());
    let events = (rate * seconds as f64) as u64;
    let load = Load {
        events,
        streams: STREAMS,
        size,
    };
    let start = Instant::now();
    publish(
        &server,
        load,
        move |i| format!("dev-{}", i % devices),
        Some(rate / STREAMS as f64),
        &counters,
    )
    .await?;
    wait_for(&stats, events, Duration::from_secs(120)).await;
    let secs = start.elapsed().as_secs_f64();
    let mut o = finish(
        "steady",
        json!({"rate": rate, "seconds": seconds, "devices": devices, "size": size}),
        Measured {
            count: stats.count.load(Ordering::Relaxed),
            secs,
            unit: "deliveries",
            latency: Some(take_latency(&stats)),
        },
        &server,
    );
    // The share of one core the server used over the run: the figure that
    // matters for a lightly loaded gateway.
    o.extra = json!({"server_cores": o.server_cpu_s / secs.max(1e-9)});
    Ok(o)
}
