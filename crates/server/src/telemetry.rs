//! Logs (tracing, reloadable level) and metrics (Prometheus exporter).

use crate::config::{LogConfig, LogFormat};
use hookrelay_core::metric;
use hookrelay_scheduler::{HostConcurrency, BUSIEST_HOSTS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{collections::HashMap, fmt::Write as _, sync::Arc};
use tracing_subscriber::{
    fmt, layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Layer, Registry,
};

/// Histogram buckets for webhook latencies: 1 ms to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Changes the log level of the running process (SIGHUP).
#[derive(Clone)]
pub(crate) struct LogHandle(Option<reload::Handle<EnvFilter, Registry>>);

impl LogHandle {
    /// Applies `level` unless `RUST_LOG` pins the filter.
    pub(crate) fn set_level(&self, level: &str) -> Result<(), String> {
        if std::env::var_os("RUST_LOG").is_some() {
            return Err("RUST_LOG is set and takes precedence".to_owned());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        match &self.0 {
            Some(h) => h.reload(filter).map_err(|e| e.to_string()),
            None => Err("logging was initialised elsewhere".to_owned()),
        }
    }
}

/// Installs the global subscriber: human lines or JSON on stderr, with a
/// filter from `RUST_LOG` or `log.level` that [`LogHandle`] can change.
pub(crate) fn init_logs(cfg: &LogConfig) -> LogHandle {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match cfg.format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    match tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
    {
        Ok(()) => LogHandle(Some(handle)),
        Err(_) => LogHandle(None),
    }
}

/// `hookrelay_host_concurrency_limit` in the text format, for the busiest
/// hosts over every scheduler of this node (limits and attempts in flight
/// summed per host). Rendered at each scrape rather than kept as a labelled
/// gauge in the recorder, whose label sets are never dropped: hosts that
/// stop being busy leave the output, so its size stays bounded.
pub(crate) fn host_concurrency_text(
    schedulers: impl IntoIterator<Item = Vec<HostConcurrency>>,
) -> String {
    let mut per_host: HashMap<Arc<str>, (usize, usize)> = HashMap::new();
    for h in schedulers.into_iter().flatten() {
        let e = per_host.entry(h.host).or_default();
        e.0 += h.limit;
        e.1 += h.in_flight;
    }
    let mut hosts: Vec<(Arc<str>, (usize, usize))> = per_host.into_iter().collect();
    hosts.sort_unstable_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
    let name = metric::HOST_CONCURRENCY_LIMIT;
    let mut out = format!(
        "# HELP {name} Attempts that may be in flight to a target host now (the {BUSIEST_HOSTS} busiest hosts).\n# TYPE {name} gauge\n"
    );
    for (host, (limit, _)) in hosts.into_iter().take(BUSIEST_HOSTS) {
        let host = host
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = writeln!(out, "{name}{{host=\"{host}\"}} {limit}");
    }
    out
}

/// Installs the Prometheus recorder and returns the handle `/metrics` renders.
pub(crate) fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}

#[cfg(test)]
mod host_concurrency_tests {
    use super::*;

    fn h(host: &str, limit: usize, in_flight: usize) -> HostConcurrency {
        HostConcurrency {
            host: host.into(),
            limit,
            in_flight,
        }
    }

    #[test]
    fn the_busiest_hosts_are_summed_over_schedulers_bounded_and_escaped() {
        let mut one: Vec<HostConcurrency> = (0..12)
            .map(|i| h(&format!("https://h{i:02}:443"), 4, i))
            .collect();
        one.push(h("https://x\"y\\z:443", 9, 100));
        let two = vec![h("https://h00:443", 6, 50)];
        let text = host_concurrency_text([one, two]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 10, "{text}");
        assert_eq!(
            lines[0],
            r#"hookrelay_host_concurrency_limit{host="https://x\"y\\z:443"} 9"#
        );
        // Two schedulers' share of one host: summed (50 in flight: second).
        assert_eq!(
            lines[1],
            r#"hookrelay_host_concurrency_limit{host="https://h00:443"} 10"#
        );
        assert_eq!(
            lines[2],
            r#"hookrelay_host_concurrency_limit{host="https://h11:443"} 4"#
        );
        assert!(text.starts_with("# HELP hookrelay_host_concurrency_limit "));
        assert!(host_concurrency_text(Vec::<Vec<HostConcurrency>>::new())
            .lines()
            .all(|l| l.starts_with('#')));
    }
}
