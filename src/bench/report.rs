//! The figures of one bench run: printed as lines a person (and a script)
//! reads, written as JSON (`bench.json`), and drawn ([`super::chart`]).

use std::io::Write;

use serde::Serialize;

use super::ceilings::Rate;
use super::measure::{Offered, Percentiles, WorkerRun};

/// The targets of issue 11, checked on every run.
pub const TARGET_RATIO: f64 = 0.6;
pub const TARGET_SPEEDUP: f64 = 3.0;
pub const TARGET_P99_MS: f64 = 50.0;
pub const TARGET_PEAK_RSS_MIB: f64 = 64.0;

/// How the worker was run.
#[derive(Debug, Clone, Serialize)]
pub struct Tuning {
    pub batch_size: usize,
    pub batch_wait_ms: u64,
    pub concurrency: usize,
    pub prefetch: u16,
    pub pool_size: usize,
}

/// One point of the sweep: the worker with another batch size or
/// concurrency, on its own sample of the stream.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub batch_size: usize,
    pub concurrency: usize,
    pub notifications: usize,
    pub per_second: f64,
}

/// The offered-load run.
#[derive(Debug, Clone, Serialize)]
pub struct OfferedRun {
    pub rate: u32,
    pub seconds: u32,
    pub publisher: Offered,
    pub worker: WorkerRun,
    /// How the machine's CPUs spent the run (Linux), when known: the tail
    /// latency follows what the host takes away.
    pub cpu: Option<CpuShares>,
}

/// The machine's CPU time between two readings of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// user, nice, system, irq and softirq.
    busy: u64,
    /// idle and iowait.
    idle: u64,
    /// Taken by the hypervisor for other guests.
    steal: u64,
}

/// Shares of the CPU time of a run, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuShares {
    pub busy_pct: f64,
    pub idle_pct: f64,
    pub steal_pct: f64,
}

impl CpuTimes {
    /// Reads the machine's CPU times; `None` when `/proc/stat` cannot be
    /// read.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the aggregate `cpu` line of `/proc/stat` (user nice system
    /// idle iowait irq softirq steal ...).
    pub fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = fields.try_into().ok()?;
        Some(Self {
            busy: user + nice + system + irq + softirq,
            idle: idle + iowait,
            steal,
        })
    }

    /// The shares of the time from `self` to `later`; `None` when no time
    /// passed.
    pub fn shares_until(&self, later: &CpuTimes) -> Option<CpuShares> {
        let busy = later.busy.checked_sub(self.busy)?;
        let idle = later.idle.checked_sub(self.idle)?;
        let steal = later.steal.checked_sub(self.steal)?;
        let total = (busy + idle + steal) as f64;
        (total > 0.0).then(|| CpuShares {
            busy_pct: 100.0 * busy as f64 / total,
            idle_pct: 100.0 * idle as f64 / total,
            steal_pct: 100.0 * steal as f64 / total,
        })
    }
}

/// Whether every notification was committed: the rows each run recorded
/// against the distinct bodies it was sent (counted from the bodies).
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    pub phase: String,
    pub recorded: i64,
    pub expected: usize,
    pub handled: u64,
    pub sent: usize,
}

impl Committed {
    pub fn ok(&self) -> bool {
        self.recorded == self.expected as i64 && self.handled == self.sent as u64
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub notifications: usize,
    pub distinct_bodies: usize,
    pub orders: usize,
    pub tuning: Tuning,
    /// The 1-minute load average before and after the run, and the cores:
    /// the figures are only comparable within one run.
    pub load_before: f64,
    pub load_after: f64,
    pub cores: usize,
    pub broker_ceiling: Rate,
    pub database_ceiling: Rate,
    pub worker: WorkerRun,
    pub worker_batch_1: WorkerRun,
    /// worker / min(broker ceiling, database ceiling).
    pub ratio: f64,
    /// worker / the same worker with batch size 1.
    pub speedup: f64,
    pub offered: Option<OfferedRun>,
    pub sweep: Vec<SweepPoint>,
    pub committed: Vec<Committed>,
    pub peak_rss_mib: f64,
}

impl BenchReport {
    /// Whether every run committed every notification it was sent.
    pub fn all_committed(&self) -> bool {
        self.committed.iter().all(Committed::ok)
    }

    /// The targets missed, in words (empty: all met).
    pub fn missed_targets(&self) -> Vec<String> {
        let mut missed = Vec::new();
        if self.ratio < TARGET_RATIO {
            missed.push(format!("ratio {:.2} < {TARGET_RATIO}", self.ratio));
        }
        if self.speedup < TARGET_SPEEDUP {
            missed.push(format!("speedup {:.2} < {TARGET_SPEEDUP}", self.speedup));
        }
        if let Some(offered) = &self.offered
            && offered.worker.latency_ms.p99 >= TARGET_P99_MS
        {
            missed.push(format!(
                "p99 {:.1} ms >= {TARGET_P99_MS} ms at {}/s offered",
                offered.worker.latency_ms.p99, offered.rate
            ));
        }
        if self.peak_rss_mib >= TARGET_PEAK_RSS_MIB {
            missed.push(format!(
                "peak RSS {:.1} MiB >= {TARGET_PEAK_RSS_MIB} MiB",
                self.peak_rss_mib
            ));
        }
        missed
    }

