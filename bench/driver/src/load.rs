//! One load run on one Envoy (or, `--together`, on several at once): h2load, or the lockstep
//! process's client, with the Envoy CPU the scheduler counted around it.

use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use host_tests::envoy::Envoy;

use crate::lockstep;
use crate::procs::{cpu_busy_steal_ticks, pinned, process_cpu_ns};
use crate::stats::percentile;
use crate::upstreams::{JsonStyle, UsageAsk};

/// h2load and the CPUs it is pinned to (empty: not pinned).
pub struct H2load<'a> {
    pub bin: &'a Path,
    pub cpus: &'a str,
}

/// One lockstep run per Envoy: `streams` streams, `batches` requests each in turn, `tokens`
/// tokens in `style`.
#[derive(Clone, Copy)]
pub struct LockstepLoad {
    pub streams: u32,
    pub batches: u64,
    pub tokens: u32,
    pub style: JsonStyle,
}

/// One load run on one Envoy.
#[derive(Clone, Debug)]
pub struct Run {
    pub requests: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_s: f64,
    /// Lockstep runs: CPU seconds of the lockstep process (worker and client) in the run.
    pub client_cpu_s: Option<f64>,
    /// Lockstep runs with Envoy pinned: seconds Envoy's CPU spent on anything but Envoy's
    /// threads (other processes, interrupts: `/proc/stat` ticks minus Envoy's schedstat) and
    /// seconds stolen by the hypervisor, during the run.
    pub envoy_cpu_others: Option<(f64, f64)>,
    /// Response body bytes the client received (h2load's `data`; the lockstep client's count).
    pub bytes: u64,
}

impl Run {
    pub fn cpu_us_per_request(&self) -> f64 {
        self.cpu_s / self.requests as f64 * 1e6
    }

    pub fn bytes_per_request(&self) -> f64 {
        self.bytes as f64 / self.requests as f64
    }
}

/// One h2load run of `n` requests on `concurrency` connections to `envoy`, with `headers`.
pub fn run_h2load(
    h2load: &H2load,
    envoy: &Envoy,
    body: &Path,
    log: &Path,
    n: u64,
    concurrency: u32,
    headers: &[String],
) -> Result<Run> {
    let url = envoy.url("/v1/chat/completions");
    let mut cmd = pinned(h2load.bin, h2load.cpus);
    cmd.args(["--h1", "-t", "1", "-m", "1"])
        .args(["-c", &concurrency.to_string()])
        .args(["-n", &n.to_string()])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.arg("--log-file").arg(log).arg(&url);
    // h2load appends to its log file: start each run with an empty one.
    let _ = std::fs::remove_file(log);
    let cpu0 = process_cpu_ns(envoy.pid())?;
    let out = cmd.output().context("running h2load")?;
    let cpu1 = process_cpu_ns(envoy.pid())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "h2load failed: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (seconds, rps) = parse_finished(&stdout)
        .ok_or_else(|| anyhow!("no `finished in` line in h2load output:\n{stdout}"))?;
    let succeeded = parse_field(&stdout, "succeeded").unwrap_or(0);
    if succeeded != n {
        bail!("h2load: {succeeded} of {n} requests succeeded:\n{stdout}");
    }
    let mut latencies = Vec::with_capacity(n as usize);
    for line in std::fs::read_to_string(log)?.lines() {
        // start time (µs since epoch), status, duration (µs)
        let mut f = line.split('\t');
        let status = f.nth(1).unwrap_or("");
        let us: f64 = f.next().unwrap_or("").trim().parse().unwrap_or(f64::NAN);
        if status != "200" {
            bail!("h2load: a request answered {status}");
        }
        latencies.push(us);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        requests: n,
        seconds,
        rps,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        cpu_s: cpu1.saturating_sub(cpu0) as f64 / 1e9,
        client_cpu_s: None,
        envoy_cpu_others: None,
        bytes: parse_data_bytes(&stdout).unwrap_or(0),
    })
}

