//! The command line (`bench --help` prints it; `scripts/bench` passes its arguments through).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{ArgAction, Parser, ValueEnum};

/// Envoy case groups, in the order they run.
pub const GROUPS: [&str; 5] = ["sim", "static", "paced", "lockstep", "probe"];

/// What llm-pulse costs: Envoys with and without the filter side by side, and the wasmtime
/// microbenchmark (docs/benchmarks.md; scripts/bench builds what it needs and runs this).
#[derive(Parser, Debug)]
#[command(
    name = "bench",
    args_override_self = true,
    next_line_help = true,
    verbatim_doc_comment
)]
pub struct Args {
    /// the no-op filter's .wasm (required; scripts/bench builds it)
    #[arg(long, value_name = "PATH", value_parser = any_path)]
    pub noop_wasm: Option<PathBuf>,

    /// interleaved rounds per case
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub rounds: usize,

    /// target length of one load run in seconds (paced runs last as long as their streams:
    /// tokens x ITL)
    #[arg(long, value_name = "S", default_value_t = 2.5, verbatim_doc_comment)]
    pub seconds: f64,

    /// h2load connections, one request in flight each
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub concurrency: u32,

    /// output tokens per response
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub tokens: u32,

    /// paced cases: concurrent streams, one run = one request each
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub streams: u32,

    /// paced cases: inter-token latency in ms
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub itl_ms: u64,

    /// lockstep cases: concurrent streams
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub lockstep_streams: u32,

    /// lockstep cases: requests per stream per run, one after another (0: as many as make a
    /// run last about --seconds, calibrated on the warm-up); cheap enough for --rounds 21
    #[arg(long, value_name = "N", default_value_t = 0, verbatim_doc_comment)]
    pub lockstep_batches: u64,

    /// sim/static/paced/lockstep groups: only these of the setups a, b, c, d (and, with
    /// --usage, c-final, c-continuous, c-asked, c-asked-continuous; variants always run);
    /// with --together, fewer Envoys share the CPU
    #[arg(long, value_name = "A,B", value_delimiter = ',', value_parser = trimmed, verbatim_doc_comment)]
    pub setups: Option<Vec<String>>,

    /// sim, paced and lockstep groups (their workers answer stream_options as vLLM does):
    /// also llm-pulse with usage_stats final (c-final) and continuous (c-continuous) beside
    /// (c), which runs usage_stats off, and (c) with the client asking include_usage itself
    /// (c-asked) or continuous usage too (c-asked-continuous): the worker's extra bytes
    /// without a cut; prints their CPU over (c); `--only calls`: host calls per mode
    #[arg(long, verbatim_doc_comment)]
    pub usage: bool,

    /// sim, static, paced and lockstep cases: load every setup at the same time in each round
    /// (each Envoy its own streams or h2load, all on Envoy's CPU): whatever slows the machine
    /// during a run slows every setup alike, so paired differences resolve far finer; a round
    /// lasts about (setups x --seconds)
    #[arg(long, verbatim_doc_comment)]
    pub together: bool,

    /// one part, or one Envoy group (default: every part and group)
    #[arg(long, value_name = "PART", value_enum, verbatim_doc_comment)]
    pub only: Option<Only>,

    /// only these Envoy cases (names as printed: sim-stream, static-spaced, ...)
    #[arg(long, value_name = "A,B", value_delimiter = ',', value_parser = trimmed)]
    pub cases: Option<Vec<String>>,

    /// probe group: only these probe modes (clock, get_buffer:1024, ...)
    #[arg(long, value_name = "A,B", value_delimiter = ',', value_parser = trimmed)]
    pub probes: Option<Vec<String>>,

    /// an extra setup in the sim/static/paced/lockstep groups: another llm-pulse .wasm (an
    /// ablation build, an older commit); repeatable
    #[arg(long = "variant", value_name = "NAME=PATH", value_parser = variant, action = ArgAction::Append, verbatim_doc_comment)]
    pub variants: Vec<Variant>,

