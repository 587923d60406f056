//! `bench`: what llm-pulse costs, measured (`scripts/bench` builds and runs it; see
//! `docs/benchmarks.md`). Two parts:
//!
//! - `envoy`: four Envoys on this machine, (a) without a wasm filter, (b) with the no-op
//!   proxy-wasm filter of `bench/noop-filter`, (c) with llm-pulse, (d) with the same module as
//!   (b) in its "floor" mode (copies each response chunk into the VM and records one histogram
//!   sample per SSE event: the host calls any per-token meter must make), all behind one `gpu-sim`
//!   process with zero artificial delay, loaded in turn (interleaved, order rotated per round)
//!   by `h2load` at fixed concurrency. Per run: requests/s, tokens/s, latency p50/p99 (from
//!   h2load's per-request log), and Envoy CPU seconds per 1,000 requests (utime+stime deltas
//!   of `/proc/<pid>/stat`). Medians over rounds; ratios c/a and c/b, CPU c−b and d−b.
//! - `micro`: the real `.wasm` files in the wasmtime harness (`wasm_host`): time
//!   per SSE event, per request and per 100 KiB request body, llm-pulse minus the no-op filter
//!   on the same harness calls (so the harness's own cost cancels out), and wasm memory per
//!   open stream.
//!
//! A benchmark, not a test: it asserts nothing about speed.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use host_tests::envoy::{Envoy, EnvoyOptions};

const USAGE: &str = "\
usage: bench [options]

options:
  --noop-wasm PATH     the no-op filter's .wasm (required; scripts/bench builds it)
  --rounds N           interleaved rounds per case (default 5)
  --seconds S          target length of one load run in seconds (default 2.5)
  --concurrency N      h2load connections, one request in flight each (default 8)
  --tokens N           output tokens per response (default 256)
  --only envoy|micro   run one part only
  --json PATH          also write the raw figures as JSON
  --no-pin             do not pin processes with taskset
";

struct Args {
    noop_wasm: PathBuf,
    rounds: usize,
    seconds: f64,
    concurrency: u32,
    tokens: u32,
    envoy: bool,
    micro: bool,
    json: Option<PathBuf>,
    pin: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        noop_wasm: PathBuf::new(),
        rounds: 5,
        seconds: 2.5,
        concurrency: 8,
        tokens: 256,
        envoy: true,
        micro: true,
        json: None,
        pin: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            "--noop-wasm" => args.noop_wasm = PathBuf::from(value()?),
            "--rounds" => args.rounds = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--concurrency" => args.concurrency = value()?.parse()?,
            "--tokens" => args.tokens = value()?.parse()?,
            "--only" => match value()?.as_str() {
                "envoy" => args.micro = false,
                "micro" => args.envoy = false,
                other => bail!("--only: want envoy or micro, got {other}"),
            },
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--no-pin" => args.pin = false,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if !args.noop_wasm.is_file() {
        bail!(
            "--noop-wasm {} is missing (scripts/bench builds bench/noop-filter)",
            args.noop_wasm.display()
        );
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let mut json = serde_json::Map::new();
    if args.envoy {
        let results = envoy_bench(&args)?;
        json.insert("envoy".into(), results);
    }
    if args.micro {
        let results = micro::run(&args.noop_wasm, args.tokens)?;
        json.insert("micro".into(), results);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Envoy end to end

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Setup {
    A,
    B,
    C,
    D,
}

impl Setup {
    const ALL: [Setup; 4] = [Setup::A, Setup::B, Setup::C, Setup::D];
    fn label(self) -> &'static str {
        match self {
            Setup::A => "(a) no wasm",
            Setup::B => "(b) no-op wasm",
            Setup::C => "(c) llm-pulse",
            Setup::D => "(d) host-call floor",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Setup::A => "a",
            Setup::B => "b",
            Setup::C => "c",
            Setup::D => "d",
        }
    }
}

struct Case {
    name: &'static str,
    what: String,
    body: Vec<u8>,
}

fn cases(tokens: u32) -> Vec<Case> {
    let request = |content: &str, stream: bool| {
        serde_json::json!({
            "model": "bench-model",
            "messages": [{"role": "user", "content": content}],
            "stream": stream,
            "max_tokens": tokens,
        })
        .to_string()
        .into_bytes()
    };
    // 100 KiB of prompt: 20,480 five-byte words.
    let prompt = "word ".repeat(100 * 1024 / 5);
    vec![
        Case {
            name: "stream",
            what: format!("chat, stream, {tokens} tokens, tiny prompt"),
            body: request("hello", true),
        },
        Case {
            name: "unary",
            what: format!("chat, unary, {tokens} tokens, tiny prompt"),
            body: request("hello", false),
        },
        Case {
            name: "prompt100k",
            what: format!("chat, stream, {tokens} tokens, 100 KiB prompt"),
            body: request(&prompt, true),
        },
    ]
}

/// One h2load run on one Envoy.
#[derive(Clone, Debug)]
struct Run {
    requests: u64,
    seconds: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_s: f64,
}

impl Run {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu_s / self.requests as f64 * 1000.0
    }
}

