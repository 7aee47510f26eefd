//! The one shared HTTP client.

use crate::{ssrf::GuardedResolver, USER_AGENT};
use std::{sync::Arc, time::Duration};

/// Builds the delivery client: rustls, no redirects, pooled keep-alive
/// connections, and the SSRF-guarded resolver.
pub fn build_client(allow_private_targets: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY)
        // would resolve targets itself, past the SSRF guard: never use one.
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(60))
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: allow_private_targets,
        }))
        .build()
}
