//! `bench`: what llm-pulse costs, measured (`scripts/bench` builds and runs it; see
//! `docs/benchmarks.md`). Two parts:
//!
//! - `envoy`: Envoys on this machine, `--concurrency 1`, pinned to CPU 0: (a) without a wasm
//!   filter, (b) with the no-op proxy-wasm filter of `bench/noop-filter`, (c) with llm-pulse
//!   (`usage_stats` off, so every setup gets the same bytes from the worker), (d) with the same module as (b) in its "floor" mode (copies each response chunk into the
//!   VM, reads the clock, records one histogram sample per SSE event: the host calls any
//!   per-token meter must make), (m) with llm-pulse's native dynamic module (`module/`, the
//!   same core as (c) with no VM; `usage_stats` off too), loaded in turn (interleaved, order rotated per round) by
//!   `h2load` (the lockstep group by its own client). Case groups, each with its own upstream
//!   (pinned with the load generator on the other CPUs):
//!   - `sim`: `gpu-sim` with zero delay (many events per read, whatever the load allows);
//!   - `static`: nginx serving recorded answers as static files (the whole answer at once:
//!     many events per read), JSON compact and with Python's `", "`/`": "` separators, unary,
//!     and a 100 KiB prompt;
//!   - `paced`: many concurrent streams (`--streams`, default 200) at `--itl-ms` (20) from a
//!     paced worker (`upstreams.rs`), one event per write: batched arrivals (every stream on one
//!     tick, as a GPU's decode step) and independent ones (a timer per stream);
//!   - `lockstep`: `--lockstep-streams` (32) streams where the worker writes each next event
//!     only when the client has received the previous one through Envoy (`lockstep.rs`: worker
//!     and client in one process): one event per read by construction, no timer, Envoy busy;
//!   - `probe`: the price of each host-call kind in Envoy's V8 (probe modes of the no-op
//!     module, `bench/noop-filter`): CPU over the no-op divided by the calls it made.
//!
//!   `--usage` adds llm-pulse with `usage_stats` final and continuous, and (c) with a client
//!   that asks for the same usage itself, in the groups whose worker answers `stream_options`
//!   as vLLM does (sim, paced, lockstep): what the request edit and the cuts cost over (c).
//!
//!   Per run: Envoy CPU (deltas of its threads' `/proc/<pid>/task/*/schedstat`, ns); medians over rounds; per
//!   case the CPU per request and per SSE event of llm-pulse over the no-op and over the floor.
//!   A callback-counting probe runs once per case beside them: response body callbacks per
//!   request, so events per read are known, not assumed.
//! - `micro`: the real `.wasm` files in the wasmtime harness (`wasm_host`): time per SSE event,
//!   per request and per 100 KiB request body, llm-pulse minus the no-op filter on the same
//!   harness calls (so the harness's own cost cancels out), wasm memory per open stream, and
//!   the host calls llm-pulse makes per event and per request, by kind (counted, not timed).
//!
//! A benchmark, not a test: it asserts nothing about speed.

mod lockstep;
mod upstreams;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use host_tests::envoy::{Artifact, Envoy, EnvoyOptions};
use upstreams::{JsonStyle, UsageAsk};

const USAGE: &str = "\
usage: bench [options]

