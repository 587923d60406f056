//! The Envoy part: per case group its upstream and one Envoy per setup, then per case a
//! warm-up that calibrates the run length, the callback count, and the interleaved rounds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use host_tests::envoy::Envoy;

use crate::args::Args;
use crate::cases::{body_asking, cases, Case};
use crate::load::{run_h2load, run_lockstep, H2load, LockstepLoad, Run};
use crate::lockstep::Lockstep;
use crate::procs::{online_cpus, sibling_exe, which};
use crate::report::{self, CaseResult};
use crate::setups::{counter_setup, setups_for, start_envoy, Setup};
use crate::upstreams::{self, JsonStyle, Nginx, Paced, Sim, UsageAsk};

/// Runs every selected group, prints the tables and returns the figures as JSON.
pub fn envoy_bench(args: &Args) -> Result<serde_json::Value> {
    let h2load = which("h2load").ok_or_else(|| {
        anyhow!("h2load not found: scripts/bench installs it (apt-get install nghttp2-client)")
    })?;
    let cpus = online_cpus();
    let pin = args.pin && cpus >= 2 && which("taskset").is_some();
    // Envoy (one worker thread) alone on CPU 0; load generator and upstream share the rest.
    let (envoy_cpus, load_cpus) = if pin {
        ("0".to_string(), format!("1-{}", cpus - 1))
    } else {
        (String::new(), String::new())
    };
    let dir = std::env::temp_dir().join(format!("llm-pulse-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let machine = Machine {
        h2load,
        envoy_cpus,
        load_cpus,
        dir,
    };
    let result = args
        .groups()
        .into_iter()
        .map(|group| run_group(args, &machine, group))
        .collect::<Result<Vec<_>>>();
    let _ = std::fs::remove_dir_all(&machine.dir);
    let results: Vec<CaseResult> = result?.into_iter().flatten().collect();
    report::print_tables(&results, args.rounds, pin);
    Ok(report::to_json(&results, pin, args.concurrency))
}

/// Where things run: h2load, the CPUs of Envoy and of the load (empty: not pinned), and a
/// scratch directory (request bodies, h2load logs, nginx's files).
struct Machine {
    h2load: PathBuf,
    envoy_cpus: String,
    load_cpus: String,
    dir: PathBuf,
}

/// The upstream of a group, kept alive while its Envoys run.
enum Upstream {
    Sim(Sim),
    Nginx(Nginx),
    Paced(Paced),
    Lockstep(Lockstep),
}

impl Upstream {
    fn start(group: &str, args: &Args, machine: &Machine) -> Result<Upstream> {
        let load_cpus = machine.load_cpus.as_str();
        Ok(match group {
            "sim" => {
                let bin = match &args.gpu_sim {
                    Some(p) => p.clone(),
                    None => sibling_exe("gpu-sim")?,
                };
                Upstream::Sim(Sim::start(&bin, load_cpus, args.tokens)?)
            }
            "paced" => Upstream::Paced(Paced::start(load_cpus, args.tokens, args.itl_ms)?),
            "lockstep" => Upstream::Lockstep(Lockstep::start(load_cpus)?),
            _ => {
                let files: Vec<(&str, Vec<u8>)> = vec![
                    (
                        "compact.sse",
                        upstreams::sse_answer(args.tokens, JsonStyle::Compact).into_bytes(),
                    ),
                    (
                        "spaced.sse",
                        upstreams::sse_answer(args.tokens, JsonStyle::Spaced).into_bytes(),
                    ),
                    (
                        "unary.json",
                        upstreams::unary_answer(args.tokens).into_bytes(),
                    ),
                    ("probe.bin", vec![b'x'; 64 * 1024]),
                ];
                Upstream::Nginx(Nginx::start(&machine.dir.join("nginx"), load_cpus, &files)?)
            }
        })
    }

    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Upstream::Sim(s) => s.addr,
            Upstream::Nginx(n) => n.addr,
            Upstream::Paced(p) => p.addr,
            Upstream::Lockstep(l) => l.addr,
        }
    }
}

