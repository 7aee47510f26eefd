//! Progress lines for long scenarios: what was sent and delivered, and at
//! what rate, every two seconds on stderr (the summary stays on stdout).

use crate::sink::SinkStats;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How often a progress line is printed.
const EVERY: Duration = Duration::from_secs(2);

/// Counters a scenario shares with its progress line.
#[derive(Clone, Default)]
pub(crate) struct Counters {
    /// Events acknowledged by the server.
    pub(crate) sent: Arc<AtomicU64>,
    /// The sink's counters, when the scenario delivers.
    pub(crate) sink: Option<Arc<SinkStats>>,
}

impl Counters {
    pub(crate) fn with_sink(sink: Arc<SinkStats>) -> Self {
        Self {
            sent: Arc::default(),
            sink: Some(sink),
        }
    }

    fn delivered(&self) -> u64 {
        self.sink
            .as_ref()
            .map_or(0, |s| s.count.load(Ordering::Relaxed))
    }
}

/// Prints progress until dropped.
pub(crate) struct Progress(tokio::task::JoinHandle<()>);

impl Progress {
    pub(crate) fn start(label: &'static str, counters: Counters) -> Self {
        Self(tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            let (mut sent_before, mut delivered_before) = (0, 0);
            loop {
                tick.tick().await;
                let (sent, delivered) =
                    (counters.sent.load(Ordering::Relaxed), counters.delivered());
                let secs = EVERY.as_secs_f64();
                let mut line = format!(
                    "[{label} {:>5.1}s] sent {sent} ({:.0}/s)",
                    start.elapsed().as_secs_f64(),
                    (sent - sent_before) as f64 / secs
                );
                if counters.sink.is_some() {
                    line.push_str(&format!(
                        ", delivered {delivered} ({:.0}/s)",
                        (delivered - delivered_before) as f64 / secs
                    ));
                }
                eprintln!("{line}");
                (sent_before, delivered_before) = (sent, delivered);
            }
        }))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.abort();
    }
}
