//! The configuration file: one TOML document, every section owned by the
//! crate that reads it, unknown keys rejected, environment overrides
//! `HOOKRELAY_<SECTION>__<KEY>`.

use anyhow::{bail, Context};
use hookrelay_api::TenancyConfig;
use hookrelay_core::{CatalogConfig, DeliveryConfig};
use hookrelay_ingest::IngestConfig;
use hookrelay_scheduler::SchedulerConfig;
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// `[http]`: the REST listener.
    pub(crate) http: HttpConfig,
    /// `[grpc]`: the ingest listener.
    pub(crate) grpc: GrpcConfig,
    /// `[store]`: the backend and, for sled, the data directory.
    pub(crate) store: StoreConfig,
    /// `[jetstream]`: the cluster, with `store.backend = "jetstream"`.
    pub(crate) jetstream: JetStreamSection,
    /// `[auth]`: the operator key.
    pub(crate) auth: AuthConfig,
    /// `[api]`: REST API limits.
    pub(crate) api: ApiSection,
    /// `[ingest]`.
    pub(crate) ingest: IngestConfig,
    /// `[delivery]`.
    pub(crate) delivery: DeliveryConfig,
    /// `[catalog]`.
    pub(crate) catalog: CatalogConfig,
    /// `[scheduler]`.
    pub(crate) scheduler: SchedulerConfig,
    /// `[tenancy]`.
    pub(crate) tenancy: TenancyConfig,
    /// `[metrics]`: the operator's Prometheus listener.
    pub(crate) metrics: MetricsConfig,
    /// `[log]`.
    pub(crate) log: LogConfig,
    /// `[shutdown]`.
    pub(crate) shutdown: ShutdownConfig,
    /// `[[profiles]]`: vendor APIs, each on a listener of its own.
    pub(crate) profiles: Vec<ProfileListener>,
}

/// `[[profiles]]`: one vendor profile's listener (docs/profiles.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileListener {
    /// `wuts`, `whautochat`, `status-envelope` or `org-apps`.
    pub(crate) name: String,
    /// Its address (port 0 picks one). Served with `[http]`'s TLS when set.
    pub(crate) listen: SocketAddr,
}

/// `[http]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpConfig {
    /// REST API and health listener (default 127.0.0.1:8080; port 0 picks one).
    pub(crate) listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (with `tls_key`). Reloaded on SIGHUP.
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub(crate) tls_key: Option<PathBuf>,
    /// Longest time a client may take to send a request head (default 10s):
    /// slower clients (slowloris) are disconnected.
    #[serde(with = "humantime_serde")]
    pub(crate) header_read_timeout: Duration,
    /// Serve the web console at `/console` (default true).
    pub(crate) console: bool,
    /// Most client connections open at once, on this listener and on each
    /// profile's (default 4096; lowered at start to fit the process's
    /// descriptor limit). A full listener closes its oldest connection that
    /// has not sent a request yet, else refuses the new one.
    pub(crate) max_connections: usize,
    /// Most connections of one client address (default 256; 0: no cap,
    /// e.g. behind a reverse proxy that is the only client).
    pub(crate) max_connections_per_address: usize,
    /// Longest a connection may stay open without a request in flight
    /// (default 60s).
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// A request body gets this long (default 10s), plus a second for each
    /// `min_body_bytes_per_second` it has sent: a client that trickles its
    /// body is answered 408 and disconnected.
    #[serde(with = "humantime_serde")]
    pub(crate) body_read_timeout: Duration,
    /// The slowest body transfer kept up (default 16384 bytes/s).
    pub(crate) min_body_bytes_per_second: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            header_read_timeout: Duration::from_secs(10),
            console: true,
            max_connections: 4096,
            max_connections_per_address: 256,
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(10),
            min_body_bytes_per_second: 16 * 1024,
        }
    }
}

