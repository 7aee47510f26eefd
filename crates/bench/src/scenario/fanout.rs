//! One device with many webhooks, spread over the sink's hosts.

use crate::{
    progress::{Counters, Progress},
    report::Outcome,
    server::{Server, ServerOptions},
    setup::{publish, sink_outcome, Load},
    sink,
};
use serde_json::json;
use std::path::Path;

pub(crate) async fn run(
    bin: &Path,
    data: &Path,
    webhooks: u64,
    load: Load,
) -> anyhow::Result<Outcome> {
    let server = Server::start(bin, data, &ServerOptions::default())?;
    let (addrs, stats) = sink::start(sink::hosts()).await?;
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
    let counters = Counters::with_sink(stats.clone());
    let _progress = Progress::start("fanout", counters.clone());
    let start_us = sink::now_us();
    publish(&server, load, |_| "fan".to_owned(), None, &counters).await?;
    let params = json!({"webhooks": webhooks, "events": load.events, "streams": load.streams, "size": load.size});
    let expected = load.events * webhooks;
    Ok(sink_outcome("fanout", params, &stats, expected, start_us, &server).await)
}
