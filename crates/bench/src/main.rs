//! `hookrelay-bench`: load generator and sink for hookrelay's figures.
//!
//! Each scenario starts a real release-build server on a fresh data
//! directory, sets tenants and webhooks up through the API, drives load over
//! gRPC streams into a local hyper sink, and prints one summary table (and
//! `--json FILE`). Figures live in `docs/benchmarks.md`.

//!
//! Map: `scenario/` has one module per scenario, `setup` what they share
//! (tenants, producers, waiting, the summary), `progress` the lines printed
//! every 2 s while a scenario runs, `producer`/`sink`/`server` the three
//! processes' sides, `report` the summary's shape.

mod producer;
mod progress;
mod report;
mod scenario;
mod server;
mod setup;
mod sink;

use anyhow::Context;
use clap::{Parser, Subcommand};
use report::Outcome;
use setup::Load;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hookrelay-bench",
    about = "Benchmarks for hookrelay: ingest, end-to-end delivery, one host, fan-out, steady load, dead endpoints, backlog, cluster."
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
    /// Bytes of body the sink answers with (default none).
    #[arg(long, global = true, default_value_t = 0)]
    answer_bytes: usize,
    /// Loopback hosts the webhooks are spread over (1..=10; 1: every
    /// webhook on one customer host).
    #[arg(long, global = true, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
    hosts: u8,
}

/// A burst of events spread over devices with one webhook each.
#[derive(clap::Args)]
struct DeviceBurst {
    #[arg(long, default_value_t = 100)]
    devices: u64,
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    #[arg(long, default_value_t = 8)]
    streams: u64,
    #[arg(long, default_value_t = 512)]
    size: usize,
}

impl DeviceBurst {
    fn load(&self) -> Load {
        Load {
            events: self.events,
            streams: self.streams,
            size: self.size,
        }
    }
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
    E2e(DeviceBurst),
    /// Every device's webhook on one host (the common gateway case): a
    /// burst of E events (deliveries/s), then a steady RATE for SECONDS on a
    /// fresh server (latency, CPU). Ignores `--hosts`.
    OneHost {
        #[command(flatten)]
        burst: DeviceBurst,
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
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
    /// 1..=N nodes on one three-server JetStream cluster (nats-server on
    /// the PATH): durable ingest/s, deliveries/s, CPU per event.
    Cluster {
        /// Most nodes: runs 1, 2, … this many.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Events of the ingest phase (no webhooks).
        #[arg(long, default_value_t = 100_000)]
        ingest_events: u64,
        /// Devices with one webhook each, in the delivery phase.
        #[arg(long, default_value_t = 100)]
        devices: u64,
        /// Events of the delivery phase.
        #[arg(long, default_value_t = 50_000)]
        events: u64,
        /// gRPC streams per node.
        #[arg(long, default_value_t = 8)]
        streams: u64,
        #[arg(long, default_value_t = 512)]
        size: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    sink::answer_with(cli.answer_bytes);
    let hosts = match cli.scenario {
        Scenario::OneHost { .. } => 1,
        _ => cli.hosts,
    };
    sink::hosts_with(hosts);
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
            let load = Load {
                events,
                streams,
                size,
            };
            scenario::ingest::run(&bin, &data, load, no_group_commit).await
        }
        Scenario::E2e(b) => scenario::e2e::run(&bin, &data, b.devices, b.load()).await,
        Scenario::OneHost {
            burst,
            rate,
            seconds,
        } => {
            let p = scenario::one_host::OneHost {
                devices: burst.devices,
                burst: burst.load(),
                rate,
                seconds,
            };
            scenario::one_host::run(&bin, dir.path(), p).await
        }
        Scenario::Fanout {
            webhooks,
            events,
            streams,
            size,
        } => {
            let load = Load {
                events,
                streams,
                size,
            };
            scenario::fanout::run(&bin, &data, webhooks, load).await
        }
        Scenario::Steady {
            rate,
            seconds,
            devices,
            size,
        } => scenario::steady::run(&bin, &data, rate, seconds, devices, size).await,
        Scenario::Backlog {
            deliveries,
            streams,
            size,
            drain_seconds,
        } => {
            let load = Load {
                events: deliveries,
                streams,
                size,
            };
            scenario::backlog::run(&bin, &data, load, drain_seconds).await
        }
        Scenario::DeadEndpoint {
            devices,
            events,
            streams,
            size,
            timeout,
        } => {
            let load = Load {
                events,
                streams,
                size,
            };
            scenario::dead_endpoint::run(&bin, dir.path(), devices, load, timeout).await
        }
        Scenario::Cluster {
            nodes,
            ingest_events,
            devices,
            events,
            streams,
            size,
        } => {
            let c = scenario::cluster::ClusterLoad {
                max_nodes: nodes.max(1),
                ingest_events,
                devices,
                load: Load {
                    events,
                    streams,
                    size,
                },
            };
            scenario::cluster::run(&bin, dir.path(), c).await
        }
    }
}
