//! The harness's own test plugin (`wasm-host/test-plugin`, outside the workspace): built for
//! wasm32-wasip1 on first use in a test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, Result};

use super::host::HostBuilder;
use super::module_cache::target_dir;

const BUILD_HINT: &str = "the harness test plugin is built by the tests themselves \
     (cargo build --release --target wasm32-wasip1 --manifest-path wasm-host/test-plugin/Cargo.toml)";

/// Builds the test plugin once per process and returns the path of its `.wasm`.
pub fn test_plugin_wasm() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A [`HostBuilder`] for the test plugin.
pub fn test_plugin() -> Result<HostBuilder> {
    Ok(HostBuilder::new(test_plugin_wasm()?).missing_hint(BUILD_HINT))
}

fn build() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-plugin/Cargo.toml");
    let target = target_dir().join("test-plugin");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip1"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .map_err(|e| anyhow!("running cargo to build {}: {e}", manifest.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip1") && stderr.contains("target may not be installed") {
                "\nhint: rustup target add wasm32-wasip1"
            } else {
                ""
            };
        return Err(anyhow!(
            "building the wasm_host test plugin ({}) failed:\n{stderr}{hint}",
            manifest.display()
        ));
    }
    Ok(target.join("wasm32-wasip1/release/wasm_host_test_plugin.wasm"))
}