/// `[grpc]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GrpcConfig {
    /// gRPC ingest listener (default 127.0.0.1:50051; port 0 picks one).
    pub(crate) listen: SocketAddr,
    /// PEM certificate chain: serve gRPC over TLS (with `tls_key`). Reloaded on SIGHUP.
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub(crate) tls_key: Option<PathBuf>,
    /// PEM CA: producers must present a client certificate it signed.
    pub(crate) client_ca: Option<PathBuf>,
    /// Most concurrent HTTP/2 streams one producer connection may open
    /// (default 128).
    pub(crate) max_concurrent_streams: u32,
    /// Most requests of one connection handled at once (default 256).
    pub(crate) concurrency_per_connection: usize,
    /// Longest a request handler may take before it answers (default 30s;
    /// a `PublishStream` answers at once and then streams).
    #[serde(with = "humantime_serde")]
    pub(crate) request_timeout: Duration,
    /// Most producer connections open at once (default 4096; lowered at
    /// start to fit the process's descriptor limit). A full listener closes
    /// its oldest connection that has not sent a request yet, else refuses
    /// the new one.
    pub(crate) max_connections: usize,
    /// Most connections of one client address (default 128; 0: no cap).
    pub(crate) max_connections_per_address: usize,
    /// A connection that sends no request this long after it opened is
    /// closed (default 5s).
    #[serde(with = "humantime_serde")]
    pub(crate) first_request_timeout: Duration,
    /// Longest a connection may stay open without a call in flight (default
    /// 5m; a client's channel reconnects when it next publishes).
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    /// HTTP/2 pings on a connection quiet this long (default 30s) ...
    #[serde(with = "humantime_serde")]
    pub(crate) keepalive_interval: Duration,
    /// ... close it when not answered within this (default 10s).
    #[serde(with = "humantime_serde")]
    pub(crate) keepalive_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            max_concurrent_streams: 128,
            concurrency_per_connection: 256,
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 128,
            first_request_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the engine keeps its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StoreBackend {
    /// The embedded sled data directory: one node.
    #[default]
    Sled,
    /// A NATS JetStream cluster shared by several nodes.
    Jetstream,
}

/// `[store]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreConfig {
    /// `sled` (default) or `jetstream`.
    pub(crate) backend: StoreBackend,
    /// sled data directory (default ./data; `--data-dir` overrides).
    pub(crate) path: PathBuf,
    /// How long settled events are kept for replay (default 7d).
    #[serde(with = "humantime_serde")]
    pub(crate) retention: Duration,
    /// How often the background compaction pass runs (default 30s).
    #[serde(with = "humantime_serde")]
    pub(crate) compact_interval: Duration,
    /// Free space kept in reserve on the data directory's filesystem, bytes
    /// (default 64 MiB): below it, publishing answers UNAVAILABLE until space
    /// returns. 0 disables the check.
    pub(crate) min_free_bytes: u64,
    /// sled's page cache, bytes (default 24 MiB, at least 1 MiB). Each MiB
    /// costs about three of memory once sled holds much state; less makes a
    /// large backlog drain slower (docs/benchmarks.md).
    pub(crate) cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sled,
            path: PathBuf::from("./data"),
            retention: Duration::from_secs(7 * 24 * 3600),
            compact_interval: Duration::from_secs(30),
            min_free_bytes: 64 * 1024 * 1024,
            cache_bytes: hookrelay_sled::DEFAULT_CACHE_BYTES,
        }
    }
}

/// `[jetstream]`: the cluster several nodes share (docs/scale-out.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct JetStreamSection {
    /// Server URLs; the client fails over between them.
    pub(crate) urls: Vec<String>,
    /// Replicas of every stream and bucket (1, 3 or 5; default 3).
    pub(crate) replicas: usize,
    /// Partitions of the event log (default 16); fixed once the streams exist.
    pub(crate) partitions: u32,
    /// A dead node's partitions move to the others within this (default 10s).
    #[serde(with = "humantime_serde")]
    pub(crate) takeover: Duration,
    /// Prefix of every stream, subject and bucket (default `hr`): several
    /// engines can share one NATS cluster.
    pub(crate) namespace: String,
    /// How long a write (an ingest commit, an API change, a delivery's
    /// state) waits for a stream whose leader's server died to elect
    /// another before it fails (default 15s; nats-server's elections take
    /// 4–9 s).
    #[serde(with = "humantime_serde")]
    pub(crate) election_wait: Duration,
    /// This node's name in the leases (default: a new one at every start).
    pub(crate) node_id: String,
}

