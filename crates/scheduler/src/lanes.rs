//! Fair dispatch: tasks wait in per-host lanes, and inside a lane in
//! per-webhook queues. Lanes are served round-robin, each up to its
//! concurrency limit, so one slow or dead host holds at most its own slots
//! (invariant 6), and inside a host one webhook with a huge backlog takes
//! turns with the others.
//!
//! A host's limit adapts to what it shows ([`crate::limit`]), and while
//! several hosts have work each gets at most its share of the worker pool
//! (never less than the configured minimum), so a slow host that answers
//! 2xx cannot grow into every worker.
//!
//! Each lane is also a circuit breaker: after `breaker_threshold`
//! consecutive failed attempts it opens and sends one attempt at a time (a
//! probe) until one succeeds. Deliveries waiting behind it spend no
//! attempts. A webhook's `rate_limit` is a token bucket: while it is empty,
//! the webhook's deliveries wait their turn.

use crate::limit::{HostLimit, LimitBounds, Signal};
use hookrelay_core::{DeliveryTask, WebhookId};
use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::time::Instant;

/// The hosts whose breaker is open, shared with the API.
pub(crate) type Board = Arc<RwLock<BTreeSet<Arc<str>>>>;

/// The busiest hosts of a scheduler, shared with `/metrics`.
pub(crate) type Busiest = Arc<RwLock<Vec<HostConcurrency>>>;

/// Hosts a scheduler publishes as its busiest, most attempts in flight first: the
/// `hookrelay_host_concurrency_limit` gauge names no more (bounded labels).
pub const BUSIEST_HOSTS: usize = 10;
/// How often [`Busiest`] is refreshed and idle host limits are forgotten.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// A host's learned limit is forgotten after this long without an answer.
const LIMIT_IDLE: Duration = Duration::from_secs(600);
/// A lane over its memory cap keeps its queue in memory (no state records
/// written, nothing read back) while the host would reach the last of it
/// within this long: a healthy burst drains from memory. Fan-out waits
/// meanwhile, so this also bounds how long one host's burst holds others'
/// events in the log.
const KEEP_WITHIN_MS: f64 = 3_000.0;
/// ... and while its last answer is this recent: a host that stops
/// answering is not judged by its past speed.
const ANSWERING: Duration = Duration::from_millis(500);

/// One host's concurrency as `/metrics` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConcurrency {
    /// `scheme://host:port`.
    pub host: Arc<str>,
    /// Attempts that may be in flight now.
    pub limit: usize,
    /// Attempts in flight now.
    pub in_flight: usize,
}

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

/// Most URLs [`HostMemo`] remembers before it starts afresh.
const HOST_MEMO_MAX: usize = 4096;

/// [`host_of`] remembered per URL: the scheduler asks for the lane of
/// every task it queues and of every due entry it looks at (thousands per
/// scan), and parsing a URL with the WHATWG parser costs about a
/// microsecond, a tenth of a drain's CPU before this memo. A webhook's URL
/// rarely changes, so a hit is a hash of the URL and a compare; a changed
/// URL is just another key. Bounded: past [`HOST_MEMO_MAX`] URLs it is
/// cleared and refilled from what is in use.
#[derive(Default)]
pub(crate) struct HostMemo {
    hosts: HashMap<Box<str>, Arc<str>>,
}

impl HostMemo {
    /// The lane key of `url` (see [`host_of`]).
    pub(crate) fn of(&mut self, url: &str) -> Arc<str> {
        if let Some(host) = self.hosts.get(url) {
            return host.clone();
        }
        if self.hosts.len() >= HOST_MEMO_MAX {
            self.hosts.clear();
        }
        let host = host_of(url);
        self.hosts.insert(url.into(), host.clone());
        host
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
    /// When the host last answered.
    last_answer: Option<Instant>,
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
    bounds: LimitBounds,
    /// Attempts in flight at once across all hosts (the worker pool).
    pool: usize,
    /// Learned limits, with the last answer's time; they outlive idle
    /// lanes (forgotten after [`LIMIT_IDLE`]).
    limits: HashMap<Arc<str>, (HostLimit, Instant)>,
    breaker_threshold: u32,
    board: Board,
    busiest: Busiest,
    housekept_at: Instant,
    queued: usize,
}

impl Lanes {
    /// Lanes whose hosts' limits keep within `bounds`, sharing a pool of
    /// `pool` workers.
    pub(crate) fn new(
        bounds: LimitBounds,
        pool: usize,
        breaker_threshold: u32,
        board: Board,
        busiest: Busiest,
    ) -> Self {
        Self {
            lanes: HashMap::new(),
            ready: VecDeque::new(),
            throttled: Vec::new(),
            buckets: HashMap::new(),
            bounds: bounds.sane(),
            pool: pool.max(1),
            limits: HashMap::new(),
            breaker_threshold: breaker_threshold.max(1),
            board,
            busiest,
            housekept_at: Instant::now(),
            queued: 0,
        }
    }

