//! CPU time a process has used, from `/proc/<pid>/stat`: what a throughput
//! figure cost, which on a shared 2-core machine says more than the figure
//! alone (a run that saturates both cores is CPU-bound, not disk-bound).

use std::path::Path;

/// User plus system CPU time of process `pid` so far, in seconds; `None`
/// if it cannot be read (the process is gone, or no procfs).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    let ticks = stat_cpu_ticks(&text)?;
    Some(ticks as f64 / clock_ticks_per_s())
}

/// This process's CPU time so far, in seconds.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// `utime + stime` (fields 14 and 15) of one `/proc/<pid>/stat` line, in
/// clock ticks. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last
/// `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is the 12th of
    // them, stime the 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        // Linux's USER_HZ on every architecture trilog runs on.
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_the_name() {
        // A name with a space and a parenthesis, as a thread may have.
        let line =
            "4617 (a b) c) R 4614 4614 1159 0 -1 4194304 102 0 0 0 37 5 0 0 20 0 1 0 1164900";
        assert_eq!(stat_cpu_ticks(line), Some(42));
        assert_eq!(stat_cpu_ticks("4617 (cat) R 1 2"), None);
        assert_eq!(stat_cpu_ticks("no name here"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // Spin until the tick counter moves: the test asserts the read
        // works, not how fast anything is.
        let first = own_cpu_seconds().expect("procfs");
        let mut x = 0u64;
        loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            let now = own_cpu_seconds().expect("procfs");
            if now > first {
                break;
            }
        }
        std::hint::black_box(x);
    }
}
