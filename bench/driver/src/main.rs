//! `bench`: what llm-pulse costs, measured (`scripts/bench` builds and runs it; see
//! `docs/benchmarks.md`). Two parts:
//!
//! - `envoy`: Envoys on this machine, `--concurrency 1`, pinned to CPU 0: (a) without a wasm
//!   filter, (b) with the no-op proxy-wasm filter of `bench/noop-filter`, (c) with llm-pulse
//!   (`usage_stats` off, so every setup gets the same bytes from the worker), (d) with the same module as (b) in its "floor" mode (copies each response chunk into the
//!   VM, reads the clock, records one histogram sample per SSE event: the host calls any
//!   per-token meter must make), (m) with llm-pulse's native dynamic module (`module/`, the
//!   same core as (c) with no VM; `usage_stats` off too), loaded in turn (interleaved, order
//!   rotated per round) by
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
//! Modules: [`args`] the command line; [`setups`] what runs in each Envoy; [`cases`] what
//! each case sends; [`runner`] groups, warm-up and rounds; [`load`] one h2load or lockstep
//! run; [`report`] the tables; [`micro`] the wasmtime part; [`upstreams`] and [`lockstep`]
//! the workers; [`procs`] and [`stats`] helpers.
//!
//! A benchmark, not a test: it asserts nothing about speed.

mod args;
mod cases;
mod load;
mod lockstep;
mod micro;
mod procs;
mod report;
mod runner;
mod setups;
mod stats;
mod upstreams;

use std::time::Duration;

use anyhow::{Context as _, Result};

use args::Args;

fn main() -> Result<()> {
    let args = Args::from_env()?;
    if args.serve_paced {
        return upstreams::serve_paced(args.tokens, Duration::from_millis(args.itl_ms.max(1)));
    }
    if args.serve_lockstep {
        return lockstep::serve_lockstep();
    }
    let mut json = serde_json::Map::new();
    if args.envoy() {
        let results = runner::envoy_bench(&args)?;
        json.insert("envoy".into(), results);
    }
    if args.micro() {
        let results = micro::run(args.noop_wasm(), args.tokens, args.calls_only(), args.usage)?;
        json.insert("micro".into(), results);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