    /// Attempts `host` may have in flight now: one while its breaker is
    /// open; else its limit, within its share of the pool when adaptive.
    fn limit_of(&self, host: &Arc<str>, lane: &Lane) -> usize {
        if lane.open {
            return 1;
        }
        if !self.bounds.adaptive {
            return self.bounds.initial;
        }
        let own = self
            .limits
            .get(host)
            .map_or(self.bounds.initial, |(l, _)| l.current());
        let share = (self.pool / self.lanes.len().max(1)).max(self.bounds.min);
        own.min(share)
    }

    /// The current limit of `host` (tests).
    #[cfg(test)]
    pub(crate) fn host_limit(&self, host: &Arc<str>) -> usize {
        self.lanes
            .get(host)
            .map_or(self.bounds.initial, |l| self.limit_of(host, l))
    }

    /// Once a second at most: refreshes [`Busiest`] and forgets the limits
    /// of hosts idle for [`LIMIT_IDLE`].
    pub(crate) fn housekeep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.housekept_at) < HOUSEKEEPING_EVERY {
            return;
        }
        self.housekept_at = now;
        self.limits
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < LIMIT_IDLE);
        let mut hosts: Vec<(&Arc<str>, &Lane)> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.in_flight > 0 || l.queued > 0)
            .collect();
        hosts.sort_unstable_by(|a, b| {
            (b.1.in_flight, b.1.queued, a.0).cmp(&(a.1.in_flight, a.1.queued, b.0))
        });
        let top: Vec<HostConcurrency> = hosts
            .into_iter()
            .take(BUSIEST_HOSTS)
            .map(|(host, lane)| HostConcurrency {
                host: host.clone(),
                limit: self.limit_of(host, lane),
                in_flight: lane.in_flight,
            })
            .collect();
        *self.busiest.write().unwrap_or_else(|p| p.into_inner()) = top;
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
        let Some(limit) = self.lanes.get(host).map(|l| self.limit_of(host, l)) else {
            return;
        };
        if let Some(lane) = self.lanes.get_mut(host) {
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

    /// An attempt of `host` finished after `elapsed`; `signal` is what its
    /// answer says (`None`: never attempted, e.g. cancelled before
    /// sending). Only [`Signal::Success`] counts as a success for the
    /// breaker.
    pub(crate) fn done(&mut self, host: &Arc<str>, elapsed: Duration, signal: Option<Signal>) {
        let threshold = self.breaker_threshold;
        let Some(lane) = self.lanes.get_mut(host) else {
            return;
        };
        // Work waiting for a slot: the limit is what holds the host back
        // (or a webhook's rate limit, which only lets the limit grow
        // unused, within its maximum).
        let limited = lane.queued > 0;
        lane.in_flight = lane.in_flight.saturating_sub(1);
        if let Some(signal) = signal {
            lane.last_answer = Some(Instant::now());
            let ms = elapsed.as_secs_f64() * 1000.0;
            lane.avg_ms = if lane.avg_ms == 0.0 {
                ms
            } else {
                0.8 * lane.avg_ms + 0.2 * ms
            };
            if self.bounds.adaptive {
                let now = Instant::now();
                let (limit, at) = self
                    .limits
                    .entry(host.clone())
                    .or_insert_with(|| (HostLimit::new(self.bounds, now), now));
                limit.observe(elapsed, signal, limited, now);
                *at = now;
            }
        }
        let ok = signal.map(|s| s == Signal::Success);
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
    /// kept on disk until then. A lane whose host answers and would reach
    /// its whole queue within [`KEEP_WITHIN_MS`] keeps it.
    pub(crate) fn overflow(&mut self, cap: usize, now: Instant) -> Vec<(DeliveryTask, i64)> {
        let mut out = Vec::new();
        let over: Vec<(Arc<str>, usize)> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.queued > cap)
            .map(|(h, l)| (h.clone(), self.limit_of(h, l)))
            .collect();
        for (host, slots) in over {
            if let Some(lane) = self.lanes.get_mut(&host) {
                let wait_ms = lane.queued as f64 * lane.avg_ms.max(1.0) / slots as f64;
                let answering = lane
                    .last_answer
                    .is_some_and(|at| now.saturating_duration_since(at) < ANSWERING);
                if answering && !lane.open && lane.avg_ms > 0.0 && wait_ms <= KEEP_WITHIN_MS {
                    continue;
                }
                let trimmed = lane.trim(lane.queued - cap);
                out.extend(trimmed.into_iter().map(|t| (t, wait_ms as i64)));
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

    pub(super) const MS: Duration = Duration::from_millis(1);

    /// Fixed limits of `per_host` (the tests of fairness and breakers).
    pub(super) fn lanes(per_host: usize, breaker: u32, board: Board) -> Lanes {
        let bounds = LimitBounds {
            initial: per_host,
            min: 1,
            max: per_host,
            adaptive: false,
        };
        Lanes::new(bounds, 1000, breaker, board, Busiest::default())
    }

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
    fn the_memo_answers_as_the_parser_does_and_stays_bounded() {
        let mut memo = HostMemo::default();
        for url in [
            "https://Example.com:8443/a",
            "http://h/x",
            "http://a.example\\@b.example/",
        ] {
            assert_eq!(memo.of(url), host_of(url));
            assert_eq!(memo.of(url), host_of(url), "a hit answers the same");
        }
        for i in 0..HOST_MEMO_MAX + 10 {
            let url = format!("http://h{i}.example/");
            assert_eq!(memo.of(&url), host_of(&url));
        }
        assert!(memo.hosts.len() <= HOST_MEMO_MAX);
    }

    #[test]
    fn a_busy_host_keeps_only_its_own_slots() {
        let mut l = lanes(2, 10, Board::default());
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
        l.done(&ok, MS, Some(Signal::Success));
        assert_eq!(
            l.pop().map(|(h, t)| (h, t.key.seq)),
            Some((ok.clone(), 102))
        );
        assert!(l.pop().is_none(), "dead is still at its limit");
        assert_eq!(l.len(), 8);
    }

    #[test]
    fn webhooks_of_one_host_take_turns_and_overflow_comes_from_the_longest() {
        let mut l = lanes(100, 10, Board::default());
        let h: Arc<str> = "http://h".into();
        for i in 0..6 {
            l.push(h.clone(), task("wh_big", i));
        }
        l.push(h.clone(), task("wh_small", 50));
        let order: Vec<u64> = (0..3)
            .filter_map(|_| l.pop().map(|(_, t)| t.key.seq))
            .collect();
        assert_eq!(order, vec![0, 50, 1]);
        let spilled = l.overflow(2, Instant::now());
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
    use super::tests::{lanes, MS};

    #[test]
    fn a_failing_host_opens_its_breaker_and_probes_one_at_a_time() {
        let board = Board::default();
        let mut l = lanes(4, 3, board.clone());
        let h: Arc<str> = "http://flaky".into();
        for i in 0..10 {
            l.push(h.clone(), task("wh_a", i, None));
        }
        for _ in 0..3 {
            let (host, _) = l.pop().expect("task");
            l.done(&host, MS, Some(Signal::Neutral));
        }
        assert!(board.read().expect("board").contains(&h));
        assert_eq!(l.open_breakers(), 1);
        // Open: one probe at a time.
        let (host, _) = l.pop().expect("probe");
        assert!(l.pop().is_none(), "only one probe in flight");
        l.done(&host, MS, Some(Signal::Neutral));
        let (host, _) = l.pop().expect("next probe");
        l.done(&host, MS, Some(Signal::Success));
        assert!(
            board.read().expect("board").is_empty(),
            "a success closes it"
        );
        let sent = std::iter::from_fn(|| l.pop()).count();
        assert_eq!(sent, 4, "closed again: the full concurrency");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limited_webhook_waits_its_tokens() {
        let mut l = lanes(100, 10, Board::default());
        let h: Arc<str> = "http://h".into();
        for i in 0..5 {
            l.push(h.clone(), task("wh_slow", i, Some(2)));
        }
        l.push(h.clone(), task("wh_free", 99, None));
        let first: Vec<u64> = std::iter::from_fn(|| l.pop().map(|(_, t)| t.key.seq)).collect();
        // One token at start for the limited webhook; the free one is not held back.
        assert_eq!(first, vec![0, 99]);
        assert_eq!(l.len(), 4);
        tokio::time::advance(std::time::Duration::from_millis(600)).await;
        l.wake_throttled();
        let next: Vec<u64> = std::iter::from_fn(|| l.pop().map(|(_, t)| t.key.seq)).collect();
        assert_eq!(next, vec![1], "2/s: one more token after ~0.5 s");
    }
}

#[cfg(test)]
mod adaptive_tests {
    use super::tests::{task, MS};
    use super::*;

    fn adaptive(pool: usize) -> Lanes {
        let bounds = LimitBounds {
            initial: 16,
            min: 2,
            max: 256,
            adaptive: true,
        };
        // A breaker that never opens here: the failures below are for the limit.
        Lanes::new(
            bounds,
            pool,
            1_000_000,
            Board::default(),
            Busiest::default(),
        )
    }

    /// Sends everything sendable, then answers it all with `signal`.
    fn round(l: &mut Lanes, signal: Signal) -> usize {
        let sent: Vec<(Arc<str>, DeliveryTask)> = std::iter::from_fn(|| l.pop()).collect();
        for (h, _) in &sent {
            l.done(h, MS, Some(signal));
        }
        sent.len()
    }

    #[test]
    fn a_host_answering_fast_gets_more_in_flight_and_an_overloaded_one_less() {
        let mut l = adaptive(256);
        let h: Arc<str> = "http://fast".into();
        for i in 0..2000 {
            l.push(h.clone(), task("wh", i));
        }
        assert_eq!(round(&mut l, Signal::Success), 16);
        // Slow start: each full round trip doubles the limit.
        assert_eq!(round(&mut l, Signal::Success), 32);
        assert_eq!(round(&mut l, Signal::Success), 64);
        assert_eq!(l.host_limit(&h), 128);
        // The host answers 429: half, once for the whole round trip.
        assert_eq!(round(&mut l, Signal::Overload), 128);
        assert_eq!(l.host_limit(&h), 64);
        // Other failures (a 400, a 500) say nothing of load.
        assert_eq!(round(&mut l, Signal::Neutral), 64);
        assert_eq!(l.host_limit(&h), 64);
    }

    #[test]
    fn a_grown_host_leaves_room_for_others_and_the_busiest_are_published() {
        let busiest = Busiest::default();
        let bounds = LimitBounds {
            initial: 16,
            min: 2,
            max: 256,
            adaptive: true,
        };
        let mut l = Lanes::new(bounds, 64, 10, Board::default(), busiest.clone());
        let a: Arc<str> = "http://a".into();
        let b: Arc<str> = "http://b".into();
        for i in 0..1000 {
            l.push(a.clone(), task("wh_a", i));
        }
        for _ in 0..4 {
            round(&mut l, Signal::Success);
        }
        // Alone, a takes the whole pool.
        let out: Vec<_> = std::iter::from_fn(|| l.pop()).collect();
        assert_eq!(out.len(), 64);
        // b arrives: a holds what it has, b gets its start, and a gets no
        // more until it is back within half the pool.
        for i in 0..100 {
            l.push(b.clone(), task("wh_b", 10_000 + i));
        }
        let more: Vec<_> = std::iter::from_fn(|| l.pop()).collect();
        assert_eq!(more.len(), 16);
        assert!(more.iter().all(|(h, _)| *h == b));
        assert_eq!(l.host_limit(&a), 32);
        l.housekeep(Instant::now() + Duration::from_secs(2));
        let top = busiest.read().expect("busiest").clone();
        assert_eq!(top.len(), 2);
        assert_eq!(
            (top[0].host.clone(), top[0].in_flight, top[0].limit),
            (a, 64, 32)
        );
        assert_eq!(
            (top[1].host.clone(), top[1].in_flight, top[1].limit),
            (b, 16, 16)
        );
    }
}

#[cfg(test)]
mod overflow_tests {
    use super::tests::{lanes, task, MS};
    use super::*;

    #[test]
    fn a_host_draining_fast_keeps_its_burst_in_memory_and_a_silent_one_does_not() {
        let mut l = lanes(16, 10, Board::default());
        let fast: Arc<str> = "http://fast".into();
        let fresh: Arc<str> = "http://fresh".into();
        for i in 0..3000 {
            l.push(fast.clone(), task("wh_fast", i));
            l.push(fresh.clone(), task("wh_fresh", 100_000 + i));
        }
        // The fast host answers in 1 ms: 3,000 at 16 at a time is ~190 ms.
        let sent: Vec<_> = std::iter::from_fn(|| l.pop()).collect();
        for (h, _) in sent.iter().filter(|(h, _)| *h == fast) {
            l.done(h, MS, Some(Signal::Success));
        }
        let now = Instant::now();
        let spilled = l.overflow(1024, now);
        // The host that has not answered yet is judged unknown: spilled.
        assert!(spilled
            .iter()
            .all(|(t, _)| t.key.webhook_id.as_str() == "wh_fresh"));
        assert_eq!(spilled.len(), 3000 - 16 - 1024);
        assert_eq!(l.lane_len(&fast), 3000 - 16);
        // A second later without an answer, the fast host is silent: spilled.
        let later = l.overflow(1024, now + Duration::from_secs(1));
        assert_eq!(later.len(), 3000 - 16 - 1024);
        assert!(later
            .iter()
            .all(|(t, _)| t.key.webhook_id.as_str() == "wh_fast"));
    }
}