/// One group: its upstream, an Envoy per setup (and the callback counter's), then its cases.
fn run_group(args: &Args, machine: &Machine, group: &'static str) -> Result<Vec<CaseResult>> {
    let group_cases = cases(group, args);
    if group_cases.is_empty() {
        return Ok(Vec::new());
    }
    let mut upstream = Upstream::start(group, args, machine)?;
    eprintln!("bench: group {group}: upstream on {}", upstream.addr());
    let setups = setups_for(group, args);
    let mut envoys: BTreeMap<String, Envoy> = BTreeMap::new();
    for s in setups.iter().chain([&counter_setup()]) {
        envoys.insert(
            s.key.clone(),
            start_envoy(
                s,
                upstream.addr(),
                args.noop_wasm(),
                &args.variant_config,
                &machine.envoy_cpus,
            )?,
        );
    }
    let mut results = Vec::new();
    for case in group_cases {
        let mut run = CaseRun {
            args,
            machine,
            case: &case,
            setups: &setups,
            envoys: &mut envoys,
            upstream: &mut upstream,
        };
        results.push(run.run()?);
    }
    Ok(results)
}

/// One case on the Envoys of its group.
struct CaseRun<'a> {
    args: &'a Args,
    machine: &'a Machine,
    case: &'a Case,
    /// The timed setups (the callback counter runs beside them).
    setups: &'a [Setup],
    envoys: &'a mut BTreeMap<String, Envoy>,
    upstream: &'a mut Upstream,
}

impl CaseRun<'_> {
    fn run(&mut self) -> Result<CaseResult> {
        let (args, case) = (self.args, self.case);
        let bodies = self.write_bodies()?;
        let mut load = Load {
            args,
            machine: self.machine,
            case,
            envoys: self.envoys,
            upstream: self.upstream,
            bodies,
            log: self.machine.dir.join("h2load.log"),
        };
        let (n, c) = load.calibrate(self.setups)?;
        if case.lockstep.is_some() {
            eprintln!(
                "bench: case {}: {n} requests per run ({c} lockstep streams, {} requests each in \
                 turn), {} rounds",
                case.name,
                n / u64::from(c),
                args.rounds
            );
        } else {
            eprintln!(
                "bench: case {}: {} requests per run (h2load -c {c}), {} rounds",
                case.name, n, args.rounds
            );
        }
        let callbacks = Some(load.count_callbacks(n, c)?);
        let probe_before: BTreeMap<String, (u64, u64, u64)> = self
            .setups
            .iter()
            .filter(|s| s.key.starts_with("probe:"))
            .map(|s| Ok((s.key.clone(), probe_counters(&load.envoys[&s.key])?)))
            .collect::<Result<_>>()?;
        let runs = load.rounds(self.setups, n, c)?;
        for (key, envoy) in self.envoys.iter_mut() {
            if !envoy.is_running() {
                bail!("Envoy {key} died during the bench:\n{}", envoy.log());
            }
        }
        let mut probe_calls = BTreeMap::new();
        for (key, (r0, c0, b0)) in probe_before {
            let (r1, c1, b1) = probe_counters(&self.envoys[&key])?;
            let calls = (c1 - c0) as f64;
            probe_calls.insert(
                key,
                (
                    calls / (r1 - r0).max(1) as f64,
                    (b1 - b0) as f64 / calls.max(1.0),
                ),
            );
        }
        self.report_tokens()?;
        Ok(CaseResult {
            name: case.name.clone(),
            group: case.group,
            what: case.what.clone(),
            events: case.events,
            setups: self.setups.to_vec(),
            runs,
            callbacks,
            probe_calls,
        })
    }

    /// Each setup's request body, written for h2load: the case's, with `stream_options` where
    /// its client asks. By setup key: (file, what the client asks).
    fn write_bodies(&self) -> Result<BTreeMap<String, (PathBuf, UsageAsk)>> {
        let mut bodies = BTreeMap::new();
        for s in self.setups.iter().chain([&counter_setup()]) {
            let path = self.machine.dir.join(format!(
                "{}-{}.json",
                self.case.name,
                s.key.replace(':', "_")
            ));
            std::fs::write(&path, body_asking(&self.case.body, s.ask))?;
            bodies.insert(s.key.clone(), (path, s.ask));
        }
        Ok(bodies)
    }

    /// Sanity: llm-pulse did measure the traffic, with input tokens only where the worker sent
    /// usage (asked by the filter or by the client).
    fn report_tokens(&self) -> Result<()> {
        for s in self.setups.iter().filter(|s| s.is_pulse()) {
            let e = &self.envoys[&s.key];
            eprintln!(
                "bench: {} has counted {} output and {} input tokens so far",
                s.label,
                counter_sum(e, "output_tokens_total")?,
                counter_sum(e, "input_sequence_tokens_total")?
            );
        }
        Ok(())
    }
}

