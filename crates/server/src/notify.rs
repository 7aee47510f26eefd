//! systemd readiness protocol (`Type=notify`) through the `sd-notify` crate:
//! READY=1 once serving, STOPPING=1 on shutdown, STATUS=… lines, and
//! WATCHDOG=1 pings when the unit sets `WatchdogSec`. Without
//! `$NOTIFY_SOCKET` nothing is sent.

use sd_notify::NotifyState;
use std::time::Duration;
use tracing::warn;

/// Where readiness messages go (the service manager, if any).
pub(crate) struct Notifier;

impl Notifier {
    pub(crate) fn from_env() -> Self {
        Self
    }

    fn send(&self, state: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(state) {
            warn!(error = %e, "sending a systemd notification failed");
        }
    }

    /// Startup is finished; `status` says what is served.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The shutdown began.
    pub(crate) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// A free-form status line.
    pub(crate) fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// One watchdog ping.
    pub(crate) fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when it is
    /// meant for this process.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        std::env::var_os("NOTIFY_SOCKET")?;
        sd_notify::watchdog_enabled()
            .filter(|d| !d.is_zero())
            .map(|d| d / 2)
    }
}
