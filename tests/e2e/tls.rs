//! TLS on both listeners, with client certificates required of producers.

use crate::support::*;
use hookrelay_ingest::proto::{ingest_service_client::IngestServiceClient, PublishRequest};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use std::path::Path;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca: String,
    client: (String, String),
    rogue: (String, String),
}

fn ca() -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).expect("ca").pem();
    (params, key, pem)
}

fn leaf(names: &[&str], client: bool, issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("params");
    if client {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// Writes server.pem/server.key/ca.pem into `dir`; returns what clients need.
fn pki(dir: &Path) -> Pki {
    let (ca_params, ca_key, ca_pem) = ca();
    let issuer = Issuer::new(ca_params, ca_key);
    let (server_cert, server_key) = leaf(&["localhost", "127.0.0.1"], false, &issuer);
    let client = leaf(&["producer-1"], true, &issuer);
    let (rogue_params, rogue_key, _) = ca();
    let rogue_issuer = Issuer::new(rogue_params, rogue_key);
    let rogue = leaf(&["intruder"], true, &rogue_issuer);
    std::fs::write(dir.join("server.pem"), server_cert).expect("write");
    std::fs::write(dir.join("server.key"), server_key).expect("write");
    std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write");
    Pki {
        ca: ca_pem,
        client,
        rogue,
    }
}

async fn tls_client(
    server: &Server,
    pki: &Pki,
    identity: Option<&(String, String)>,
) -> Option<IngestServiceClient<Channel>> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", server.grpc_addr))
        .expect("url")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .ok()?;
    Some(IngestServiceClient::new(channel))
}

async fn try_publish(client: Option<IngestServiceClient<Channel>>) -> bool {
    let Some(mut client) = client else {
        return false;
    };
    let mut req = tonic::Request::new(PublishRequest {
        event: Some(event("dev-1", "message.sent", "{}")),
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {INGEST_KEY}").parse().expect("meta"),
    );
    client.publish(req).await.is_ok()
}

#[tokio::test]
async fn rest_and_grpc_over_tls_and_producers_need_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("http", "tls_cert", &p("server.pem"))
        .set("http", "tls_key", &p("server.key"))
        .set("grpc", "tls_cert", &p("server.pem"))
        .set("grpc", "tls_key", &p("server.key"))
        .set("grpc", "client_ca", &p("ca.pem"))
        .start();

    // REST over HTTPS, trusting the test CA.
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", server.http_addr.port());
    let resp = https
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("https healthz");
    assert_eq!(resp.status(), 200);
    let resp = https
        .post(format!("{base}/v1/organizations"))
        .bearer_auth(OPERATOR_KEY)
        .json(&serde_json::json!({"name": "tls"}))
        .send()
        .await
        .expect("https call");
    assert_eq!(resp.status(), 201);
    // Plain HTTP is not served on the TLS port.
    assert!(reqwest::get(server.url("/healthz"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));

    // gRPC: a producer with a certificate from the CA publishes ...
    assert!(
        try_publish(tls_client(&server, &pki, Some(&pki.client)).await).await,
        "client certificate accepted"
    );
    // ... one without a certificate, or with another CA's, is refused.
    assert!(
        !try_publish(tls_client(&server, &pki, None).await).await,
        "no client certificate refused"
    );
    assert!(
        !try_publish(tls_client(&server, &pki, Some(&pki.rogue)).await).await,
        "foreign certificate refused"
    );
    let accepted = if on_sled() {
        "hookrelay_log_sequence"
    } else {
        "hookrelay_events_ingested_total{source=\"grpc\"}"
    };
    // The operator's metrics listener stays plain HTTP.
    assert_eq!(metric(&server, accepted).await, Some(1.0));
}

#[tokio::test]
async fn certificates_reload_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _old = pki(dir.path());
    let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
    let server = ServerBuilder::new(&dir.path().join("data"))
        .set("http", "tls_cert", &p("server.pem"))
        .set("http", "tls_key", &p("server.key"))
        .start();
    // A new CA and server certificate replace the files; SIGHUP loads them.
    let new = pki(dir.path());
    server.hup();
    let https = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(new.ca.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/healthz", server.http_addr.port());
    eventually(10, "the new certificate served", || async {
        let r = https.get(&url).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}
