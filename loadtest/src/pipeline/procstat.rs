//! CPU time and peak memory of the bridge's processes, read from `/proc`
//! (Linux), sampled once a second for the CPU plot.

use std::time::Duration;

/// One process's totals at a moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident memory so far (VmHWM), bytes.
    pub peak_rss: u64,
    /// Resident memory now (VmRSS), bytes.
    pub rss: u64,
}

/// Reads process `pid`'s totals; `None` once it has gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count
    // fields from the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), here 11 and 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some(Sample {
        cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()),
        peak_rss: kib("VmHWM:"),
        rss: kib("VmRSS:"),
    })
}

fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |ticks| ticks as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let before = super::sample(std::process::id()).expect("our own /proc entry");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = super::sample(std::process::id()).expect("our own /proc entry");
        assert!(after.cpu > before.cpu);
        assert!(after.peak_rss >= after.rss && after.rss > 0);
        assert!(super::sample(u32::MAX).is_none());
    }
}
