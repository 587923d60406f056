//! Synthetic health probes (docs/design.md, "Health probes"): the smallest real inference per
//! backend, sent on a timer by exactly one VM per target, with thresholds, and the `/health`,
//! `/live` answers.

pub mod answer;
pub mod fail_fast;
pub mod payload;
pub mod prober;
pub mod report;
pub mod state;
pub mod target;
