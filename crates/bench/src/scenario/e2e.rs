//! Deliveries/s and event-to-arrival latency: one webhook per device.

use crate::{
    progress::{Counters, Progress},
    report::Outcome,
    server::{Server, ServerOptions},
    setup::{devices_to_sink, publish, sink_outcome, Load},
    sink,
};
use serde_json::json;
use std::{path::Path, time::Instant};

pub(crate) async fn run(
    bin: &Path,
    data: &Path,
    devices: u64,
    load: Load,
) -> anyhow::Result<Outcome> {
    let server = Server::start(bin, data, &ServerOptions::default())?;
    let stats = devices_to_sink(&server, devices).await?;
    let counters = Counters::with_sink(stats.clone());
    let _progress = Progress::start("e2e", counters.clone());
    let start_us = sink::now_us();
    let start = Instant::now();
    publish(
        &server,
        load,
        move |i| format!("dev-{}", i % devices),
        None,
        &counters,
    )
    .await?;
    let ingest_s = start.elapsed().as_secs_f64();
    let params = json!({"devices": devices, "events": load.events, "streams": load.streams, "size": load.size});
    let mut o = sink_outcome("e2e", params, &stats, load.events, start_us, &server).await;
    o.extra = json!({"ingest_seconds": ingest_s});
    Ok(o)
}
