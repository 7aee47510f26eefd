//! Fair dispatch: tasks wait in per-host lanes, and inside a lane in
//! per-webhook queues. Lanes are served round-robin, each up to its
//! concurrency limit, so one slow or dead host holds at most its own slots
//! (invariant 6), and inside a host one webhook with a huge backlog takes
//! turns with the others.
//!
//! Each lane is also a circuit breaker: after `breaker_threshold`
//! consecutive failed attempts it opens and sends one attempt at a time (a
//! probe) until one succeeds. Deliveries waiting behind it spend no
//! attempts. A webhook's `rate_limit` is a token bucket: while it is empty,
//! the webhook's deliveries wait their turn.

use hookrelay_core::{DeliveryTask, WebhookId};
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, RwLock},
    time::Instant,
};

/// The hosts whose breaker is open, shared with the API.
pub(crate) type Board = Arc<RwLock<BTreeSet<Arc<str>>>>;

/// The lane key of a URL: `scheme://host:port` of the host the HTTP client
/// actually dials. Parsed with the same WHATWG parser the client uses (the
/// `url` crate), so tricks such as `http://a.example\\@b.example/` or a
/// default port spelled out land in the lane of the real target; the whole
/// URL if it does not parse.
pub(crate) fn host_of(url: &str) -> Arc<str> {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port_or_known_default()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()).into(),
            (Some(host), None) => format!("{}://{host}", u.scheme()).into(),
            _ => url.into(),
        },
        Err(_) => url.into(),
    }
}

/// A token bucket of `rate` per second, holding at most one second's worth.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: u32, now: Instant) -> bool {
        let rate = f64::from(rate.max(1));
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Lane {
    /// Per-webhook queues, served in turn.
    queues: HashMap<WebhookId, VecDeque<DeliveryTask>>,
    turns: VecDeque<WebhookId>,
    queued: usize,
    in_flight: usize,
    /// In the ready ring.
    ready: bool,
    /// Exponential moving average of attempt durations, ms.
    avg_ms: f64,
    /// Consecutive failed attempts.
    failures: u32,
    /// Breaker open: one attempt at a time.
    open: bool,
}

impl Lane {
    fn push(&mut self, task: DeliveryTask, front: bool) {
        let wh = task.key.webhook_id.clone();
        let q = self.queues.entry(wh.clone()).or_default();
        if q.is_empty() {
            if front {
                self.turns.push_front(wh);
            } else {
                self.turns.push_back(wh);
            }
        }
        if front {
            q.push_front(task);
        } else {
            q.push_back(task);
        }
        self.queued += 1;
    }

    /// The next task whose webhook's rate limit allows it now; `None` when
    /// every queued webhook is throttled.
    fn pop(
        &mut self,
        buckets: &mut HashMap<WebhookId, Bucket>,
        now: Instant,
    ) -> Option<DeliveryTask> {
        for _ in 0..self.turns.len() {
            let wh = self.turns.pop_front()?;
            let Some(q) = self.queues.get_mut(&wh) else {
                continue;
            };
            if let Some(rate) = q.front().and_then(|t| t.webhook.rate_limit) {
                let bucket = buckets.entry(wh.clone()).or_insert(Bucket {
                    tokens: 1.0,
                    last: now,
                });
                if !bucket.take(rate, now) {
                    self.turns.push_back(wh);
                    continue;
                }
            }
            let task = q.pop_front();
            if q.is_empty() {
                self.queues.remove(&wh);
            } else {
                self.turns.push_back(wh);
            }
            if task.is_some() {
                self.queued -= 1;
            }
            return task;
        }
        None
    }

    /// Removes up to `n` tasks from the longest queues' backs.
    fn trim(&mut self, n: usize) -> Vec<DeliveryTask> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(longest) = self
                .queues
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(w, _)| w.clone())
            else {
                break;
            };
            let Some(q) = self.queues.get_mut(&longest) else {
                break;
            };
            let take = (n - out.len()).min(q.len().saturating_sub(q.len() / 2).max(1));
            for _ in 0..take {
                if let Some(t) = q.pop_back() {
                    out.push(t);
                }
            }
            if q.is_empty() {
                self.queues.remove(&longest);
                self.turns.retain(|w| w != &longest);
            }
        }
        self.queued -= out.len();
        out
    }
}

