//! Runs the real `hookrelay` binary on free ports.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Builds a test server's configuration.
pub struct ServerBuilder {
    data_dir: PathBuf,
    base_delay_ms: u64,
    env: Vec<(String, String)>,
    http_port: u16,
    grpc_port: u16,
    logs: Option<PathBuf>,
    profiles: Vec<String>,
    nofile: Option<u64>,
}

/// The NATS cluster the suite runs on (`HOOKRELAY_E2E_NATS`), if any.
pub fn nats_urls() -> Option<Vec<String>> {
    let v = std::env::var("HOOKRELAY_E2E_NATS").ok()?;
    let urls: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    (!urls.is_empty()).then_some(urls)
}

/// Whether the suite runs on the JetStream backend. Tests of the embedded
/// store itself (its files, the disk, its crash recovery) return early
/// there, saying so.
pub fn on_jetstream(test: &str) -> bool {
    let on = nats_urls().is_some();
    if on {
        eprintln!("{test}: about the embedded store; not run on JetStream");
    }
    on
}

/// A port that was free a moment ago (for servers that must come back on
/// the same address after a restart).
///
/// Taken below the kernel's ephemeral range: a port that range handed out
/// (what binding port 0 gives) can be taken as the local end of another
/// test's outgoing connection while a server that owns it restarts, and CI
/// saw a restart fail with "Address already in use". Outgoing connections
/// never get ports below the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PICKS: AtomicU64 = AtomicU64::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(ephemeral_low / 2);
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1));
    // Tests run at once in this process and in others: start each search
    // somewhere else.
    let seed = u64::from(std::process::id()).wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into())
        ^ PICKS.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919);
    (0..span)
        .map(|i| low + ((seed.wrapping_add(i.wrapping_mul(7_919))) % span) as u16)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port")
        })
}