impl Default for JetStreamSection {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            replicas: 3,
            partitions: 16,
            takeover: Duration::from_secs(10),
            namespace: "hr".to_owned(),
            election_wait: Duration::from_secs(15),
            node_id: String::new(),
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthConfig {
    /// Creates organizations (`POST /v1/organizations`); unset disables those
    /// routes. Also read from `HOOKRELAY_OPERATOR_KEY`.
    pub(crate) operator_key: Option<String>,
}

/// `[api]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ApiSection {
    /// Most webhooks one app may have (default 20).
    pub(crate) max_webhooks_per_app: usize,
    /// Sustained REST requests per second per token (default 50); over it,
    /// 429 `RATE_LIMITED` with `Retry-After`.
    pub(crate) requests_per_second: u32,
    /// Requests a token may make in a burst (default 200).
    pub(crate) burst: u32,
    /// Sustained `POST /v1/events` requests per second per ingest key
    /// (default 5000).
    pub(crate) ingest_requests_per_second: u32,
    /// `POST /v1/events` burst per ingest key (default 10000).
    pub(crate) ingest_burst: u32,
    /// Sustained requests per second with a missing or wrong credential,
    /// per client address (default 5).
    pub(crate) auth_failures_per_second: u32,
    /// Burst of such requests per client address (default 20).
    pub(crate) auth_failures_burst: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            max_webhooks_per_app: 20,
            requests_per_second: 50,
            burst: 200,
            ingest_requests_per_second: 5_000,
            ingest_burst: 10_000,
            auth_failures_per_second: 5,
            auth_failures_burst: 20,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (journald, collectors).
    Json,
}

/// `[metrics]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// `/metrics` (Prometheus text), on a listener of its own for the
    /// operator's network: the tenant-facing REST listener does not serve
    /// it, since its labels name delivery target hosts (default
    /// 127.0.0.1:9464; port 0 picks one).
    pub(crate) listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// A tracing filter, e.g. `info` or `hookrelay=debug,info` (default info;
    /// `RUST_LOG` overrides).
    pub(crate) level: String,
    /// `text` or `json` (default text).
    pub(crate) format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// `[shutdown]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ShutdownConfig {
    /// Longest a graceful shutdown takes before in-flight attempts are
    /// abandoned to their leases (default 30s).
    #[serde(with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

/// Reads `path` (if any), applies environment overrides and checks the result.
pub(crate) fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read config file {}", p.display()))?,
        None => String::new(),
    };
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let config = parse(&text, &vars)?;
    let origins = Origins::of(&text, &vars);
    let problems: Vec<String> = check(&config).iter().map(|p| origins.annotate(p)).collect();
    if !problems.is_empty() {
        bail!("invalid configuration:\n  {}", problems.join("\n  "));
    }
    Ok(config)
}

/// Where each key's value came from: a line of the file or an environment
/// variable, so that every problem points at what to fix.
struct Origins(std::collections::HashMap<String, String>);

