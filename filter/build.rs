//! Records the git commit the filter is built from, for the version line it logs at VM start
//! (`LLM_PULSE_COMMIT` overrides it, e.g. when building from a source archive).

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !s.trim().is_empty()).then(|| s.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=LLM_PULSE_COMMIT");
    let commit = std::env::var("LLM_PULSE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=7", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LLM_PULSE_COMMIT={commit}");
    // Rebuild when HEAD moves: the HEAD file, the branch it names, and packed refs. Paths come
    // from `git rev-parse --git-path`, which resolves them in a linked worktree too (its HEAD
    // is in .git/worktrees/<name>/, its branches in the main .git/). Only paths that exist (a
    // missing one would rebuild every time).
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for path in watch
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .map(PathBuf::from)
        .filter(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
