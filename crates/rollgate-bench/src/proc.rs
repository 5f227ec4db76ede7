//! Readings of other processes from `/proc`: resident memory and CPU time.

use std::time::Duration;

/// Resident set size of process `pid` in KiB (`VmRSS`), or `None` once it has gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Sum of the resident sizes of `pids`, in KiB.
pub fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| rss_kib(pid)).sum()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the state (field 3 of
/// the whole line), 1 the parent's pid, 11 and 12 utime and stime.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it start past the last ')'.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// User plus system CPU time process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec() as f64))
}

fn clock_ticks_per_sec() -> u64 {
    // Linux has reported 100 to user space on every architecture for decades (USER_HZ).
    100
}

/// Samples the total resident size of `pids` every `every` until `stop` is set; returns the peak.
pub async fn peak_rss_kib(pids: Vec<u32>, every: Duration, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let mut peak = 0;
    loop {
        peak = peak.max(total_rss_kib(&pids));
        if *stop.borrow() {
            return peak;
        }
        tokio::time::sleep(every).await;
    }
}

/// Raises this process's open-file limit to its hard limit: ten thousand virtual agents need
/// ten thousand sockets. Returns the new soft limit.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_cpu() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 100);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_time(me).unwrap() > Duration::ZERO);
        assert_eq!(rss_kib(u32::MAX), None);
    }
}