impl Origins {
    fn of(text: &str, vars: &[(String, String)]) -> Self {
        let mut at = std::collections::HashMap::new();
        let mut section = String::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
                at.insert(section.clone(), format!("line {}", i + 1));
            } else if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && !key.starts_with('#') {
                    let path = if section.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{section}.{key}")
                    };
                    at.insert(path, format!("line {}", i + 1));
                }
            }
        }
        for (name, _) in vars {
            if name == "HOOKRELAY_OPERATOR_KEY" {
                at.insert("auth.operator_key".to_owned(), format!("from {name}"));
            } else if let Some((section, key)) = name
                .strip_prefix("HOOKRELAY_")
                .and_then(|r| r.split_once("__"))
            {
                let path = format!(
                    "{}.{}",
                    section.to_ascii_lowercase(),
                    key.to_ascii_lowercase()
                );
                at.insert(path, format!("from {name}"));
            }
        }
        Self(at)
    }

    /// `problem` ("path: message") with where the path's value came from.
    fn annotate(&self, problem: &str) -> String {
        let Some((path, message)) = problem.split_once(": ") else {
            return problem.to_owned();
        };
        let key = path.split('[').next().unwrap_or(path);
        match self.0.get(key) {
            Some(origin) => format!("{path} ({origin}): {message}"),
            None => problem.to_owned(),
        }
    }
}

/// Keys that exist but do not appear when the defaults are serialized
/// (optional values whose default is "unset").
const OPTIONAL_KEYS: &[&str] = &[
    "auth.operator_key",
    "http.tls_cert",
    "http.tls_key",
    "grpc.tls_cert",
    "grpc.tls_key",
    "grpc.client_ca",
];

/// Every key of `doc` the schema does not know, as dotted paths.
fn unknown_keys(doc: &toml::Table, known: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in doc {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match known.get(k) {
            None if OPTIONAL_KEYS.contains(&path.as_str()) => {}
            None => out.push(path),
            Some(toml::Value::Table(kt)) => {
                if let toml::Value::Table(dt) = v {
                    unknown_keys(dt, kt, &path, out);
                }
            }
            Some(_) => {}
        }
    }
}

fn remove_path(doc: &mut toml::Table, path: &str) {
    match path.split_once('.') {
        Some((head, rest)) => {
            if let Some(toml::Value::Table(t)) = doc.get_mut(head) {
                remove_path(t, rest);
            }
        }
        None => {
            doc.remove(path);
        }
    }
}

/// Parses TOML text with overrides from `vars` (`HOOKRELAY_<SECTION>__<KEY>`),
/// reporting every unknown key and type error together.
pub(crate) fn parse(text: &str, vars: &[(String, String)]) -> anyhow::Result<Config> {
    let mut doc: toml::Table = toml::from_str(text).context("config file is not valid TOML")?;
    for (name, value) in vars {
        if name == "HOOKRELAY_OPERATOR_KEY" {
            set(
                &mut doc,
                "auth",
                "operator_key",
                toml::Value::String(value.clone()),
            );
            continue;
        }
        let Some(rest) = name.strip_prefix("HOOKRELAY_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let v = parse_env_value(value);
        set(
            &mut doc,
            &section.to_ascii_lowercase(),
            &key.to_ascii_lowercase(),
            v,
        );
    }
    let known = match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut problems = Vec::new();
    unknown_keys(&doc, &known, "", &mut problems);
    for p in &problems {
        remove_path(&mut doc, p);
    }
    let origins = Origins::of(text, vars);
    let mut problems: Vec<String> = problems
        .into_iter()
        .map(|p| origins.annotate(&format!("{p}: unknown key (typo?)")))
        .collect();
    // serde_path_to_error names the key of a type error ("delivery.allow_http").
    match serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(doc)) {
        Ok(config) if problems.is_empty() => return Ok(config),
        Ok(config) => problems.extend(check(&config).iter().map(|p| origins.annotate(p))),
        Err(e) => {
            let path = e.path().to_string();
            let message = e.inner().message().trim().to_owned();
            problems.push(origins.annotate(&format!("{path}: {message}")));
        }
    }
    bail!("invalid configuration:\n  {}", problems.join("\n  "))
}

fn set(doc: &mut toml::Table, section: &str, key: &str, v: toml::Value) {
    let entry = doc
        .entry(section.to_owned())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = entry {
        t.insert(key.to_owned(), v);
    }
}

