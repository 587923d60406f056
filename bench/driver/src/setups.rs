//! The setups: what runs in each Envoy of a case group, and how that Envoy is started. A new
//! kind of setup is a [`Filter`] variant, its Envoy options in [`start_envoy`], and an entry in
//! one of the lists below.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use host_tests::envoy::{Artifact, Envoy, EnvoyOptions};

use crate::args::Args;
use crate::upstreams::UsageAsk;

/// What runs in one Envoy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
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
pub struct Setup {
    pub key: String,
    pub label: String,
    pub filter: Filter,
    /// What the client asks for in `stream_options` (streamed requests only).
    pub ask: UsageAsk,
}

impl Setup {
    pub fn new(key: &str, label: &str, filter: Filter) -> Setup {
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
    pub fn is_pulse(&self) -> bool {
        matches!(
            self.filter,
            Filter::Pulse(_) | Filter::PulseAt(_) | Filter::Native(_)
        )
    }
}

fn no_wasm() -> Setup {
    Setup::new("a", "(a) no wasm", Filter::None)
}

fn noop() -> Setup {
    Setup::new("b", "(b) no-op wasm", Filter::Module("{}".into()))
}

fn standard_setups() -> Vec<Setup> {
    vec![
        no_wasm(),
        noop(),
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
pub fn counter_setup() -> Setup {
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

/// The timed setups of `group` (the callback counter runs beside them): the probe group's
/// (a), (b) and one per probe mode; every other group's standard setups, the usage ones with
/// `--usage` where the worker reacts to it, filtered by `--setups`, then every `--variant`.
pub fn setups_for(group: &str, args: &Args) -> Vec<Setup> {
    if group == "probe" {
        let mut s = vec![no_wasm(), noop()];
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
        return s;
    }
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
    for v in &args.variants {
        s.push(Setup::new(
            &format!("v:{}", v.name),
            &format!("(v) {}", v.name),
            Filter::PulseAt(v.path.clone()),
        ));
    }
    s
}

/// The Envoy of `setup` in front of `upstream`, pinned to `pin_cpus` unless empty.
pub fn start_envoy(
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