/// Every lane, and the ring of lanes that can send now.
pub(crate) struct Lanes {
    lanes: HashMap<Arc<str>, Lane>,
    ready: VecDeque<Arc<str>>,
    /// Lanes with queued tasks that only rate limits hold back.
    throttled: Vec<Arc<str>>,
    buckets: HashMap<WebhookId, Bucket>,
    per_host: usize,
    breaker_threshold: u32,
    board: Board,
    queued: usize,
}

impl Lanes {
    pub(crate) fn new(per_host: usize, breaker_threshold: u32, board: Board) -> Self {
        Self {
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            throttled: Vec::new(),
            buckets: HashMap::new(),
            per_host: per_host.max(1),
            breaker_threshold: breaker_threshold.max(1),
            board,
            queued: 0,
        }
    }

    /// Tasks waiting in all lanes.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    /// Tasks waiting in `host`'s lane.
    pub(crate) fn lane_len(&self, host: &Arc<str>) -> usize {
        self.lanes.get(host).map_or(0, |l| l.queued)
    }

    /// Whether some lane can send now.
    pub(crate) fn has_sendable(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Hosts whose breaker is open.
    #[cfg(test)]
    pub(crate) fn open_breakers(&self) -> usize {
        self.lanes.values().filter(|l| l.open).count()
    }

    /// Makes lanes held back by rate limits sendable again (each tick).
    pub(crate) fn wake_throttled(&mut self) {
        for host in std::mem::take(&mut self.throttled) {
            self.mark_ready(&host, false);
        }
    }

    fn mark_ready(&mut self, host: &Arc<str>, front: bool) {
        if let Some(lane) = self.lanes.get_mut(host) {
            let limit = if lane.open { 1 } else { self.per_host };
            if !lane.ready && lane.queued > 0 && lane.in_flight < limit {
                lane.ready = true;
                if front {
                    self.ready.push_front(host.clone());
                } else {
                    self.ready.push_back(host.clone());
                }
            }
        }
    }

    /// Queues a task in `host`'s lane.
    pub(crate) fn push(&mut self, host: Arc<str>, task: DeliveryTask) {
        self.lanes
            .entry(host.clone())
            .or_default()
            .push(task, false);
        self.queued += 1;
        self.mark_ready(&host, false);
    }

    /// The next task to send, round-robin over lanes with free slots; the
    /// lane's in-flight count includes it from now on.
    pub(crate) fn pop(&mut self) -> Option<(Arc<str>, DeliveryTask)> {
        let now = Instant::now();
        while let Some(host) = self.ready.pop_front() {
            let Some(lane) = self.lanes.get_mut(&host) else {
                continue;
            };
            lane.ready = false;
            let Some(task) = lane.pop(&mut self.buckets, now) else {
                if lane.queued > 0 {
                    self.throttled.push(host);
                }
                continue;
            };
            lane.in_flight += 1;
            self.queued -= 1;
            self.mark_ready(&host, false);
            return Some((host, task));
        }
        None
    }

    /// Puts back a task that could not be sent after [`Lanes::pop`].
    pub(crate) fn unpop(&mut self, host: Arc<str>, task: DeliveryTask) {
        if let Some(lane) = self.lanes.get_mut(&host) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            lane.push(task, true);
            self.queued += 1;
            if !lane.ready {
                self.mark_ready(&host, true);
            }
        }
    }

