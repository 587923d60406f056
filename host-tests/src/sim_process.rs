//! gpu-sim as a child process, for tests that must freeze a worker for real (`SIGSTOP`): a
//! stopped process answers nothing, accepts nothing and runs no timer, as a hung GPU host. The
//! in-process sim ([`crate::sim::spawn`]) shares the test's process and cannot be stopped
//! alone. The child is resumed and killed on drop.

use crate::envoy::http_get;
use crate::sim::StatsSnapshot;
use anyhow::{anyhow, bail, Context as _};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct SimProcess {
    child: Child,
    /// Where it serves inference.
    pub addr: SocketAddr,
    /// Its admin listener (`/sim/stats`), which a stopped process does not answer either.
    pub admin: SocketAddr,
}

impl SimProcess {
    /// Starts `bin` (the `gpu-sim` binary: `env!("CARGO_BIN_EXE_gpu-sim")` in the tests) on
    /// free ports with `args`, and waits for the lines it prints once it listens.
    pub fn start(bin: &Path, args: &[&str]) -> anyhow::Result<SimProcess> {
        let mut child = Command::new(bin)
            .args(["--port", "0", "--admin-port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("gpu-sim: no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut address = |prefix: &str| -> anyhow::Result<SocketAddr> {
            let line = lines
                .next()
                .transpose()?
                .ok_or_else(|| anyhow!("gpu-sim exited before printing {prefix:?}"))?;
            let url = line
                .strip_prefix(prefix)
                .ok_or_else(|| anyhow!("gpu-sim printed {line:?}, not {prefix:?}"))?;
            url.trim_start_matches("http://")
                .parse()
                .with_context(|| format!("gpu-sim's address in {line:?}"))
        };
        let started = address("gpu-sim listening on ").and_then(|addr| {
            let admin = address("gpu-sim admin on ")?;
            Ok((addr, admin))
        });
        match started {
            Ok((addr, admin)) => Ok(SimProcess { child, addr, admin }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the process (`SIGSTOP`): its sockets stay open, nothing answers.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Resumes it (`SIGCONT`): it reads what queued up meanwhile.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid())?;
        // SAFETY: kill(2) on our own child's pid; it has not been waited for, so the pid is
        // still ours.
        if unsafe { libc::kill(pid, signal) } != 0 {
            bail!("kill({pid}, {signal}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// `GET /sim/stats` on the admin listener (answers only while the process runs).
    pub fn stats(&self) -> anyhow::Result<StatsSnapshot> {
        let body = http_get(self.admin, "/sim/stats")?;
        serde_json::from_str(&body).with_context(|| format!("gpu-sim stats: {body}"))
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        // A stopped process still dies of SIGKILL; resume it anyway so nothing waits on it.
        let _ = self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
