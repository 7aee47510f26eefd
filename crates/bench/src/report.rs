//! Figures: percentiles, and the server's peak RSS and CPU time from /proc.

use serde::Serialize;

/// Peak resident memory (VmHWM) of `pid`, MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of `pid`.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // 100 ticks per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn latency(mut us: Vec<u64>) -> Latency {
    if us.is_empty() {
        return Latency::default();
    }
    us.sort_unstable();
    let at = |q: f64| us[((us.len() as f64 * q) as usize).min(us.len() - 1)] as f64 / 1000.0;
    Latency {
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: us[us.len() - 1] as f64 / 1000.0,
    }
}

/// One scenario's result, printed as a table and optionally written as JSON.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Outcome {
    pub(crate) scenario: String,
    pub(crate) params: serde_json::Value,
    /// Events or deliveries per second, as the scenario defines.
    pub(crate) rate_per_s: f64,
    pub(crate) rate_unit: String,
    pub(crate) count: u64,
    pub(crate) seconds: f64,
    pub(crate) latency: Option<Latency>,
    pub(crate) server_peak_rss_mib: f64,
    pub(crate) server_cpu_s: f64,
    /// Server CPU per counted unit, microseconds: the whole process's CPU
    /// over the run (ingest, fan-out and delivery) divided by the count.
    pub(crate) server_cpu_us_per_unit: f64,
    pub(crate) extra: serde_json::Value,
}

impl Outcome {
    pub(crate) fn print(&self) {
        println!("scenario        {}", self.scenario);
        println!("parameters      {}", self.params);
        println!(
            "throughput      {:.0} {}/s ({} in {:.2} s)",
            self.rate_per_s, self.rate_unit, self.count, self.seconds
        );
        if let Some(l) = &self.latency {
            println!(
                "latency         p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
                l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        println!(
            "server          peak RSS {:.1} MiB, CPU {:.2} s ({:.0} µs per {})",
            self.server_peak_rss_mib,
            self.server_cpu_s,
            self.server_cpu_us_per_unit,
            singular(&self.rate_unit)
        );
        if !self.extra.is_null() {
            println!("more            {}", self.extra);
        }
    }
}

/// "deliveries" → "delivery", "events" → "event".
fn singular(unit: &str) -> String {
    match unit.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => unit.strip_suffix('s').unwrap_or(unit).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units_read_in_the_singular() {
        assert_eq!(super::singular("drained deliveries"), "drained delivery");
        assert_eq!(super::singular("events"), "event");
    }

    #[test]
    fn percentiles() {
        let l = super::latency((1..=1000).map(|i| i * 1000).collect());
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (501.0, 991.0, 1000.0));
    }
}