/// One lockstep run on each Envoy of `envoys`, all at the same time (one Envoy: the usual
/// run): `streams` streams per Envoy, `batches` requests each in turn, each Envoy's client
/// asking for its `asks`; each Envoy's CPU around it, the rates and latencies as the lockstep
/// client measured them.
pub fn run_lockstep(
    ls: &mut lockstep::Lockstep,
    envoys: &[&Envoy],
    envoy_cpu: Option<usize>,
    load: &LockstepLoad,
    asks: &[UsageAsk],
) -> Result<Vec<Run>> {
    let LockstepLoad {
        streams,
        batches,
        tokens,
        style,
    } = *load;
    let client0 = process_cpu_ns(ls.pid())?;
    let stat0 = envoy_cpu.and_then(cpu_busy_steal_ticks);
    let cpu0: Vec<u64> = envoys
        .iter()
        .map(|e| process_cpu_ns(e.pid()))
        .collect::<Result<_>>()?;
    let addrs: Vec<std::net::SocketAddr> = envoys.iter().map(|e| e.listener).collect();
    let outs = ls.run_together(&addrs, streams, batches, tokens, style, asks)?;
    let cpu1: Vec<u64> = envoys
        .iter()
        .map(|e| process_cpu_ns(e.pid()))
        .collect::<Result<_>>()?;
    let stat1 = envoy_cpu.and_then(cpu_busy_steal_ticks);
    let client1 = process_cpu_ns(ls.pid())?;
    let cpu_s: Vec<f64> = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| b.saturating_sub(*a) as f64 / 1e9)
        .collect();
    let all_envoys: f64 = cpu_s.iter().sum();
    // /proc/stat counts USER_HZ ticks: 100 per second on Linux.
    let envoy_cpu_others = match (stat0, stat1) {
        (Some((b0, s0)), Some((b1, s1))) => Some((
            (b1.saturating_sub(b0) as f64 / 100.0 - all_envoys).max(0.0),
            s1.saturating_sub(s0) as f64 / 100.0,
        )),
        _ => None,
    };
    let requests = u64::from(streams) * batches;
    let client_cpu_s = Some(client1.saturating_sub(client0) as f64 / 1e9);
    outs.iter()
        .zip(cpu_s)
        .enumerate()
        .map(|(i, (out, cpu_s))| {
            // Role, tokens, [DONE]; and the usage event when the client itself asked for it
            // (one the filter asked for is cut).
            let asked = asks.get(i).is_some_and(|a| *a != UsageAsk::None);
            let want = requests * u64::from(tokens + 2 + u32::from(asked));
            if out.events != want {
                bail!(
                    "lockstep: {} SSE events received, {want} expected",
                    out.events
                );
            }
            Ok(Run {
                requests,
                seconds: out.seconds,
                rps: requests as f64 / out.seconds,
                p50_us: out.p50_us,
                p99_us: out.p99_us,
                cpu_s,
                client_cpu_s,
                envoy_cpu_others,
                bytes: out.bytes,
            })
        })
        .collect()
}

/// `traffic: 4.39MB (4605440) total, 2.11KB (2160) headers (space savings 0.00%), 4.35MB
/// (4560000) data`: the response body bytes.
fn parse_data_bytes(out: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with("traffic:"))?;
    let data = line.split(", ").find(|p| p.ends_with(" data"))?;
    let (_, rest) = data.split_once('(')?;
    rest.split(')').next()?.parse().ok()
}

/// `finished in 2.50s, 400.00 req/s, 12.34MB/s`
fn parse_finished(out: &str) -> Option<(f64, f64)> {
    let line = out.lines().find(|l| l.starts_with("finished in"))?;
    let mut parts = line.trim_start_matches("finished in ").split(", ");
    let secs = parse_duration(parts.next()?)?;
    let rps = parts.next()?.trim_end_matches(" req/s").parse().ok()?;
    Some((secs, rps))
}

fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(v) = s.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = s.strip_suffix("us") {
        (v, 1e-6)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else {
        return None;
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// `requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, ...`
fn parse_field(out: &str, name: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with("requests:"))?;
    line.trim_start_matches("requests:")
        .split(',')
        .map(str::trim)
        .find(|p| p.ends_with(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2load_data_bytes() {
        let out = "finished in 1.00s, 10.00 req/s, 4.39MB/s\n\
                   requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed\n\
                   traffic: 4.39MB (4605440) total, 2.11KB (2160) headers (space savings 0.00%), 4.35MB (4560000) data\n";
        assert_eq!(parse_data_bytes(out), Some(4_560_000));
        assert_eq!(parse_data_bytes("no traffic line"), None);
    }
}
