//! 1, 2, … N hookrelay nodes on one three-server JetStream cluster (R3,
//! `sync_interval: always`, all on loopback): durable ingest/s with no
//! webhooks, then deliveries/s with one webhook per device, events spread
//! over the nodes; CPU per event of the nodes and of the NATS servers.
//! On a 2-core machine every process shares the same cores, so the CPU per
//! event is the figure to judge scaling by.

use crate::{
    progress::{Counters, Progress},
    report::{cpu_seconds, Outcome},
    server::{Server, ServerOptions},
    setup::{devices_to_sink, publish, wait_for, Load},
    sink,
};
use futures_util::future::join_all;
use hookrelay_jetstream::testkit::Cluster;
use serde_json::{json, Value};
use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// Partitions of the bench's event log.
const PARTITIONS: u32 = 16;

/// What the scenario measures.
pub(crate) struct ClusterLoad {
    /// Most nodes (runs 1..=this).
    pub(crate) max_nodes: usize,
    /// Events of the ingest phase.
    pub(crate) ingest_events: u64,
    /// Devices, one webhook each, in the delivery phase.
    pub(crate) devices: u64,
    /// Events of the delivery phase, streams per node and event size.
    pub(crate) load: Load,
}

fn options(nats: &Cluster, ns: &str) -> ServerOptions {
    let urls = nats.urls_toml();
    ServerOptions::default()
        .set("store", "backend", "jetstream")
        .set("jetstream", "urls", &urls)
        .set("jetstream", "replicas", "3")
        .set("jetstream", "partitions", &PARTITIONS.to_string())
        .set("jetstream", "takeover", "3s")
        .set("jetstream", "namespace", ns)
}