    /// the plugin configuration of every --variant ({}: a build with usage_stats runs it as
    /// final; (c) runs usage_stats off)
    #[arg(long, value_name = "J", default_value = "{}", verbatim_doc_comment)]
    pub variant_config: String,

    /// the gpu-sim binary of the sim group (default: beside this binary)
    #[arg(long, value_name = "PATH")]
    pub gpu_sim: Option<PathBuf>,

    /// also write the raw figures as JSON
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// do not pin processes with taskset
    #[arg(long = "no-pin", action = ArgAction::SetFalse)]
    pub pin: bool,

    /// (internal) run the paced upstream: --tokens, --itl-ms
    #[arg(long)]
    pub serve_paced: bool,

    /// (internal) run the lockstep worker and client (commands on stdin)
    #[arg(long)]
    pub serve_lockstep: bool,
}

/// `--only`: one part of the bench, or one Envoy group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Only {
    /// every Envoy group, no microbenchmark
    Envoy,
    /// the microbenchmark (and the host-call counts), no Envoy
    Micro,
    /// llm-pulse's host calls, VM memory per stream and .wasm size alone
    Calls,
    /// gpu-sim, no delay
    Sim,
    /// nginx serving recorded answers: many events per read
    Static,
    /// many streams at a worker's pace: one event per read
    Paced,
    /// each next event sent when the client has the previous one: one event per read
    Lockstep,
    /// µs per host-call kind in Envoy's V8
    Probe,
}

/// `--variant NAME=PATH`: another build of llm-pulse run as an extra setup.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub path: PathBuf,
}

/// Any path, the empty one too (scripts/bench passes `--noop-wasm ""` with `--help`): a missing
/// module is reported once the line is parsed ([`Args::from_env`]).
fn any_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn trimmed(s: &str) -> Result<String, String> {
    Ok(s.trim().to_string())
}

fn variant(v: &str) -> Result<Variant, String> {
    let (name, path) = v
        .split_once('=')
        .ok_or_else(|| format!("--variant wants NAME=PATH, got {v}"))?;
    if !Path::new(path).is_file() {
        return Err(format!("--variant {name}: {path} is missing"));
    }
    Ok(Variant {
        name: name.to_string(),
        path: PathBuf::from(path),
    })
}

impl Args {
    /// The command line, checked: a serving mode needs nothing else; a bench needs the no-op
    /// module and at least one round, stream and token.
    pub fn from_env() -> Result<Args> {
        let args = Args::parse();
        if args.serve_paced || args.serve_lockstep {
            return Ok(args);
        }
        let noop = args.noop_wasm.as_deref().unwrap_or(Path::new(""));
        if !noop.is_file() {
            bail!(
                "--noop-wasm {} is missing (scripts/bench builds bench/noop-filter)",
                noop.display()
            );
        }
        if args.rounds == 0 || args.streams == 0 || args.tokens == 0 || args.lockstep_streams == 0 {
            bail!("--rounds, --streams, --lockstep-streams and --tokens must be at least 1");
        }
        Ok(args)
    }

    /// The no-op module (checked by [`Args::from_env`] unless serving).
    pub fn noop_wasm(&self) -> &Path {
        self.noop_wasm.as_deref().unwrap_or(Path::new(""))
    }

    /// Whether the Envoy groups run.
    pub fn envoy(&self) -> bool {
        !matches!(self.only, Some(Only::Micro | Only::Calls))
    }

    /// Whether the wasmtime part runs (the microbenchmark, or with `--only calls` the counts).
    pub fn micro(&self) -> bool {
        matches!(self.only, None | Some(Only::Micro | Only::Calls))
    }

    /// `--only calls`: the host-call counts alone.
    pub fn calls_only(&self) -> bool {
        self.only == Some(Only::Calls)
    }