    /// An attempt of `host` finished after `duration_ms`; `ok` is its outcome
    /// (`None`: never attempted, e.g. cancelled before sending).
    pub(crate) fn done(&mut self, host: &Arc<str>, duration_ms: u32, ok: Option<bool>) {
        let threshold = self.breaker_threshold;
        let Some(lane) = self.lanes.get_mut(host) else {
            return;
        };
        lane.in_flight = lane.in_flight.saturating_sub(1);
        if ok.is_some() {
            lane.avg_ms = if lane.avg_ms == 0.0 {
                f64::from(duration_ms)
            } else {
                0.8 * lane.avg_ms + 0.2 * f64::from(duration_ms)
            };
        }
        match ok {
            Some(true) => {
                lane.failures = 0;
                if lane.open {
                    lane.open = false;
                    self.board
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(host);
                    tracing::info!(host = %host, "circuit closed: the endpoint answers again");
                }
            }
            Some(false) => {
                lane.failures = lane.failures.saturating_add(1);
                if !lane.open && lane.failures >= threshold {
                    lane.open = true;
                    self.board
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(host.clone());
                    tracing::warn!(host = %host, failures = lane.failures, "circuit open: probing one attempt at a time");
                }
            }
            None => {}
        }
        // An idle lane is forgotten, unless its breaker is open: the failure
        // count must outlive the queue.
        if lane.queued == 0 && lane.in_flight == 0 && !lane.open && lane.failures == 0 {
            self.lanes.remove(host);
            return;
        }
        self.mark_ready(host, false);
    }

