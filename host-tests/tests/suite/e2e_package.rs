//! scripts/package against a real registry, and the examples that load its image.
//!
//! `package_pushes_to_a_registry_and_pulls_back`: copies the working tree without its build
//! outputs (git's tracked and unignored files) to a temporary directory, runs scripts/package
//! there on the release .wasm scripts/test built (`--wasm`: the OCI image, no second build),
//! starts Debian's `docker-registry` (distribution 2.8) on loopback with its own config and
//! storage, pushes the image with `skopeo copy` (the command the script prints), pulls it back by digest and checks what Istio's and Envoy
//! Gateway's image fetchers check: an OCI manifest, one `application/vnd.oci.image.layer.v1.
//! tar+gzip` layer holding `plugin.wasm` (the Wasm image spec's *compat* variant), digests
//! that match. The layer's `plugin.wasm` must be the built module byte for byte, and the
//! `.sha256` file the module's sha256. The examples, filled in the way their headers say, must
//! name the pushed image and its digest.
//!
//! `extension_policy_follows_envoy_gateway_api`: examples/envoy-gateway/extension-policy.yaml
//! against Envoy Gateway's EnvoyExtensionPolicy API, field by field, and its plugin config
//! against the WasmPlugin's.
//!
//! Needs skopeo, umoci, jq and docker-registry, which scripts/test installs (as root, Debian
//! packages of the same names); the test installs nothing and fails naming what is missing.
//! Self-contained on purpose: std, serde_json, serde_yaml (for the examples) and anyhow only.

use anyhow::{anyhow, bail, ensure, Context, Result};
use host_tests::artifacts::{repo_root, wasm_path};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What Istio's agent (pkg/wasm/imagefetcher.go, extractOCIStandardImage) and Envoy Gateway's
/// (internal/wasm/imagefetcher.go, the same code) accept as the compat variant.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// A Docker schema 2 manifest sends Istio down its Docker path, which wants Docker media types.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const COMPAT_ANNOTATION: &str = "module.wasm.image/variant";
const REPOSITORY: &str = "llm-pulse";