    /// The figures as lines; `ratio` and `speedup` each on a line of its
    /// own (`ratio 0.74`), for people and scripts alike.
    pub fn render(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let t = &self.tuning;
        writeln!(
            out,
            "bench: {} notifications ({} distinct bodies, {} orders), batch size {}, batch wait {} ms, concurrency {}, prefetch {}, pool {}",
            self.notifications,
            self.distinct_bodies,
            self.orders,
            t.batch_size,
            t.batch_wait_ms,
            t.concurrency,
            t.prefetch,
            t.pool_size
        )?;
        writeln!(
            out,
            "machine: {} cores, load average {:.2} before, {:.2} after",
            self.cores, self.load_before, self.load_after
        )?;
        writeln!(
            out,
            "broker ceiling    {:>8.0} notifications/s  (bare consumer, ack each, prefetch {})",
            self.broker_ceiling.per_second, t.prefetch
        )?;
        writeln!(
            out,
            "database ceiling  {:>8.0} notifications/s  (store::batch, batches of {}, {} at once, no broker)",
            self.database_ceiling.per_second, t.batch_size, t.concurrency
        )?;
        writeln!(
            out,
            "worker            {:>8.0} notifications/s  (drain of {} pre-published, {:.2} s)",
            self.worker.per_second, self.worker.handled, self.worker.seconds
        )?;
        writeln!(
            out,
            "worker, batch 1   {:>8.0} notifications/s  (drain of {}, {:.2} s)",
            self.worker_batch_1.per_second,
            self.worker_batch_1.handled,
            self.worker_batch_1.seconds
        )?;
        writeln!(
            out,
            "drain latency     {}  (publish to commit, waiting in the backlog included)",
            latency_text(&self.worker.latency_ms)
        )?;
        writeln!(
            out,
            "peak RSS          {:.1} MiB  (worker child process, VmHWM, {} notifications backlog)",
            self.peak_rss_mib, self.notifications
        )?;
        if let Some(offered) = &self.offered {
            writeln!(
                out,
                "offered {}/s for {} s: published {} ({:.0}/s), latency {}",
                offered.rate,
                offered.seconds,
                offered.publisher.published,
                offered.publisher.per_second,
                latency_text(&offered.worker.latency_ms)
            )?;
            writeln!(
                out,
                "  publish to taken {}",
                latency_text(&offered.worker.to_delivery_ms)
            )?;
            writeln!(
                out,
                "  taken to commit  {}",
                latency_text(&offered.worker.to_commit_ms)
            )?;
            if let Some(cpu) = &offered.cpu {
                writeln!(
                    out,
                    "  CPU of the machine: busy {:.0} %, idle {:.0} %, taken by the host (steal) {:.1} %",
                    cpu.busy_pct, cpu.idle_pct, cpu.steal_pct
                )?;
            }
        }
        for point in &self.sweep {
            writeln!(
                out,
                "sweep batch {:>4} concurrency {:>2}: {:>8.0} notifications/s ({} notifications)",
                point.batch_size, point.concurrency, point.per_second, point.notifications
            )?;
        }
        for committed in &self.committed {
            writeln!(
                out,
                "committed {}: {} of {} distinct bodies recorded, {} of {} deliveries handled{}",
                committed.phase,
                committed.recorded,
                committed.expected,
                committed.handled,
                committed.sent,
                if committed.ok() { "" } else { "  MISSING" }
            )?;
        }
        writeln!(out, "ratio {:.2}", self.ratio)?;
        writeln!(out, "speedup {:.2}", self.speedup)?;
        if let Some(offered) = &self.offered {
            writeln!(
                out,
                "p99 {:.1} ms at {}/s offered",
                offered.worker.latency_ms.p99, offered.rate
            )?;
        }
        let missed = self.missed_targets();
        if missed.is_empty() {
            writeln!(
                out,
                "targets met: ratio >= {TARGET_RATIO}, speedup >= {TARGET_SPEEDUP}, p99 < {TARGET_P99_MS} ms, peak RSS < {TARGET_PEAK_RSS_MIB} MiB"
            )?;
        } else {
            writeln!(out, "targets missed: {}", missed.join("; "))?;
        }
        Ok(())
    }
}

fn latency_text(p: &Percentiles) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p.p50, p.p95, p.p99, p.max
    )
}

/// The 1-minute load average (Linux), 0 when unknown.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// `a / b`, 0 when `b` is 0.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str =
        "cpu  1000 10 200 5000 40 0 50 100 0 0\ncpu0 500 5 100 2500 20 0 25 50 0 0\nintr 1";
    const AFTER: &str =
        "cpu  1600 10 300 5300 60 0 100 200 0 0\ncpu0 800 5 150 2650 30 0 50 100 0 0\nintr 2";

    #[test]
    fn cpu_shares_split_the_time_between_two_readings() {
        let before = CpuTimes::parse(BEFORE).expect("before");
        let after = CpuTimes::parse(AFTER).expect("after");
        // busy 600 + 100 + 50 = 750, idle 300 + 20 = 320, steal 100.
        let shares = before.shares_until(&after).expect("shares");
        let total = 750.0 + 320.0 + 100.0;
        assert!((shares.busy_pct - 100.0 * 750.0 / total).abs() < 1e-9);
        assert!((shares.idle_pct - 100.0 * 320.0 / total).abs() < 1e-9);
        assert!((shares.steal_pct - 100.0 * 100.0 / total).abs() < 1e-9);
    }

    #[test]
    fn no_time_or_an_unreadable_line_gives_no_shares() {
        let reading = CpuTimes::parse(BEFORE).expect("reading");
        assert_eq!(reading.shares_until(&reading), None);
        assert_eq!(CpuTimes::parse("cpu0 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3\n"), None);
        // A counter that went back (another boot) is no measurement.
        let later = CpuTimes::parse(AFTER).expect("later");
        assert_eq!(later.shares_until(&reading), None);
    }
}