impl ServerBuilder {
    /// A server on `data_dir` (kept across restarts by the caller).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            base_delay_ms: 200,
            env: Vec::new(),
            http_port: 0,
            grpc_port: 0,
            logs: None,
            profiles: Vec::new(),
            nofile: None,
        }
    }

    /// Starts the server with this descriptor limit (soft and hard), through
    /// util-linux's `prlimit`.
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    /// Fixed ports, kept across restarts.
    pub fn ports(mut self, http: u16, grpc: u16) -> Self {
        self.http_port = http;
        self.grpc_port = grpc;
        self
    }

    /// Serves these vendor profiles, each on a listener of its own.
    pub fn profiles(mut self, names: &[&str]) -> Self {
        self.profiles = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Writes the server's log (stderr) to `path` instead of the test output.
    pub fn logs_to(mut self, path: &Path) -> Self {
        self.logs = Some(path.to_owned());
        self
    }

    /// First retry delay of new webhooks.
    pub fn base_delay_ms(mut self, ms: u64) -> Self {
        self.base_delay_ms = ms;
        self
    }

    /// Sets an environment variable of the server process.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets `section.key` through its environment override
    /// (`HOOKRELAY_<SECTION>__<KEY>`), e.g. `set("ingest", "max_backlog", "3")`.
    pub fn set(mut self, section: &str, key: &str, value: &str) -> Self {
        self.env.push((
            format!(
                "HOOKRELAY_{}__{}",
                section.to_uppercase(),
                key.to_uppercase()
            ),
            value.to_owned(),
        ));
        self
    }

    fn config(&self) -> String {
        format!(
            r#"
[http]
listen = "127.0.0.1:{http}"
[grpc]
listen = "127.0.0.1:{grpc}"
[metrics]
listen = "127.0.0.1:0"
[store]
path = "{data}"
{backend}
[auth]
operator_key = "{op}"
[ingest]
keys = ["{ik}"]
[delivery]
allow_http = true
allow_private_targets = true
base_delay_ms = {delay}
[scheduler]
tick = "10ms"
[shutdown]
timeout = "5s"
"#,
            data = self.data_dir.display(),
            http = self.http_port,
            grpc = self.grpc_port,
            op = super::OPERATOR_KEY,
            ik = super::INGEST_KEY,
            delay = self.base_delay_ms,
            backend = self.backend(),
        ) + &self
            .profiles
            .iter()
            .map(|n| format!("[[profiles]]\nname = \"{n}\"\nlisten = \"127.0.0.1:0\"\n"))
            .collect::<String>()
    }

    /// The backend lines of the config: sled, or with `HOOKRELAY_E2E_NATS`
    /// set (comma-separated URLs of a running cluster), JetStream in a
    /// namespace and with a node id of this data directory's own, so a
    /// restart on the same directory finds its state and its partitions.
    fn backend(&self) -> String {
        let Some(urls) = nats_urls() else {
            return String::new();
        };
        let tag = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.data_dir.hash(&mut h);
            format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
        };
        format!(
            "backend = \"jetstream\"\n[jetstream]\nurls = [{}]\nreplicas = 3\npartitions = 4\n\
             takeover = \"10s\"\nnamespace = \"e{tag}\"\nnode_id = \"n{tag}\"\n",
            urls.iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Starts the binary and waits for its listening line.
    pub fn start(&self) -> Server {
        let config_path = self.data_dir.with_extension("toml");
        std::fs::write(&config_path, self.config()).expect("write config");
        // HOOKRELAY_E2E_BIN runs the suite against another build (e.g. an
        // older release, to see a regression test fail there).
        let bin = std::env::var_os("HOOKRELAY_E2E_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_hookrelay").into());
        let mut command = match self.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn,hookrelay=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(match &self.logs {
                Some(p) => Stdio::from(std::fs::File::create(p).expect("log file")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("spawn hookrelay");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(rest) = line.strip_prefix("hookrelay listening ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        // Its listening line, or its early exit (its reason is on stderr).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => break l,
                Err(e) => {
                    if e == std::sync::mpsc::RecvTimeoutError::Disconnected {
                        // Its stdout closed: it is exiting.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("hookrelay exited before listening: {status}");
                    }
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        panic!("hookrelay did not start within 30 s");
                    }
                }
            }
        };
        let mut http = None;
        let mut grpc = None;
        let mut metrics = None;
        let mut profiles = std::collections::HashMap::new();
        for part in line.split_whitespace() {
            if let Some(a) = part.strip_prefix("http=") {
                http = a.parse().ok();
            } else if let Some(a) = part.strip_prefix("grpc=") {
                grpc = a.parse().ok();
            } else if let Some(a) = part.strip_prefix("metrics=") {
                metrics = a.parse().ok();
            } else if let Some((name, a)) = part
                .strip_prefix("profile:")
                .and_then(|p| p.split_once('='))
            {
                if let Ok(a) = a.parse() {
                    profiles.insert(name.to_owned(), a);
                }
            }
        }
        Server {
            child: Some(child),
            http_addr: http.expect("http address"),
            grpc_addr: grpc.expect("grpc address"),
            metrics_addr: metrics,
            profiles,
        }
    }
}

/// A running `hookrelay serve`; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub http_addr: SocketAddr,
    /// The operator's `/metrics` listener (`None` for a build from before it).
    pub metrics_addr: Option<SocketAddr>,
    pub grpc_addr: SocketAddr,
    /// Each profile listener's address, by profile name.
    pub profiles: std::collections::HashMap<String, SocketAddr>,
}

impl Server {
    /// `http://<the profile's listener><path>`.
    pub fn profile_url(&self, profile: &str, path: &str) -> String {
        let addr = self
            .profiles
            .get(profile)
            .expect("a listener of that profile");
        format!("http://{addr}{path}")
    }

    /// `http://<rest addr><path>`.
    /// `/metrics` on the operator's listener (on the REST one for a build
    /// from before it had its own).
    pub fn metrics_url(&self) -> String {
        match self.metrics_addr {
            Some(a) => format!("http://{a}/metrics"),
            None => self.url("/metrics"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr, path)
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{sig} failed");
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// SIGHUP: reload the log level and TLS certificates.
    pub fn hup(&self) {
        self.signal("HUP");
    }

    /// SIGTERM, then waits for the exit (off the runtime, so receivers in
    /// this process keep answering); returns whether it exited 0.
    pub async fn stop(mut self) -> bool {
        self.signal("TERM");
        let child = self.child.take().expect("child");
        tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(20)))
            .await
            .expect("wait task")
            .is_some_and(|s| s.success())
    }

    /// Waits up to `secs` for the process to exit by itself; its status,
    /// or `None` (then it is killed).
    pub async fn exit_within(mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let child = self.child.take().expect("child");
        tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(secs)))
            .await
            .expect("wait task")
    }

    /// Resident memory of the process, bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGKILL: a crash.
    pub async fn kill(mut self) {
        self.signal("KILL");
        if let Some(child) = self.child.take() {
            let _ = tokio::task::spawn_blocking(move || wait(child, Duration::from_secs(10))).await;
        }
    }
}

fn wait(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