// ---------------------------------------------------------------------------------------------
// Small helpers: paths, temporary directories, commands, processes, ports, HTTP.

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("llm-pulse-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop, also when the test panics.
struct ChildGuard {
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command to completion; an error names it and carries its stderr.
fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    ensure!(
        out.status.success(),
        "{shown} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn stdout_of(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8(run(cmd)?.stdout)?)
}

/// The scripts read the target dir from the tree they run in.
fn script(root: &Path, name: &str) -> Command {
    let mut cmd = Command::new(root.join("scripts").join(name));
    cmd.current_dir(root)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

/// sha256 of a file, hex, from coreutils' sha256sum.
fn sha256_file(path: &Path) -> Result<String> {
    let out = stdout_of(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("sha256sum printed nothing for {}", path.display()))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A port free on loopback now (the registry binds it right after; a lost race shows up as
/// the registry exiting, and the caller tries again).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `probe` until it yields a value or `deadline` passes.
fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let end = Instant::now() + deadline;
    let mut last = String::new();
    loop {
        match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= end {
            bail!("{what}: not within {deadline:?} (last error: {last})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 GET (the server closes the connection after the answer).
fn http_get(port: u16, path: &str, accept: &[&str]) -> Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for a in accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in the answer to GET {path}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status line in the answer to GET {path}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// One YAML document as JSON.
fn yaml_doc(text: &str, path: &Path) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The tree, the tools, the registry.

/// The working tree as a fresh clone plus uncommitted changes would have it: git's tracked
/// and untracked-but-not-ignored files, without target/ and every other build output.
fn copy_clean_tree(root: &Path, to: &Path) -> Result<()> {
    let listing = run(Command::new("git").current_dir(root).args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ]))
    .context("the test copies the tree git knows: run it in a git checkout")?;
    for rel in listing.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel)?);
        let src = root.join(rel);
        if !src.exists() {
            continue; // deleted in the working tree
        }
        let dst = to.join(rel);
        if let Some(dir) = dst.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // fs::copy keeps the mode: the scripts stay executable.
        std::fs::copy(&src, &dst).with_context(|| format!("copy {}", src.display()))?;
    }
    Ok(())
}

/// The commands this test runs besides git and coreutils; scripts/test installs them.
const TOOLS: [&str; 4] = ["skopeo", "umoci", "jq", "docker-registry"];

/// Fails naming the tools that are not on `PATH` and the command that installs them.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = TOOLS
        .into_iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "this test needs {}: scripts/test installs them (as root), or run \
         `apt-get install {}` (Debian)",
        missing.join(", "),
        missing.join(" ")
    );
}

struct Registry {
    port: u16,
    _process: ChildGuard,
}

/// Debian's docker-registry on 127.0.0.1 with its own config and storage under `dir`.
fn start_registry(dir: &Path) -> Result<Registry> {
    let mut failures = Vec::new();
    for attempt in 0..3 {
        let port = free_port();
        let storage = dir.join(format!("storage-{attempt}"));
        std::fs::create_dir_all(&storage)?;
        let config = dir.join(format!("config-{attempt}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log_path = dir.join(format!("registry-{attempt}.log"));
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start docker-registry")?;
        let mut guard = ChildGuard { child };
        let ready = wait_for(
            "the registry answers GET /v2/",
            Duration::from_secs(20),
            || {
                if let Some(status) = guard.child.try_wait()? {
                    bail!("docker-registry exited ({status})");
                }
                Ok(match http_get(port, "/v2/", &[]) {
                    Ok(r) if r.status == 200 => Some(()),
                    _ => None,
                })
            },
        );
        match ready {
            Ok(()) => {
                return Ok(Registry {
                    port,
                    _process: guard,
                })
            }
            Err(e) => failures.push(format!(
                "{e:#}\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )),
        }
    }
    bail!("docker-registry did not start:\n{}", failures.join("\n"))
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn package_pushes_to_a_registry_and_pulls_back() {
    let root = repo_root();
    require_tools();
    let built = wasm_path().expect("the release .wasm");

    let tmp = TempDir::new("package");
    let tree = tmp.path().join("tree");
    copy_clean_tree(&root, &tree).expect("copy the working tree");

    let started = Instant::now();
    let printed =
        stdout_of(script(&tree, "package").arg("--wasm").arg(&built)).expect("scripts/package");
    eprintln!(
        "scripts/package (clean tree) took {:.1?}:\n{printed}",
        started.elapsed()
    );

    // What scripts/package made.
    let version = stdout_of(Command::new("cargo").current_dir(&tree).args([
        "metadata",
        "--no-deps",
        "--offline",
        "--format-version",
        "1",
    ]))
    .map(|m| serde_json::from_str::<Value>(&m).expect("cargo metadata JSON"))
    .expect("cargo metadata")["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "llm-pulse")
        .and_then(|p| p["version"].as_str())
        .expect("llm-pulse's version")
        .to_string();
    let out = tree.join("target/package");
    let wasm = out.join("llm_pulse.wasm");
    let layout = out.join("llm-pulse-oci");
    let archive = out.join(format!("llm-pulse-{version}.oci.tar"));
    let digest_file = out.join(format!("llm-pulse-{version}.digest"));
    for p in [&built, &wasm, &layout, &archive, &digest_file] {
        assert!(p.exists(), "scripts/package did not make {}", p.display());
    }
    let module = std::fs::read(&wasm).unwrap();
    assert_eq!(
        module,
        std::fs::read(&built).unwrap(),
        "the packaged .wasm is the build's"
    );
    assert!(module.starts_with(b"\0asm"), "a wasm module");

    // The checksum file: sha256sum's own format, and true.
    let module_sha = sha256_file(&wasm).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("llm_pulse.wasm.sha256")).unwrap(),
        format!("{module_sha}  llm_pulse.wasm\n")
    );
    run(Command::new("sha256sum")
        .current_dir(&out)
        .args(["-c", "llm_pulse.wasm.sha256"]))
    .expect("sha256sum -c llm_pulse.wasm.sha256");

    let digest = std::fs::read_to_string(&digest_file).unwrap();
    let digest = digest.trim_end();
    let digest_hex = digest.strip_prefix("sha256:").expect("sha256:<hex>");
    assert!(is_hex64(digest_hex), "{digest}");
    assert!(printed.contains(digest), "the digest is printed");
    assert!(
        printed.contains(&module_sha),
        "the module's sha256 is printed"
    );

    // The archive holds the same image as the layout.
    let archived = stdout_of(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci-archive:{}:{version}", archive.display()),
    ]))
    .unwrap();
    let archived_path = tmp.path().join("archived-manifest.json");
    std::fs::write(&archived_path, archived).unwrap();
    assert_eq!(sha256_file(&archived_path).unwrap(), digest_hex);

    // Push with the command scripts/package prints, to a registry of our own.
    let registry = start_registry(tmp.path()).expect("registry");
    let host = format!("127.0.0.1:{}", registry.port);
    let push_line = printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("skopeo copy oci:"))
        .expect("scripts/package prints a `skopeo copy` to push");
    assert_eq!(
        push_line,
        format!("skopeo copy oci:target/package/llm-pulse-oci:{version} docker://REGISTRY/{REPOSITORY}:{version}")
    );
    let push = push_line
        .replacen("skopeo copy", "skopeo copy --dest-tls-verify=false", 1)
        .replace("REGISTRY", &host);
    let started = Instant::now();
    run(Command::new("bash").current_dir(&tree).args(["-c", &push])).expect("push");
    eprintln!("push took {:.1?}", started.elapsed());

    // The registry serves the manifest by tag as an OCI manifest with the same digest.
    let by_tag = http_get(
        registry.port,
        &format!("/v2/{REPOSITORY}/manifests/{version}"),
        &[OCI_MANIFEST, DOCKER_MANIFEST],
    )
    .unwrap();
    assert_eq!(
        by_tag.status,
        200,
        "{}",
        String::from_utf8_lossy(&by_tag.body)
    );
    assert_eq!(by_tag.header("Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(by_tag.header("Docker-Content-Digest"), Some(digest));
    let tags = http_get(registry.port, &format!("/v2/{REPOSITORY}/tags/list"), &[]).unwrap();
    let tags: Value = serde_json::from_slice(&tags.body).unwrap();
    assert_eq!(tags["tags"], json!([version]));

    // Pull back by digest, blobs as they are stored.
    let pulled = tmp.path().join("pulled");
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{host}/{REPOSITORY}@{digest}"),
        &format!("dir:{}", pulled.display()),
    ]))
    .expect("pull by digest");
    let manifest_path = pulled.join("manifest.json");
    assert_eq!(sha256_file(&manifest_path).unwrap(), digest_hex);
    assert_eq!(std::fs::read(&manifest_path).unwrap(), by_tag.body);
    let manifest: Value = serde_json::from_slice(&by_tag.body).unwrap();
    eprintln!(
        "manifest {digest}:\n{}",
        serde_json::to_string_pretty(&manifest).unwrap()
    );

    // The media types Istio's compat path wants, and nothing else.
    assert_eq!(manifest["schemaVersion"], 2);
    assert!(
        manifest["mediaType"].is_null() || manifest["mediaType"] == OCI_MANIFEST,
        "an OCI manifest: {}",
        manifest["mediaType"]
    );
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "exactly one layer: {layers:?}");
    assert_eq!(layers[0]["mediaType"], OCI_LAYER_TAR_GZIP);
    assert_eq!(manifest["annotations"][COMPAT_ANNOTATION], "compat");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        version.as_str()
    );

    // Each blob is what its descriptor says.
    let blob = |desc: &Value| -> PathBuf {
        let d = desc["digest"].as_str().expect("digest");
        let hex = d.strip_prefix("sha256:").expect("sha256 digest");
        let path = pulled.join(hex);
        assert_eq!(sha256_file(&path).unwrap(), hex, "blob {d}");
        assert_eq!(
            Some(std::fs::metadata(&path).unwrap().len()),
            desc["size"].as_u64(),
            "size of blob {d}"
        );
        path
    };
    let config: Value = serde_json::from_slice(&std::fs::read(blob(&manifest["config"])).unwrap())
        .expect("config JSON");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );

    // The layer: a gzip tar with plugin.wasm only, which is the built module byte for byte.
    let layer = blob(&layers[0]);
    let listing = stdout_of(Command::new("tar").arg("-tzf").arg(&layer)).expect("tar -tzf");
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["plugin.wasm"]);
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&unpacked))
    .expect("tar -xzf");
    assert!(
        std::fs::read(unpacked.join("plugin.wasm")).unwrap() == module,
        "the layer's plugin.wasm is not the built llm_pulse.wasm"
    );
    assert_eq!(
        sha256_file(&unpacked.join("plugin.wasm")).unwrap(),
        module_sha
    );

    // The examples, filled in as their headers say, name this image and its digest.
    let image = format!("{host}/{REPOSITORY}:{version}");
    let fill = |rel: &str| -> Value {
        let path = tree.join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${LLM_PULSE_WASM_URL}", &format!("oci://{image}"))
            .replace("${LLM_PULSE_IMAGE}", &image)
            .replace("${LLM_PULSE_WASM_SHA256}", digest_hex);
        assert!(!text.contains("${"), "an unfilled placeholder in {rel}");
        yaml_doc(&text, &path)
    };
    let wp = fill("examples/istio/wasmplugin.yaml");
    assert_eq!(wp["spec"]["url"], format!("oci://{image}"));
    assert_eq!(wp["spec"]["sha256"], digest_hex);
    let eep = fill("examples/envoy-gateway/extension-policy.yaml");
    let code = &eep["spec"]["wasm"][0]["code"];
    assert_eq!(code["type"], "Image");
    assert_eq!(code["image"]["url"], image.as_str());
    assert_eq!(code["image"]["sha256"], digest_hex);

    // Every target/package path the examples' and README's commands use is one the script made.
    for rel in [
        "examples/istio/wasmplugin.yaml",
        "examples/envoy-gateway/extension-policy.yaml",
        "README.md",
    ] {
        let text = std::fs::read_to_string(tree.join(rel)).unwrap();
        let mut rest = text.as_str();
        let mut seen = 0;
        while let Some(at) = rest.find("target/package/") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                .unwrap_or(tail.len());
            let named = tail[..end].trim_end_matches(['.', '/']);
            assert!(
                tree.join(named).exists(),
                "{rel} names {named}, which scripts/package did not make"
            );
            seen += 1;
            rest = &tail[end..];
        }
        assert!(seen > 0, "{rel} shows no target/package path");
    }
}