async fn start_nodes(
    bin: &Path,
    dir: &Path,
    nats: &Cluster,
    ns: &str,
    n: usize,
) -> anyhow::Result<Vec<Server>> {
    let opts = options(nats, ns);
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(Server::start(bin, &dir.join(format!("{ns}-{i}")), &opts)?);
    }
    // Until the partitions are shared out.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut total = 0.0;
        let mut all = true;
        for s in &nodes {
            let owned = s.metric("hookrelay_partitions_owned").await.unwrap_or(0.0);
            all &= owned > 0.0;
            total += owned;
        }
        if all && total == f64::from(PARTITIONS) {
            return Ok(nodes);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "partitions not shared out within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `load` spread over `nodes` (`load.streams` streams each).
async fn publish_all(
    nodes: &[Server],
    load: Load,
    devices: u64,
    counters: &Counters,
) -> anyhow::Result<u64> {
    let n = nodes.len() as u64;
    let mut acked = 0;
    let mut runs = Vec::new();
    for (i, s) in nodes.iter().enumerate() {
        let share = load.events / n + u64::from((i as u64) < load.events % n);
        let part = Load {
            events: share,
            streams: load.streams,
            size: load.size,
        };
        let offset = i as u64;
        runs.push(publish(
            s,
            part,
            move |k| format!("dev-{}", (k * n + offset) % devices),
            None,
            counters,
        ));
    }
    for r in join_all(runs).await {
        acked += r?;
    }
    Ok(acked)
}

fn cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

pub(crate) async fn run(bin: &Path, dir: &Path, c: ClusterLoad) -> anyhow::Result<Outcome> {
    let nats = Cluster::start(3).await;
    let nats_pids = nats.pids();
    let mut rows: Vec<Value> = Vec::new();
    let mut last = Outcome::default();
    for n in 1..=c.max_nodes {
        // Ingest: no webhooks.
        let nodes = start_nodes(bin, dir, &nats, &format!("ing{n}"), n).await?;
        let pids: Vec<u32> = nodes.iter().map(Server::pid).collect();
        let (cpu0, nats0) = (cpu(&pids), cpu(&nats_pids));
        let counters = Counters::default();
        let progress = Progress::start("cluster ingest", counters.clone());
        let start = Instant::now();
        let load = Load {
            events: c.ingest_events,
            ..c.load
        };
        let ingested = publish_all(&nodes, load, 1_000, &counters).await?;
        let ingest_s = start.elapsed().as_secs_f64();
        drop(progress);
        let ingest_cpu = cpu(&pids) - cpu0;
        let ingest_nats = cpu(&nats_pids) - nats0;
        for s in nodes {
            s.stop();
        }

        // Delivery: one webhook per device, events over every node.
        let nodes = start_nodes(bin, dir, &nats, &format!("del{n}"), n).await?;
        let stats = devices_to_sink(&nodes[0], c.devices).await?;
        // Configuration reaches the other nodes within milliseconds.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pids: Vec<u32> = nodes.iter().map(Server::pid).collect();
        let (cpu0, nats0) = (cpu(&pids), cpu(&nats_pids));
        let counters = Counters::with_sink(stats.clone());
        let progress = Progress::start("cluster delivery", counters.clone());
        let start_us = sink::now_us();
        let sent = publish_all(&nodes, c.load, c.devices, &counters).await?;
        wait_for(&stats, sent, Duration::from_secs(600)).await;
        drop(progress);
        let delivered = stats.count.load(Ordering::Relaxed);
        let secs = stats
            .last_arrival_us
            .load(Ordering::Relaxed)
            .saturating_sub(start_us) as f64
            / 1e6;
        let deliver_cpu = cpu(&pids) - cpu0;
        let deliver_nats = cpu(&nats_pids) - nats0;
        let row = json!({
            "nodes": n,
            "ingest_events_per_s": ingested as f64 / ingest_s,
            "ingest_node_cpu_us_per_event": ingest_cpu * 1e6 / ingested.max(1) as f64,
            "ingest_nats_cpu_us_per_event": ingest_nats * 1e6 / ingested.max(1) as f64,
            "deliveries_per_s": delivered as f64 / secs.max(1e-9),
            "delivered": delivered,
            "published": sent,
            "node_cpu_us_per_delivery": deliver_cpu * 1e6 / delivered.max(1) as f64,
            "nats_cpu_us_per_delivery": deliver_nats * 1e6 / delivered.max(1) as f64,
        });
        println!(
            "{n} node(s): ingest {:.0} events/s ({:.0} µs node + {:.0} µs NATS CPU per event); \
             delivery {:.0}/s ({:.0} µs node + {:.0} µs NATS CPU per delivery)",
            row["ingest_events_per_s"].as_f64().unwrap_or(0.0),
            row["ingest_node_cpu_us_per_event"].as_f64().unwrap_or(0.0),
            row["ingest_nats_cpu_us_per_event"].as_f64().unwrap_or(0.0),
            row["deliveries_per_s"].as_f64().unwrap_or(0.0),
            row["node_cpu_us_per_delivery"].as_f64().unwrap_or(0.0),
            row["nats_cpu_us_per_delivery"].as_f64().unwrap_or(0.0),
        );
        last = Outcome {
            scenario: "cluster".into(),
            params: json!({"max_nodes": c.max_nodes, "partitions": PARTITIONS, "devices": c.devices, "events": c.load.events, "ingest_events": c.ingest_events}),
            rate_per_s: delivered as f64 / secs.max(1e-9),
            rate_unit: "deliveries".into(),
            count: delivered,
            seconds: secs,
            latency: Some(crate::setup::take_latency(&stats)),
            server_peak_rss_mib: pids
                .iter()
                .map(|p| crate::report::peak_rss_mib(*p))
                .fold(0.0, f64::max),
            server_cpu_s: deliver_cpu,
            server_cpu_us_per_unit: deliver_cpu * 1e6 / delivered.max(1) as f64,
            extra: Value::Null,
        };
        rows.push(row);
        for s in nodes {
            s.stop();
        }
    }
    last.extra = json!({ "configurations": rows });
    Ok(last)
}
