//! [`Machine`]: what the figures were measured on (`nproc`, CPU model, memory).

use serde::Serialize;

/// The measuring machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use (`nproc`).
    pub cpus: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub model: String,
    /// `MemTotal` of `/proc/meminfo`, in GiB.
    pub memory_gib: f64,
}

impl Machine {
    /// Reads this machine's description.
    pub fn this() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = proc_field(&cpuinfo, "model name").unwrap_or("unknown").to_owned();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = proc_field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self { cpus, model, memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0 }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} vCPU {}, {} GiB", self.cpus, self.model, self.memory_gib)
    }
}

fn proc_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// TCP sockets in TIME_WAIT on this machine (`tw` in `/proc/net/sockstat`), `None` where unreadable. Tens of
/// thousands of them, left by an earlier run, make every `connect` search for a free port: the `connect`
/// scenario measured 1,290/s instead of 11,000/s right after an `idle` run.
pub fn time_wait_sockets() -> Option<u64> {
    time_wait_in(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

fn time_wait_in(sockstat: &str) -> Option<u64> {
    let tcp = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut words = tcp.split_whitespace();
    words.by_ref().find(|&word| word == "tw")?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_time_wait_from_sockstat() {
        let sockstat = "sockets: used 7\nTCP: inuse 5 orphan 0 tw 47949 alloc 6 mem 1\nUDP: inuse 0 mem 0\n";
        assert_eq!(time_wait_in(sockstat), Some(47_949));
        assert_eq!(time_wait_in("UDP: inuse 0 mem 0\n"), None);
    }
}
