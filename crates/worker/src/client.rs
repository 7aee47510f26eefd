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
/// connections, and the SSRF-guarded resolver.
pub fn build_client(allow_private_targets: bool) -> Result<reqwest::Client, ClientError> {
    let resolver = GuardedResolver::from_system(allow_private_targets)?;
    Ok(reqwest::Client::builder()
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
        .dns_resolver(Arc::new(resolver))
        .build()?)
}
