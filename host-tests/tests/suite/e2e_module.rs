//! The native dynamic module (`module/`) in a real Envoy 1.40 beside the `.wasm`: it loads with
//! the ABI version Envoy expects, its ABI declarations name only symbols that Envoy binary
//! has, and the same request through each leaves the same series with the same labels. The
//! rest of the Envoy suite runs on the module with `LLM_PULSE_ARTIFACT=module` (scripts/test).

use host_tests::envoy::{envoy_bin, repo_root, Artifact, Envoy, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, SimConfig};
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn with(artifact: Artifact, sim: std::net::SocketAddr) -> Envoy {
    Envoy::start(&EnvoyOptions {
        artifact,
        ..EnvoyOptions::new(sim)
    })
    .unwrap_or_else(|e| panic!("Envoy with the {artifact:?} starts: {e:#}"))
}

/// Every `llm_*` series: name and labels (values left out: timings differ per run; the build's
/// commit only by its label name: the two artifacts may be built at different commits).
fn series(scrape: &Scrape) -> BTreeSet<String> {
    scrape
        .samples
        .iter()
        .filter(|s| s.name.starts_with("llm_"))
        .filter(|s| !s.name.ends_with("_bucket"))
        .map(|s| {
            let mut labels = s.labels.clone();
            if s.name == "llm_build_info" {
                labels.values_mut().for_each(String::clear);
            }
            format!("{}{:?}", s.name, labels)
        })
        .collect()
}

#[test]
fn the_module_loads_and_counts_a_request_as_the_wasm_does() {
    let sim = sim::spawn(SimConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .unwrap();
    let module = with(Artifact::Module, sim.addr);
    let wasm = with(Artifact::Wasm, sim.addr);
    let log = module.log();
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "{log}"
    );
    // The `.wasm`'s version line, word for word, from Envoy's dynamic-modules logger.
    assert!(
        log.lines()
            .any(|l| l.contains("[dynamic_modules]") && l.contains(") configured: prefix=llm")),
        "{log}"
    );

    let body = r#"{"model":"m","messages":[{"role":"user","content":"hello there gpu"}],"stream":true,"max_tokens":7}"#;
    let mut tokens = Vec::new();
    for envoy in [&module, &wasm] {
        let r = request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let text: usize = r
            .events()
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<serde_json::Value>(d).ok())
            .filter(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            })
            .count();
        tokens.push(text);
    }
    // The duration is recorded last (at the stream's end): every histogram is flushed then.
    let done = |s: &Scrape| s.sum("llm_request_duration_microseconds_count", &[]) >= 1.0;
    let m = module.prometheus_when(WAIT, done).unwrap();
    let w = wasm.prometheus_when(WAIT, done).unwrap();
    let labels = [
        ("model", "m"),
        ("endpoint", "chat_completions"),
        ("request_type", "stream"),
        ("status", "success"),
        ("error_type", ""),
    ];
    assert_eq!(m.value("llm_requests_total", &labels), Some(1.0), "{m:?}");
    // The same stream through each: the same token count.
    assert_eq!(
        m.value("llm_output_tokens_total", &[("model", "m")]),
        w.value("llm_output_tokens_total", &[("model", "m")])
    );
    assert!(tokens[0] > 0 && tokens[0] == tokens[1], "{tokens:?}");
    assert_eq!(series(&m), series(&w), "the module's series vs the wasm's");
}

/// The symbols `module/src/ffi/` names: callbacks it imports and hooks it exports.
fn declared_symbols() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let dir = repo_root().join("module/src/ffi");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in src.lines() {
            let t = line.trim_start();
            let Some(rest) = t
                .strip_prefix("fn ")
                .or_else(|| t.strip_prefix("pub unsafe extern \"C\" fn "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.starts_with("envoy_dynamic_module_") {
                out.insert(name);
            }
        }
    }
    out
}