/// An environment value as TOML when it parses as one (numbers, booleans,
/// arrays), else as a string.
fn parse_env_value(s: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {s}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(s.to_owned()))
}

/// Shortest accepted configured key (ingest keys, operator key).
const MIN_KEY_LEN: usize = 32;

/// Every semantic problem, each naming its key.
pub(crate) fn check(c: &Config) -> Vec<String> {
    let mut p = Vec::new();
    if c.ingest.max_event_bytes == 0 {
        p.push("ingest.max_event_bytes: must be positive".to_owned());
    }
    for (i, k) in c.ingest.keys.iter().enumerate() {
        if k.chars().count() < MIN_KEY_LEN {
            p.push(format!(
                "ingest.keys[{i}]: must be at least {MIN_KEY_LEN} characters (generate one with `openssl rand -hex 32`)"
            ));
        }
    }
    if c.ingest.max_request_events == 0 {
        p.push("ingest.max_request_events: must be at least 1".to_owned());
    }
    for (key, d, least) in [
        (
            "grpc.first_request_timeout",
            c.grpc.first_request_timeout,
            Duration::from_millis(100),
        ),
        (
            "grpc.idle_timeout",
            c.grpc.idle_timeout,
            Duration::from_secs(1),
        ),
        (
            "grpc.keepalive_interval",
            c.grpc.keepalive_interval,
            Duration::from_secs(1),
        ),
        (
            "grpc.keepalive_timeout",
            c.grpc.keepalive_timeout,
            Duration::from_millis(100),
        ),
        (
            "http.idle_timeout",
            c.http.idle_timeout,
            Duration::from_secs(1),
        ),
        (
            "http.body_read_timeout",
            c.http.body_read_timeout,
            Duration::from_millis(100),
        ),
    ] {
        if d < least {
            p.push(format!("{key}: must be at least {least:?}"));
        }
    }
    // On JetStream the window is the idempotency bucket's key age, where 0
    // would mean "for ever".
    if c.ingest.dedup_window < Duration::from_secs(1) {
        p.push("ingest.dedup_window: must be at least 1s".to_owned());
    }
    if c.http.min_body_bytes_per_second == 0 {
        p.push("http.min_body_bytes_per_second: must be at least 1".to_owned());
    }
    if c.store.cache_bytes < 1 << 20 {
        p.push("store.cache_bytes: must be at least 1048576 (1 MiB)".to_owned());
    }
    for (section, cert, key) in [
        ("http", &c.http.tls_cert, &c.http.tls_key),
        ("grpc", &c.grpc.tls_cert, &c.grpc.tls_key),
    ] {
        if cert.is_some() != key.is_some() {
            p.push(format!(
                "{section}.tls_cert and {section}.tls_key: set both or neither"
            ));
        }
        for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                p.push(format!(
                    "{section}.{name}: {} is not a readable file",
                    path.display()
                ));
            }
        }
    }
    if let Some(ca) = &c.grpc.client_ca {
        if c.grpc.tls_cert.is_none() {
            p.push("grpc.client_ca: needs grpc.tls_cert and grpc.tls_key".to_owned());
        }
        if !ca.is_file() {
            p.push(format!(
                "grpc.client_ca: {} is not a readable file",
                ca.display()
            ));
        }
    }
    if c.store.backend == StoreBackend::Jetstream {
        let js = &c.jetstream;
        if js.urls.is_empty() {
            p.push("jetstream.urls: at least one server".to_owned());
        }
        if ![1, 3, 5].contains(&js.replicas) {
            p.push("jetstream.replicas: 1, 3 or 5".to_owned());
        }
        if js.partitions == 0 || js.partitions > hookrelay_core::MAX_PARTITIONS {
            p.push(format!(
                "jetstream.partitions: 1 to {}",
                hookrelay_core::MAX_PARTITIONS
            ));
        }
        if js.takeover < Duration::from_secs(1) {
            p.push("jetstream.takeover: at least 1s".to_owned());
        }
        if js.election_wait > Duration::from_secs(60) {
            // Ingest commits wait this long: past a minute callers have
            // long given up.
            p.push("jetstream.election_wait: at most 60s".to_owned());
        }
    }
    if c.ingest.commit_interval > Duration::from_millis(100) {
        // Every acknowledgement under load may wait this long.
        p.push("ingest.commit_interval: at most 100ms".to_owned());
    }
    if c.store.compact_interval.is_zero() {
        p.push("store.compact_interval: must be positive".to_owned());
    }
    if c.api.max_webhooks_per_app == 0 {
        p.push("api.max_webhooks_per_app: must be at least 1".to_owned());
    }
    if c.delivery.concurrency == 0 {
        p.push("delivery.concurrency: must be at least 1".to_owned());
    }
    let d = &c.delivery;
    if d.per_host_concurrency_min == 0
        || d.per_host_concurrency_min > d.per_host_concurrency
        || d.per_host_concurrency > d.per_host_concurrency_max
    {
        p.push(format!(
            "delivery.per_host_concurrency: need 1 ≤ per_host_concurrency_min ({}) ≤ per_host_concurrency ({}) ≤ per_host_concurrency_max ({})",
            d.per_host_concurrency_min, d.per_host_concurrency, d.per_host_concurrency_max
        ));
    }
    if c.delivery.base_delay_ms == 0 {
        p.push("delivery.base_delay_ms: must be at least 1".to_owned());
    }
    if c.scheduler.window_events == 0 {
        p.push("scheduler.window_events: must be at least 1".to_owned());
    }
    if c.scheduler.task_channel == 0 || c.scheduler.report_channel == 0 {
        p.push("scheduler.task_channel/report_channel: must be at least 1".to_owned());
    }
    let known = hookrelay_api::profile_names();
    let mut taken = vec![
        ("http.listen".to_owned(), c.http.listen),
        ("grpc.listen".to_owned(), c.grpc.listen),
    ];
    if c.metrics.listen.port() != 0 {
        if let Some((other, _)) = taken.iter().find(|(_, a)| *a == c.metrics.listen) {
            p.push(format!(
                "metrics.listen: {} is already {other}'s address",
                c.metrics.listen
            ));
        }
        taken.push(("metrics.listen".to_owned(), c.metrics.listen));
    }
    for (i, pr) in c.profiles.iter().enumerate() {
        if !known.contains(&pr.name.as_str()) {
            p.push(format!(
                "profiles[{i}].name: unknown profile {:?} (one of: {})",
                pr.name,
                known.join(", ")
            ));
        }
        // Port 0 picks a free port: it never clashes.
        if pr.listen.port() != 0 {
            if let Some((other, _)) = taken.iter().find(|(_, a)| *a == pr.listen) {
                p.push(format!(
                    "profiles[{i}].listen: {} is already {other}'s address",
                    pr.listen
                ));
            }
        }
        taken.push((format!("profiles[{i}].listen"), pr.listen));
    }
    if c.auth.operator_key.as_deref().is_some_and(|k| k.len() < 16) {
        p.push("auth.operator_key: must be at least 16 characters".to_owned());
    }
    for name in &c.catalog.extra {
        let ok = name.split('.').count() >= 2
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && !name.starts_with('.')
            && !name.ends_with('.');
        if !ok {
            p.push(format!(
                "catalog.extra: {name:?} must look like \"category.name\" (lower-case letters, digits, '_', '-')"
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/api.md (tenancy and trust): no guessable operator ingest key.
    #[test]
    fn short_ingest_keys_are_refused_by_index() {
        let mut c = Config::default();
        c.ingest.keys = vec!["change-me".into(), "k".repeat(32)];
        let p = check(&c);
        assert_eq!(
            p.iter()
                .filter(|l| l.starts_with("ingest.keys[0]:"))
                .count(),
            1,
            "{p:?}"
        );
        assert!(!p.iter().any(|l| l.starts_with("ingest.keys[1]")), "{p:?}");
    }

    #[test]
    fn defaults_and_env_overrides() {
        let vars = vec![
            (
                "HOOKRELAY_HTTP__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "HOOKRELAY_INGEST__KEYS".to_owned(),
                "[\"a\", \"b\"]".to_owned(),
            ),
            (
                "HOOKRELAY_DELIVERY__ALLOW_HTTP".to_owned(),
                "true".to_owned(),
            ),
            (
                "HOOKRELAY_OPERATOR_KEY".to_owned(),
                "op-key-0123456789".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = parse("[store]\nretention = \"3d\"\n", &vars).expect("parse");
        assert_eq!(c.http.listen.port(), 9999);
        assert_eq!(c.ingest.keys, vec!["a", "b"]);
        assert!(c.delivery.allow_http);
        assert_eq!(c.auth.operator_key.as_deref(), Some("op-key-0123456789"));
        assert_eq!(c.store.retention, Duration::from_secs(3 * 86400));
        assert_eq!(c.grpc.listen.port(), 50051);
    }

    #[test]
    fn unknown_keys_are_errors_all_reported_with_their_paths() {
        let err = parse(
            "[delivery]\nallow_htp = true\nconcurrency = 0\n[nope]\nx = 1\n[ingest]\nmax_event_bytes = \"big\"\n",
            &[],
        )
        .expect_err("typos");
        let text = format!("{err:#}");
        assert!(
            text.contains("delivery.allow_htp (line 2): unknown key"),
            "{text}"
        );
        assert!(text.contains("nope (line 4): unknown key"), "{text}");
        assert!(
            text.contains("max_event_bytes") || text.contains("invalid type"),
            "{text}"
        );
        let err = parse("[delivery]\nallow_htp = true\nconcurrency = 0\n", &[]).expect_err("typo");
        let text = format!("{err:#}");
        assert!(
            text.contains("allow_htp") && text.contains("delivery.concurrency"),
            "{text}"
        );
        assert!(parse("[auth]\noperator_key = \"0123456789abcdef\"\n", &[]).is_ok());
    }

    /// Every kind of problem names its key and where its value came from.
    #[test]
    fn problems_point_at_the_key_and_its_line_or_variable() {
        let text = "[http]\nlisten = \"127.0.0.1:1\"\n[delivery]\nallow_http = \"yes\"\n";
        let err = format!("{:#}", parse(text, &[]).expect_err("bad type"));
        assert!(
            err.contains("delivery.allow_http (line 4): invalid type"),
            "{err}"
        );
        let vars = vec![(
            "HOOKRELAY_DELIVERY__CONCURRENCY".to_owned(),
            "\"many\"".to_owned(),
        )];
        let err = format!("{:#}", parse("", &vars).expect_err("bad type"));
        assert!(
            err.contains(
                "delivery.concurrency (from HOOKRELAY_DELIVERY__CONCURRENCY): invalid type"
            ),
            "{err}"
        );
        let err = format!(
            "{:#}",
            parse("[delivery]\n\nallow_htp = true\n", &[]).expect_err("typo")
        );
        assert!(
            err.contains("delivery.allow_htp (line 3): unknown key"),
            "{err}"
        );
        let vars = vec![("HOOKRELAY_DELIVERY__NOPE".to_owned(), "1".to_owned())];
        let err = format!("{:#}", parse("", &vars).expect_err("typo"));
        assert!(
            err.contains("delivery.nope (from HOOKRELAY_DELIVERY__NOPE): unknown key"),
            "{err}"
        );
        // Range errors too.
        let text = "[ingest]\nmax_event_bytes = 0\n";
        let origins = Origins::of(text, &[]);
        let c = parse(text, &[]).expect("parses");
        let p: Vec<String> = check(&c).iter().map(|p| origins.annotate(p)).collect();
        assert!(
            p.iter()
                .any(|l| l.starts_with("ingest.max_event_bytes (line 2): must be positive")),
            "{p:?}"
        );
        let vars = vec![(
            "HOOKRELAY_INGEST__KEYS".to_owned(),
            "[\"short\"]".to_owned(),
        )];
        let origins = Origins::of("", &vars);
        let c = parse("", &vars).expect("parses");
        let p: Vec<String> = check(&c).iter().map(|p| origins.annotate(p)).collect();
        assert!(
            p.iter()
                .any(|l| l.starts_with("ingest.keys[0] (from HOOKRELAY_INGEST__KEYS): ")),
            "{p:?}"
        );
    }

    #[test]
    fn semantic_problems_are_all_reported() {
        let c = parse(
            "[delivery]\nconcurrency = 0\nper_host_concurrency_max = 8\n[catalog]\nextra = [\"Bad Name\"]\n[auth]\noperator_key = \"short\"\n",
            &[],
        )
        .expect("parse");
        let p = check(&c);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("per_host_concurrency_max (8)")),
            "{p:?}"
        );
    }

    #[test]
    fn commit_pacing_is_bounded() {
        let c = parse("[ingest]\ncommit_interval = \"250ms\"\n", &[]).expect("parse");
        assert_eq!(check(&c), ["ingest.commit_interval: at most 100ms"]);
        let c = parse("[ingest]\ncommit_interval = \"0s\"\n", &[]).expect("parse");
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        assert_eq!(Config::default().ingest.commit_interval, Duration::ZERO);
    }

    #[test]
    fn the_store_cache_has_a_floor() {
        let c = parse("[store]\ncache_bytes = 4096\n", &[]).expect("parse");
        assert_eq!(
            check(&c),
            ["store.cache_bytes: must be at least 1048576 (1 MiB)"]
        );
        let c = parse("[store]\ncache_bytes = 1048576\n", &[]).expect("parse");
        assert!(check(&c).is_empty(), "{:?}", check(&c));
        assert_eq!(Config::default().store.cache_bytes, 24 << 20);
    }

    #[test]
    fn jetstream_waits_are_bounded() {
        let c = parse(
            "[store]\nbackend = \"jetstream\"\n[jetstream]\ntakeover = \"500ms\"\nelection_wait = \"2m\"\n",
            &[],
        )
        .expect("parse");
        let p = check(&c);
        assert_eq!(
            p,
            [
                "jetstream.takeover: at least 1s",
                "jetstream.election_wait: at most 60s"
            ],
            "{p:?}"
        );
        assert_eq!(
            Config::default().jetstream.election_wait,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn profiles_must_be_known_and_on_addresses_of_their_own() {
        let c = parse(
            "[http]\nlisten = \"127.0.0.1:8080\"\n\
             [[profiles]]\nname = \"whautochat\"\nlisten = \"127.0.0.1:8091\"\n\
             [[profiles]]\nname = \"nope\"\nlisten = \"127.0.0.1:8092\"\n\
             [[profiles]]\nname = \"org-apps\"\nlisten = \"127.0.0.1:8091\"\n\
             [[profiles]]\nname = \"wuts\"\nlisten = \"127.0.0.1:8080\"\n\
             [[profiles]]\nname = \"status-envelope\"\nlisten = \"127.0.0.1:0\"\n",
            &[],
        )
        .expect("parse");
        let p = check(&c);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("profiles[1].name: unknown profile \"nope\""),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "profiles[2].listen: 127.0.0.1:8091 is already profiles[0].listen's address"
        );
        assert_eq!(
            p[2],
            "profiles[3].listen: 127.0.0.1:8080 is already http.listen's address"
        );
        let typo = parse(
            "[[profiles]]\nnam = \"wuts\"\nlisten = \"127.0.0.1:0\"\n",
            &[],
        );
        assert!(format!("{typo:?}").contains("profiles"), "{typo:?}");
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../deploy/hookrelay.toml");
        let c = parse(text, &[]).expect("deploy/hookrelay.toml parses");
        assert!(check(&c).is_empty(), "{:?}", check(&c));
    }
}
