//! Logs (tracing, reloadable level) and metrics (Prometheus exporter).

use crate::config::{LogConfig, LogFormat};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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

/// Installs the Prometheus recorder and returns the handle `/metrics` renders.
pub(crate) fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}