/// Loads the Envoys of one case.
struct Load<'a> {
    args: &'a Args,
    machine: &'a Machine,
    case: &'a Case,
    envoys: &'a BTreeMap<String, Envoy>,
    upstream: &'a mut Upstream,
    bodies: BTreeMap<String, (PathBuf, UsageAsk)>,
    log: PathBuf,
}

impl Load<'_> {
    /// `n` requests on `c` connections (a lockstep run: `c` streams, n / c requests each in
    /// turn), on the Envoy of each key; several keys (`--together`) load those Envoys at the
    /// same time.
    fn on(&mut self, keys: &[&str], n: u64, c: u32, extra: &[String]) -> Result<Vec<Run>> {
        let envoys = self.envoys;
        let envoy = |key: &str| {
            envoys
                .get(key)
                .ok_or_else(|| anyhow!("no Envoy for setup {key}"))
        };
        if let Some(style) = self.case.lockstep {
            let Upstream::Lockstep(ls) = &mut *self.upstream else {
                bail!(
                    "case {}: the lockstep process is not running",
                    self.case.name
                );
            };
            // Pinned: Envoy alone on CPU 0 (envoy_bench).
            let envoy_cpu = (!self.machine.load_cpus.is_empty()).then_some(0);
            let targets: Vec<&Envoy> = keys.iter().map(|k| envoy(k)).collect::<Result<_>>()?;
            let asks: Vec<UsageAsk> = keys.iter().map(|k| self.bodies[*k].1).collect();
            let load = LockstepLoad {
                streams: c,
                batches: n / u64::from(c),
                tokens: self.args.tokens,
                style,
            };
            return run_lockstep(ls, &targets, envoy_cpu, &load, &asks);
        }
        let mut headers = self.case.headers.clone();
        headers.extend_from_slice(extra);
        let h2load = &H2load {
            bin: &self.machine.h2load,
            cpus: &self.machine.load_cpus,
        };
        // Several Envoys (--together): one h2load each, all at once, each with its own
        // request log; each run reads its own Envoy's CPU around it.
        std::thread::scope(|scope| {
            let runs: Vec<_> = keys
                .iter()
                .map(|key| {
                    let (headers, body_path) = (&headers, &self.bodies[*key].0);
                    let log = self
                        .log
                        .with_extension(format!("{}.log", key.replace(':', "_")));
                    let envoy = envoy(key);
                    scope.spawn(move || run_h2load(h2load, envoy?, body_path, &log, n, c, headers))
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().map_err(|_| anyhow!("an h2load thread panicked"))?)
                .collect()
        })
    }

    /// One Envoy's run.
    fn one(&mut self, key: &str, n: u64, c: u32, extra: &[String]) -> Result<Run> {
        self.on(&[key], n, c, extra)?
            .pop()
            .ok_or_else(|| anyhow!("no run"))
    }

    /// Warm-up on every Envoy (connections, VM, V8's tiers, metric ids); calibrates the run
    /// length on the slowest setup so every run of the case does the same number of requests:
    /// (requests per run, connections).
    fn calibrate(&mut self, setups: &[Setup]) -> Result<(u64, u32)> {
        let args = self.args;
        let all: Vec<Setup> = setups.iter().cloned().chain([counter_setup()]).collect();
        if self.case.lockstep.is_some() {
            // Per Envoy one batch (every stream one request) to warm up (the first opens the
            // connections), then one timed: the slowest sets the batches per run.
            let streams = args.lockstep_streams;
            let mut slowest = 0.0f64;
            for s in &all {
                self.one(&s.key, u64::from(streams), streams, &[])?;
                let w = self.one(&s.key, u64::from(streams), streams, &[])?;
                slowest = slowest.max(w.seconds);
            }
            let batches = match args.lockstep_batches {
                0 => ((args.seconds / slowest.max(1e-3)).round() as u64).max(1),
                b => b,
            };
            Ok((u64::from(streams) * batches, streams))
        } else if self.case.paced {
            let streams = u64::from(args.streams);
            for s in &all {
                self.one(&s.key, streams, args.streams, &["x-bench-tokens: 4".into()])?;
            }
            Ok((streams, args.streams))
        } else {
            let mut slowest = f64::MAX;
            for s in &all {
                let w = self.one(
                    &s.key,
                    u64::from(args.concurrency) * 40,
                    args.concurrency,
                    &[],
                )?;
                slowest = slowest.min(w.rps);
            }
            let n = ((slowest * args.seconds) as u64).max(u64::from(args.concurrency) * 50);
            Ok((n, args.concurrency))
        }
    }

    /// Callbacks per request, all and response body ones: one run of the counter (not timed).
    fn count_callbacks(&mut self, n: u64, c: u32) -> Result<(f64, f64)> {
        let envoys = self.envoys;
        let e = &envoys["e"];
        let (r0, c0, b0) = probe_counters(e)?;
        self.one("e", n, c, &[])?;
        let (r1, c1, b1) = probe_counters(e)?;
        let reqs = (r1 - r0).max(1) as f64;
        Ok(((c1 - c0) as f64 / reqs, (b1 - b0) as f64 / reqs))
    }

    /// The timed rounds: every setup once per round, the order rotated each round (with
    /// `--together`, all loaded at once); runs by setup key, in round order.
    fn rounds(&mut self, setups: &[Setup], n: u64, c: u32) -> Result<BTreeMap<String, Vec<Run>>> {
        let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        for round in 0..self.args.rounds {
            // `--together`: every setup loaded at once, one run per round.
            let together: Vec<Run> = if self.args.together && self.case.group != "probe" {
                let keys: Vec<&str> = setups.iter().map(|s| s.key.as_str()).collect();
                self.on(&keys, n, c, &[])?
            } else {
                Vec::new()
            };
            for k in 0..setups.len() {
                let i = (round + k) % setups.len();
                let s = &setups[i];
                let r = match together.get(i) {
                    Some(r) => r.clone(),
                    None => self.one(&s.key, n, c, &[])?,
                };
                eprintln!(
                    "bench:   round {round} {}: {:.0} req/s p50 {:.0} µs p99 {:.0} µs cpu {:.1} µs/req{}",
                    s.label,
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.cpu_us_per_request(),
                    busy(&r)
                );
                runs.entry(s.key.clone()).or_default().push(r);
            }
        }
        Ok(runs)
    }
}

