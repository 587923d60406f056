//! The Istio examples (examples/istio/) against the real Envoy: each EnvoyFilter patch value and
//! the WasmPlugin are placed into an Envoy bootstrap the way Istio builds one (its stats
//! config from the pod annotations, the wasm filter before the router, the clusters the plugin
//! config names), `envoy --mode validate` runs on it, then Envoy runs it in front of gpu-sim:
//! the filter must log that it is configured, and the metrics must come out with every label
//! and the annotated buckets. A broken example (bad YAML, an Envoy field Envoy does not know,
//! a plugin config the filter refuses) fails here.

use host_tests::envoy::{self, envoy_bin, http_get, repo_root, wasm_path, Artifact, EnvoyOptions};
use host_tests::prom::Scrape;
use host_tests::sim::client::request_blocking;
use host_tests::sim::{self, SimConfig, SimHandle};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every label of docs/design.md ("Metrics"), `llm_usage_stats_refused`'s, and `llm_build_info`'s.
const LABELS: [&str; 11] = [
    "model",
    "endpoint",
    "request_type",
    "status",
    "error_type",
    "cluster",
    "target",
    "result",
    "version",
    "commit",
    "worker",
];

fn example(name: &str) -> PathBuf {
    repo_root().join("examples/istio").join(name)
}

/// All YAML documents of a file, as JSON values.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_docs_str(&text, path)
}

fn yaml_docs_str(text: &str, path: &Path) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// What the pod annotations of stats-annotations.yaml put into Istio's bootstrap.
struct IstioStats {
    inclusion_prefixes: Vec<String>,
    extra_stat_tags: Vec<String>,
    /// Histogram name prefix -> bucket boundaries, sorted by prefix as Istio sorts them.
    buckets: BTreeMap<String, Vec<f64>>,
    /// Where the userVolumeMount puts the .wasm in the proxy.
    wasm_mount: String,
}

fn annotations() -> IstioStats {
    let path = example("stats-annotations.yaml");
    let doc = yaml_docs(&path).remove(0);
    let a = &doc["spec"]["template"]["metadata"]["annotations"];
    let text = |key: &str| {
        a[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: annotation {key} missing", path.display()))
            .to_string()
    };
    let list = |key: &str| -> Vec<String> {
        text(key)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let buckets: BTreeMap<String, Vec<f64>> =
        serde_json::from_str(&text("sidecar.istio.io/statsHistogramBuckets"))
            .expect("statsHistogramBuckets is a JSON map of prefix -> boundaries");
    let mounts: Vec<Value> = serde_json::from_str(&text("sidecar.istio.io/userVolumeMount"))
        .expect("userVolumeMount is a JSON list");
    IstioStats {
        inclusion_prefixes: list("sidecar.istio.io/statsInclusionPrefixes"),
        extra_stat_tags: list("sidecar.istio.io/extraStatTags"),
        buckets,
        wasm_mount: mounts[0]["mountPath"].as_str().unwrap().to_string(),
    }
}

/// The Envoy bootstrap Istio's agent would generate for these stats settings, with `filter`
/// before the router (as the EnvoyFilter or WasmPlugin puts it) and one cluster per name the
/// plugin config uses, all leading to `worker`.
fn istio_bootstrap(
    stats: &IstioStats,
    filter: Value,
    extra_clusters: &[Value],
    worker_clusters: &[String],
    worker: SocketAddr,
) -> Value {
    let stats_tags: Vec<Value> = stats
        .extra_stat_tags
        .iter()
        .map(|t| json!({ "tag_name": t, "regex": format!("({t}=\\.=(.*?);\\.;)") }))
        .collect();
    let buckets: Vec<Value> = stats
        .buckets
        .iter()
        .map(|(prefix, b)| json!({ "match": { "prefix": prefix }, "buckets": b }))
        .collect();
    // Istio keeps only the stats its inclusion list names: the annotated prefixes plus its own
    // required ones. Its `wasm` prefix is left out here: as a plain prefix it also keeps
    // `wasmcustom.*`, and would hide a missing inclusion prefix in the annotation.
    let mut patterns: Vec<Value> = stats
        .inclusion_prefixes
        .iter()
        .map(|p| json!({ "prefix": p }))
        .collect();
    for p in [
        "reporter=",
        "cluster_manager",
        "listener_manager",
        "server",
        "component",
        "istio",
    ] {
        patterns.push(json!({ "prefix": p }));
    }
    let mut clusters: Vec<Value> = worker_clusters
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                        "socket_address": { "address": worker.ip().to_string(),
                                            "port_value": worker.port() } } } }] }]
                }
            })
        })
        .collect();
    clusters.extend(extra_clusters.iter().cloned());
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "stats_flush_interval": "0.25s",
        "stats_config": {
            "use_all_default_tags": false,
            "stats_tags": stats_tags,
            "histogram_bucket_settings": buckets,
            "stats_matcher": { "inclusion_list": { "patterns": patterns } }
        },
        "static_resources": {
            "listeners": [{
                "name": "virtualInbound",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_0.0.0.0_8000",
                        "route_config": { "virtual_hosts": [{
                            "name": "inbound", "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" },
                                         "route": { "cluster": worker_clusters[0], "timeout": "0s" } }]
                        }] },
                        "http_filters": [
                            filter,
                            { "name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }
                        ]
                    }
                }] }]
            }],
            "clusters": clusters
        }
    })
}

