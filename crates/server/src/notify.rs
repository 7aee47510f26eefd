//! systemd readiness protocol (`Type=notify`): READY=1 once serving,
//! STOPPING=1 on shutdown, WATCHDOG=1 pings when the unit sets `WatchdogSec`.
//! A datagram to `$NOTIFY_SOCKET`; without that variable nothing is sent.

use std::{os::unix::net::UnixDatagram, time::Duration};
use tracing::warn;

/// Where readiness messages go.
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub(crate) fn from_env() -> Self {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Self { target: None };
        };
        let path = path.to_string_lossy().into_owned();
        let addr = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&path)
        };
        match (UnixDatagram::unbound(), addr) {
            (Ok(sock), Ok(addr)) => Self {
                target: Some((sock, addr)),
            },
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "NOTIFY_SOCKET is set but unusable; no readiness messages");
                Self { target: None }
            }
        }
    }

    /// Sends one message (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`).
    pub(crate) fn notify(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target {
            if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
                warn!(error = %e, "sending a systemd notification failed");
            }
        }
    }

    /// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when it is
    /// meant for this process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.target.as_ref()?;
        if let Some(pid) = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        {
            if pid != std::process::id() {
                return None;
            }
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
