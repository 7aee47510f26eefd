//! The one shared HTTP client.

use crate::{
    ssrf::{GuardedResolver, ResolverConfigError},
    USER_AGENT,
};
use std::{sync::Arc, time::Duration};

/// Why the delivery client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Resolver(#[from] ResolverConfigError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Builds the delivery client: rustls, no redirects, pooled keep-alive
/// connections (up to `max_per_host` kept per host: as many as may be in
/// flight to one host, or every attempt beyond the pool's cap would close
/// its connection and the next would open one), and the SSRF-guarded
/// resolver.
pub fn build_client(
    allow_private_targets: bool,
    max_per_host: usize,
) -> Result<reqwest::Client, ClientError> {
    let resolver = GuardedResolver::from_system(allow_private_targets)?;
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY)
        // would resolve targets itself, past the SSRF guard: never use one.
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(max_per_host.max(1))
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(60))
        .dns_resolver(Arc::new(resolver))
        .build()?)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HTTP/1.1 server that counts the connections it accepts and answers
    /// every request 200 after `delay`, so that many are in flight at once.
    async fn counting_server(delay: std::time::Duration) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One request: headers, then Content-Length bytes.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        tokio::time::sleep(delay).await;
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    #[tokio::test]
    async fn connections_to_one_host_are_kept_for_as_many_attempts_as_run_at_once() {
        // 100 attempts at once to one host, twice: the second wave reuses
        // the first wave's connections. With fewer kept than run at once
        // (the old fixed cap of 64), 36 were closed after each wave and
        // opened again, a TCP handshake per attempt under load.
        let (url, accepted) = counting_server(std::time::Duration::from_millis(50)).await;
        let client = super::build_client(true, 100).expect("client");
        for _ in 0..2 {
            let wave: Vec<_> = (0..100)
                .map(|_| {
                    let (c, u) = (client.clone(), url.clone());
                    tokio::spawn(async move {
                        let r = c.post(u).body("{}").send().await.expect("send");
                        r.bytes().await.expect("body");
                    })
                })
                .collect();
            for h in wave {
                h.await.expect("join");
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 100);
    }
}