    /// The Envoy groups to run, in order.
    pub fn groups(&self) -> Vec<&'static str> {
        let one = match self.only {
            Some(Only::Sim) => "sim",
            Some(Only::Static) => "static",
            Some(Only::Paced) => "paced",
            Some(Only::Lockstep) => "lockstep",
            Some(Only::Probe) => "probe",
            None | Some(Only::Envoy | Only::Micro | Only::Calls) => return GROUPS.to_vec(),
        };
        vec![one]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("bench").chain(line.iter().copied()))
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Every flag scripts/bench and docs/benchmarks.md pass, with the meaning they had.
    #[test]
    fn flags_keep_their_meaning() {
        let a = parse(&[]);
        assert_eq!(
            (a.rounds, a.seconds, a.concurrency, a.tokens),
            (5, 2.5, 8, 256)
        );
        assert_eq!(
            (a.streams, a.itl_ms, a.lockstep_streams, a.lockstep_batches),
            (200, 20, 32, 0)
        );
        assert!(a.envoy() && a.micro() && !a.calls_only() && a.pin);
        assert_eq!(a.groups(), GROUPS.to_vec());
        assert_eq!(a.variant_config, "{}");

        let a = parse(&["--only", "calls", "--usage"]);
        assert!(!a.envoy() && a.micro() && a.calls_only() && a.usage);
        let a = parse(&["--only", "micro"]);
        assert!(!a.envoy() && a.micro() && !a.calls_only());
        let a = parse(&["--only", "envoy"]);
        assert!(a.envoy() && !a.micro());
        let a = parse(&[
            "--only",
            "lockstep",
            "--together",
            "--setups",
            "c, c-final,c-continuous",
            "--cases",
            "lockstep-compact",
            "--rounds",
            "15",
            "--seconds",
            "1",
            "--no-pin",
        ]);
        assert!(a.envoy() && !a.micro() && a.together && !a.pin);
        assert_eq!(a.groups(), vec!["lockstep"]);
        assert_eq!(
            a.setups.as_deref(),
            Some(&["c".into(), "c-final".into(), "c-continuous".into()][..])
        );
        assert_eq!(
            a.cases.as_deref(),
            Some(&["lockstep-compact".to_string()][..])
        );
        assert_eq!((a.rounds, a.seconds), (15, 1.0));

        let me = std::env::current_exe().unwrap_or_default();
        let me = me.to_string_lossy();
        let a = parse(&[
            "--variant",
            &format!("record={me}"),
            "--variant",
            &format!("scan={me}"),
            "--variant-config",
            r#"{"usage_stats":"off"}"#,
            "--probes",
            "clock,get_buffer:1024",
        ]);
        let names: Vec<&str> = a.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["record", "scan"]);
        assert_eq!(a.variant_config, r#"{"usage_stats":"off"}"#);
        assert_eq!(
            a.probes.as_deref(),
            Some(&["clock".into(), "get_buffer:1024".into()][..])
        );
    }

    /// What scripts/bench runs for `scripts/bench --help`.
    #[test]
    fn help_with_no_module_is_help() {
        let e = Args::try_parse_from(["bench", "--noop-wasm", "", "--help"]).err();
        assert_eq!(
            e.map(|e| e.kind()),
            Some(clap::error::ErrorKind::DisplayHelp)
        );
        let a = parse(&["--noop-wasm", ""]);
        assert_eq!(a.noop_wasm(), Path::new(""));
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = |line: &[&str]| {
            Args::try_parse_from(std::iter::once("bench").chain(line.iter().copied())).is_err()
        };
        assert!(bad(&["--only", "everything"]));
        assert!(bad(&["--variant", "no-equals-sign"]));
        assert!(bad(&["--variant", "x=/nonexistent/llm_pulse.wasm"]));
        assert!(bad(&["--rounds", "many"]));
        assert!(bad(&["--unknown"]));
    }
}
