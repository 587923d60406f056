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
        // No targets: refused, not a /health that says ready about nothing (issue 12, 10).
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
