//! `serve --dev`: a ready-to-use organization, app and device token, kept in
//! `dev-credentials.json` in the data directory so restarts print the same
//! ones (the store itself only has their hashes).

use crate::config::Config;
use anyhow::Context;
use hookrelay_core::{
    generate_admin_key, hash_token, new_device_token, new_org_id, now_ms, DeviceId, OrgId,
};
use hookrelay_store::{App, Backend, DeviceToken, Org};
use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::Path};

const FILE: &str = "dev-credentials.json";
/// The dev app's device id.
pub(crate) const DEV_DEVICE: &str = "dev-device";

/// Credentials of a dev data directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DevCredentials {
    /// Operator key (creates organizations).
    pub(crate) operator_key: String,
    /// Ingest key.
    pub(crate) ingest_key: String,
    /// The dev organization's admin key.
    pub(crate) admin_key: String,
    /// The dev organization.
    pub(crate) org_id: String,
    /// A device token of the dev app.
    pub(crate) device_token: String,
}

/// Loads or creates the dev credentials file (before the store opens), and
/// opens the config up for local use: http and private targets allowed, the
/// dev keys accepted.
pub(crate) fn prepare(config: &mut Config) -> anyhow::Result<DevCredentials> {
    std::fs::create_dir_all(&config.store.path)
        .with_context(|| format!("cannot create {}", config.store.path.display()))?;
    let path = config.store.path.join(FILE);
    let creds = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid; delete it to start over", path.display()))?,
        Err(_) => {
            let c = DevCredentials {
                operator_key: format!("op_{}", new_device_token().replace('-', "")),
                ingest_key: format!("ik_{}", new_device_token().replace('-', "")),
                admin_key: generate_admin_key(),
                org_id: new_org_id().0,
                device_token: new_device_token(),
            };
            write_private(&path, &serde_json::to_vec_pretty(&c)?)?;
            c
        }
    };
    config.delivery.allow_http = true;
    config.delivery.allow_private_targets = true;
    if config.auth.operator_key.is_none() {
        config.auth.operator_key = Some(creds.operator_key.clone());
    }
    if !config.ingest.keys.contains(&creds.ingest_key) {
        config.ingest.keys.push(creds.ingest_key.clone());
    }
    Ok(creds)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

/// Creates the dev organization, app and token in the store if missing.
pub(crate) async fn ensure(store: &Backend, creds: &DevCredentials) -> anyhow::Result<()> {
    let org_id = OrgId(creds.org_id.clone());
    if store.config.org(&org_id).is_none() {
        let org = Org {
            id: org_id.clone(),
            name: "dev".to_owned(),
            created_at_ms: now_ms(),
        };
        store
            .config
            .create_org(org, hash_token(&creds.admin_key))
            .await?;
    }
    let device = DeviceId::from(DEV_DEVICE);
    if store.config.app(&device).is_none() {
        let app = App {
            id: device.clone(),
            org_id: org_id.clone(),
            name: "dev device".to_owned(),
            created_at_ms: now_ms(),
        };
        // Bound as the operator binds device ids (docs/api.md, docs/security.md).
        store.config.create_app(app, usize::MAX).await?;
    }
    if store
        .config
        .token_scope(&hash_token(&creds.device_token))
        .is_none()
    {
        let token = DeviceToken {
            id: hookrelay_core::new_token_id(),
            hash: hash_token(&creds.device_token),
            name: "dev".to_owned(),
            org_id,
            device_id: device,
            created_at_ms: now_ms(),
        };
        store.config.add_token(token, usize::MAX).await?;
    }
    Ok(())
}

/// The banner printed once the listeners are up.
pub(crate) fn banner(creds: &DevCredentials, http: SocketAddr, grpc: SocketAddr) -> String {
    let secret = hookrelay_core::generate_secret();
    format!(
        r#"
hookrelay is running in dev mode (http and private targets allowed).
  REST API      http://{http}      gRPC ingest  {grpc}
  web console   http://{http}/console  (sign in with the device token or the admin key)
  device token  {token}   (device id: {DEV_DEVICE})
  ingest key    {ingest}
  admin key     {admin}
  operator key  {operator}

1) In another terminal, start a receiver that prints and verifies deliveries:
   cargo run --release -- receive --listen 127.0.0.1:9000 --secret {secret}

2) Point the device's webhook at it:
   curl -s -X POST http://{http}/webhook -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{"webhook_url":"http://127.0.0.1:9000/hook","enabled_events":["message.*"],"secret":"{secret}"}}'

3) Publish an event (HTTP ingest; gRPC takes the same key):
   curl -s -X POST http://{http}/v1/events -H 'Authorization: Bearer {ingest}' -H 'Content-Type: application/json' -d '{{"device_id":"{DEV_DEVICE}","event":"message.received","data":{{"content":"Hi there!"}}}}'
"#,
        token = creds.device_token,
        ingest = creds.ingest_key,
        admin = creds.admin_key,
        operator = creds.operator_key,
    )
}
