//! A worker that refuses the field the filter adds (a strict OpenAI-compatible server answers
//! 400 naming `stream_options`) is asked no more: the error answer to an edited request that
//! names one of the added fields marks the request's cluster in shared data, which every VM of
//! the plugin reads before it edits a request for that cluster.

use crate::host::{Host, HostError, MetricKind};
use crate::labels::sanitize_label_value;
use crate::metrics::encode_stat_name;

/// The fields the filter adds; an error answer naming one is a refusal.
const NEEDLES: [&[u8]; 3] = [
    b"stream_options",
    b"include_usage",
    b"continuous_usage_stats",
];
const LONGEST: usize = 22;
/// How much of an error answer is read for them: error bodies are short; the rest is not read.
pub const SCAN_CAP: usize = 16 * 1024;

/// Looks for the added fields' names in an error answer as it streams, in bounded memory.
#[derive(Debug, Default)]
pub struct RefusalScan {
    /// The last bytes of the previous read, so a name split across reads is found.
    tail: Vec<u8>,
    read: usize,
    pub found: bool,
}

impl RefusalScan {
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.found || self.read >= SCAN_CAP {
            return;
        }
        let take = chunk.len().min(SCAN_CAP - self.read);
        self.read += take;
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk.get(..take).unwrap_or_default());
        self.found = NEEDLES
            .iter()
            .any(|n| window.windows(n.len()).any(|w| w == *n));
        let keep = window.len().saturating_sub(LONGEST - 1);
        self.tail = window.split_off(keep);
    }
}

fn shared_key(cluster: &str) -> String {
    format!("llm_pulse.usage_refused.{cluster}")
}

/// Whether `cluster`'s worker refused the added field before.
pub fn is_refused(host: &dyn Host, cluster: &str) -> bool {
    host.get_shared_data(&shared_key(cluster)).0.is_some()
}

/// Marks `cluster` as refusing; the VM that marks it logs it and sets the gauge
/// `P_usage_stats_refused{cluster}` to 1. `detail` is the refused request's status.
pub fn mark(host: &dyn Host, prefix: &str, cluster: &str, status: u32) {
    let key = shared_key(cluster);
    if host.get_shared_data(&key).0.is_some() {
        return;
    }
    // Shared data has no compare-and-swap for a key that does not exist yet: each VM writes its
    // own stamp and the one whose stamp stays speaks (two could, in a race of microseconds).
    let stamp = host.now_ns().to_string();
    match host.set_shared_data(&key, stamp.as_bytes(), None) {
        Ok(()) | Err(HostError::CasMismatch) => {}
        Err(e) => host.log_warn(&format!("llm-pulse: cannot share the usage refusal: {e}")),
    }
    if host.get_shared_data(&key).0.as_deref() != Some(stamp.as_bytes()) {
        return;
    }
    let label = sanitize_label_value(cluster.as_bytes());
    host.log_warn(&format!("llm-pulse: cluster {label:?} answered {status} to a request the filter had added stream_options to; not asking it for usage any more (tokens are counted instead)"));
    let name = encode_stat_name(prefix, "usage_stats_refused", &[("cluster", &label)]);
    match host.define_metric(MetricKind::Gauge, &name) {
        Ok(id) => host.record_metric(id, 1),
        Err(e) => host.log_warn(&format!("llm-pulse: cannot define metric {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn a_name_is_found_across_reads_within_the_cap() {
        let body = br#"{"object":"error","message":"[{'type': 'extra_forbidden', 'loc': ('body', 'stream_options'), 'msg': 'Extra inputs are not permitted'}]","code":400}"#;
        for i in 0..=body.len() {
            let mut s = RefusalScan::default();
            s.feed(&body[..i]);
            s.feed(&body[i..]);
            assert!(s.found, "split at {i}");
        }
        let mut s = RefusalScan::default();
        s.feed(br#"{"error":"model not found"}"#);
        assert!(!s.found);
        let mut s = RefusalScan::default();
        s.feed(&vec![b' '; SCAN_CAP]);
        s.feed(b"stream_options");
        assert!(!s.found);
    }

    #[test]
    fn a_cluster_is_marked_once_and_read_by_all() {
        let host = FakeHost::default();
        assert!(!is_refused(&host, "workers"));
        mark(&host, "llm", "workers", 400);
        mark(&host, "llm", "workers", 400);
        assert!(is_refused(&host, "workers"));
        assert!(!is_refused(&host, "others"));
        assert_eq!(host.logs.borrow().len(), 1, "{:?}", host.logs.borrow());
        assert_eq!(
            host.value("llm_usage_stats_refused.cluster=.=workers;.;"),
            0,
            "a gauge set, not incremented"
        );
        assert_eq!(
            host.samples("llm_usage_stats_refused.cluster=.=workers;.;"),
            vec![1]
        );
    }
}