fn envoy_bench(args: &Args) -> Result<serde_json::Value> {
    let h2load = which("h2load").ok_or_else(|| {
        anyhow!("h2load not found: scripts/bench installs it (apt-get install nghttp2-client)")
    })?;
    let cpus = online_cpus();
    let pin = args.pin && cpus >= 2 && which("taskset").is_some();
    // Envoy (one worker thread) alone on CPU 0; load generator and worker share the rest.
    let (envoy_cpus, load_cpus) = if pin {
        ("0".to_string(), format!("1-{}", cpus - 1))
    } else {
        (String::new(), String::new())
    };
    let tck = clock_ticks()?;

    let sim_bin = sibling_exe("gpu-sim")?;
    let mut sim = Sim::start(&sim_bin, &load_cpus, args.tokens)?;
    eprintln!("bench: gpu-sim at {} (pid {})", sim.addr, sim.child.id());

    let mut envoys = BTreeMap::new();
    for setup in Setup::ALL {
        let opts = EnvoyOptions {
            concurrency: 1,
            with_filter: setup != Setup::A,
            // (b) and (d) are the same module: no-op, or the floor of per-token metering
            // (bench/noop-filter/src/lib.rs says what that does).
            wasm_override: matches!(setup, Setup::B | Setup::D).then(|| args.noop_wasm.clone()),
            plugin_config: if setup == Setup::D { "\"floor\"" } else { "{}" }.to_string(),
            stats_flush: Duration::from_secs(5),
            log_level: "warn".to_string(),
            ..EnvoyOptions::new(sim.addr)
        };
        let envoy = Envoy::start(&opts).with_context(|| format!("starting {}", setup.label()))?;
        if pin {
            let ok = Command::new("taskset")
                .args(["-a", "-p", "-c", &envoy_cpus, &envoy.pid().to_string()])
                .stdout(Stdio::null())
                .status()?
                .success();
            if !ok {
                bail!("taskset could not pin Envoy {}", envoy.pid());
            }
        }
        eprintln!(
            "bench: {} on {} (pid {})",
            setup.label(),
            envoy.listener,
            envoy.pid()
        );
        envoys.insert(setup, envoy);
    }

    let dir = std::env::temp_dir().join(format!("llm-pulse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut all = serde_json::Map::new();
    let mut table = Vec::new();
    for case in cases(args.tokens) {
        let body_path = dir.join(format!("{}.json", case.name));
        std::fs::write(&body_path, &case.body)?;
        let load = |setup: Setup, n: u64| -> Result<Run> {
            let envoy = &envoys[&setup];
            run_h2load(
                &h2load,
                &load_cpus,
                envoy,
                &body_path,
                &dir.join("h2load.log"),
                n,
                args.concurrency,
                tck,
            )
        };
        // Warm-up on every Envoy (connections, VM, metric ids); calibrate the run length on
        // the slowest setup so every run of the case does the same fixed number of requests.
        let mut slowest = f64::MAX;
        for setup in Setup::ALL {
            let w = load(setup, u64::from(args.concurrency) * 40)?;
            slowest = slowest.min(w.rps);
        }
        let n = ((slowest * args.seconds) as u64).max(u64::from(args.concurrency) * 50);
        eprintln!(
            "bench: case {}: {} requests per run, {} rounds",
            case.name, n, args.rounds
        );
        let mut runs: BTreeMap<Setup, Vec<Run>> = BTreeMap::new();
        for round in 0..args.rounds {
            for k in 0..Setup::ALL.len() {
                let setup = Setup::ALL[(round + k) % Setup::ALL.len()];
                let r = load(setup, n)?;
                eprintln!(
                    "bench:   round {round} {}: {:.0} req/s p50 {:.0} µs p99 {:.0} µs cpu {:.3} s/1k",
                    setup.label(),
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.cpu_per_1000()
                );
                runs.entry(setup).or_default().push(r);
            }
        }
        for envoy in envoys.values_mut() {
            if !envoy.is_running() {
                bail!("an Envoy died during the bench:\n{}", envoy.log());
            }
        }
        let med = |setup: Setup, f: &dyn Fn(&Run) -> f64| median(runs[&setup].iter().map(f));
        let mut case_json = serde_json::Map::new();
        for setup in Setup::ALL {
            let row = Row {
                case: case.name,
                setup,
                rps: med(setup, &|r| r.rps),
                p50: med(setup, &|r| r.p50_us),
                p99: med(setup, &|r| r.p99_us),
                cpu: med(setup, &|r| r.cpu_per_1000()),
                tokens: args.tokens,
            };
            case_json.insert(
                setup.key().into(),
                serde_json::json!({
                    "requests_per_run": n,
                    "rps_median": row.rps,
                    "tokens_per_s_median": row.rps * f64::from(args.tokens),
                    "p50_us_median": row.p50,
                    "p99_us_median": row.p99,
                    "envoy_cpu_s_per_1000_median": row.cpu,
                    "runs": runs[&setup].iter().map(|r| serde_json::json!({
                        "rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                        "cpu_s": r.cpu_s, "requests": r.requests, "seconds": r.seconds,
                    })).collect::<Vec<_>>(),
                }),
            );
            table.push(row);
        }
        case_json.insert("what".into(), case.what.clone().into());
        all.insert(case.name.into(), case_json.into());
    }
    // Sanity: llm-pulse did measure the traffic (its counters exist in (c) only).
    let stats = envoys[&Setup::C].admin_get("/stats?filter=output_tokens_total")?;
    let counted: u64 = stats
        .lines()
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum();
    eprintln!("bench: llm-pulse counted {counted} output tokens in (c)");
    drop(envoys);
    sim.stop();
    let _ = std::fs::remove_dir_all(&dir);

    print_table(&table, args, pin);
    all.insert("pinned".into(), pin.into());
    all.insert("concurrency".into(), args.concurrency.into());
    all.insert("output_tokens_counted_by_c".into(), counted.into());
    Ok(all.into())
}

struct Row {
    case: &'static str,
    setup: Setup,
    rps: f64,
    p50: f64,
    p99: f64,
    cpu: f64,
    tokens: u32,
}

fn print_table(rows: &[Row], args: &Args, pin: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nEnvoy end to end: medians of {} rounds; h2load -c {} (HTTP/1.1); Envoy --concurrency 1{}\n\n",
        args.rounds,
        args.concurrency,
        if pin {
            ", pinned to CPU 0 (gpu-sim and h2load on the other CPUs)"
        } else {
            ""
        }
    ));
    out.push_str("| case | setup | req/s | tokens/s | p50 µs | p99 µs | Envoy CPU s / 1k req |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} |\n",
            r.case,
            r.setup.label(),
            r.rps,
            r.rps * f64::from(r.tokens),
            r.p50,
            r.p99,
            r.cpu
        ));
    }
    out.push_str("\n| case | throughput c/a | throughput c/b | p99 c−a µs | p99 c−b µs | CPU c/a | CPU c/b | CPU c−b µs/req | CPU d−b µs/req |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    let mut names: Vec<&str> = rows.iter().map(|r| r.case).collect();
    names.dedup();
    for name in names {
        let get = |s: Setup| rows.iter().find(|r| r.case == name && r.setup == s);
        if let (Some(a), Some(b), Some(c), Some(d)) =
            (get(Setup::A), get(Setup::B), get(Setup::C), get(Setup::D))
        {
            out.push_str(&format!(
                "| {} | {:.1} % | {:.1} % | {:+.0} | {:+.0} | {:.3} | {:.3} | {:+.1} | {:+.1} |\n",
                name,
                100.0 * c.rps / a.rps,
                100.0 * c.rps / b.rps,
                c.p99 - a.p99,
                c.p99 - b.p99,
                c.cpu / a.cpu,
                c.cpu / b.cpu,
                (c.cpu - b.cpu) * 1000.0,
                (d.cpu - b.cpu) * 1000.0,
            ));
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

#[allow(clippy::too_many_arguments)]
fn run_h2load(
    h2load: &Path,
    cpus: &str,
    envoy: &Envoy,
    body: &Path,
    log: &Path,
    n: u64,
    concurrency: u32,
    tck: f64,
) -> Result<Run> {
    let url = envoy.url("/v1/chat/completions");
    let mut cmd = pinned(h2load, cpus);
    cmd.args(["--h1", "-t", "1", "-m", "1"])
        .args(["-c", &concurrency.to_string()])
        .args(["-n", &n.to_string()])
        .arg("-d")
        .arg(body)
        .args(["-H", "content-type: application/json"])
        .arg("--log-file")
        .arg(log)
        .arg(&url);
    // h2load appends to its log file: start each run with an empty one.
    let _ = std::fs::remove_file(log);
    let cpu0 = process_cpu_ticks(envoy.pid())?;
    let out = cmd.output().context("running h2load")?;
    let cpu1 = process_cpu_ticks(envoy.pid())?;
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
        cpu_s: (cpu1 - cpu0) as f64 / tck,
    })
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

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// utime + stime of every thread of `pid`, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
fn process_cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11, stime 15 -> 12.
    let utime: u64 = fields.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = fields.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    Ok(out
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0))
}

fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn sibling_exe(name: &str) -> Result<PathBuf> {
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
fn pinned(program: &Path, cpus: &str) -> Command {
    if cpus.is_empty() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpus]).arg(program);
        cmd
    }
}

/// The `gpu-sim` binary as its own process (pinned away from Envoy), killed on drop.
struct Sim {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Sim {
    fn start(bin: &Path, cpus: &str, tokens: u32) -> Result<Sim> {
        let mut child = pinned(bin, cpus)
            .args(["--ttft-ms", "0", "--itl-ms", "0", "--tokens"])
            .arg(tokens.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting gpu-sim")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("gpu-sim listening on http://")
            .ok_or_else(|| anyhow!("gpu-sim said {line:?}"))?
            .parse()?;
        Ok(Sim { child, addr })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Microbenchmark on the wasmtime harness

mod micro {
    use super::median;
    use anyhow::Result;
    use std::path::Path;
    use std::time::Instant;
    use wasm_host::{Host, HostBuilder, StreamId};

    const REQUEST_HEADERS: &[(&str, &str)] = &[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "llm"),
        (":scheme", "http"),
        ("content-type", "application/json"),
    ];
    const RESPONSE_HEADERS: &[(&str, &str)] =
        &[(":status", "200"), ("content-type", "text/event-stream")];
    const ROLE: &[u8] = b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    const DONE: &[u8] = b"data: [DONE]\n\n";

    /// One vLLM-shaped chat chunk (as gpu-sim sends them).
    fn token_event(i: u32) -> Vec<u8> {
        format!("data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"bench-model\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" t{i}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n").into_bytes()
    }

    struct Sample {
        /// Seconds for: request side + response headers + [DONE] + end of stream.
        fixed: f64,
        /// Seconds for the token events.
        events: f64,
    }

    /// One complete streamed request; the token events go `per_chunk` to a body callback.
    fn request(host: &mut Host, events: &[Vec<u8>], per_chunk: usize) -> Result<Sample> {
        let body = br#"{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"stream":true,"max_tokens":256}"#;
        let chunks: Vec<Vec<u8>> = events.chunks(per_chunk).map(|c| c.concat()).collect();
        let t0 = Instant::now();
        let s = host.new_stream()?;
        host.send_request_headers(s, REQUEST_HEADERS, false)?;
        host.send_request_body(s, body, true)?;
        host.send_response_headers(s, RESPONSE_HEADERS, false)?;
        host.send_response_body(s, ROLE, false)?;
        let t1 = Instant::now();
        for c in &chunks {
            host.send_response_body(s, c, false)?;
        }
        let t2 = Instant::now();
        host.send_response_body(s, DONE, true)?;
        host.complete_stream(s)?;
        let t3 = Instant::now();
        Ok(Sample {
            fixed: (t1 - t0 + (t3 - t2)).as_secs_f64(),
            events: (t2 - t1).as_secs_f64(),
        })
    }

    /// A request with a large body fed in `slice`-byte chunks; seconds for the body only.
    fn big_request(host: &mut Host, body: &[u8], slice: usize) -> Result<f64> {
        let s = host.new_stream()?;
        host.send_request_headers(s, REQUEST_HEADERS, false)?;
        let chunks: Vec<&[u8]> = body.chunks(slice).collect();
        let t0 = Instant::now();
        for (i, c) in chunks.iter().enumerate() {
            host.send_request_body(s, c, i + 1 == chunks.len())?;
        }
        let t = t0.elapsed().as_secs_f64();
        host.send_response_headers(s, RESPONSE_HEADERS, false)?;
        host.send_response_body(s, DONE, true)?;
        host.complete_stream(s)?;
        Ok(t)
    }

    /// Bytes of VM memory per open stream: `n` streams mid-response at once.
    fn memory_per_stream(wasm: &Path, n: usize) -> Result<f64> {
        let mut host = HostBuilder::new(wasm).plugin_config("{}").start()?;
        let events: Vec<Vec<u8>> = (0..4).map(token_event).collect();
        // Warm: metric ids, allocator, the SDK's context map.
        request(&mut host, &events, 1)?;
        let before = host.memory_size(0)?;
        let mut open: Vec<StreamId> = Vec::with_capacity(n);
        let big = prompt_body(100 * 1024);
        for i in 0..n {
            let s = host.new_stream()?;
            host.send_request_headers(s, REQUEST_HEADERS, false)?;
            // Every 16th stream sent a 100 KiB prompt: state must not grow with it.
            if i % 16 == 0 {
                for c in big.chunks(16 * 1024) {
                    host.send_request_body(s, c, false)?;
                }
                host.send_request_body(s, b"", true)?;
            } else {
                host.send_request_body(s, br#"{"model":"bench-model","stream":true}"#, true)?;
            }
            host.send_response_headers(s, RESPONSE_HEADERS, false)?;
            host.send_response_body(s, ROLE, false)?;
            host.send_response_body(s, &events[1], false)?;
            open.push(s);
        }
        let after = host.memory_size(0)?;
        for s in open {
            host.complete_stream(s)?;
        }
        Ok((after - before) as f64 / n as f64)
    }

    fn prompt_body(size: usize) -> Vec<u8> {
        let words = "word ".repeat(size / 5);
        serde_json::json!({
            "model": "bench-model",
            "messages": [{"role": "user", "content": words}],
            "stream": true,
        })
        .to_string()
        .into_bytes()
    }

    #[derive(Default)]
    struct Figures {
        per_event_1: Vec<f64>,
        per_event_16: Vec<f64>,
        per_request: Vec<f64>,
        per_100k: Vec<f64>,
    }

    fn measure(wasm: &Path, config: &str, tokens: u32, reps: usize) -> Result<Figures> {
        let mut host = HostBuilder::new(wasm).plugin_config(config).start()?;
        let events: Vec<Vec<u8>> = (0..tokens).map(token_event).collect();
        let big = prompt_body(100 * 1024);
        // Warm-up: metric ids defined, code paths compiled and cached.
        for _ in 0..20 {
            request(&mut host, &events, 1)?;
        }
        let mut f = Figures::default();
        for _ in 0..reps {
            let one = request(&mut host, &events, 1)?;
            let sixteen = request(&mut host, &events, 16)?;
            f.per_event_1.push(one.events / events.len() as f64);
            f.per_event_16.push(sixteen.events / events.len() as f64);
            f.per_request.push(one.fixed.min(sixteen.fixed));
            f.per_100k.push(big_request(&mut host, &big, 16 * 1024)?);
        }
        Ok(f)
    }

    pub fn run(noop: &Path, tokens: u32) -> Result<serde_json::Value> {
        let pulse = host_tests::artifacts::wasm_path()?;
        eprintln!(
            "bench: microbenchmark: {} vs {} (no-op and floor modes) in the wasmtime harness",
            pulse.display(),
            noop.display()
        );
        // Alternate the modules in blocks so drift hits all of them.
        let (mut p, mut f, mut n) = (Figures::default(), Figures::default(), Figures::default());
        for _ in 0..5 {
            for (wasm, config, into) in [
                (noop, "{}", &mut n),
                (noop, "\"floor\"", &mut f),
                (pulse.as_path(), "{}", &mut p),
            ] {
                let m = measure(wasm, config, tokens, 20)?;
                into.per_event_1.extend(m.per_event_1);
                into.per_event_16.extend(m.per_event_16);
                into.per_request.extend(m.per_request);
                into.per_100k.extend(m.per_100k);
            }
        }
        let us = |v: &[f64]| median(v.iter().copied()) * 1e6;
        let row = |name: &'static str, get: &dyn Fn(&Figures) -> &Vec<f64>| {
            (name, us(get(&p)), us(get(&f)), us(get(&n)))
        };
        let rows = [
            row("per SSE event, 1 event per body callback", &|x| {
                &x.per_event_1
            }),
            row("per SSE event, 16 events per body callback", &|x| {
                &x.per_event_16
            }),
            row("per request, without its token events", &|x| &x.per_request),
            row("100 KiB request body (16 KiB chunks)", &|x| &x.per_100k),
        ];
        let mem_p = memory_per_stream(&pulse, 4096)?;
        let mem_n = memory_per_stream(noop, 4096)?;
        let wasm_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);

        let mut out = String::new();
        out.push_str(
            "\nMicrobenchmark (wasmtime harness, medians of the same calls on each module; the floor \
             copies each response chunk in, reads the clock and records one sample per event)\n\n",
        );
        out.push_str("| work | llm-pulse µs | floor µs | no-op µs | llm-pulse − no-op µs | llm-pulse − floor µs |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
        let mut json = serde_json::Map::new();
        for (name, pv, fv, nv) in rows {
            out.push_str(&format!(
                "| {name} | {pv:.3} | {fv:.3} | {nv:.3} | {:.3} | {:.3} |\n",
                pv - nv,
                pv - fv
            ));
            json.insert(
                name.into(),
                serde_json::json!({"llm_pulse_us": pv, "floor_us": fv, "noop_us": nv, "delta_us": pv - nv, "over_floor_us": pv - fv}),
            );
        }
        out.push_str(&format!(
            "| VM memory per open stream (bytes, 4096 streams, 1 in 16 with a 100 KiB prompt) | {mem_p:.0} | | {mem_n:.0} | {:.0} | |\n",
            mem_p - mem_n
        ));
        out.push_str(&format!(
            "\n.wasm size: llm-pulse {} bytes, no-op {} bytes\n",
            wasm_size(&pulse),
            wasm_size(noop)
        ));
        print!("{out}");
        json.insert(
            "memory_per_stream_bytes".into(),
            serde_json::json!({"llm_pulse": mem_p, "noop": mem_n}),
        );
        json.insert("wasm_bytes".into(), wasm_size(&pulse).into());
        json.insert("noop_wasm_bytes".into(), wasm_size(noop).into());
        Ok(json.into())
    }
}
