//! The common gateway case: every device's webhook on one customer host.
//! A burst measures deliveries/s; a steady phase on a fresh server measures
//! latency and CPU at a light load to the same single host.

use crate::{report::Outcome, scenario, setup::Load, sink};
use serde_json::json;
use std::path::Path;

/// The two phases' parameters.
pub(crate) struct OneHost {
    pub(crate) devices: u64,
    pub(crate) burst: Load,
    /// Events/s of the steady phase.
    pub(crate) rate: f64,
    pub(crate) seconds: u64,
}

/// Runs the burst, then the steady phase. The caller has set the sink to
/// one host ([`sink::hosts_with`]) before anything started a sink.
pub(crate) async fn run(bin: &Path, dir: &Path, p: OneHost) -> anyhow::Result<Outcome> {
    anyhow::ensure!(sink::hosts() == 1, "one-host needs the sink on one host");
    let burst = scenario::e2e::run(bin, &dir.join("burst"), p.devices, p.burst).await?;
    eprintln!("one-host: burst done, steady phase next");
    let steady = scenario::steady::run(
        bin,
        &dir.join("steady"),
        p.rate,
        p.seconds,
        p.devices,
        p.burst.size,
    )
    .await?;
    let mut o = burst;
    o.scenario = "one-host".to_owned();
    o.params = json!({
        "devices": p.devices,
        "events": p.burst.events,
        "streams": p.burst.streams,
        "size": p.burst.size,
        "steady_rate": p.rate,
        "steady_seconds": p.seconds,
    });
    let ingest_seconds = o.extra.get("ingest_seconds").cloned();
    o.extra = json!({
        "ingest_seconds": ingest_seconds,
        "steady": {
            "deliveries_per_s": steady.rate_per_s,
            "latency": steady.latency,
            "server_cpu_s": steady.server_cpu_s,
            "server_cpu_us_per_delivery": steady.server_cpu_us_per_unit,
            "server_cores": steady.extra.get("server_cores"),
        },
    });
    Ok(o)
}