    /// Tasks beyond `cap` per lane, taken from the longest webhook queues,
    /// with how long the lane would take to reach them (ms): they are better
    /// kept on disk until then.
    pub(crate) fn overflow(&mut self, cap: usize) -> Vec<(DeliveryTask, i64)> {
        let mut out = Vec::new();
        for lane in self.lanes.values_mut() {
            if lane.queued > cap {
                let slots = if lane.open { 1.0 } else { self.per_host as f64 };
                let wait_ms = (lane.queued as f64 * lane.avg_ms.max(1.0) / slots) as i64;
                let trimmed = lane.trim(lane.queued - cap);
                out.extend(trimmed.into_iter().map(|t| (t, wait_ms)));
            }
        }
        self.queued -= out.len();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookrelay_core::{DeliveryKey, DeviceId, OrgId, RetryPolicy, Webhook};

    pub(super) fn task(wh: &str, seq: u64) -> DeliveryTask {
        let webhook = Arc::new(Webhook {
            id: WebhookId::from(wh),
            org_id: OrgId::from("o"),
            device_id: DeviceId::from("d"),
            name: String::new(),
            url: "https://x".into(),
            events: vec![],
            active: true,
            primary: false,
            retry_attempts: 0,
            timeout_secs: 1,
            retry_policy: RetryPolicy::default(),
            headers: Default::default(),
            secret: None,
            previous_secrets: Vec::new(),
            rate_limit: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            failing_since_ms: None,
            scope: Default::default(),
            number: 0,
            event_names: Default::default(),
        });
        DeliveryTask {
            key: DeliveryKey {
                seq,
                generation: 0,
                webhook_id: WebhookId::from(wh),
            },
            attempt: 1,
            event_id: "e".into(),
            envelope: Arc::from(&b"{}"[..]),
            webhook,
            occurred_at_ms: 0,
        }
    }

    #[test]
    fn hosts_are_scheme_host_port() {
        assert_eq!(
            &*host_of("https://Example.com:8443/a?b#c"),
            "https://example.com:8443"
        );
        assert_eq!(&*host_of("http://u:p@h/x"), "http://h:80");
        assert_eq!(&*host_of("https://h"), "https://h:443");
        assert_eq!(&*host_of("https://h:443/x"), "https://h:443");
        // The client dials a.example here, not b.example.
        assert_eq!(
            &*host_of("http://a.example\\@b.example/"),
            "http://a.example:80"
        );
        assert_eq!(&*host_of("http://[::1]:9000/"), "http://[::1]:9000");
    }

    #[test]
    fn a_busy_host_keeps_only_its_own_slots() {
        let mut l = Lanes::new(2, 10, Board::default());
        let dead: Arc<str> = "http://dead".into();
        let ok: Arc<str> = "http://ok".into();
        for i in 0..10 {
            l.push(dead.clone(), task("wh_dead", i));
        }
        for i in 0..3 {
            l.push(ok.clone(), task("wh_ok", 100 + i));
        }
        let sent: Vec<Arc<str>> = std::iter::from_fn(|| l.pop().map(|(h, _)| h)).collect();
        // Two for each host, then both are at their limit.
        assert_eq!(sent.iter().filter(|h| **h == dead).count(), 2);
        assert_eq!(sent.iter().filter(|h| **h == ok).count(), 2);
        l.done(&ok, 1, Some(true));
        assert_eq!(
            l.pop().map(|(h, t)| (h, t.key.seq)),
            Some((ok.clone(), 102))
        );
        assert!(l.pop().is_none(), "dead is still at its limit");
        assert_eq!(l.len(), 8);
    }

    #[test]
    fn webhooks_of_one_host_take_turns_and_overflow_comes_from_the_longest() {
        let mut l = Lanes::new(100, 10, Board::default());
        let h: Arc<str> = "http://h".into();
        for i in 0..6 {
            l.push(h.clone(), task("wh_big", i));
        }
        l.push(h.clone(), task("wh_small", 50));
        let order: Vec<u64> = (0..3)
            .filter_map(|_| l.pop().map(|(_, t)| t.key.seq))
            .collect();
        assert_eq!(order, vec![0, 50, 1]);
        let spilled = l.overflow(2);
        assert_eq!(spilled.len(), 2);
        assert!(spilled
            .iter()
            .all(|(t, _)| t.key.webhook_id.as_str() == "wh_big"));
        assert_eq!(l.len(), 2);
        let (h2, t) = l.pop().expect("task");
        l.unpop(h2, t.clone());
        assert_eq!(l.pop().map(|(_, x)| x.key.seq), Some(t.key.seq));
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::*;

    fn task(wh: &str, seq: u64, rate: Option<u32>) -> DeliveryTask {
        let mut t = tests_support::task(wh, seq);
        if let Some(r) = rate {
            let mut w = (*t.webhook).clone();
            w.rate_limit = Some(r);
            t.webhook = Arc::new(w);
        }
        t
    }

    mod tests_support {
        pub(super) use super::super::tests::task;
    }

    #[test]
    fn a_failing_host_opens_its_breaker_and_probes_one_at_a_time() {
        let board = Board::default();
        let mut l = Lanes::new(4, 3, board.clone());
        let h: Arc<str> = "http://flaky".into();
        for i in 0..10 {
            l.push(h.clone(), task("wh_a", i, None));
        }
        for _ in 0..3 {
            let (host, _) = l.pop().expect("task");
            l.done(&host, 5, Some(false));
        }
        assert!(board.read().expect("board").contains(&h));
        assert_eq!(l.open_breakers(), 1);
        // Open: one probe at a time.
        let (host, _) = l.pop().expect("probe");
        assert!(l.pop().is_none(), "only one probe in flight");
        l.done(&host, 5, Some(false));
        let (host, _) = l.pop().expect("next probe");
        l.done(&host, 5, Some(true));
        assert!(
            board.read().expect("board").is_empty(),
            "a success closes it"
        );
        let sent = std::iter::from_fn(|| l.pop()).count();
        assert_eq!(sent, 4, "closed again: the full concurrency");
    }

    #[test]
    fn a_rate_limited_webhook_waits_its_tokens() {
        let mut l = Lanes::new(100, 10, Board::default());
        let h: Arc<str> = "http://h".into();
        for i in 0..5 {
            l.push(h.clone(), task("wh_slow", i, Some(2)));
        }
        l.push(h.clone(), task("wh_free", 99, None));
        let first: Vec<u64> = std::iter::from_fn(|| l.pop().map(|(_, t)| t.key.seq)).collect();
        // One token at start for the limited webhook; the free one is not held back.
        assert_eq!(first, vec![0, 99]);
        assert_eq!(l.len(), 4);
        std::thread::sleep(std::time::Duration::from_millis(600));
        l.wake_throttled();
        let next: Vec<u64> = std::iter::from_fn(|| l.pop().map(|(_, t)| t.key.seq)).collect();
        assert_eq!(next, vec![1], "2/s: one more token after ~0.5 s");
    }
}
