//! `[scheduler]` configuration.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[scheduler]`: how fan-out and retries are paced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Most events held in the dispatch window (default 8192). Bounds memory:
    /// at most this many events times their webhooks are held at once.
    pub window_events: usize,
    /// How long the oldest event may hold the window before its unsettled
    /// deliveries are written to disk so the cursor can move on (default 30s).
    /// A full window also spills, when the window is what stops reading.
    #[serde(with = "humantime_serde")]
    pub spill_after: Duration,
    /// How often the due index is scanned when nothing else wakes the
    /// scheduler (default 50ms).
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Most due deliveries taken per scan (default 1024).
    pub due_batch: usize,
    /// Most tasks queued for the workers before fan-out and due scans pause
    /// (default 4096).
    pub max_queued: usize,
    /// Capacity of the scheduler → worker channel (default 256).
    pub task_channel: usize,
    /// Capacity of the worker → scheduler report channel (default 1024).
    pub report_channel: usize,
    /// Capacity of the API → scheduler command channel (default 64).
    pub command_channel: usize,
    /// Most tasks waiting in memory per target host (default 1024) once the
    /// workers' queue is full; the rest wait on disk until the host would
    /// reach them. A host that answers and would reach its whole queue
    /// within 3 s keeps it in memory.
    pub lane_queue: usize,
    /// How long storage may keep failing (retried with backoff up to 2 s)
    /// before the scheduler stops and takes the process down so that its
    /// supervisor restarts it (default 6s; on JetStream at least 60s, to
    /// ride out a server's death and the leader elections that follow).
    #[serde(with = "humantime_serde")]
    pub storage_give_up: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            window_events: 8192,
            spill_after: Duration::from_secs(30),
            tick: Duration::from_millis(50),
            due_batch: 1024,
            max_queued: 4096,
            task_channel: 256,
            report_channel: 1024,
            command_channel: 64,
            lane_queue: 1024,
            storage_give_up: Duration::from_secs(6),
        }
    }
}