/// The NUL-terminated `envoy_dynamic_module_*` names in the Envoy binary (its dynamic symbol
/// table and its `dlsym` strings).
fn envoy_symbols() -> BTreeSet<String> {
    let bin = std::fs::read(envoy_bin().unwrap()).unwrap();
    let prefix = b"envoy_dynamic_module_";
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = bin[i..].windows(prefix.len()).position(|w| w == prefix) {
        let start = i + at;
        let end = bin[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(bin.len(), |n| start + n);
        if bin.get(end) == Some(&0) {
            out.insert(String::from_utf8_lossy(&bin[start..end]).into_owned());
        }
        i = end.max(start + 1);
    }
    out
}

#[test]
fn every_abi_symbol_the_module_names_is_in_the_envoy_binary() {
    let declared = declared_symbols();
    let envoy = envoy_symbols();
    assert!(declared.len() > 40, "{declared:?}");
    let missing: Vec<&String> = declared.difference(&envoy).collect();
    assert!(missing.is_empty(), "not in this Envoy: {missing:?}");
    // And the module exports every HTTP-filter hook this Envoy may look up.
    let hooks: Vec<&String> = envoy
        .iter()
        .filter(|s| s.starts_with("envoy_dynamic_module_on_http_filter_"))
        .filter(|s| !declared.contains(*s))
        .collect();
    assert!(hooks.is_empty(), "hooks the module lacks: {hooks:?}");
}

#[test]
fn the_module_config_is_envoy_yaml_but_for_the_filter() {
    let read = |p: &str| std::fs::read_to_string(repo_root().join(p)).unwrap();
    let normalize = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut skipping = false;
        let mut body = false;
        for line in s.lines() {
            let t = line.trim();
            // The header comment describes each file.
            if !body && t.starts_with('#') {
                continue;
            }
            body = true;
            if t == "# llm-pulse begin" {
                skipping = true;
            } else if t == "# llm-pulse end" {
                skipping = false;
            } else if !skipping
                && !t.contains("dynamic_modules_strip_custom_stat_prefix")
                && !t.starts_with("# module:")
                && !t.starts_with("# .wasm's are")
            {
                out.push(line.replace("dynamicmodulescustom\\\\.", "wasmcustom\\\\."));
            }
        }
        out
    };
    assert_eq!(
        normalize(&read("envoy/envoy-module.yaml")),
        normalize(&read("envoy/envoy.yaml"))
    );
}

fn yaml_docs(rel: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join(rel)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .collect()
}

#[test]
fn the_envoy_gateway_example_registers_the_module_and_configures_it_as_the_wasm() {
    let docs = yaml_docs("examples/envoy-gateway/dynamic-module.yaml");
    let proxy = docs.iter().find(|d| d["kind"] == "EnvoyProxy").unwrap();
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyExtensionPolicy")
        .unwrap();
    let registered = &proxy["spec"]["dynamicModules"][0];
    let used = &policy["spec"]["dynamicModule"][0];
    assert_eq!(used["name"], registered["name"]);
    assert_eq!(registered["source"]["type"], "Local");
    assert!(registered["source"]["local"]["path"]
        .as_str()
        .is_some_and(|p| p.starts_with('/') && p.ends_with("/libllm_pulse_module.so")));
    // The runtime key of envoy/envoy-module.yaml, so the names are the .wasm's.
    let patch = &proxy["spec"]["bootstrap"]["jsonPatches"][0];
    assert!(patch["path"]
        .as_str()
        .unwrap()
        .ends_with("/envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix"));
    assert_eq!(patch["value"], true);
    // The same plugin config as the .wasm's policy.
    let wasm = yaml_docs("examples/envoy-gateway/extension-policy.yaml").remove(0);
    assert_eq!(used["config"], wasm["spec"]["wasm"][0]["config"]);
    assert_eq!(policy["spec"]["targetRefs"], wasm["spec"]["targetRefs"]);
    // And the module takes that config (its probe cluster is Envoy Gateway's, absent here:
    // probes fail, the config stands).
    let sim = sim::spawn(SimConfig::default()).unwrap();
    let envoy = Envoy::start(&EnvoyOptions {
        artifact: Artifact::Module,
        plugin_config: used["config"].to_string(),
        ..EnvoyOptions::new(sim.addr)
    })
    .unwrap();
    assert!(
        envoy
            .log()
            .contains("configured: prefix=llm, max_models=32, targets=1"),
        "{}",
        envoy.log()
    );
}
