//! `scripts/run`'s main job: Envoy with llm-pulse in front of the embedded simulated GPU worker
//! (or the user's own worker), the addresses to use, and each request's figures as they come.
//! Stops Envoy and the worker on Ctrl-C.

use host_tests::envoy::{Envoy, EnvoyOptions};
use host_tests::sim::{self, SimConfig};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: llm-pulse-run [options]   (normally started by scripts/run)

options:
  --listen-port N     port for inference requests (default 10000)
  --admin-port N      Envoy admin port, serving /stats/prometheus (default 9901)
  --worker HOST:PORT  your own OpenAI-compatible worker instead of the simulator
  --config JSON       the plugin configuration (default {})
  --concurrency N     Envoy worker threads (default 2)
  --ttft-ms N         simulator: time to first token (default 150)
  --itl-ms N          simulator: inter-token latency (default 20)
  --tokens N          simulator: output tokens per answer (default 16)
";

struct Args {
    listen_port: u16,
    admin_port: u16,
    worker: Option<SocketAddr>,
    config: String,
    concurrency: u32,
    sim: SimConfig,
}

fn parse() -> Result<Option<Args>, String> {
    let mut a = Args {
        listen_port: 10000,
        admin_port: 9901,
        worker: None,
        config: "{}".into(),
        concurrency: 2,
        sim: SimConfig::default(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--listen-port" => a.listen_port = num(&value)? as u16,
            "--admin-port" => a.admin_port = num(&value)? as u16,
            "--worker" => {
                let addr = value
                    .to_socket_addrs()
                    .map_err(|e| format!("--worker {value}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--worker {value}: no address"))?;
                a.worker = Some(addr);
            }
            "--config" => a.config = value,
            "--concurrency" => a.concurrency = num(&value)? as u32,
            "--ttft-ms" => a.sim.ttft = Duration::from_millis(num(&value)?),
            "--itl-ms" => a.sim.itl = Duration::from_millis(num(&value)?),
            "--tokens" => a.sim.tokens = num(&value)? as u32,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("llm-pulse-run: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-pulse-run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let sim = match args.worker {
        Some(_) => None,
        None => Some(sim::spawn(args.sim.clone())?),
    };
    let worker = args.worker.or(sim.as_ref().map(|s| s.addr));
    let worker = worker.ok_or_else(|| anyhow::anyhow!("no worker"))?;
    let mut envoy = Envoy::start(&EnvoyOptions {
        plugin_config: args.config.clone(),
        concurrency: args.concurrency,
        listen_port: args.listen_port,
        admin_port: args.admin_port,
        stats_flush: Duration::from_secs(1),
        log_level: "warning".into(),
        ..EnvoyOptions::new(worker)
    })?;

    let model = if sim.is_some() {
        args.sim.model.as_str()
    } else {
        "YOUR-MODEL"
    };
    let who = if sim.is_some() {
        "simulated GPU worker"
    } else {
        "worker"
    };
    println!();
    println!(
        "llm-pulse is running: Envoy (pid {}) -> llm-pulse -> {who} at {worker}",
        envoy.pid()
    );
    println!();
    println!(
        "  send requests to   http://{}/v1/chat/completions",
        envoy.listener
    );
    println!(
        "  read metrics at    http://{}/stats/prometheus",
        envoy.admin
    );
    println!();
    println!("try:");
    println!(
        "  curl -N http://{}/v1/chat/completions -H 'content-type: application/json' \\\n    -d '{{\"model\":\"{model}\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hello\"}}]}}'",
        envoy.listener
    );
    println!(
        "  curl -s http://{}/stats/prometheus | grep '^llm_'",
        envoy.admin
    );
    println!();
    println!(
        "Each request's figures follow as Envoy logs them. Ctrl-C stops Envoy and the worker."
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut printed = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    let entries = envoy.access_log();
                    for e in entries.iter().skip(printed) {
                        println!(
                            "{} {} -> {} ttft_us={} itl_avg_us={} in={} out={} error={}",
                            e["method"].as_str().unwrap_or("-"),
                            e["path"].as_str().unwrap_or("-"),
                            e["status"],
                            e["ttft_us"].as_str().unwrap_or("-"),
                            e["itl_avg_us"].as_str().unwrap_or("-"),
                            e["input_tokens"].as_str().unwrap_or("-"),
                            e["output_tokens"].as_str().unwrap_or("-"),
                            e["error_type"].as_str().unwrap_or("-"),
                        );
                    }
                    printed = entries.len();
                    if !envoy.is_running() {
                        anyhow::bail!("Envoy exited:\n{}", envoy.log());
                    }
                }
            }
        }
        println!("\nstopping Envoy and the worker");
        Ok::<(), anyhow::Error>(())
    })?;
    drop(envoy);
    drop(sim);
    Ok(())
}
