//! `gpu-sim`: the simulated GPU worker as a process, for `scripts/run` and manual tests.
//! Prints one line `gpu-sim listening on http://HOST:PORT` once bound (then, with
//! `--admin-port`, `gpu-sim admin on http://HOST:PORT`), then serves until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use host_tests::sim::{self, SimConfig};

const USAGE: &str = "\
usage: gpu-sim [options]

A simulated vLLM worker (OpenAI-compatible API, plus SGLang's POST /generate and an image
worker's POST /v1/images/generations) with controllable timing and faults.

options:
  --host ADDR              listen address (default 127.0.0.1)
  --port N                 listen port, 0 = pick a free one (default 0)
  --admin-port N           also serve /sim/* on this port (0 = any), up even in mode down
  --flavor vllm|trtllm     /v1/completions and /v1/models shapes (default vllm)
  --slow-factor N          TTFT multiplier in mode slow (default 10)
  --ttft-ms N              request arrival -> first token chunk (default 150)
  --itl-ms N               per-token latency after the first chunk (default 20)
  --tokens N               output tokens when the request has no max_tokens (default 16)
  --tokens-per-chunk N     tokens per streamed chunk (default 1)
  --model NAME             served model name (default sim-model)
  --cached-tokens N        report usage.prompt_tokens_details.cached_tokens = N
  --fail-status CODE       answer every inference request with this 4xx/5xx
  --error-after K          streams: in-stream error event after K tokens
  --reset-after K          streams: drop the connection after K tokens
  --unary-garbage          unary: answer 200 with a body that is not JSON
  -h, --help               print this help

Per-request headers override these: x-sim-ttft-ms, x-sim-itl-ms, x-sim-tokens,
x-sim-tokens-per-chunk, x-sim-cached-tokens, x-sim-fail-status, x-sim-error-after,
x-sim-reset-after, x-sim-unary-garbage. GET /sim/stats counts requests per path and logs
the last arrivals, body and headers of each.

Fault modes, switched at run time with POST /sim/mode/<mode> (main port while it is up, or
the admin port): hang (inference accepted, never answered; /health still 200), slow (TTFT x
slow-factor), error (inference answers 500), down (main port closed, connections dropped),
recover (normal again; after down the same port is bound again). GET /sim/mode tells.
";

struct Args {
    host: IpAddr,
    port: u16,
    admin_port: Option<u16>,
    cfg: SimConfig,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Parsed, String> {
    let mut args = Args {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 0,
        admin_port: None,
        cfg: SimConfig::default(),
    };
    while let Some(flag) = argv.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (flag.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--host" => args.host = number(&name, &value()?)?,
            "--port" => args.port = number(&name, &value()?)?,
            "--admin-port" => args.admin_port = Some(number(&name, &value()?)?),
            "--flavor" => args.cfg.flavor = number(&name, &value()?)?,
            "--slow-factor" => args.cfg.slow_factor = number(&name, &value()?)?,
            "--ttft-ms" => args.cfg.ttft = Duration::from_millis(number(&name, &value()?)?),
            "--itl-ms" => args.cfg.itl = Duration::from_millis(number(&name, &value()?)?),
            "--tokens" => args.cfg.tokens = number(&name, &value()?)?,
            "--tokens-per-chunk" => args.cfg.tokens_per_chunk = number(&name, &value()?)?,
            "--model" => args.cfg.model = value()?,
            "--cached-tokens" => args.cfg.cached_tokens = Some(number(&name, &value()?)?),
            "--fail-status" => args.cfg.fail_status = Some(number(&name, &value()?)?),
            "--error-after" => args.cfg.error_after = Some(number(&name, &value()?)?),
            "--reset-after" => args.cfg.reset_after = Some(number(&name, &value()?)?),
            "--unary-garbage" if inline.is_none() => args.cfg.unary_garbage = true,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    args.cfg.validate().map_err(|e| e.to_string())?;
    Ok(Parsed::Run(args))
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e| format!("{name}: bad value `{value}`: {e}"))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gpu-sim: {message}\nrun `gpu-sim --help` for usage");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gpu-sim: cannot start tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gpu-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut handle = sim::start(SocketAddr::new(args.host, args.port), args.cfg).await?;
    let admin = args
        .admin_port
        .map(|port| handle.start_admin(SocketAddr::new(args.host, port)))
        .transpose()?;
    {
        // Scripts wait for this exact line to learn the port: write it once, flushed.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "gpu-sim listening on {}", handle.url())?;
        if let Some(admin) = admin {
            writeln!(stdout, "gpu-sim admin on http://{admin}")?;
        }
        stdout.flush()?;
    }
    wait_for_signal().await?;
    handle.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        res = tokio::signal::ctrl_c() => res?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