/// Envoy Gateway's EnvoyExtensionPolicy API, only as much as the example uses, as an OpenAPI
/// v3 subset. Transcribed from envoyproxy/gateway `api/v1alpha1/wasm_types.go` (Wasm,
/// WasmCodeSource, ImageWasmCodeSource, HTTPWasmCodeSource, WasmEnv, ImagePullPolicy) and
/// `api/v1alpha1/policy_helpers.go` (PolicyTargetReferences, with Gateway API's
/// LocalPolicyTargetReferenceWithSectionName), with the CEL rules of
/// `envoyextensionpolicy_types.go` on targetRefs as enums. The generated CRD
/// (charts/gateway-helm/crds/generated/gateway.envoyproxy.io_envoyextensionpolicies.yaml)
/// in the code index is a v1.0-era copy, before rootID, image.sha256 and targetRefs existed,
/// so the Go types are the source here. Unknown fields are errors (kubectl's strict
/// validation), except under `config` (x-kubernetes-preserve-unknown-fields).
fn envoy_extension_policy_schema() -> Value {
    let string = json!({"type": "string"});
    let target_ref = json!({
        "type": "object",
        "required": ["group", "kind", "name"],
        "properties": {
            "group": {"type": "string", "enum": ["gateway.networking.k8s.io"]},
            "kind": {"type": "string",
                     "enum": ["Gateway", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"]},
            "name": {"type": "string", "minLength": 1, "maxLength": 253},
            "sectionName": {"type": "string", "minLength": 1, "maxLength": 253}
        }
    });
    let secret_ref = json!({
        "type": "object",
        "required": ["name"],
        "properties": {
            "group": string, "kind": {"type": "string", "enum": ["Secret"]},
            "name": string, "namespace": string
        }
    });
    json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["gateway.envoyproxy.io/v1alpha1"]},
            "kind": {"type": "string", "enum": ["EnvoyExtensionPolicy"]},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {"name": string, "namespace": string}
            },
            "spec": {
                "type": "object",
                "properties": {
                    "targetRef": target_ref,
                    "targetRefs": {"type": "array", "items": target_ref},
                    "wasm": {
                        "type": "array",
                        "maxItems": 16,
                        "items": {
                            "type": "object",
                            "required": ["code"],
                            "properties": {
                                "name": string,
                                "rootID": string,
                                "code": {
                                    "type": "object",
                                    "required": ["type"],
                                    "properties": {
                                        "type": {"type": "string", "enum": ["HTTP", "Image"]},
                                        "http": {
                                            "type": "object",
                                            "required": ["url"],
                                            "properties": {"url": string, "sha256": string}
                                        },
                                        "image": {
                                            "type": "object",
                                            "required": ["url"],
                                            "properties": {
                                                "url": string,
                                                "sha256": string,
                                                "pullSecretRef": secret_ref
                                            }
                                        },
                                        "pullPolicy": {"type": "string",
                                                       "enum": ["IfNotPresent", "Always"]}
                                    }
                                },
                                "config": {"x-kubernetes-preserve-unknown-fields": true},
                                "failOpen": {"type": "boolean"},
                                "env": {
                                    "type": "object",
                                    "properties": {
                                        "hostKeys": {"type": "array", "items": string}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

/// Checks `v` against the OpenAPI subset above; every violation, with its path.
fn validate(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true {
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let type_ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: want {ty}, got {v}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            errors.push(format!("{path}: {v} is not one of {allowed:?}"));
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| n < min)
            || schema["maxLength"].as_u64().is_some_and(|max| n > max)
        {
            errors.push(format!("{path}: length {n} out of bounds"));
        }
    }
    if let Some(items) = v.as_array() {
        if schema["maxItems"]
            .as_u64()
            .is_some_and(|max| items.len() as u64 > max)
        {
            errors.push(format!("{path}: more than {} items", schema["maxItems"]));
        }
        for (i, item) in items.iter().enumerate() {
            validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
        }
    }
    if let Some(fields) = v.as_object() {
        for req in schema["required"].as_array().into_iter().flatten() {
            let req = req.as_str().unwrap_or("");
            if !fields.contains_key(req) {
                errors.push(format!("{path}.{req}: required"));
            }
        }
        for (k, fv) in fields {
            match schema["properties"].get(k) {
                Some(s) => validate(s, fv, &format!("{path}.{k}"), errors),
                None => errors.push(format!("{path}.{k}: not a field of the API")),
            }
        }
    }
}

#[test]
fn extension_policy_follows_envoy_gateway_api() {
    let root = repo_root();
    let sample_image = "registry.example.com/llm-pulse:0.1.0";
    let sample_sha = "0123456789abcdef".repeat(4);
    let read = |rel: &str| -> Value {
        let path = root.join(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .replace("${LLM_PULSE_WASM_URL}", &format!("oci://{sample_image}"))
            .replace("${LLM_PULSE_IMAGE}", sample_image)
            .replace("${LLM_PULSE_WASM_SHA256}", &sample_sha);
        assert!(!text.contains("${"), "an unfilled placeholder in {rel}");
        yaml_doc(&text, &path)
    };
    let eep = read("examples/envoy-gateway/extension-policy.yaml");
    let wp = read("examples/istio/wasmplugin.yaml");

    let mut errors = Vec::new();
    validate(&envoy_extension_policy_schema(), &eep, "", &mut errors);
    assert!(
        errors.is_empty(),
        "not Envoy Gateway's API:\n{}",
        errors.join("\n")
    );

    let spec = &eep["spec"];
    // One attachment, the new way (targetRef is deprecated).
    assert!(
        spec["targetRef"].is_null(),
        "targetRefs, not the deprecated targetRef"
    );
    let targets = spec["targetRefs"].as_array().expect("targetRefs");
    assert!(!targets.is_empty());
    let wasm = spec["wasm"].as_array().expect("wasm");
    assert_eq!(wasm.len(), 1);
    let w = &wasm[0];
    assert_eq!(w["name"], "llm-pulse");
    // The root context the filter registers; the WasmPlugin's pluginName says the same.
    assert_eq!(w["rootID"], wp["spec"]["pluginName"]);
    assert_eq!(w["rootID"], "llm_pulse");
    // Fail open as the WasmPlugin (FAIL_OPEN): the filter only observes.
    assert_eq!(w["failOpen"], true);
    assert_eq!(wp["spec"]["failStrategy"], "FAIL_OPEN");
    // WasmCodeSource's CEL rules: the source named by `type` is set, the other one is not.
    let code = &w["code"];
    assert_eq!(code["type"], "Image");
    assert!(code["image"].is_object() && code["http"].is_null());
    assert_eq!(code["image"]["url"], sample_image);
    // Envoy Gateway compares it with the image's manifest digest (hex, as go-containerregistry's
    // Hash.Hex).
    assert!(code["image"]["sha256"].as_str().is_some_and(is_hex64));
    assert!(
        code["pullPolicy"].is_null(),
        "pinned by sha256: no pull policy"
    );

    // The plugin config is the WasmPlugin's but for the probe cluster, which is Envoy
    // Gateway's cluster of a rule of the targeted HTTPRoute.
    let mut config = w["config"].clone();
    let mut want = wp["spec"]["pluginConfig"].clone();
    let ns = eep["metadata"]["namespace"].as_str().expect("namespace");
    let routes: Vec<&str> = targets
        .iter()
        .filter(|t| t["kind"] == "HTTPRoute")
        .filter_map(|t| t["name"].as_str())
        .collect();
    let eg_targets = config["health"]["targets"].as_array_mut().expect("targets");
    for t in eg_targets.iter_mut() {
        let cluster = t["cluster"].as_str().expect("cluster").to_string();
        let ok = routes.iter().any(|r| {
            cluster
                .strip_prefix(&format!("httproute/{ns}/{r}/rule/"))
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        });
        assert!(
            ok,
            "{cluster}: not httproute/{ns}/<targeted route>/rule/<n>"
        );
        t["cluster"] = Value::Null;
    }
    for t in want["health"]["targets"].as_array_mut().expect("targets") {
        t["cluster"] = Value::Null;
    }
    assert_eq!(
        config, want,
        "the EnvoyExtensionPolicy's config is not the WasmPlugin's"
    );
}
