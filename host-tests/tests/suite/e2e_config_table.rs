//! A table of wrong plugin configurations, each refused by a real Envoy (`--mode validate`)
//! with one log line naming the field: types, ranges, unknown fields, bad prefixes and paths,
//! durations without units, duplicate target names. (The filter's unit tests run the same
//! kinds of cases natively; this proves Envoy refuses to start with them.)

use host_tests::envoy::{self, EnvoyOptions};

fn rendered(plugin_config: &str) -> String {
    let opts = EnvoyOptions {
        plugin_config: plugin_config.to_string(),
        ..EnvoyOptions::new("127.0.0.1:8000".parse().unwrap())
    };
    opts.render(&std::env::temp_dir()).unwrap()
}

/// A health config with one target: `extra` is spliced into the target object.
fn target(extra: &str) -> String {
    format!(
        r#"{{"health":{{"targets":[{{"name":"w0","cluster":"workers","backend":"vllm"{extra}}}]}}}}"#
    )
}

#[test]
fn wrong_configs_are_refused_by_envoy_naming_the_field() {
    let t = |s: &str| target(s);
    let cases: Vec<(String, &str)> = vec![
        // types
        (r#"{"max_models":"many"}"#.into(), "max_models"),
        (r#"{"metrics_prefix":7}"#.into(), "metrics_prefix"),
        (t(r#","healthy_threshold":"2""#), "health.targets[0].healthy_threshold"),
        (t(r#","use_text_input":"yes""#), "health.targets[0].use_text_input"),
        (r#"{"health":{"targets":{}}}"#.into(), "health.targets"),
        // ranges
        (r#"{"max_models":0}"#.into(), "max_models"),
        (r#"{"max_models":100000}"#.into(), "max_models"),
        (t(r#","unhealthy_threshold":0"#), "health.targets[0].unhealthy_threshold"),
        (t(r#","healthy_threshold":101"#), "health.targets[0].healthy_threshold"),
        (t(r#","interval":"50ms""#), "health.targets[0].interval"),
        (t(r#","interval":"1s","timeout":"2s""#), "health.targets[0].timeout"),
        (t(r#","bos_token_id":-1"#), "health.targets[0].bos_token_id"),
        // unknown fields and values
        (r#"{"metric_prefix":"typo"}"#.into(), "metric_prefix"),
        (t(r#","intervall":"1s""#), "health.targets[0].intervall"),
        (t(r#","mode":"sometimes""#), "health.targets[0].mode"),
        (
            r#"{"health":{"targets":[{"name":"w0","cluster":"workers","backend":"tgi"}]}}"#.into(),
            "health.targets[0].backend",
        ),
        // bad prefixes, paths, hosts, payloads
        (r#"{"metrics_prefix":"9-bad"}"#.into(), "metrics_prefix"),
        (r#"{"metrics_prefix":"has space"}"#.into(), "metrics_prefix"),
        (format!(r#"{{"metrics_prefix":"{}"}}"#, "p".repeat(65)), "metrics_prefix"),
        (r#"{"health":{"path":"health","targets":[]}}"#.into(), "health.path"),
        (r#"{"health":{"live_path":"/live?x=1","targets":[]}}"#.into(), "health.live_path"),
        (t(r#","host":"not-an-address""#), "health.targets[0].host"),
        (t(r#","payload":[1,2]"#), "health.targets[0].payload"),
        (t(r#","expect":"image""#), "health.targets[0].expect"),
        (t(r#","payload":{},"expect":"png""#), "health.targets[0].expect"),
        (
            r#"{"health":{"targets":[{"name":"w 0","cluster":"workers","backend":"vllm"}]}}"#.into(),
            "health.targets[0].name",
        ),
        // durations without units
        (t(r#","interval":"10""#), "health.targets[0].interval"),
        (t(r#","timeout":"3""#), "health.targets[0].timeout"),
        // duplicate target names
        (
            r#"{"health":{"targets":[{"name":"w0","cluster":"a","backend":"vllm"},{"name":"w0","cluster":"b","backend":"sglang"}]}}"#.into(),
            "health.targets[1].name",
        ),
        // not an object
        ("[]".into(), "(config)"),
    ];
    let mut failures = Vec::new();
    for (config, field) in &cases {
        match envoy::validate(&rendered(config)) {
            Ok(()) => failures.push(format!("{config}: Envoy accepted it")),
            Err(e) => {
                let err = e.to_string();
                match err
                    .lines()
                    .find(|l| l.contains("llm-pulse: invalid plugin configuration"))
                {
                    None => failures.push(format!("{config}: no llm-pulse line in:\n{err}")),
                    Some(line) if !line.contains(&format!("configuration: {field}: ")) => {
                        failures.push(format!("{config}: want field {field}, got: {line}"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
