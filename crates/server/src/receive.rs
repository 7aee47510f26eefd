//! `hookrelay receive`: a debugging receiver that prints every delivery and
//! checks both signatures against a secret.

use anyhow::Context;
use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode},
    routing::any,
    Router,
};
use hmac::{Hmac, Mac};
use hookrelay_core::{header, signing};
use std::net::SocketAddr;

/// Verdict on the in-body `signature` member.
fn check_body_signature(secret: &str, body: &str) -> String {
    // The signature is the envelope's last member: `,"signature":"sha256=<64 hex>"}`.
    const TAIL: usize = r#","signature":"sha256="}"#.len() + 64;
    if body.len() < TAIL || !body.ends_with("\"}") {
        return "absent".to_owned();
    }
    let (unsigned, tail) = body.split_at(body.len() - TAIL);
    let Some(given) = tail
        .strip_prefix(r#","signature":""#)
        .and_then(|t| t.strip_suffix("\"}"))
    else {
        return "absent".to_owned();
    };
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return "unusable secret".to_owned(),
    };
    mac.update(unsigned.as_bytes());
    mac.update(b"}");
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if hookrelay_core::constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        "ok".to_owned()
    } else {
        "MISMATCH".to_owned()
    }
}

/// Verdict on `webhook-signature` (any of its space-separated signatures).
fn check_standard_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, ts, sigs) = (
        get(header::WEBHOOK_ID),
        get(header::WEBHOOK_TIMESTAMP),
        get(header::WEBHOOK_SIGNATURE),
    );
    if sigs.is_empty() {
        return "absent".to_owned();
    }
    let Ok(ts) = ts.parse::<i64>() else {
        return "bad webhook-timestamp".to_owned();
    };
    let expected = signing::standard_signature(secret, id, ts, body);
    let ok = sigs
        .split(' ')
        .any(|s| hookrelay_core::constant_time_eq(s.as_bytes(), expected.as_bytes()));
    if ok { "ok" } else { "MISMATCH" }.to_owned()
}

/// Serves until Ctrl-C, answering `status` to every request.
pub(crate) async fn run(
    listen: SocketAddr,
    secret: Option<String>,
    status: u16,
) -> anyhow::Result<()> {
    let status = StatusCode::from_u16(status).context("--status must be an HTTP status code")?;
    let app = Router::new().fallback(any(move |headers: HeaderMap, body: Bytes| {
        let secret = secret.clone();
        async move {
            let text = String::from_utf8_lossy(&body);
            println!("--- delivery");
            for name in [
                header::WEBHOOK_ID,
                header::WEBHOOK_TIMESTAMP,
                header::WEBHOOK_SIGNATURE,
                "user-agent",
            ] {
                if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                    println!("{name}: {v}");
                }
            }
            println!("{text}");
            if let Some(secret) = &secret {
                println!(
                    "in-body signature: {}; webhook-signature: {}",
                    check_body_signature(secret, &text),
                    check_standard_signature(secret, &headers, &body)
                );
            }
            status
        }
    }));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "receiving on http://{}/ (Ctrl-C to stop)",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_hookrelay_signs() {
        let secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let unsigned = signing::envelope("evt_1", "message.received", 5, "d", r#"{"a":"b"}"#);
        let body = signing::signed_body(&unsigned, Some(secret));
        let text = String::from_utf8_lossy(&body);
        assert_eq!(check_body_signature(secret, &text), "ok");
        assert_eq!(check_body_signature("other", &text), "MISMATCH");
        let mut h = HeaderMap::new();
        h.insert(header::WEBHOOK_ID, "evt_1".parse().expect("hv"));
        h.insert(header::WEBHOOK_TIMESTAMP, "7".parse().expect("hv"));
        let sig = signing::signature_header(&[secret], "evt_1", 7, &body);
        h.insert(header::WEBHOOK_SIGNATURE, sig.parse().expect("hv"));
        assert_eq!(check_standard_signature(secret, &h, &body), "ok");
        assert_eq!(
            check_standard_signature("whsec_BBBB", &h, &body),
            "MISMATCH"
        );
    }
}
