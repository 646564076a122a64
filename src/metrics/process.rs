//! The standard `process_*` series (CPU, memory, file descriptors, threads), read from `/proc` at scrape time.

use prometheus::{Counter, Gauge, IntGauge, Registry};

use super::register::registered;

/// The standard `process_*` series, read from `/proc/self` at scrape time (Linux; absent elsewhere).
pub(super) struct ProcessMetrics {
    cpu_seconds: Counter,
    resident_memory: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    start_time: Gauge,
    threads: IntGauge,
}

/// Linux reports CPU time in clock ticks of `USER_HZ`, which is 100 on every Linux ABI we build for.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

impl ProcessMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let gauge_f =
            |name: &str, help: &str| registered(r, Gauge::new(name, help).expect("valid gauge"));
        let gauge_i =
            |name: &str, help: &str| registered(r, IntGauge::new(name, help).expect("valid gauge"));
        ProcessMetrics {
            cpu_seconds: registered(
                r,
                Counter::new(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )
                .expect("valid counter"),
            ),
            resident_memory: gauge_i(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            ),
            virtual_memory: gauge_i(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            ),
            open_fds: gauge_i("process_open_fds", "Number of open file descriptors."),
            max_fds: gauge_i(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            ),
            start_time: gauge_f(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            ),
            threads: gauge_i("process_threads", "Number of OS threads in the process."),
        }
    }

    pub(super) fn refresh(&self) {
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return;
        };
        // Fields after the command name, which is parenthesised and may contain spaces.
        let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return;
        };
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Field numbers from proc(5), minus 3 (pid, comm and state are not in `fields` as counted here).
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            // The kernel's total is monotonic: the counter follows it by its increments.
            let total = (utime + stime) / CLOCK_TICKS_PER_SECOND;
            let delta = total - self.cpu_seconds.get();
            if delta > 0.0 {
                self.cpu_seconds.inc_by(delta);
            }
        }
        if let Some(threads) = field(20) {
            self.threads.set(threads as i64);
        }
        if let Some(vsize) = field(23) {
            self.virtual_memory.set(vsize as i64);
        }
        if let Some(rss) = field(24) {
            self.resident_memory.set(rss as i64 * PAGE_SIZE);
        }
        if let (Some(start_ticks), Some(boot)) = (field(22), boot_time()) {
            self.start_time
                .set(boot + start_ticks / CLOCK_TICKS_PER_SECOND);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
        }
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_open_files() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
