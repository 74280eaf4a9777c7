//! The process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open
//! file descriptors...), as etcd's Go client reports them, with CPU time to the clock tick.
//!
//! The `prometheus` crate's `ProcessCollector` keeps `process_cpu_seconds_total` in an
//! integer counter of whole seconds. An idle member uses well under a second a minute, so a
//! dashboard's `rate(process_cpu_seconds_total[1m])` jumps between 0 and 1/60 of a core, and
//! a benchmark of a few hundred requests reads "0 s". Go's client reports the kernel's clock
//! ticks divided by their rate (10 ms steps). This wraps the crate's collector and replaces
//! that one value.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, MetricFamily};

/// The family whose value is replaced.
const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// `ProcessCollector` with `process_cpu_seconds_total` in fractions of a second.
pub(super) struct ProcessMetrics {
    inner: ProcessCollector,
}

impl ProcessMetrics {
    /// The metrics of this process.
    pub(super) fn for_self() -> Self {
        ProcessMetrics {
            inner: ProcessCollector::for_self(),
        }
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        // Unreadable (no /proc): the crate's whole seconds stay, as good as it gets.
        if let Some(seconds) = cpu_seconds() {
            for family in families.iter_mut().filter(|f| f.name() == CPU_SECONDS) {
                for metric in family.mut_metric() {
                    let mut counter = Counter::default();
                    counter.set_value(seconds);
                    metric.set_counter(counter);
                }
            }
        }
        families
    }
}

/// User plus system CPU time of this process, from `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat, clock_ticks_per_second()?)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`).
fn clock_ticks_per_second() -> Option<f64> {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

/// utime + stime (fields 14 and 15 of `/proc/PID/stat`) in seconds. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses itself, so fields are
/// counted from after its last `)`, where field 3 is the first.
fn cpu_seconds_of(stat: &str, ticks_per_second: f64) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime) as f64 / ticks_per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_counted_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 600 0 0 0 123 45 0 0 20 0 9 0 \
                    100 2000000 500 18446744073709551615";
        assert_eq!(cpu_seconds_of(stat, 100.0), Some(1.68));
        assert_eq!(cpu_seconds_of("4242 (x) S 1 2", 100.0), None);
        assert_eq!(cpu_seconds_of("no name here", 100.0), None);
    }

    #[test]
    fn the_counter_is_the_kernels_reading_not_whole_seconds() {
        // Burn CPU until the process has used a tenth of a second, which whole seconds
        // would report as 0. (qemu-user's /proc/self/stat reports no CPU time at all: the
        // loop gives up after 5 s, and both readings are then 0.)
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds().expect("/proc/self/stat") < 0.1 && started.elapsed().as_secs() < 5 {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let families = ProcessMetrics::for_self().collect();
        let own = cpu_seconds().expect("/proc/self/stat");
        let cpu = families
            .iter()
            .find(|f| f.name() == CPU_SECONDS)
            .expect("the CPU family");
        let value = cpu.get_metric()[0].get_counter().get_value();
        // The kernel's reading (read again just after: a few ticks later at most).
        assert!(value <= own && own - value <= 0.05, "{value} vs {own}");
    }
}
