//! Starts a real `hookrelay serve` (release build) for a scenario and sets up
//! tenants and webhooks through its API.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub(crate) const INGEST_KEY: &str = "bench-ingest-key-0123456789abcdef";
const OPERATOR_KEY: &str = "bench-operator-key-0123456789";

/// An organization of the bench server.
pub(crate) struct Tenant {
    org_id: String,
    pub(crate) admin_key: String,
}

/// A running server process.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) http: SocketAddr,
    pub(crate) grpc: SocketAddr,
    /// The operator's `/metrics` listener (the REST one for a build from
    /// before it had its own).
    metrics: SocketAddr,
    client: reqwest::Client,
}

/// Server settings a scenario may change.
#[derive(Clone, Debug, Default)]
pub(crate) struct ServerOptions {
    /// `HOOKRELAY_<SECTION>__<KEY>` overrides.
    pub(crate) env: Vec<(String, String)>,
}

impl ServerOptions {
    pub(crate) fn set(mut self, section: &str, key: &str, value: &str) -> Self {
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
}

/// The `hookrelay` binary beside this one (`target/release/`).
pub(crate) fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("hookrelay")))
        .unwrap_or_else(|| PathBuf::from("hookrelay"))
}

impl Server {
    pub(crate) fn start(bin: &Path, data_dir: &Path, opts: &ServerOptions) -> anyhow::Result<Self> {
        // A build from before `[metrics]` refuses the section: the same
        // configuration without it, for before/after runs against one.
        Self::start_with(bin, data_dir, opts, true)
            .or_else(|_| Self::start_with(bin, data_dir, opts, false))
    }

    fn start_with(
        bin: &Path,
        data_dir: &Path,
        opts: &ServerOptions,
        metrics_listener: bool,
    ) -> anyhow::Result<Self> {
        let metrics = if metrics_listener {
            "[metrics]\nlisten = \"127.0.0.1:0\"\n"
        } else {
            ""
        };
        let config = format!(
            r#"
[http]
listen = "127.0.0.1:0"
[grpc]
listen = "127.0.0.1:0"
[store]
path = "{}"
[auth]
operator_key = "{OPERATOR_KEY}"
[ingest]
keys = ["{INGEST_KEY}"]
[delivery]
allow_http = true
allow_private_targets = true
[log]
level = "warn"
{metrics}"#,
            data_dir.display()
        );
        let config_path = data_dir.with_extension("toml");
        std::fs::write(&config_path, config)?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with cargo build --release)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("hookrelay listening ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .context("server did not start within 60 s")?;
        let mut http = None;
        let mut grpc = None;
        let mut metrics = None;
        for part in line.split_whitespace() {
            if let Some(a) = part.strip_prefix("http=") {
                http = a.parse().ok();
            } else if let Some(a) = part.strip_prefix("grpc=") {
                grpc = a.parse().ok();
            } else if let Some(a) = part.strip_prefix("metrics=") {
                metrics = a.parse().ok();
            }
        }
        let (Some(http), Some(grpc)) = (http, grpc) else {
            bail!("unexpected listening line: {line}");
        };
        Ok(Self {
            child: Some(child),
            http,
            grpc,
            metrics: metrics.unwrap_or(http),
            client: reqwest::Client::new(),
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {body}");
        }
        Ok(body)
    }

    /// Creates an organization.
    pub(crate) async fn organization(&self) -> anyhow::Result<Tenant> {
        let org = self
            .post("/v1/organizations", OPERATOR_KEY, json!({"name": "bench"}))
            .await?;
        let text = |k: &str| org[k].as_str().map(str::to_owned).context("no {k}");
        Ok(Tenant {
            org_id: text("id")?,
            admin_key: text("admin_key")?,
        })
    }

    /// Binds device id `device` to the organization (as the operator) and
    /// returns a device token for it.
    pub(crate) async fn device(&self, org: &Tenant, device: &str) -> anyhow::Result<String> {
        self.post(
            &format!("/v1/organizations/{}/apps", org.org_id),
            OPERATOR_KEY,
            json!({"id": device, "name": device}),
        )
        .await?;
        let t = self
            .post(
                &format!("/v1/organization/apps/{device}/tokens"),
                &org.admin_key,
                json!({}),
            )
            .await?;
        t["token"].as_str().map(str::to_owned).context("no token")
    }

    /// Points the device's primary webhook at `url`.
    pub(crate) async fn webhook(
        &self,
        token: &str,
        url: &str,
        timeout_s: u32,
    ) -> anyhow::Result<()> {
        self.post(
            "/webhook",
            token,
            json!({"webhook_url": url, "enabled_events": ["*"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "timeout": timeout_s}),
        )
        .await?;
        Ok(())
    }

    /// Creates an extra (non-primary) webhook on the device through the
    /// admin API.
    pub(crate) async fn extra_webhook(
        &self,
        admin: &str,
        device: &str,
        url: &str,
    ) -> anyhow::Result<()> {
        self.post(
            &format!("/v1/organization/apps/{device}/webhooks"),
            admin,
            json!({"url": url, "events": ["*"], "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        )
        .await?;
        Ok(())
    }
}

impl Server {
    /// Replays every logged event of the device to the webhook behind `token`.
    pub(crate) async fn replay_all(&self, token: &str, webhook_id: &str) -> anyhow::Result<u64> {
        let v = self
            .post(
                &format!("/v1/webhooks/{webhook_id}/replay"),
                token,
                json!({"since": "2000-01-01T00:00:00Z"}),
            )
            .await?;
        v["replayed"].as_u64().context("no replayed count")
    }

    /// Creates a `/v1` webhook for the device behind `token`; returns its id.
    pub(crate) async fn v1_webhook(&self, token: &str, url: &str) -> anyhow::Result<String> {
        let v = self
            .post(
                "/v1/webhooks",
                token,
                json!({"url": url, "events": ["*"], "retry_attempts": 20}),
            )
            .await?;
        v["id"].as_str().map(str::to_owned).context("no webhook id")
    }

    /// One sample of `/metrics`.
    pub(crate) async fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .client
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// SIGTERM, and wait for the exit.
    pub(crate) fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
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
