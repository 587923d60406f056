//! The shipped Envoy config and the plugin config as Envoy sees them: a bad plugin config is
//! refused with a log line naming the field; the prefix comes from config or environment.

use host_tests::envoy::{self, Envoy, EnvoyOptions};
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, SimConfig};
use std::time::Duration;

fn rendered(plugin_config: &str) -> String {
    let dir = std::env::temp_dir();
    let opts = EnvoyOptions {
        plugin_config: plugin_config.to_string(),
        ..EnvoyOptions::new("127.0.0.1:8000".parse().unwrap())
    };
    opts.render(&dir).unwrap()
}

#[test]
fn the_shipped_config_validates() {
    envoy::validate(&rendered("{}")).unwrap();
    envoy::validate(&rendered(
        r#"{"metrics_prefix":"dynamo_frontend","max_models":8}"#,
    ))
    .unwrap();
}

#[test]
fn bad_plugin_configs_are_refused_naming_the_field() {
    for (config, field) in [
        (r#"{"max_models":0}"#, "max_models"),
        (r#"{"metrics_prefix":"9-bad"}"#, "metrics_prefix"),
        (r#"{"metric_prefix":"typo"}"#, "metric_prefix"),
        (r#"{"max_models":"many"}"#, "max_models"),
        ("[]", "(config)"),
        // No targets: refused, not a /health that says ready about nothing.
        (r#"{"health":{}}"#, "health.targets"),
        (r#"{"health":{"targets":[]}}"#, "health.targets"),
    ] {
        let err = envoy::validate(&rendered(config))
            .expect_err(config)
            .to_string();
        let line = err
            .lines()
            .find(|l| l.contains("llm-pulse: invalid plugin configuration"))
            .unwrap_or_else(|| panic!("{config}: no llm-pulse error line in:\n{err}"));
        assert!(line.contains(&format!("{field}: ")), "{config}: {line}");
    }
}

#[test]
fn prefix_from_environment_and_from_config() {
    let sim = sim::spawn(SimConfig {
        ttft: Duration::from_millis(5),
        itl: Duration::from_millis(1),
        tokens: 4,
        ..SimConfig::default()
    })
    .unwrap();
    let by_env = Envoy::start(&EnvoyOptions {
        env: vec![("DYN_METRICS_PREFIX".into(), "dynamo_frontend".into())],
        concurrency: 1,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let by_config = Envoy::start(&EnvoyOptions {
        env: vec![("DYN_METRICS_PREFIX".into(), "ignored".into())],
        plugin_config: r#"{"metrics_prefix":"gw"}"#.into(),
        concurrency: 1,
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    for (envoy, prefix) in [(&by_env, "dynamo_frontend"), (&by_config, "gw")] {
        let r = request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            r#"{"model":"m","stream":true}"#,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let name = format!("{prefix}_time_to_first_token_microseconds_count");
        let scrape = envoy
            .prometheus_when(Duration::from_secs(10), |s| s.sum(&name, &[]) >= 1.0)
            .unwrap();
        assert_eq!(
            scrape.value(&name, &[("model", "m")]),
            Some(1.0),
            "{prefix}"
        );
        assert_eq!(scrape.sum("llm_requests_total", &[]), 0.0);
    }
}

/// The filter crate's version, from filter/Cargo.toml (this crate's own may differ).
fn filter_version() -> String {
    let toml = std::fs::read_to_string(envoy::repo_root().join("filter/Cargo.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("version in filter/Cargo.toml")
        .to_string()
}

/// The commit the .wasm should carry: `$LLM_PULSE_COMMIT` if set (as filter/build.rs), else
/// `git rev-parse --short=7 HEAD`; `None` outside a git checkout.
fn expected_commit() -> Option<String> {
    if let Some(c) = std::env::var("LLM_PULSE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
    {
        return Some(c);
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(envoy::repo_root())
        .output()
        .ok()?;
    let c = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !c.is_empty()).then_some(c)
}

#[test]
fn the_version_line_and_build_info_name_the_build() {
    let version = filter_version();
    let sim = sim::spawn(SimConfig::default()).unwrap();
    let envoy = Envoy::start(&EnvoyOptions {
        plugin_config: r#"{"max_models":8,"health":{"targets":[
            {"name":"a","cluster":"workers","backend":"vllm","model":"sim-model"},
            {"name":"b","cluster":"workers","backend":"vllm","model":"sim-model"}]}}"#
            .replace('\n', ""),
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    let log = envoy.log();
    let line = log
        .lines()
        .find(|l| l.contains(") configured: prefix="))
        .unwrap_or_else(|| panic!("no version line in Envoy's log:\n{log}"));
    let scrape = envoy.prometheus().unwrap();
    let info: Vec<_> = scrape.find("llm_build_info", &[]).collect();
    assert_eq!(info.len(), 1, "{:?}", scrape.names());
    let commit = info[0].labels["commit"].clone();
    assert_eq!(info[0].labels["version"], version, "{:?}", info[0]);
    assert_eq!(info[0].value, 1.0);
    assert_eq!(info[0].labels.len(), 2, "{:?}", info[0]);
    assert!(
        line.ends_with(&format!(
            "llm-pulse {version} ({commit}) configured: prefix=llm, max_models=8, targets=2"
        )),
        "{line}"
    );
    println!("{line}");
    println!(
        "{}",
        envoy
            .admin_get("/stats/prometheus")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("llm_build_info"))
            .unwrap()
    );
    if let Some(want) = expected_commit() {
        let rebuild = match envoy::Artifact::from_env() {
            envoy::Artifact::Wasm => "cargo build --release --target wasm32-wasip1 -p llm-pulse",
            envoy::Artifact::Module => "cargo build --release -p llm-pulse-module",
        };
        assert_eq!(
            commit, want,
            "the artifact was built from another commit than HEAD: {rebuild}"
        );
    }
}