/// Lockstep: how busy Envoy and the lockstep process were (Envoy saturated is the point of the
/// group; a busy client means Envoy waited for it); empty for other runs.
fn busy(r: &Run) -> String {
    let Some(client) = r.client_cpu_s else {
        return String::new();
    };
    format!(
        " (Envoy busy {:.0} %, lockstep process {:.0} %{})",
        r.cpu_s / r.seconds * 100.0,
        client / r.seconds * 100.0,
        match r.envoy_cpu_others {
            Some((others, steal)) => format!(
                ", Envoy's CPU besides Envoy {:.0} % and stolen {:.0} %",
                others / r.seconds * 100.0,
                steal / r.seconds * 100.0
            ),
            None => String::new(),
        }
    )
}

/// The sum of every series of llm-pulse's counter `name` in `envoy` (its admin `/stats`).
fn counter_sum(envoy: &Envoy, name: &str) -> Result<u64> {
    let stats = envoy.admin_get(&format!("/stats?filter={name}"))?;
    Ok(stats
        .lines()
        .filter(|l| l.split(": ").next().is_some_and(|k| k.contains(name)))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum())
}

/// `bench_probe_*` counters of a probe Envoy: (requests, calls, bytes).
fn probe_counters(envoy: &Envoy) -> Result<(u64, u64, u64)> {
    let stats = envoy.admin_get("/stats?filter=bench_probe_")?;
    let get = |name: &str| {
        stats
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(": ")?;
                k.ends_with(name).then(|| v.trim().parse::<u64>().ok())?
            })
            .unwrap_or(0)
    };
    Ok((
        get("bench_probe_requests"),
        get("bench_probe_calls"),
        get("bench_probe_bytes"),
    ))
}
