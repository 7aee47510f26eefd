//! Who may publish (docs/ingest.md).
//!
//! Keys in `ingest.keys` are the operator's and publish for any device id.
//! An organization ingest key (stored hashed in the config store) publishes
//! only for device ids bound to its organization; any other device id, bound
//! elsewhere or not at all, refuses the whole request with one answer, so it
//! tells nothing about other tenants. Revocation shows on the next publish:
//! an organization key is looked up again for every append.

use crate::IngestError;
use hookrelay_core::{
    constant_time_eq, hash_token, DeviceId, OrgId, OverShare, PendingShares, TokenHash,
};
use hookrelay_store::ConfigStore;
use std::{net::IpAddr, num::NonZeroU32, sync::Arc};

/// An authenticated producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publisher {
    /// A key of `ingest.keys`: any device id.
    Operator,
    /// An organization ingest key: that organization's devices only.
    Org {
        /// The organization.
        org_id: OrgId,
        /// The key's hash, looked up again on every append (revocation).
        key: TokenHash,
    },
}

/// The accepted ingest keys: the operator's (hashed here) and the
/// organizations' (in the config store).
#[derive(Clone)]
pub struct IngestKeys {
    hashes: Vec<TokenHash>,
    config: Option<Arc<dyn ConfigStore>>,
    /// The tenants' pending shares: an organization over its share has its
    /// own publishes refused.
    shares: Option<Arc<PendingShares>>,
}

impl IngestKeys {
    /// The operator's keys (empty ones are ignored) and, with `config`, the
    /// organizations' keys.
    pub fn new(keys: &[String], config: Option<Arc<dyn ConfigStore>>) -> Self {
        Self {
            hashes: keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| hash_token(k))
                .collect(),
            config,
            shares: None,
        }
    }

    /// Refuses the publishes of an organization over its share of `shares`.
    #[must_use]
    pub fn with_shares(mut self, shares: Arc<PendingShares>) -> Self {
        self.shares = Some(shares);
        self
    }

    /// The publisher an `authorization` header value (`Bearer <key>`)
    /// authenticates. Every operator key is compared, in constant time.
    pub fn authenticate(&self, header: Option<&str>) -> Option<Publisher> {
        let presented = hash_token(header.and_then(bearer)?);
        let operator = self
            .hashes
            .iter()
            .fold(false, |ok, h| constant_time_eq(&h.0, &presented.0) | ok);
        if operator {
            return Some(Publisher::Operator);
        }
        let org_id = self.config.as_ref()?.ingest_key_org(&presented)?;
        Some(Publisher::Org {
            org_id,
            key: presented,
        })
    }

    /// Whether `publisher` may append events for every device id of
    /// `devices`: `Unauthenticated` when its key was revoked meanwhile,
    /// `Forbidden` when any device is not its organization's.
    pub fn check<'a>(
        &self,
        publisher: &Publisher,
        devices: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), IngestError> {
        self.permitted(publisher, devices.clone())?;
        // One atomic load while no organization is over its share.
        match &self.shares {
            Some(shares) if shares.any_over() => self.within_shares(shares, publisher, devices),
            _ => Ok(()),
        }
    }

    /// Whether every organization the events are for is within its share.
    fn within_shares<'a>(
        &self,
        shares: &PendingShares,
        publisher: &Publisher,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IngestError> {
        let over = |org: &OrgId| {
            shares.check_organization(org).map_err(|e| match e {
                OverShare::Organization { current, limit }
                | OverShare::Webhook { current, limit } => IngestError::Overloaded {
                    what: "pending deliveries of the organization",
                    current,
                    limit,
                },
            })
        };
        match publisher {
            Publisher::Org { org_id, .. } => over(org_id),
            Publisher::Operator => {
                let Some(config) = &self.config else {
                    return Ok(());
                };
                let mut checked: Vec<OrgId> = Vec::new();
                for device in devices {
                    let Some(app) = config.app(&DeviceId::from(device)) else {
                        continue;
                    };
                    if !checked.contains(&app.org_id) {
                        over(&app.org_id)?;
                        checked.push(app.org_id);
                    }
                }
                Ok(())
            }
        }
    }

    fn permitted<'a>(
        &self,
        publisher: &Publisher,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IngestError> {
        let Publisher::Org { org_id, key } = publisher else {
            return Ok(());
        };
        let config = self.config.as_ref().ok_or(IngestError::Unauthenticated)?;
        if config.ingest_key_org(key).as_ref() != Some(org_id) {
            return Err(IngestError::Unauthenticated);
        }
        for device in devices {
            let owned = config
                .app(&DeviceId::from(device))
                .is_some_and(|a| &a.org_id == org_id);
            if !owned {
                return Err(IngestError::Forbidden);
            }
        }
        Ok(())
    }
}

/// Failed authentications per client address: past the budget, a caller
/// that keeps presenting wrong keys waits instead of guessing on (the
/// same rule as REST's, with a budget of its own).
pub struct AuthFailures {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

/// Addresses tracked before those whose budget refilled are forgotten.
const MAX_TRACKED: usize = 50_000;

impl AuthFailures {
    /// `per_second` failures sustained, `burst` at once, per address.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ),
        }
    }

    /// Counts a failure of `addr`; `Err(seconds)` to wait when over budget.
    pub fn take(&self, addr: IpAddr) -> Result<(), u64> {
        use governor::clock::Clock;
        if self.limiter.len() >= MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&addr).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            wait.as_secs_f64().ceil().max(1.0) as u64
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(h: &str) -> Option<&str> {
    let (scheme, token) = h.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentications_are_limited_per_address() {
        let f = AuthFailures::new(1, 3);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!((0..3).all(|_| f.take(a).is_ok()));
        assert_eq!(f.take(a), Err(1));
        assert!(f.take(b).is_ok(), "another address has its own budget");
    }

    #[test]
    fn bearer_keys_are_checked() {
        let k = IngestKeys::new(&["k1".into(), "k2".into(), String::new()], None);
        assert_eq!(k.authenticate(Some("Bearer k1")), Some(Publisher::Operator));
        assert!(k.authenticate(Some("bearer k2")).is_some());
        assert!(k.authenticate(Some("Bearer k3")).is_none());
        assert!(k.authenticate(Some("k1")).is_none());
        assert!(k.authenticate(Some("Bearer ")).is_none());
        assert!(k.authenticate(None).is_none());
        assert!(IngestKeys::new(&[], None)
            .authenticate(Some("Bearer "))
            .is_none());
        assert!(k.check(&Publisher::Operator, ["any", "device"]).is_ok());
    }
}
