//! Durable events/s: events over gRPC streams, no webhooks.

use crate::{
    progress::{Counters, Progress},
    report::Outcome,
    server::{Server, ServerOptions},
    setup::{finish, publish, Load, Measured},
};
use serde_json::json;
use std::{path::Path, time::Instant};

pub(crate) async fn run(
    bin: &Path,
    data: &Path,
    load: Load,
    no_group_commit: bool,
) -> anyhow::Result<Outcome> {
    let mut opts = ServerOptions::default();
    if no_group_commit {
        opts = opts
            .set("ingest", "max_batch_events", "1")
            .set("ingest", "commit_interval", "0s");
    }
    let server = Server::start(bin, data, &opts)?;
    let counters = Counters::default();
    let _progress = Progress::start("ingest", counters.clone());
    let start = Instant::now();
    let acked = publish(
        &server,
        load,
        |_| "bench-device".to_owned(),
        None,
        &counters,
    )
    .await?;
    let secs = start.elapsed().as_secs_f64();
    Ok(finish(
        "ingest",
        json!({"events": load.events, "streams": load.streams, "size": load.size, "group_commit": !no_group_commit}),
        Measured {
            count: acked,
            secs,
            unit: "events",
            latency: None,
        },
        &server,
    ))
}
