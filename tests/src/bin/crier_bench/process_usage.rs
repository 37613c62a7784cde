//! What a process (or the whole machine) has used, from `/proc`: resident memory (`VmRSS`) and CPU time
//! (`utime + stime`, in clock ticks of [`CLK_TCK`] per second).

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux x86-64 and arm64).
pub const CLK_TCK: f64 = 100.0;

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// User plus system CPU time of `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are 14, 15.
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14)
        .zip(field(15))
        .map(|(user, system)| user + system)
        .with_context(|| format!("unexpected /proc/{pid}/stat"))
}

/// Summed CPU ticks of several processes (the load generator: the bench and its workers).
pub fn cpu_ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| cpu_ticks(pid).ok()).sum()
}

/// Busy and total ticks of all CPUs of the machine (`/proc/stat`), for "was the machine saturated".
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let total: u64 = ticks.iter().take(8).sum();
    Some((total - idle, total))
}

/// A snapshot of the CPU counters a scenario compares before and after its measured window.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    /// Ticks of the measured server process.
    pub server: u64,
    /// Ticks of the load generator's processes.
    pub loadgen: u64,
    /// Busy and total ticks of the machine.
    pub machine: (u64, u64),
}

impl CpuSnapshot {
    /// Counters now, for server `pid` (if known) and the load generator's `loadgen` pids.
    pub fn take(pid: Option<u32>, loadgen: &[u32]) -> Self {
        Self {
            server: pid.and_then(|pid| cpu_ticks(pid).ok()).unwrap_or(0),
            loadgen: cpu_ticks_of(loadgen),
            machine: machine_ticks().unwrap_or((0, 0)),
        }
    }

    /// Seconds of server CPU, load-generator CPU and the machine's busy fraction since `earlier`.
    pub fn since(&self, earlier: &Self) -> (f64, f64, f64) {
        let server = (self.server - earlier.server) as f64 / CLK_TCK;
        let loadgen = (self.loadgen - earlier.loadgen) as f64 / CLK_TCK;
        let busy = (self.machine.0 - earlier.machine.0) as f64;
        let total = (self.machine.1 - earlier.machine.1).max(1) as f64;
        (server, loadgen, busy / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own process has a resident size and has used some CPU.
    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        let spin: u64 = (0..20_000_000u64).fold(0, |a, b| a.wrapping_add(b * b));
        assert!(spin > 0);
        assert!(cpu_ticks(pid).unwrap() > 0);
        let (busy, total) = machine_ticks().unwrap();
        assert!(busy <= total && total > 0);
    }
}