/// The HTTP_FILTER and CLUSTER patch values of an EnvoyFilter file, checked for the shape
/// the examples promise (before the router, fail open, v8, a shared vm_id).
fn envoyfilter_patches(path: &Path, context: &str) -> (Value, Vec<Value>) {
    let docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{}: one EnvoyFilter", path.display());
    let ef = &docs[0];
    assert_eq!(ef["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(ef["kind"], "EnvoyFilter");
    let mut filter = None;
    let mut clusters = Vec::new();
    for patch in ef["spec"]["configPatches"]
        .as_array()
        .expect("configPatches")
    {
        assert_eq!(patch["match"]["context"], context, "{}", path.display());
        match patch["applyTo"].as_str() {
            Some("HTTP_FILTER") => {
                let sub = &patch["match"]["listener"]["filterChain"]["filter"];
                assert_eq!(sub["name"], "envoy.filters.network.http_connection_manager");
                assert_eq!(sub["subFilter"]["name"], "envoy.filters.http.router");
                assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
                filter = Some(patch["patch"]["value"].clone());
            }
            Some("CLUSTER") => {
                assert_eq!(patch["patch"]["operation"], "ADD");
                clusters.push(patch["patch"]["value"].clone());
            }
            other => panic!("{}: unexpected applyTo {other:?}", path.display()),
        }
    }
    let filter = filter.unwrap_or_else(|| panic!("{}: no HTTP_FILTER patch", path.display()));
    assert_eq!(filter["name"], "envoy.filters.http.wasm");
    (filter, clusters)
}

/// What the EnvoyFilter examples promise: fail open, V8, one vm_id shared by all threads.
fn assert_fail_open_v8_shared(filter: &Value) {
    let config = &filter["typed_config"]["config"];
    assert_eq!(config["failure_policy"], "FAIL_OPEN", "fail open");
    assert_eq!(config["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        config["vm_config"]["vm_id"], "llm_pulse",
        "one shared vm_id"
    );
}

/// The plugin JSON a wasm filter carries.
fn plugin_json(filter: &Value) -> Value {
    let cfg = &filter["typed_config"]["config"]["configuration"];
    assert_eq!(
        cfg["@type"],
        "type.googleapis.com/google.protobuf.StringValue"
    );
    serde_json::from_str(
        cfg["value"]
            .as_str()
            .expect("configuration.value is a string"),
    )
    .expect("the plugin configuration is JSON")
}

/// The clusters the plugin config probes through, minus those a patch adds.
fn target_clusters(plugin: &Value, added: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = plugin["health"]["targets"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| t["cluster"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| !added.iter().any(|c| c["name"] == n.as_str()));
    names.dedup();
    assert!(!names.is_empty(), "the examples probe at least one target");
    names
}

/// Points the filter at the built .wasm, where Istio's volume mount (or its agent, for a
/// WasmPlugin) puts the module.
fn with_local_wasm(mut filter: Value, expected_path: Option<&str>) -> Value {
    let local = &mut filter["typed_config"]["config"]["vm_config"]["code"]["local"];
    if let Some(expected) = expected_path {
        assert_eq!(
            local["filename"], expected,
            "the EnvoyFilter loads the .wasm from where stats-annotations.yaml mounts it"
        );
    }
    local["filename"] = json!(wasm_path().unwrap().display().to_string());
    filter
}

/// An Envoy running a bootstrap given as JSON; killed on drop.
struct RawEnvoy {
    child: Child,
    dir: PathBuf,
    admin: SocketAddr,
    listener: SocketAddr,
}

impl RawEnvoy {
    fn start(bootstrap: &Value, name: &str) -> anyhow::Result<RawEnvoy> {
        let dir =
            std::env::temp_dir().join(format!("llm-pulse-istio-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("envoy.json");
        std::fs::write(&config, serde_json::to_string_pretty(bootstrap)?)?;
        let log = std::fs::File::create(dir.join("envoy.log"))?;
        let admin_path = dir.join("admin-address");
        let child = Command::new(envoy_bin()?)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--disable-hot-restart"])
            .arg("--admin-address-path")
            .arg(&admin_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut envoy = RawEnvoy {
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                anyhow::bail!("Envoy exited with {status}:\n{}", envoy.log());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "Envoy not ready:\n{}",
                envoy.log()
            );
            if let Some(admin) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            {
                envoy.admin = admin;
                if http_get(admin, "/ready").unwrap_or_default().trim() == "LIVE" {
                    let l: Value =
                        serde_json::from_str(&http_get(admin, "/listeners?format=json")?)?;
                    let port = l["listener_statuses"][0]["local_address"]["socket_address"]
                        ["port_value"]
                        .as_u64()
                        .unwrap_or(0);
                    envoy.listener = SocketAddr::from(([127, 0, 0, 1], port as u16));
                    return Ok(envoy);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    fn scrape(&self) -> Scrape {
        Scrape::parse(&http_get(self.admin, "/stats/prometheus").unwrap())
    }
}

impl Drop for RawEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fast_sim() -> SimHandle {
    sim::spawn(SimConfig {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(2),
        tokens: 6,
        ..SimConfig::default()
    })
    .unwrap()
}

/// Validates the bootstrap, runs it in front of gpu-sim, sends a streamed and a unary
/// request, and checks what Istio users would see.
fn run_in_envoy(name: &str, stats: &IstioStats, filter: Value, added: &[Value]) {
    let sim = fast_sim();
    let plugin = plugin_json(&filter);
    let clusters = target_clusters(&plugin, added);
    let bootstrap = istio_bootstrap(stats, filter, added, &clusters, sim.addr);
    envoy::validate(&serde_json::to_string_pretty(&bootstrap).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let envoy = RawEnvoy::start(&bootstrap, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        envoy.log().contains(") configured: prefix="),
        "{name}: the filter did not accept its configuration:\n{}",
        envoy.log()
    );
    let model = format!("istio-{name}");
    for stream in [
        r#""stream":true,"stream_options":{"include_usage":true}"#,
        r#""stream":false"#,
    ] {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}],{stream}}}"#
        );
        let r = request_blocking(
            envoy.listener,
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{name}");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let scrape = loop {
        let s = envoy.scrape();
        let done = s.sum(
            "llm_time_to_first_token_microseconds_count",
            &[("model", &model)],
        ) >= 2.0;
        if done || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Labels lifted by the extraStatTags regexes: nothing left inside the names.
    let by_model = [("model", model.as_str())];
    let requests: Vec<_> = scrape.find("llm_requests_total", &by_model).collect();
    assert_eq!(requests.len(), 2, "{name}: {:?}", scrape.names());
    for r in &requests {
        for label in ["model", "endpoint", "request_type", "status", "error_type"] {
            assert!(r.labels.contains_key(label), "{name}: {label} in {r:?}");
        }
        assert_eq!(r.labels["endpoint"], "chat_completions");
        assert_eq!(r.labels["status"], "success");
    }
    assert!(
        scrape.names().iter().all(|n| !n.contains("=.=")),
        "{name}: a label was not lifted: {:?}",
        scrape.names()
    );
    assert_eq!(
        scrape.sum(
            "llm_time_to_first_token_microseconds_count",
            &[("model", &model)]
        ),
        2.0,
        "{name}"
    );
    // The annotated buckets are the ones Envoy uses.
    let mut le: Vec<f64> = scrape
        .find(
            "llm_time_to_first_token_microseconds_bucket",
            &[("model", &model)],
        )
        .filter_map(|s| s.labels["le"].parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect();
    le.sort_by(f64::total_cmp);
    assert_eq!(
        le, stats.buckets["wasmcustom.llm_time_to_first_token_microseconds"],
        "{name}: TTFT buckets"
    );
    // Which build runs: `llm_build_info{version,commit} 1`, both labels lifted.
    let info: Vec<_> = scrape.find("llm_build_info", &[]).collect();
    assert_eq!(info.len(), 1, "{name}: {:?}", scrape.names());
    assert_eq!(
        info[0].labels.keys().collect::<Vec<_>>(),
        ["commit", "version"],
        "{name}: {:?}",
        info[0]
    );
    assert_eq!(info[0].value, 1.0, "{name}");
    assert!(
        envoy.log().contains(&format!(
            "llm-pulse {} ({}) configured: ",
            info[0].labels["version"], info[0].labels["commit"]
        )),
        "{name}: build_info {:?} differs from the version line:\n{}",
        info[0],
        envoy.log()
    );
    // The health gauge carries its `target` label (probes go out on the interval).
    let targets: Vec<&str> = plugin["health"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in targets {
        assert!(
            scrape.find("llm_health_status", &[("target", t)]).count() == 1,
            "{name}: llm_health_status{{target=\"{t}\"}} missing: {:?}",
            scrape.names()
        );
    }
    // Where `/health` is served (`health.serve`): the filter's answer for the served
    // authority, the application's own `/health` (here gpu-sim's, 200 with an empty body) for
    // any other; never the internals (no `details` in the examples).
    let serve = plugin["health"]["serve"]
        .as_str()
        .unwrap_or("all")
        .to_string();
    let health_for = |host: &str| {
        let r = request_blocking(envoy.listener, "GET", "/health", &[("host", host)], "").unwrap();
        let v: Value = serde_json::from_slice(&r.body()).unwrap_or(Value::Null);
        v.get("targets").is_some().then_some(v)
    };
    let sim_health = || sim.request_log("/health").map_or(0, |l| l.arrivals.len());
    let before = sim_health();
    let app = health_for("app.example.com");
    match serve.as_str() {
        "all" => assert!(app.is_some(), "{name}: serve all"),
        "off" => assert!(app.is_none(), "{name}: serve off"),
        authority => {
            assert!(
                app.is_none(),
                "{name}: app.example.com got the filter's /health"
            );
            assert_eq!(sim_health(), before + 1, "{name}: the app's own /health");
            let v = health_for(authority)
                .unwrap_or_else(|| panic!("{name}: no /health for {authority}"));
            for hidden in ["cluster", "host", "last_error"] {
                for t in v["targets"].as_object().unwrap().values() {
                    assert!(t.get(hidden).is_none(), "{name}: {hidden} in {v}");
                }
            }
        }
    }
}

#[test]
fn stats_annotations_list_every_label_and_the_shipped_buckets() {
    let stats = annotations();
    assert_eq!(
        stats.extra_stat_tags, LABELS,
        "sidecar.istio.io/extraStatTags"
    );
    assert_eq!(stats.inclusion_prefixes, ["wasmcustom.llm_"]);
    // mesh-config.yaml says the same mesh-wide.
    let mesh = yaml_docs(&example("mesh-config.yaml")).remove(0);
    let dc = &mesh["spec"]["meshConfig"]["defaultConfig"];
    assert_eq!(dc["extraStatTags"], json!(LABELS));
    assert_eq!(
        dc["proxyStatsMatcher"]["inclusionPrefixes"],
        json!(stats.inclusion_prefixes)
    );
    // The same boundaries as envoy/envoy.yaml, histogram by histogram.
    let rendered = EnvoyOptions {
        // Istio loads the .wasm only.
        artifact: Artifact::Wasm,
        ..EnvoyOptions::new("127.0.0.1:8000".parse().unwrap())
    }
    .render(&std::env::temp_dir())
    .unwrap();
    let shipped = yaml_docs_str(&rendered, Path::new("envoy/envoy.yaml")).remove(0);
    let settings = shipped["stats_config"]["histogram_bucket_settings"]
        .as_array()
        .unwrap();
    let histograms = [
        "time_to_first_token_microseconds",
        "inter_token_latency_microseconds",
        "request_duration_microseconds",
        "input_sequence_tokens",
        "output_sequence_tokens",
        "cached_tokens",
        "health_check_duration_microseconds",
    ];
    assert_eq!(stats.buckets.len(), histograms.len());
    for h in histograms {
        let ours = &stats.buckets[&format!("wasmcustom.llm_{h}")];
        let theirs = settings
            .iter()
            .find(|s| {
                let re = s["match"]["safe_regex"]["regex"].as_str().unwrap();
                re.contains(h)
                    || (h.ends_with("_tokens") && re.contains(h.trim_end_matches("_tokens")))
            })
            .unwrap_or_else(|| panic!("envoy.yaml has no buckets for {h}"));
        let theirs: Vec<f64> = serde_json::from_value(theirs["buckets"].clone()).unwrap();
        assert_eq!(ours, &theirs, "{h}");
    }
}

#[test]
fn sidecar_envoyfilter_runs_in_envoy() {
    let stats = annotations();
    let (filter, added) =
        envoyfilter_patches(&example("envoyfilter-sidecar.yaml"), "SIDECAR_INBOUND");
    assert_fail_open_v8_shared(&filter);
    let filter = with_local_wasm(
        filter,
        Some(&format!("{}/llm_pulse.wasm", stats.wasm_mount)),
    );
    run_in_envoy("sidecar", &stats, filter, &added);
}

#[test]
fn gateway_envoyfilter_runs_in_envoy() {
    let stats = annotations();
    let (filter, added) = envoyfilter_patches(&example("envoyfilter-gateway.yaml"), "GATEWAY");
    assert_eq!(added.len(), 1, "the llm_pulse_probe cluster");
    assert_fail_open_v8_shared(&filter);
    let filter = with_local_wasm(
        filter,
        Some(&format!("{}/llm_pulse.wasm", stats.wasm_mount)),
    );
    run_in_envoy("gateway", &stats, filter, &added);
}

/// What Istio builds from a WasmPlugin (pilot's WasmPlugin conversion): the filter named
/// after the resource, root_id = pluginName, pluginConfig as a JSON string, v8, no vm_id, the
/// fetched module as a local file, failStrategy as Envoy's failure_policy.
fn wasmplugin_filter() -> Value {
    let path = example("wasmplugin.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The placeholders README's envsubst fills in.
    let sha = "0".repeat(64);
    let text = text
        .replace(
            "${LLM_PULSE_WASM_URL}",
            "oci://registry.example.com/llm-pulse:0.1.0",
        )
        .replace("${LLM_PULSE_WASM_SHA256}", &sha);
    assert!(
        !text.contains("${"),
        "an unfilled placeholder in {}",
        path.display()
    );
    let wp = yaml_docs_str(&text, &path).remove(0);
    assert_eq!(wp["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(wp["kind"], "WasmPlugin");
    let spec = &wp["spec"];
    let url = spec["url"].as_str().unwrap();
    assert!(
        url.starts_with("oci://") || url.starts_with("https://"),
        "{url}"
    );
    assert_eq!(spec["sha256"], sha.as_str());
    assert_eq!(spec["phase"], "STATS");
    assert_eq!(spec["failStrategy"], "FAIL_OPEN");
    assert!(
        spec["selector"]["matchLabels"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "a selector"
    );
    let failure_policy = match spec["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let name = format!(
        "{}.{}",
        wp["metadata"]["namespace"].as_str().unwrap(),
        wp["metadata"]["name"].as_str().unwrap()
    );
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": spec["pluginName"],
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": serde_json::to_string(&spec["pluginConfig"]).unwrap()
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": "" } },
                    "environment_variables": {
                        "key_values": { "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": "1" }
                    }
                },
                "failure_policy": failure_policy
            }
        }
    })
}

#[test]
fn wasmplugin_runs_in_envoy() {
    let stats = annotations();
    let filter = with_local_wasm(wasmplugin_filter(), None);
    run_in_envoy("wasmplugin", &stats, filter, &[]);
}

/// The test catches broken examples: an Envoy field Envoy does not know, a plugin field the
/// filter does not know, and YAML that does not parse. Also: the older-Istio fail-open form
/// the examples mention is one Envoy 1.40 accepts.
#[test]
fn broken_examples_fail_and_the_older_fail_open_form_validates() {
    let stats = annotations();
    let path = example("envoyfilter-sidecar.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let bootstrap_of = |text: &str| {
        let dir = std::env::temp_dir().join(format!(
            "llm-pulse-istio-{}-broken.yaml",
            std::process::id()
        ));
        std::fs::write(&dir, text).unwrap();
        let (filter, added) = envoyfilter_patches(&dir, "SIDECAR_INBOUND");
        let _ = std::fs::remove_file(&dir);
        let filter = with_local_wasm(filter, None);
        let clusters = target_clusters(&plugin_json(&filter), &added);
        let b = istio_bootstrap(
            &stats,
            filter,
            &added,
            &clusters,
            "127.0.0.1:8000".parse().unwrap(),
        );
        serde_json::to_string(&b).unwrap()
    };
    envoy::validate(&bootstrap_of(&text)).expect("the example validates");

    let typo = text.replace("failure_policy: FAIL_OPEN", "failure_polcy: FAIL_OPEN");
    let err = envoy::validate(&bootstrap_of(&typo)).expect_err("an unknown Envoy field");
    assert!(err.to_string().contains("failure_polcy"), "{err}");

    let bad_plugin = text.replace("\"max_models\": 32", "\"max_model\": 32");
    assert_ne!(bad_plugin, text);
    let err = envoy::validate(&bootstrap_of(&bad_plugin)).expect_err("an unknown plugin field");
    assert!(
        err.to_string()
            .contains("llm-pulse: invalid plugin configuration: max_model"),
        "{err}"
    );

    let broken_yaml = text.replace(
        "          name: envoy.filters.http.wasm",
        "         name: envoy.filters.http.wasm",
    );
    assert_ne!(broken_yaml, text);
    assert!(
        std::panic::catch_unwind(|| yaml_docs_str(&broken_yaml, &path)).is_err(),
        "mis-indented YAML must not parse"
    );

    // envoyfilter_patches insists on failure_policy: build the older form by hand.
    let older = text.replace("failure_policy: FAIL_OPEN", "fail_open: true");
    let mut doc = yaml_docs_str(&older, &path).remove(0);
    let value = &mut doc["spec"]["configPatches"][0]["patch"]["value"];
    assert_eq!(value["typed_config"]["config"]["fail_open"], true);
    let filter = with_local_wasm(value.clone(), None);
    let clusters = target_clusters(&plugin_json(&filter), &[]);
    let b = istio_bootstrap(
        &stats,
        filter,
        &[],
        &clusters,
        "127.0.0.1:8000".parse().unwrap(),
    );
    envoy::validate(&serde_json::to_string(&b).unwrap()).expect("fail_open: true validates");
}

/// What Istio's pilot builds for a VirtualService's `retries` (its `retry.ConvertPolicy`):
/// `attempts` -> num_retries; in `retryOn`, numbers are status codes (retriable_status_codes,
/// and `retriable-status-codes` added), the rest stays; the previous_hosts predicate by
/// default. And for a DestinationRule's `outlierDetection` the Envoy fields of the same
/// meaning.
fn istio_retry_and_outlier(vs: &Value, dr: &Value) -> (Value, Value) {
    let retries = &vs["spec"]["http"][0]["retries"];
    let mut on = Vec::new();
    let mut codes = Vec::new();
    for part in retries["retryOn"].as_str().unwrap().split(',') {
        match part.trim().parse::<u64>() {
            Ok(code) => codes.push(code),
            Err(_) => on.push(part.trim().to_string()),
        }
    }
    if !codes.is_empty() && !on.iter().any(|p| p == "retriable-status-codes") {
        on.push("retriable-status-codes".into());
    }
    on.sort();
    let retry = json!({
        "retry_on": on,
        "retriable_status_codes": codes,
        "num_retries": retries["attempts"],
        "retry_host_predicate": "envoy.retry_host_predicates.previous_hosts",
    });
    let od = &dr["spec"]["trafficPolicy"]["outlierDetection"];
    let outlier = json!({
        "consecutive_5xx": od["consecutive5xxErrors"],
        "consecutive_gateway_failure": od["consecutiveGatewayErrors"],
        "max_ejection_percent": od["maxEjectionPercent"],
    });
    (retry, outlier)
}

/// The Istio callers' example (caller-traffic-policy.yaml) is what e2e_eject's fail-fast run
/// uses: envoy/caller.yaml's `fail-fast callers` blocks carry the same retry policy and
/// outlier thresholds Istio builds from it (the durations are the test's own).
#[test]
fn caller_traffic_policy_is_what_the_fail_fast_callers_run() {
    let docs = yaml_docs(&example("caller-traffic-policy.yaml"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("no {k}"))
            .clone()
    };
    let (dr, vs) = (kind("DestinationRule"), kind("VirtualService"));
    assert_eq!(dr["apiVersion"], "networking.istio.io/v1");
    assert_eq!(dr["spec"]["host"], vs["spec"]["hosts"][0]);
    assert_eq!(
        vs["spec"]["http"][0]["timeout"], "0s",
        "no deadline on streams"
    );
    let (want_retry, want_outlier) = istio_retry_and_outlier(&vs, &dr);

    let text = std::fs::read_to_string(repo_root().join("envoy/caller.yaml")).unwrap();
    let text = envoy::without_block(&text, "active health check");
    // Placeholders (ports, durations) are not compared: any value will do.
    let mut text = text;
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').unwrap();
        text.replace_range(start..=end, "1");
    }
    let caller = yaml_docs_str(&text, Path::new("envoy/caller.yaml")).remove(0);
    let listener = &caller["static_resources"]["listeners"][0];
    let route = &listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        ["virtual_hosts"][0]["routes"][0]["route"];
    let rp = &route["retry_policy"];
    let mut on: Vec<String> = rp["retry_on"]
        .as_str()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    on.sort();
    let ours = json!({
        "retry_on": on,
        "retriable_status_codes": rp["retriable_status_codes"],
        "num_retries": rp["num_retries"],
        "retry_host_predicate": rp["retry_host_predicate"][0]["name"],
    });
    assert_eq!(ours, want_retry, "envoy/caller.yaml's retry policy");
    let od = &caller["static_resources"]["clusters"][0]["outlier_detection"];
    let ours = json!({
        "consecutive_5xx": od["consecutive_5xx"],
        "consecutive_gateway_failure": od["consecutive_gateway_failure"],
        "max_ejection_percent": od["max_ejection_percent"],
    });
    assert_eq!(ours, want_outlier, "envoy/caller.yaml's outlier detection");
}

/// readiness-listener.yaml beside the sidecar filter in a real Envoy: its /health is the
/// sidecar's probe state (503 while the worker's inference hangs, although the worker's own
/// /health answers 200), which is what a readinessProbe on its port sees. What Kubernetes and
/// Istio do with the probe (the agent's rewrite, iptables) is not run here.
#[test]
fn readiness_listener_answers_the_sidecars_health() {
    let stats = annotations();
    let (filter, added) =
        envoyfilter_patches(&example("envoyfilter-sidecar.yaml"), "SIDECAR_INBOUND");
    let docs = yaml_docs(&example("readiness-listener.yaml"));
    let patch = &docs[0]["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "LISTENER");
    assert_eq!(patch["patch"]["operation"], "ADD");
    let mut listener = patch["patch"]["value"].clone();
    let port = listener["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    let hcm = &mut listener["filter_chains"][0]["filters"][0]["typed_config"];
    let wasm = hcm["http_filters"][0].clone();
    assert_eq!(
        wasm["typed_config"]["config"], filter["typed_config"]["config"],
        "the same plugin as the sidecar's, so the same probe state"
    );
    // The pod patch probes that port and keeps it out of Istio's inbound capture.
    let pod = yaml_docs(&example("readiness-probe-patch.yaml")).remove(0);
    let template = &pod["spec"]["template"];
    let probe = &template["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(probe["port"].as_u64(), Some(port));
    assert_eq!(probe["path"], plugin_json(&filter)["health"]["path"]);
    assert_eq!(
        template["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"],
        port.to_string()
    );

    // Short probes for the test, the same in both copies of the plugin config.
    let quick = |mut f: Value| {
        let cfg = &mut f["typed_config"]["config"]["configuration"]["value"];
        let text = cfg.as_str().unwrap().replace(
            r#""interval": "10s", "timeout": "5s""#,
            r#""interval": "500ms", "timeout": "300ms""#,
        );
        assert!(text.contains("500ms"), "{text}");
        *cfg = json!(text);
        with_local_wasm(f, None)
    };
    hcm["http_filters"][0] = quick(wasm);
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let readiness = free.local_addr().unwrap();
    drop(free);
    listener["address"]["socket_address"] =
        json!({ "address": "127.0.0.1", "port_value": readiness.port() });
    let sim = fast_sim();
    let filter = quick(filter);
    let clusters = target_clusters(&plugin_json(&filter), &added);
    let mut bootstrap = istio_bootstrap(&stats, filter, &added, &clusters, sim.addr);
    bootstrap["static_resources"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(listener);
    let envoy = RawEnvoy::start(&bootstrap, "readiness").unwrap();

    let health = || {
        request_blocking(readiness, "GET", "/health", &[], "")
            .unwrap()
            .status
    };
    let wait_for = |want: u16| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while health() != want {
            assert!(
                Instant::now() < deadline,
                "/health never {want}:\n{}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(200);
    sim.set_mode(sim::Mode::Hang).unwrap();
    assert_eq!(
        request_blocking(sim.addr, "GET", "/health", &[], "")
            .unwrap()
            .status,
        200,
        "the worker's own /health passes while inference hangs"
    );
    wait_for(503);
    sim.set_mode(sim::Mode::Normal).unwrap();
    wait_for(200);
    let other = request_blocking(readiness, "GET", "/v1/models", &[], "").unwrap();
    assert_eq!(
        other.status, 404,
        "nothing but the health answers on this port"
    );
}