options:
  --noop-wasm PATH     the no-op filter's .wasm (required; scripts/bench builds it)
  --rounds N           interleaved rounds per case (default 5)
  --seconds S          target length of one load run in seconds (default 2.5; paced runs
                       last as long as their streams: tokens x ITL)
  --concurrency N      h2load connections, one request in flight each (default 8)
  --tokens N           output tokens per response (default 256)
  --streams N          paced cases: concurrent streams, one run = one request each (default 200)
  --itl-ms N           paced cases: inter-token latency (default 20)
  --lockstep-streams N lockstep cases: concurrent streams (default 32)
  --lockstep-batches N lockstep cases: requests per stream per run, one after another
                       (default 0: as many as make a run last about --seconds, calibrated
                       on the warm-up); cheap enough for --rounds 21
  --setups A,B         sim/static/paced/lockstep groups: only these of the setups a, b, c, d
                       (and, with --usage, c-final, c-continuous, c-asked,
                       c-asked-continuous; variants always run); with --together, fewer
                       Envoys share the CPU
  --usage              sim, paced and lockstep groups (their workers answer stream_options as
                       vLLM does): also llm-pulse with usage_stats final (c-final) and
                       continuous (c-continuous) beside (c), which runs usage_stats off, and
                       (c) with the client asking include_usage itself (c-asked) or continuous
                       usage too (c-asked-continuous): the worker's extra bytes without a cut;
                       prints their CPU over (c); `--only calls`: host calls per mode
  --together           sim, static, paced and lockstep cases: load every setup at the same
                       time in each round (each Envoy its own streams or h2load, all on
                       Envoy's CPU): whatever slows the machine during a run slows every
                       setup alike, so paired differences resolve far finer; a round lasts
                       about (setups x --seconds)
  --only PART          envoy | micro | calls | sim | static | paced | lockstep | probe: one
                       part, or one Envoy group; `calls`: llm-pulse's host calls, VM memory
                       per stream and .wasm size (wasmtime, counted, untimed)
  --cases A,B          only these Envoy cases (names as printed: sim-stream, static-spaced, ...)
  --probes A,B         probe group: only these probe modes (clock, get_buffer:1024, ...)
  --variant NAME=PATH  an extra setup in the sim/static/paced groups: another llm-pulse
                       .wasm (an ablation build, an older commit); repeatable
  --variant-config J   the plugin configuration of every --variant (default {}: a build
                       with usage_stats runs it as final; (c) runs usage_stats off)
  --gpu-sim PATH       the gpu-sim binary of the sim group (default: beside this binary)
  --json PATH          also write the raw figures as JSON
  --no-pin             do not pin processes with taskset

  --serve-paced        (internal) run the paced upstream: --tokens, --itl-ms
  --serve-lockstep     (internal) run the lockstep worker and client (commands on stdin)
";

/// Envoy case groups, in the order they run.
const GROUPS: [&str; 5] = ["sim", "static", "paced", "lockstep", "probe"];

struct Args {
    noop_wasm: PathBuf,
    rounds: usize,
    seconds: f64,
    concurrency: u32,
    tokens: u32,
    streams: u32,
    itl_ms: u64,
    lockstep_streams: u32,
    /// 0: calibrated on the warm-up to last about `seconds`.
    lockstep_batches: u64,
    /// Lockstep cases: every setup loaded at the same time in each round.
    together: bool,
    /// `--setups`: only these of the standard setups (a, b, c, d, and the usage ones);
    /// variants always run.
    setups: Option<Vec<String>>,
    /// `--usage`: the usage_stats setups beside (c).
    usage: bool,
    envoy: bool,
    micro: bool,
    groups: Vec<&'static str>,
    cases: Option<Vec<String>>,
    probes: Option<Vec<String>>,
    /// `--only calls`: the host-call counts alone.
    calls_only: bool,
    variants: Vec<(String, PathBuf)>,
    variant_config: String,
    gpu_sim: Option<PathBuf>,
    json: Option<PathBuf>,
    pin: bool,
    serve_paced: bool,
    serve_lockstep: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        noop_wasm: PathBuf::new(),
        rounds: 5,
        seconds: 2.5,
        concurrency: 8,
        tokens: 256,
        streams: 200,
        itl_ms: 20,
        lockstep_streams: 32,
        lockstep_batches: 0,
        together: false,
        setups: None,
        usage: false,
        envoy: true,
        micro: true,
        groups: GROUPS.to_vec(),
        cases: None,
        probes: None,
        calls_only: false,
        variants: Vec::new(),
        variant_config: "{}".to_string(),
        gpu_sim: None,
        json: None,
        pin: true,
        serve_paced: false,
        serve_lockstep: false,
    };
    let list = |v: String| v.split(',').map(|s| s.trim().to_string()).collect();
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
            "--streams" => args.streams = value()?.parse()?,
            "--itl-ms" => args.itl_ms = value()?.parse()?,
            "--lockstep-streams" => args.lockstep_streams = value()?.parse()?,
            "--lockstep-batches" => args.lockstep_batches = value()?.parse()?,
            "--together" => args.together = true,
            "--setups" => args.setups = Some(list(value()?)),
            "--usage" => args.usage = true,
            "--variant-config" => args.variant_config = value()?,
            "--only" => match value()?.as_str() {
                "envoy" => args.micro = false,
                "micro" => args.envoy = false,
                "calls" => {
                    args.envoy = false;
                    args.calls_only = true;
                }
                other => match GROUPS.iter().find(|g| **g == other) {
                    Some(g) => {
                        args.micro = false;
                        args.groups = vec![*g];
                    }
                    None => {
                        bail!(
                            "--only: want envoy, micro, calls, sim, static, paced, lockstep or \
                             probe, got {other}"
                        )
                    }
                },
            },
            "--cases" => args.cases = Some(list(value()?)),
            "--probes" => args.probes = Some(list(value()?)),
            "--gpu-sim" => args.gpu_sim = Some(PathBuf::from(value()?)),
            "--variant" => {
                let v = value()?;
                let (name, path) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--variant wants NAME=PATH, got {v}"))?;
                if !Path::new(path).is_file() {
                    bail!("--variant {name}: {path} is missing");
                }
                args.variants.push((name.to_string(), PathBuf::from(path)));
            }
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--no-pin" => args.pin = false,
            "--serve-paced" => args.serve_paced = true,
            "--serve-lockstep" => args.serve_lockstep = true,
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    if args.serve_paced || args.serve_lockstep {
        return Ok(args);
    }
    if !args.noop_wasm.is_file() {
        bail!(
            "--noop-wasm {} is missing (scripts/bench builds bench/noop-filter)",
            args.noop_wasm.display()
        );
    }
    if args.rounds == 0 || args.streams == 0 || args.tokens == 0 || args.lockstep_streams == 0 {
        bail!("--rounds, --streams, --lockstep-streams and --tokens must be at least 1");
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if args.serve_paced {
        return upstreams::serve_paced(args.tokens, Duration::from_millis(args.itl_ms.max(1)));
    }
    if args.serve_lockstep {
        return lockstep::serve_lockstep();
    }
    let mut json = serde_json::Map::new();
    if args.envoy {
        let results = envoy_bench(&args)?;
        json.insert("envoy".into(), results);
    }
    if args.micro {
        let results = micro::run(&args.noop_wasm, args.tokens, args.calls_only, args.usage)?;
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

/// What runs in one Envoy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    /// No wasm filter at all.
    None,
    /// llm-pulse (`host_tests::artifacts::wasm_path`, or `LLM_PULSE_WASM`) with this
    /// `usage_stats`.
    Pulse(&'static str),
    /// `bench/noop-filter` with this plugin configuration.
    Module(String),
    /// Another build of llm-pulse (`--variant`).
    PulseAt(PathBuf),
    /// llm-pulse's native dynamic module (`host_tests::artifacts::module_path`, or
    /// `LLM_PULSE_MODULE`) with this `usage_stats`.
    Native(&'static str),
}

#[derive(Clone, Debug)]
struct Setup {
    key: String,
    label: String,
    filter: Filter,
    /// What the client asks for in `stream_options` (streamed requests only).
    ask: UsageAsk,
}

impl Setup {
    fn new(key: &str, label: &str, filter: Filter) -> Setup {
        Setup {
            key: key.to_string(),
            label: label.to_string(),
            filter,
            ask: UsageAsk::None,
        }
    }

    fn asking(self, ask: UsageAsk) -> Setup {
        Setup { ask, ..self }
    }

    /// Whether llm-pulse runs in it (its counters are read after each case).
    fn is_pulse(&self) -> bool {
        matches!(
            self.filter,
            Filter::Pulse(_) | Filter::PulseAt(_) | Filter::Native(_)
        )
    }
}

fn standard_setups() -> Vec<Setup> {
    vec![
        Setup::new("a", "(a) no wasm", Filter::None),
        Setup::new("b", "(b) no-op wasm", Filter::Module("{}".into())),
        // usage_stats off: the worker sends every setup the same bytes; the usage edits are
        // measured apart (--usage).
        Setup::new("c", "(c) llm-pulse", Filter::Pulse("off")),
        Setup::new(
            "d",
            "(d) host-call floor",
            Filter::Module("\"floor\"".into()),
        ),
        // The same core as (c), as a native dynamic module: no VM.
        Setup::new("m", "(m) llm-pulse module", Filter::Native("off")),
    ]
}

/// `--usage`: llm-pulse's usage_stats modes, and (c) with the client itself asking what the
/// modes ask (the same bytes from the worker, nothing cut), all against (c).
fn usage_setups() -> Vec<Setup> {
    vec![
        Setup::new(
            "c-final",
            "(c-final) llm-pulse, usage_stats final",
            Filter::Pulse("final"),
        ),
        Setup::new(
            "c-continuous",
            "(c-continuous) llm-pulse, usage_stats continuous",
            Filter::Pulse("continuous"),
        ),
        Setup::new(
            "c-asked",
            "(c-asked) llm-pulse, off, the client asks include_usage",
            Filter::Pulse("off"),
        )
        .asking(UsageAsk::Final),
        Setup::new(
            "c-asked-continuous",
            "(c-asked-continuous) llm-pulse, off, the client asks continuous usage",
            Filter::Pulse("off"),
        )
        .asking(UsageAsk::Continuous),
    ]
}

/// Groups whose worker answers `stream_options` (nginx serves its files whatever is asked).
fn reacts_to_usage(group: &str) -> bool {
    matches!(group, "sim" | "paced" | "lockstep")
}

/// Runs once per case beside the others, not timed: callbacks per request.
fn counter_setup() -> Setup {
    Setup::new(
        "e",
        "(e) callback counter",
        Filter::Module("\"probe:callbacks\"".into()),
    )
}

/// The probe modes of `bench/noop-filter` (its doc says what each does).
const PROBES: &[&str] = &[
    "clock",
    "record_metric",
    "increment_metric",
    "get_property",
    "set_property",
    "header",
    "get_buffer:64",
    "get_buffer:1024",
    "get_buffer:16384",
];

struct Case {
    name: String,
    group: &'static str,
    what: String,
    body: Vec<u8>,
    /// Extra request headers (which file nginx serves, the paced worker's pacing).
    headers: Vec<String>,
    /// SSE events per response (0: unary).
    events: u32,
    /// A paced case: `--streams` connections, one request each, per run.
    paced: bool,
    /// A lockstep case (the lockstep process is the client, not h2load), with its JSON.
    lockstep: Option<JsonStyle>,
}

/// A chat request; a streamed one with the `stream_options` that asks for `ask`.
fn chat_request(content: &str, stream: bool, tokens: u32, ask: UsageAsk) -> Vec<u8> {
    let mut body = serde_json::json!({
        "model": "bench-model",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        "max_tokens": tokens,
    });
    if let (true, Some(options)) = (stream, ask.stream_options()) {
        body["stream_options"] = options;
    }
    body.to_string().into_bytes()
}

fn cases(group: &'static str, args: &Args) -> Vec<Case> {
    let t = args.tokens;
    let tiny = |stream| chat_request("hello", stream, t, UsageAsk::None);
    // 100 KiB of prompt: 20,480 five-byte words.
    let big = || chat_request(&"word ".repeat(100 * 1024 / 5), true, t, UsageAsk::None);
    let file = |name: &str| vec![format!("x-bench-file: {name}")];
    let case = |name: &str, what: String, body, headers, events, paced| Case {
        name: name.to_string(),
        group,
        what,
        body,
        headers,
        events,
        paced,
        lockstep: None,
    };
    let all = match group {
        "sim" => vec![
            case(
                "sim-stream",
                format!("gpu-sim, no delay, chat stream, {t} tokens"),
                tiny(true),
                vec![],
                t + 2,
                false,
            ),
            case(
                "sim-unary",
                format!("gpu-sim, chat unary, {t} tokens"),
                tiny(false),
                vec![],
                0,
                false,
            ),
            case(
                "sim-prompt100k",
                format!("gpu-sim, no delay, chat stream, {t} tokens, 100 KiB prompt"),
                big(),
                vec![],
                t + 2,
                false,
            ),
        ],
        "static" => vec![
            case(
                "static-compact",
                format!("nginx static file, compact JSON, {t} tokens"),
                tiny(true),
                file("compact.sse"),
                t + 2,
                false,
            ),
            case(
                "static-spaced",
                format!(
                    "nginx static file, JSON with \", \" / \": \" (Python json.dumps), {t} tokens"
                ),
                tiny(true),
                file("spaced.sse"),
                t + 2,
                false,
            ),
            case(
                "static-unary",
                format!("nginx static file, chat unary, {t} tokens"),
                tiny(false),
                file("unary.json"),
                0,
                false,
            ),
            case(
                "static-prompt100k",
                format!("nginx static file, compact JSON, {t} tokens, 100 KiB prompt"),
                big(),
                file("compact.sse"),
                t + 2,
                false,
            ),
        ],
        "paced" => vec![
            case(
                "paced-batched",
                format!(
                    "{} streams, {t} tokens at {} ms ITL, all on one tick (a decode step)",
                    args.streams, args.itl_ms
                ),
                tiny(true),
                vec!["x-bench-pacing: batched".into()],
                t + 2,
                true,
            ),
            case(
                "paced-independent",
                format!(
                    "{} streams, {t} tokens at {} ms ITL, a timer per stream",
                    args.streams, args.itl_ms
                ),
                tiny(true),
                vec!["x-bench-pacing: independent".into()],
                t + 2,
                true,
            ),
            case(
                "paced-spaced",
                "as paced-independent, JSON with \", \" / \": \" (Python json.dumps)".to_string(),
                tiny(true),
                vec![
                    "x-bench-pacing: independent".into(),
                    "x-bench-json: spaced".into(),
                ],
                t + 2,
                true,
            ),
        ],
        "lockstep" => [
            ("lockstep-compact", JsonStyle::Compact, "compact JSON"),
            (
                "lockstep-spaced",
                JsonStyle::Spaced,
                "JSON with \", \" / \": \" (Python json.dumps)",
            ),
        ]
        .into_iter()
        .map(|(name, style, json)| Case {
            lockstep: Some(style),
            ..case(
                name,
                format!(
                    "{} streams in lockstep (each next event written when the client has the \
                     previous one), {t} tokens, {json}; req/s and latencies are the lockstep \
                     client's",
                    args.lockstep_streams
                ),
                tiny(true),
                vec![],
                t + 2,
                false,
            )
        })
        .collect(),
        _ => vec![case(
            "probe",
            "nginx static 64 KiB answer; the probe modes' host calls per request".into(),
            tiny(false),
            file("probe.bin"),
            0,
            false,
        )],
    };
    all.into_iter()
        .filter(|c| {
            args.cases
                .as_ref()
                .is_none_or(|only| only.contains(&c.name))
        })
        .collect()
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
    /// Lockstep runs: CPU seconds of the lockstep process (worker and client) in the run.
    client_cpu_s: Option<f64>,
    /// Lockstep runs with Envoy pinned: seconds Envoy's CPU spent on anything but Envoy's
    /// threads (other processes, interrupts: `/proc/stat` ticks minus Envoy's schedstat) and
    /// seconds stolen by the hypervisor, during the run.
    envoy_cpu_others: Option<(f64, f64)>,
    /// Response body bytes the client received (h2load's `data`; the lockstep client's count).
    bytes: u64,
}

impl Run {
    fn cpu_us_per_request(&self) -> f64 {
        self.cpu_s / self.requests as f64 * 1e6
    }

    fn bytes_per_request(&self) -> f64 {
        self.bytes as f64 / self.requests as f64
    }
}

/// `body` as a client asking for `ask` sends it (streamed requests only).
fn body_asking(body: &[u8], ask: UsageAsk) -> Vec<u8> {
    let Some(options) = ask.stream_options() else {
        return body.to_vec();
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) if v["stream"] == true => {
            v["stream_options"] = options;
            v.to_string().into_bytes()
        }
        _ => body.to_vec(),
    }
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

/// The upstream of a group, kept alive while its Envoys run.
enum Upstream {
    Sim(Sim),
    Nginx(upstreams::Nginx),
    Paced(upstreams::Paced),
    Lockstep(lockstep::Lockstep),
}

impl Upstream {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Upstream::Sim(s) => s.addr,
            Upstream::Nginx(n) => n.addr,
            Upstream::Paced(p) => p.addr,
            Upstream::Lockstep(l) => l.addr,
        }
    }
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

fn start_envoy(
    setup: &Setup,
    upstream: std::net::SocketAddr,
    noop: &Path,
    variant_config: &str,
    pin_cpus: &str,
) -> Result<Envoy> {
    let opts = EnvoyOptions {
        concurrency: 1,
        with_filter: setup.filter != Filter::None,
        artifact: match &setup.filter {
            Filter::Native(_) => Artifact::Module,
            _ => Artifact::Wasm,
        },
        wasm_override: match &setup.filter {
            Filter::Module(_) => Some(noop.to_path_buf()),
            Filter::PulseAt(path) => Some(path.clone()),
            Filter::None | Filter::Pulse(_) | Filter::Native(_) => None,
        },
        plugin_config: match &setup.filter {
            Filter::Module(config) => config.clone(),
            Filter::Pulse(usage) | Filter::Native(usage) => {
                format!(r#"{{"usage_stats":"{usage}"}}"#)
            }
            Filter::PulseAt(_) => variant_config.to_string(),
            Filter::None => "{}".to_string(),
        },
        stats_flush: Duration::from_secs(5),
        log_level: "warn".to_string(),
        ..EnvoyOptions::new(upstream)
    };
    let envoy = Envoy::start(&opts).with_context(|| format!("starting {}", setup.label))?;
    if !pin_cpus.is_empty() {
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", pin_cpus, &envoy.pid().to_string()])
            .stdout(Stdio::null())
            .status()?
            .success();
        if !ok {
            bail!("taskset could not pin Envoy {}", envoy.pid());
        }
    }
    eprintln!(
        "bench: {} on {} (pid {})",
        setup.label,
        envoy.listener,
        envoy.pid()
    );
    Ok(envoy)
}

/// The dynamic module (m) beside the `.wasm` (c): Envoy CPU over no filter at all (a).
fn module_table(out: &mut String, results: &[&CaseResult]) {
    let rows: Vec<&&CaseResult> = results
        .iter()
        .filter(|r| r.runs.contains_key("m") && r.runs.contains_key("a"))
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "\nThe dynamic module (m) and the .wasm (c): Envoy CPU over no filter (a), per request \
         and per SSE event; medians of the per-round paired differences [min, max]\n\n",
    );
    out.push_str(
        "| case | m−a µs/req | c−a µs/req | m−a µs/event | c−a µs/event | c−m µs/event |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    let range = |d: Option<(f64, f64, f64)>, per: f64| match d {
        Some((m, lo, hi)) if per > 0.0 => {
            format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
        }
        _ => "—".to_string(),
    };
    for r in rows {
        let ev = f64::from(r.events);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            range(r.diff("m", "a"), 1.0),
            range(r.diff("c", "a"), 1.0),
            range(r.diff("m", "a"), ev),
            range(r.diff("c", "a"), ev),
            range(r.diff("c", "m"), ev),
        ));
    }
}

/// The figures of one case.
struct CaseResult {
    name: String,
    group: &'static str,
    what: String,
    events: u32,
    setups: Vec<Setup>,
    /// Runs per setup key, in round order.
    runs: BTreeMap<String, Vec<Run>>,
    /// From the callback counter: (callbacks, response body callbacks) per request.
    callbacks: Option<(f64, f64)>,
    /// Probe setups: (calls per request, bytes per call).
    probe_calls: BTreeMap<String, (f64, f64)>,
}

impl CaseResult {
    fn cpu(&self, key: &str) -> Option<f64> {
        self.runs
            .get(key)
            .map(|r| median(r.iter().map(Run::cpu_us_per_request)))
    }

    /// Median and range over rounds of the paired difference `x − y` (same round, adjacent
    /// runs), µs per request.
    fn diff(&self, x: &str, y: &str) -> Option<(f64, f64, f64)> {
        let (rx, ry) = (self.runs.get(x)?, self.runs.get(y)?);
        let d: Vec<f64> = rx
            .iter()
            .zip(ry)
            .map(|(a, b)| a.cpu_us_per_request() - b.cpu_us_per_request())
            .collect();
        let lo = d.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = d.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((median(d.into_iter()), lo, hi))
    }

    /// Median and range over rounds of the paired ratio `x / y` of CPU per request.
    fn ratio(&self, x: &str, y: &str) -> Option<(f64, f64, f64)> {
        let (rx, ry) = (self.runs.get(x)?, self.runs.get(y)?);
        let q: Vec<f64> = rx
            .iter()
            .zip(ry)
            .map(|(a, b)| a.cpu_us_per_request() / b.cpu_us_per_request())
            .collect();
        let lo = q.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((median(q.into_iter()), lo, hi))
    }
}

fn envoy_bench(args: &Args) -> Result<serde_json::Value> {
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
    let result = envoy_groups(args, &h2load, &envoy_cpus, &load_cpus, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let results = result?;
    print_tables(&results, args, pin);
    let mut all = serde_json::Map::new();
    for r in &results {
        let mut case = serde_json::Map::new();
        case.insert("what".into(), r.what.clone().into());
        case.insert("sse_events_per_request".into(), r.events.into());
        if let Some((cb, body)) = r.callbacks {
            case.insert("callbacks_per_request".into(), cb.into());
            case.insert("response_body_callbacks_per_request".into(), body.into());
        }
        for s in &r.setups {
            let runs = &r.runs[&s.key];
            let mut v = serde_json::json!({
                "label": s.label,
                "envoy_cpu_us_per_request_median": r.cpu(&s.key),
                "rps_median": median(runs.iter().map(|r| r.rps)),
                "p50_us_median": median(runs.iter().map(|r| r.p50_us)),
                "p99_us_median": median(runs.iter().map(|r| r.p99_us)),
                "body_bytes_per_request_median": median(runs.iter().map(Run::bytes_per_request)),
                "runs": runs.iter().map(|r| serde_json::json!({
                    "rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us,
                    "cpu_s": r.cpu_s, "requests": r.requests, "seconds": r.seconds,
                    "body_bytes": r.bytes,
                    "lockstep_process_cpu_s": r.client_cpu_s,
                    "envoy_cpu_others_s": r.envoy_cpu_others.map(|o| o.0),
                    "envoy_cpu_stolen_s": r.envoy_cpu_others.map(|o| o.1),
                })).collect::<Vec<_>>(),
            });
            if let Some((calls, bytes)) = r.probe_calls.get(&s.key) {
                v["calls_per_request"] = (*calls).into();
                v["bytes_per_call"] = (*bytes).into();
            }
            case.insert(s.key.clone(), v);
        }
        all.insert(r.name.clone(), case.into());
    }
    all.insert("pinned".into(), pin.into());
    all.insert("concurrency".into(), args.concurrency.into());
    Ok(all.into())
}

fn envoy_groups(
    args: &Args,
    h2load: &Path,
    envoy_cpus: &str,
    load_cpus: &str,
    dir: &Path,
) -> Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    for group in &args.groups {
        let group_cases = cases(group, args);
        if group_cases.is_empty() {
            continue;
        }
        let mut upstream = match *group {
            "sim" => {
                let bin = match &args.gpu_sim {
                    Some(p) => p.clone(),
                    None => sibling_exe("gpu-sim")?,
                };
                Upstream::Sim(Sim::start(&bin, load_cpus, args.tokens)?)
            }
            "paced" => Upstream::Paced(upstreams::Paced::start(
                load_cpus,
                args.tokens,
                args.itl_ms,
            )?),
            "lockstep" => Upstream::Lockstep(lockstep::Lockstep::start(load_cpus)?),
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
                Upstream::Nginx(upstreams::Nginx::start(
                    &dir.join("nginx"),
                    load_cpus,
                    &files,
                )?)
            }
        };
        eprintln!("bench: group {group}: upstream on {}", upstream.addr());
        let setups: Vec<Setup> = if *group == "probe" {
            let mut s = vec![
                Setup::new("a", "(a) no wasm", Filter::None),
                Setup::new("b", "(b) no-op wasm", Filter::Module("{}".into())),
            ];
            for p in PROBES {
                if args
                    .probes
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|o| o == p))
                {
                    s.push(Setup::new(
                        &format!("probe:{p}"),
                        &format!("probe {p}"),
                        Filter::Module(format!("\"probe:{p}\"")),
                    ));
                }
            }
            s
        } else {
            let usage = if args.usage && reacts_to_usage(group) {
                usage_setups()
            } else {
                if args.usage {
                    eprintln!(
                        "bench: group {group}: no usage setups (its worker does not read \
                         stream_options)"
                    );
                }
                Vec::new()
            };
            let mut s: Vec<Setup> = standard_setups()
                .into_iter()
                .chain(usage)
                .filter(|s| {
                    args.setups
                        .as_ref()
                        .is_none_or(|only| only.contains(&s.key))
                })
                .collect();
            for (name, path) in &args.variants {
                s.push(Setup::new(
                    &format!("v:{name}"),
                    &format!("(v) {name}"),
                    Filter::PulseAt(path.clone()),
                ));
            }
            s
        };
        let mut envoys: BTreeMap<String, Envoy> = BTreeMap::new();
        for s in setups.iter().chain([&counter_setup()]) {
            envoys.insert(
                s.key.clone(),
                start_envoy(
                    s,
                    upstream.addr(),
                    &args.noop_wasm,
                    &args.variant_config,
                    envoy_cpus,
                )?,
            );
        }
        for case in group_cases {
            results.push(run_case(
                args,
                h2load,
                load_cpus,
                dir,
                &case,
                &setups,
                &mut envoys,
                &mut upstream,
            )?);
        }
        drop(envoys);
        drop(upstream);
    }
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    args: &Args,
    h2load: &Path,
    load_cpus: &str,
    dir: &Path,
    case: &Case,
    setups: &[Setup],
    envoys: &mut BTreeMap<String, Envoy>,
    upstream: &mut Upstream,
) -> Result<CaseResult> {
    // Each setup's request body: the case's, with `stream_options` where its client asks.
    let mut bodies: BTreeMap<String, (PathBuf, UsageAsk)> = BTreeMap::new();
    for s in setups.iter().chain([&counter_setup()]) {
        let path = dir.join(format!("{}-{}.json", case.name, s.key.replace(':', "_")));
        std::fs::write(&path, body_asking(&case.body, s.ask))?;
        bodies.insert(s.key.clone(), (path, s.ask));
    }
    let log = dir.join("h2load.log");
    // n requests on c connections (a lockstep run: c streams, n / c requests each in turn),
    // on the Envoy of each key; several keys (`--together`) load those Envoys at the same time.
    let mut load_on = |keys: &[&str], n: u64, c: u32, extra: &[String]| -> Result<Vec<Run>> {
        if let Some(style) = case.lockstep {
            let Upstream::Lockstep(ls) = &mut *upstream else {
                bail!("case {}: the lockstep process is not running", case.name);
            };
            // Pinned: Envoy alone on CPU 0 (envoy_bench).
            let envoy_cpu = (!load_cpus.is_empty()).then_some(0);
            let targets: Vec<&Envoy> = keys.iter().map(|k| &envoys[*k]).collect();
            let asks: Vec<UsageAsk> = keys.iter().map(|k| bodies[*k].1).collect();
            return run_lockstep(
                ls,
                &targets,
                envoy_cpu,
                c,
                n / u64::from(c),
                args.tokens,
                style,
                &asks,
            );
        }
        let mut headers = case.headers.clone();
        headers.extend_from_slice(extra);
        // Several Envoys (--together): one h2load each, all at once, each with its own
        // request log; each run reads its own Envoy's CPU around it.
        let envoys = &*envoys;
        std::thread::scope(|scope| {
            let runs: Vec<_> = keys
                .iter()
                .map(|key| {
                    let (headers, body_path) = (&headers, &bodies[*key].0);
                    let log = log.with_extension(format!("{}.log", key.replace(':', "_")));
                    scope.spawn(move || {
                        run_h2load(
                            h2load,
                            load_cpus,
                            &envoys[*key],
                            body_path,
                            &log,
                            n,
                            c,
                            headers,
                        )
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().map_err(|_| anyhow!("an h2load thread panicked"))?)
                .collect()
        })
    };
    // One Envoy's run.
    fn one(
        load_on: &mut impl FnMut(&[&str], u64, u32, &[String]) -> Result<Vec<Run>>,
        key: &str,
        n: u64,
        c: u32,
        extra: &[String],
    ) -> Result<Run> {
        load_on(&[key], n, c, extra)?
            .pop()
            .ok_or_else(|| anyhow!("no run"))
    }
    // Warm-up on every Envoy (connections, VM, V8's tiers, metric ids); calibrate the run
    // length on the slowest setup so every run of the case does the same number of requests.
    let (n, c) = if case.lockstep.is_some() {
        // Per Envoy one batch (every stream one request) to warm up (the first opens the
        // connections), then one timed: the slowest sets the batches per run.
        let streams = args.lockstep_streams;
        let mut slowest = 0.0f64;
        for s in setups.iter().chain([&counter_setup()]) {
            one(&mut load_on, &s.key, u64::from(streams), streams, &[])?;
            let w = one(&mut load_on, &s.key, u64::from(streams), streams, &[])?;
            slowest = slowest.max(w.seconds);
        }
        let batches = match args.lockstep_batches {
            0 => ((args.seconds / slowest.max(1e-3)).round() as u64).max(1),
            b => b,
        };
        (u64::from(streams) * batches, streams)
    } else if case.paced {
        let streams = u64::from(args.streams);
        for s in setups.iter().chain([&counter_setup()]) {
            one(
                &mut load_on,
                &s.key,
                streams,
                args.streams,
                &["x-bench-tokens: 4".into()],
            )?;
        }
        (streams, args.streams)
    } else {
        let mut slowest = f64::MAX;
        for s in setups.iter().chain([&counter_setup()]) {
            let w = one(
                &mut load_on,
                &s.key,
                u64::from(args.concurrency) * 40,
                args.concurrency,
                &[],
            )?;
            slowest = slowest.min(w.rps);
        }
        let n = ((slowest * args.seconds) as u64).max(u64::from(args.concurrency) * 50);
        (n, args.concurrency)
    };
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
    // Callbacks per request: one run of the counter (not timed).
    let callbacks = {
        let e = &envoys["e"];
        let (r0, c0, b0) = probe_counters(e)?;
        one(&mut load_on, "e", n, c, &[])?;
        let (r1, c1, b1) = probe_counters(e)?;
        let reqs = (r1 - r0).max(1) as f64;
        Some(((c1 - c0) as f64 / reqs, (b1 - b0) as f64 / reqs))
    };
    let probe_before: BTreeMap<String, (u64, u64, u64)> = setups
        .iter()
        .filter(|s| s.key.starts_with("probe:"))
        .map(|s| Ok((s.key.clone(), probe_counters(&envoys[&s.key])?)))
        .collect::<Result<_>>()?;
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for round in 0..args.rounds {
        // `--together`: every setup loaded at once, one run per round.
        let together: Vec<Run> = if args.together && case.group != "probe" {
            let keys: Vec<&str> = setups.iter().map(|s| s.key.as_str()).collect();
            load_on(&keys, n, c, &[])?
        } else {
            Vec::new()
        };
        for k in 0..setups.len() {
            let s = &setups[(round + k) % setups.len()];
            let r = match together.get((round + k) % setups.len()) {
                Some(r) => r.clone(),
                None => one(&mut load_on, &s.key, n, c, &[])?,
            };
            // Lockstep: how busy Envoy and the lockstep process were (Envoy saturated is the
            // point of the group; a busy client means Envoy waited for it).
            let busy = match r.client_cpu_s {
                Some(client) => format!(
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
                ),
                None => String::new(),
            };
            eprintln!(
                "bench:   round {round} {}: {:.0} req/s p50 {:.0} µs p99 {:.0} µs cpu {:.1} µs/req{busy}",
                s.label,
                r.rps,
                r.p50_us,
                r.p99_us,
                r.cpu_us_per_request()
            );
            runs.entry(s.key.clone()).or_default().push(r);
        }
    }
    for (key, envoy) in envoys.iter_mut() {
        if !envoy.is_running() {
            bail!("Envoy {key} died during the bench:\n{}", envoy.log());
        }
    }
    let mut probe_calls = BTreeMap::new();
    for (key, (r0, c0, b0)) in probe_before {
        let (r1, c1, b1) = probe_counters(&envoys[&key])?;
        let calls = (c1 - c0) as f64;
        probe_calls.insert(
            key,
            (
                calls / (r1 - r0).max(1) as f64,
                (b1 - b0) as f64 / calls.max(1.0),
            ),
        );
    }
    // Sanity: llm-pulse did measure the traffic, with input tokens only where the worker sent
    // usage (asked by the filter or by the client).
    for s in setups.iter().filter(|s| s.is_pulse()) {
        let e = &envoys[&s.key];
        eprintln!(
            "bench: {} has counted {} output and {} input tokens so far",
            s.label,
            counter_sum(e, "output_tokens_total")?,
            counter_sum(e, "input_sequence_tokens_total")?
        );
    }
    Ok(CaseResult {
        name: case.name.clone(),
        group: case.group,
        what: case.what.clone(),
        events: case.events,
        setups: setups.to_vec(),
        runs,
        callbacks,
        probe_calls,
    })
}

fn print_tables(results: &[CaseResult], args: &Args, pin: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nEnvoy end to end: medians of {} rounds; Envoy --concurrency 1{}\n",
        args.rounds,
        if pin {
            ", pinned to CPU 0 (upstream and h2load on the other CPUs)"
        } else {
            ", not pinned"
        }
    ));
    for r in results {
        out.push_str(&format!("\n{}: {}\n", r.name, r.what));
    }
    out.push_str(
        "\n| case | setup | req/s | p50 µs | p99 µs | client body bytes / req | Envoy CPU µs / req |\n",
    );
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for r in results {
        for s in &r.setups {
            let runs = &r.runs[&s.key];
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |\n",
                r.name,
                s.label,
                median(runs.iter().map(|r| r.rps)),
                median(runs.iter().map(|r| r.p50_us)),
                median(runs.iter().map(|r| r.p99_us)),
                median(runs.iter().map(Run::bytes_per_request)),
                r.cpu(&s.key).unwrap_or(f64::NAN),
            ));
        }
    }
    let std: Vec<&CaseResult> = results.iter().filter(|r| r.group != "probe").collect();
    if !std.is_empty() {
        out.push_str(
            "\nEnvoy CPU over the no-op (b) and over the floor (d): per request, and per SSE event \
             (per request / events); medians of the per-round paired differences [min, max]\n\n",
        );
        out.push_str("| case | events / req | body callbacks / req | events / callback | b−a µs/req | d−b µs/req | c−b µs/req | c−d µs/req | c−b µs/event | c−d µs/event | d−b µs/event |\n");
        out.push_str(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        let range = |d: Option<(f64, f64, f64)>, per: f64| match d {
            Some((m, lo, hi)) if per > 0.0 => {
                format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
            }
            _ => "—".to_string(),
        };
        for r in &std {
            let (cbs, body) = r.callbacks.unwrap_or((f64::NAN, f64::NAN));
            let ev = f64::from(r.events);
            out.push_str(&format!(
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.name,
                r.events,
                body,
                if r.events > 0 {
                    format!("{:.2}", ev / body)
                } else {
                    "—".into()
                },
                range(r.diff("b", "a"), 1.0),
                range(r.diff("d", "b"), 1.0),
                range(r.diff("c", "b"), 1.0),
                range(r.diff("c", "d"), 1.0),
                range(r.diff("c", "b"), ev),
                range(r.diff("c", "d"), ev),
                range(r.diff("d", "b"), ev),
            ));
            let _ = cbs;
        }
    }
    module_table(&mut out, &std);
    usage_table(&mut out, &std);
    let variants: Vec<(&CaseResult, &Setup)> = std
        .iter()
        .flat_map(|r| {
            r.setups
                .iter()
                .filter(|s| s.key.starts_with("v:"))
                .map(move |s| (*r, s))
        })
        .collect();
    if !variants.is_empty() {
        out.push_str("\nOther builds of llm-pulse (--variant): Envoy CPU over the no-op (b) and llm-pulse (c) over them, per SSE event; medians of per-round paired differences [min, max]\n\n");
        out.push_str("| case | build | over b µs/req | over b µs/event | c − it µs/event |\n");
        out.push_str("| --- | --- | ---: | ---: | ---: |\n");
        let range = |d: Option<(f64, f64, f64)>, per: f64| match d {
            Some((m, lo, hi)) if per > 0.0 => {
                format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
            }
            _ => "—".to_string(),
        };
        for (r, s) in variants {
            let ev = f64::from(r.events);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.name,
                s.key.trim_start_matches("v:"),
                range(r.diff(&s.key, "b"), 1.0),
                range(r.diff(&s.key, "b"), ev),
                range(r.diff("c", &s.key), ev),
            ));
        }
    }
    for r in results.iter().filter(|r| r.group == "probe") {
        let (cbs, body) = r.callbacks.unwrap_or((f64::NAN, f64::NAN));
        out.push_str(&format!(
            "\nHost calls in Envoy's V8 (probe modes of bench/noop-filter; CPU over the no-op (b) / calls; \
             each probe also makes 3 increment_metric calls per request to report its counts)\n\
             {} callbacks per request, {:.1} of them response body callbacks (context create, \
             on_done and delete are 3 more VM entries the counter cannot see: b − a includes them)\n\n",
            fmt1(cbs),
            body
        ));
        out.push_str(
            "| host call | calls / req | bytes / call | CPU over no-op µs/req | µs / call |\n",
        );
        out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
        if let Some((m, lo, hi)) = r.diff("b", "a") {
            out.push_str(&format!(
                "| VM entry (b − a, per counted callback) | {} | | {:+.1} [{:+.1}, {:+.1}] | {:.3} |\n",
                fmt1(cbs),
                m,
                lo,
                hi,
                m / cbs
            ));
        }
        for s in r.setups.iter().filter(|s| s.key.starts_with("probe:")) {
            let (calls, bytes) = r.probe_calls.get(&s.key).copied().unwrap_or((0.0, 0.0));
            if let Some((m, lo, hi)) = r.diff(&s.key, "b") {
                out.push_str(&format!(
                    "| {} | {:.0} | {} | {:+.1} [{:+.1}, {:+.1}] | {:.3} |\n",
                    s.key.trim_start_matches("probe:"),
                    calls,
                    if bytes > 0.0 {
                        format!("{bytes:.0}")
                    } else {
                        String::new()
                    },
                    m,
                    lo,
                    hi,
                    m / calls.max(1.0)
                ));
            }
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

/// `--usage`: each usage setup over (c), and each mode over the setup whose worker sends it
/// the same bytes unasked by the filter (what the edits themselves cost).
fn usage_table(out: &mut String, results: &[&CaseResult]) {
    let with_usage: Vec<&&CaseResult> = results
        .iter()
        .filter(|r| r.runs.contains_key("c") && r.runs.keys().any(|k| k.starts_with("c-")))
        .collect();
    if with_usage.is_empty() {
        return;
    }
    out.push_str(
        "\nusage_stats: Envoy CPU over (c) (llm-pulse, usage_stats off, the client asks no usage: \
         the worker sends none), per request and per SSE event of the answer without usage \
         (per request / events), and as a ratio of CPU per request; medians of the per-round \
         paired differences and ratios [min, max]. \
         final and continuous: the worker sends usage the filter asked for and cuts; asked: \
         the client asks for it, the worker sends the same bytes, nothing is cut\n\n",
    );
    out.push_str(
        "| case | events / req | setup | client body bytes / req | over µs/req | over µs/event | ratio |\n",
    );
    out.push_str("| --- | ---: | --- | ---: | ---: | ---: | ---: |\n");
    let range = |d: Option<(f64, f64, f64)>, per: f64| match d {
        Some((m, lo, hi)) if per > 0.0 => {
            format!("{:+.2} [{:+.2}, {:+.2}]", m / per, lo / per, hi / per)
        }
        _ => "—".to_string(),
    };
    for r in with_usage {
        let ev = f64::from(r.events);
        let bytes = |k: &str| {
            r.runs
                .get(k)
                .map(|runs| format!("{:.0}", median(runs.iter().map(Run::bytes_per_request))))
                .unwrap_or_default()
        };
        let mut row = |x: &str, y: &str, what: String| {
            if r.runs.contains_key(x) && r.runs.contains_key(y) {
                let d = (x != y).then(|| r.diff(x, y)).flatten();
                let q = match (x != y).then(|| r.ratio(x, y)).flatten() {
                    Some((m, lo, hi)) => format!("{m:.3} [{lo:.3}, {hi:.3}]"),
                    None => "—".to_string(),
                };
                out.push_str(&format!(
                    "| {} | {} | {what} | {} | {} | {} | {q} |\n",
                    r.name,
                    r.events,
                    bytes(x),
                    range(d, 1.0),
                    range(d, ev),
                ));
            }
        };
        row("c", "c", "c (usage_stats off)".into());
        for k in ["c-final", "c-continuous", "c-asked", "c-asked-continuous"] {
            row(k, "c", format!("{k} − c"));
        }
        row(
            "c-final",
            "c-asked",
            "c-final − c-asked (the edits alone)".into(),
        );
        row(
            "c-continuous",
            "c-asked-continuous",
            "c-continuous − c-asked-continuous (the edits alone)".into(),
        );
    }
}

fn fmt1(v: f64) -> String {
    format!("{v:.1}")
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
    headers: &[String],
) -> Result<Run> {
    let url = envoy.url("/v1/chat/completions");
    let mut cmd = pinned(h2load, cpus);
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
#[allow(clippy::too_many_arguments)]
fn run_lockstep(
    ls: &mut lockstep::Lockstep,
    envoys: &[&Envoy],
    envoy_cpu: Option<usize>,
    streams: u32,
    batches: u64,
    tokens: u32,
    style: JsonStyle,
    asks: &[UsageAsk],
) -> Result<Vec<Run>> {
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

/// `/proc/stat`'s line of CPU `cpu`: (busy ticks: user, nice, system, irq, softirq; steal
/// ticks), or `None` when unreadable.
fn cpu_busy_steal_ticks(cpu: usize) -> Option<(u64, u64)> {
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

/// CPU time of every thread of `pid` in nanoseconds: the first field of each
/// `/proc/<pid>/task/<tid>/schedstat` (the scheduler's `sum_exec_runtime`). Not `/proc/<pid>/stat`:
/// its utime + stime count 10 ms ticks, 50 µs per request at 200 requests per run, coarser than
/// the per-event cost being measured. Envoy's threads live as long as the run.
fn process_cpu_ns(pid: u32) -> Result<u64> {
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
    use super::upstreams::{answer_tail, chat_event, JsonStyle, UsageAsk};
    use anyhow::Result;
    use std::collections::BTreeMap;
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
    /// llm-pulse as (c) runs it: the usage edits are counted apart (`usage_calls`).
    const PULSE_OFF: &str = r#"{"usage_stats":"off"}"#;
    /// The cluster Envoy names to the filter (`xds.cluster_name`): the usage edit needs one.
    const CLUSTER: &str = "workers";

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
    fn memory_per_stream(wasm: &Path, config: &str, n: usize) -> Result<f64> {
        let mut host = HostBuilder::new(wasm)
            .plugin_config(config)
            .property(&["xds", "cluster_name"], CLUSTER)
            .start()?;
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

    /// Host calls by kind of one module: (per request without token events, per token event
    /// at 1 event per body callback, the same at 16 per callback). Counted, not timed.
    pub type Calls = BTreeMap<String, (f64, f64, f64)>;

    /// One streamed request whose worker answers with `usage` in its events: the client's
    /// `body`, the role event, `events` (`per_chunk` to a body callback), then the usage
    /// event if any and `[DONE]` in the last callback, as the bench's workers write them.
    fn usage_request(
        host: &mut Host,
        body: &[u8],
        usage: UsageAsk,
        tokens: u32,
        per_chunk: usize,
    ) -> Result<()> {
        let style = JsonStyle::Compact;
        let events: Vec<Vec<u8>> = (0..tokens)
            .map(|i| chat_event(Some(&format!(" t{i}")), style, usage, i + 1).into_bytes())
            .collect();
        let s = host.new_stream()?;
        host.send_request_headers(s, REQUEST_HEADERS, false)?;
        host.send_request_body(s, body, true)?;
        host.send_response_headers(s, RESPONSE_HEADERS, false)?;
        host.send_response_body(s, chat_event(None, style, usage, 0).as_bytes(), false)?;
        for c in events.chunks(per_chunk) {
            host.send_response_body(s, &c.concat(), false)?;
        }
        host.send_response_body(s, answer_tail(tokens, style, usage).as_bytes(), true)?;
        host.complete_stream(s)?;
        Ok(())
    }

    /// Host calls of llm-pulse with `usage_stats` `mode`, its client asking for `client`:
    /// (per request without token events, per token event at 1 and at 16 events per body
    /// callback). The worker sends the usage the request asks for once the filter edited it.
    fn usage_call_counts(wasm: &Path, mode: &str, client: UsageAsk, tokens: u32) -> Result<Calls> {
        let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
        let mut host = HostBuilder::new(wasm)
            .plugin_config(config.as_str())
            .property(&["xds", "cluster_name"], CLUSTER)
            .start()?;
        let worker = match (client, mode) {
            (UsageAsk::None, "final") => UsageAsk::Final,
            (UsageAsk::None, "continuous") => UsageAsk::Continuous,
            (asked, _) => asked,
        };
        let body = super::chat_request("hello", true, tokens, client);
        for _ in 0..3 {
            usage_request(&mut host, &body, worker, tokens, 1)?;
        }
        let mut count = |t: u32, per_chunk: usize| {
            calls_during(&mut host, |h| usage_request(h, &body, worker, t, per_chunk))
        };
        let none = count(0, 1)?;
        let one = count(tokens, 1)?;
        let sixteen = count(tokens, 16)?;
        Ok(per_kind(&none, &one, &sixteen, tokens))
    }

    /// (per request, per token event at 1 and 16 per callback) from the counts of a request
    /// without token events and of two with `tokens` of them.
    fn per_kind(
        none: &BTreeMap<String, u64>,
        one: &BTreeMap<String, u64>,
        sixteen: &BTreeMap<String, u64>,
        tokens: u32,
    ) -> Calls {
        let t = f64::from(tokens.max(1));
        let mut out = Calls::new();
        for k in none.keys().chain(one.keys()).chain(sixteen.keys()) {
            let z = none.get(k).copied().unwrap_or(0) as f64;
            let per = |m: &BTreeMap<String, u64>| (m.get(k).copied().unwrap_or(0) as f64 - z) / t;
            out.insert(k.clone(), (z, per(one), per(sixteen)));
        }
        out
    }

    /// Host calls of one unary chat request (`"stream": false`, a JSON answer with usage) by
    /// llm-pulse with `usage_stats` `mode`: the filter cannot know it will not edit it until
    /// it has read the body.
    fn unary_calls(wasm: &Path, mode: &str) -> Result<BTreeMap<String, u64>> {
        let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
        let mut host = HostBuilder::new(wasm)
            .plugin_config(config.as_str())
            .property(&["xds", "cluster_name"], CLUSTER)
            .start()?;
        let body = super::chat_request("hello", false, 8, UsageAsk::None);
        let answer = super::upstreams::unary_answer(8);
        let json = [(":status", "200"), ("content-type", "application/json")];
        let one = |host: &mut Host| -> Result<()> {
            let s = host.new_stream()?;
            host.send_request_headers(s, REQUEST_HEADERS, false)?;
            host.send_request_body(s, &body, true)?;
            host.send_response_headers(s, &json, false)?;
            host.send_response_body(s, answer.as_bytes(), true)?;
            host.complete_stream(s)
        };
        for _ in 0..3 {
            one(&mut host)?;
        }
        let mut calls = calls_during(&mut host, one)?;
        calls.retain(|_, d| *d > 0);
        Ok(calls)
    }

    /// The host calls `run` makes in VM 0, by kind.
    fn calls_during(
        host: &mut Host,
        run: impl FnOnce(&mut Host) -> Result<()>,
    ) -> Result<BTreeMap<String, u64>> {
        let before = host.host_calls(0)?;
        run(host)?;
        let after = host.host_calls(0)?;
        Ok(after
            .into_iter()
            .map(|(k, v)| {
                let d = v - before.get(&k).copied().unwrap_or(0);
                (k, d)
            })
            .collect())
    }

    /// The usage modes `--only calls --usage` counts: (column, usage_stats, client's ask).
    const USAGE_MODES: [(&str, &str, UsageAsk); 5] = [
        ("off", "off", UsageAsk::None),
        ("final", "final", UsageAsk::None),
        ("continuous", "continuous", UsageAsk::None),
        ("off, client asks include_usage", "off", UsageAsk::Final),
        ("off, client asks continuous", "off", UsageAsk::Continuous),
    ];

    fn usage_calls_table(modes: &[(&str, Calls)]) -> String {
        let mut out = String::from(
            "\nHost calls by usage_stats (wasmtime harness, counted; the worker sends the usage \
             the request asks for once edited, the usage event with [DONE] in the last body \
             callback): per request without token events / per token event at 1 per callback / \
             at 16 per callback\n\n| host call |",
        );
        for (name, _) in modes {
            out.push_str(&format!(" {name} |"));
        }
        out.push_str("\n| --- |");
        for _ in modes {
            out.push_str(" ---: |");
        }
        out.push('\n');
        let keys: std::collections::BTreeSet<&String> =
            modes.iter().flat_map(|(_, c)| c.keys()).collect();
        let mut total = vec![(0.0f64, 0.0f64, 0.0f64); modes.len()];
        let cell = |v: (f64, f64, f64)| format!("{:.0} / {:.3} / {:.3}", v.0, v.1, v.2);
        for k in keys {
            let v: Vec<(f64, f64, f64)> = modes
                .iter()
                .map(|(_, c)| c.get(k).copied().unwrap_or_default())
                .collect();
            if v.iter().all(|x| x.0 == 0.0 && x.1 == 0.0 && x.2 == 0.0) {
                continue; // start-up only
            }
            out.push_str(&format!("| {k} |"));
            for (t, x) in total.iter_mut().zip(&v) {
                *t = (t.0 + x.0, t.1 + x.1, t.2 + x.2);
                out.push_str(&format!(" {} |", cell(*x)));
            }
            out.push('\n');
        }
        out.push_str("| all |");
        for t in total {
            out.push_str(&format!(" {} |", cell(t)));
        }
        out.push('\n');
        out
    }

    /// `--usage`: the host calls of each usage mode, and VM memory per open stream with the
    /// edits on.
    fn usage_calls(pulse: &Path, tokens: u32) -> Result<(String, serde_json::Value)> {
        let mut modes = Vec::new();
        let mut json = serde_json::Map::new();
        for (name, mode, client) in USAGE_MODES {
            let calls = usage_call_counts(pulse, mode, client, tokens)?;
            json.insert(name.into(), serde_json::json!(calls));
            modes.push((name, calls));
        }
        let mut text = usage_calls_table(&modes);
        for mode in ["off", "final"] {
            let calls = unary_calls(pulse, mode)?;
            let all: u64 = calls.values().sum();
            let list: Vec<String> = calls.iter().map(|(k, v)| format!("{k} {v}")).collect();
            text.push_str(&format!(
                "Host calls per unary request, usage_stats {mode}: {all} ({})\n",
                list.join(", ")
            ));
            json.insert(format!("unary_{mode}"), serde_json::json!(calls));
        }
        for mode in ["final", "continuous"] {
            let config = format!(r#"{{"usage_stats":"{mode}"}}"#);
            let mem = memory_per_stream(pulse, &config, 4096)?;
            text.push_str(&format!(
                "VM memory per open stream, usage_stats {mode} (the request edited, the \
                 answer's events without usage): {mem:.0} bytes\n"
            ));
            json.insert(format!("memory_per_stream_bytes_{mode}"), mem.into());
        }
        Ok((text, json.into()))
    }

    fn host_call_counts(wasm: &Path, config: &str, tokens: u32) -> Result<Calls> {
        let mut host = HostBuilder::new(wasm).plugin_config(config).start()?;
        let events: Vec<Vec<u8>> = (0..tokens).map(token_event).collect();
        for _ in 0..3 {
            request(&mut host, &events, 1)?;
        }
        let mut count = |evs: &[Vec<u8>], per_chunk: usize| {
            calls_during(&mut host, |h| request(h, evs, per_chunk).map(drop))
        };
        let none = count(&[], 1)?;
        let one = count(&events, 1)?;
        let sixteen = count(&events, 16)?;
        Ok(per_kind(&none, &one, &sixteen, tokens))
    }

    fn calls_table(pulse: &Calls, floor: &Calls) -> String {
        let mut out = String::from(
            "\nHost calls (wasmtime harness, counted: the same calls Envoy receives): per request \
             without its token events (role chunk, [DONE], headers, on_log), and per token event\n\n\
             | host call | llm-pulse / req | llm-pulse / event (1 per callback) | llm-pulse / event (16 per callback) | floor / req | floor / event (1 per callback) | floor / event (16 per callback) |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        let mut total = [0.0f64; 6];
        let keys: std::collections::BTreeSet<&String> = pulse.keys().chain(floor.keys()).collect();
        for k in keys {
            let p = pulse.get(k).copied().unwrap_or_default();
            let f = floor.get(k).copied().unwrap_or_default();
            let v = [p.0, p.1, p.2, f.0, f.1, f.2];
            if v.iter().all(|x| *x == 0.0) {
                continue; // start-up only (define_metric, shared data)
            }
            for (t, x) in total.iter_mut().zip(v) {
                *t += x;
            }
            out.push_str(&format!(
                "| {k} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |\n",
                v[0], v[1], v[2], v[3], v[4], v[5]
            ));
        }
        out.push_str(&format!(
            "| all | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |\n",
            total[0], total[1], total[2], total[3], total[4], total[5]
        ));
        out
    }

    pub fn run(
        noop: &Path,
        tokens: u32,
        calls_only: bool,
        usage: bool,
    ) -> Result<serde_json::Value> {
        let pulse = host_tests::artifacts::wasm_path()?;
        let usage = if usage {
            Some(usage_calls(&pulse, tokens)?)
        } else {
            None
        };
        if calls_only {
            let calls_p = host_call_counts(&pulse, PULSE_OFF, tokens)?;
            let calls_f = host_call_counts(noop, "\"floor\"", tokens)?;
            let mem_p = memory_per_stream(&pulse, PULSE_OFF, 4096)?;
            let mem_n = memory_per_stream(noop, "{}", 4096)?;
            let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            print!(
                "{}\nVM memory per open stream (4096 streams, 1 in 16 with a 100 KiB prompt): \
                 llm-pulse {mem_p:.0} bytes, no-op {mem_n:.0} bytes\n\
                 .wasm size: llm-pulse {} bytes, no-op {} bytes\n{}",
                calls_table(&calls_p, &calls_f),
                size(&pulse),
                size(noop),
                usage.as_ref().map(|u| u.0.as_str()).unwrap_or("")
            );
            return Ok(serde_json::json!({
                "host_calls": {"llm_pulse": calls_p, "floor": calls_f},
                "memory_per_stream_bytes": {"llm_pulse": mem_p, "noop": mem_n},
                "usage": usage.map(|u| u.1),
            }));
        }
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
                (pulse.as_path(), PULSE_OFF, &mut p),
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
        let mem_p = memory_per_stream(&pulse, PULSE_OFF, 4096)?;
        let mem_n = memory_per_stream(noop, "{}", 4096)?;
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
        let calls_p = host_call_counts(&pulse, PULSE_OFF, tokens)?;
        let calls_f = host_call_counts(noop, "\"floor\"", tokens)?;
        out.push_str(&calls_table(&calls_p, &calls_f));
        if let Some((text, usage_json)) = usage {
            out.push_str(&text);
            json.insert("usage".into(), usage_json);
        }
        print!("{out}");
        json.insert(
            "host_calls".into(),
            serde_json::json!({"llm_pulse": calls_p, "floor": calls_f}),
        );
        json.insert(
            "memory_per_stream_bytes".into(),
            serde_json::json!({"llm_pulse": mem_p, "noop": mem_n}),
        );
        json.insert("wasm_bytes".into(), wasm_size(&pulse).into());
        json.insert("noop_wasm_bytes".into(), wasm_size(noop).into());
        Ok(json.into())
    }
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

    /// A client asking for usage sends `stream_options` on streamed requests only.
    #[test]
    fn bodies_ask_as_their_setup() {
        let stream = chat_request("hello", true, 8, UsageAsk::None);
        let asked = body_asking(&stream, UsageAsk::Continuous);
        assert_eq!(UsageAsk::of_body(&asked), UsageAsk::Continuous);
        assert_eq!(asked, chat_request("hello", true, 8, UsageAsk::Continuous));
        assert_eq!(body_asking(&stream, UsageAsk::None), stream);
        let unary = chat_request("hello", false, 8, UsageAsk::None);
        assert_eq!(body_asking(&unary, UsageAsk::Final), unary);
    }
}
