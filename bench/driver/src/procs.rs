//! Processes and the machine: finding programs, pinning them to CPUs, reading the CPU time
//! the scheduler gave a process and the busy and stolen time of a CPU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Result};

/// `/proc/stat`'s line of CPU `cpu`: (busy ticks: user, nice, system, irq, softirq; steal
/// ticks), or `None` when unreadable.
pub fn cpu_busy_steal_ticks(cpu: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Some((at(0) + at(1) + at(2) + at(5) + at(6), at(7)))
}

/// CPU time of every thread of `pid` in nanoseconds: the first field of each
/// `/proc/<pid>/task/<tid>/schedstat` (the scheduler's `sum_exec_runtime`). Not `/proc/<pid>/stat`:
/// its utime + stime count 10 ms ticks, 50 µs per request at 200 requests per run, coarser than
/// the per-event cost being measured. Envoy's threads live as long as the run.
pub fn process_cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread that ended between the listing and the read has nothing left to count.
        let Ok(stat) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .ok_or_else(|| anyhow!("empty {}", path.display()))?
            .parse()?;
        total += ns;
    }
    Ok(total)
}

pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// A binary built beside this one (gpu-sim).
pub fn sibling_exe(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me
        .parent()
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow!("no directory for {}", me.display()))?;
    if !path.is_file() {
        bail!(
            "{} is missing: build it with the bench (scripts/bench)",
            path.display()
        );
    }
    Ok(path)
}

/// `taskset -c CPUS program` when pinning, else `program`.
pub fn pinned(program: &Path, cpus: &str) -> Command {
    if cpus.is_empty() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpus]).arg(program);
        cmd
    }
}
