//! Run-time fault modes for health-probe tests: what a broken GPU worker looks like from the
//! outside. Switched in-process with [`super::SimHandle::set_mode`] or over HTTP with
//! `POST /sim/mode/<hang|slow|error|down|recover>` (main port while it is up, or the admin
//! listener of the binary's `--admin-port`).
//!
//! "Inference" below means `POST /v1/chat/completions`, `/v1/completions`, `/generate` and
//! `/v1/images/generations`;
//! every other path (`/health`, `/v1/models`, `/sim/*`) behaves as in [`Mode::Normal`] in
//! every mode but [`Mode::Down`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the simulated worker misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Everything answers as configured.
    #[default]
    Normal,
    /// Inference requests are accepted (and logged) but never answered: no status line, the
    /// connection held open, until the mode leaves `Hang` (then they are answered normally,
    /// timed from that moment) or the client goes away. `GET /health` still answers 200: a
    /// hung GPU that passes its own health check.
    Hang,
    /// Inference answers normally but TTFT is multiplied by `SimConfig::slow_factor`.
    Slow,
    /// Inference answers 500 with the backend's error body, at once.
    Error,
    /// The main listener is closed (connect() is refused) and open connections are dropped.
    /// Leaving `Down` re-binds the same port.
    Down,
}

impl Mode {
    /// The lowercase name used in URLs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Hang => "hang",
            Self::Slow => "slow",
            Self::Error => "error",
            Self::Down => "down",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    /// `normal` and `recover` both mean [`Mode::Normal`].
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "normal" | "recover" => Ok(Self::Normal),
            "hang" => Ok(Self::Hang),
            "slow" => Ok(Self::Slow),
            "error" => Ok(Self::Error),
            "down" => Ok(Self::Down),
            other => Err(format!(
                "unknown mode `{other}` (want hang, slow, error, down or recover)"
            )),
        }
    }
}
