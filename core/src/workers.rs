//! Which `worker` label values exist (docs/design.md, "The worker label"): the upstream host that
//! served a request, named by the health target whose `host` it is, else by its `ip:port`.
//! Target-named workers are pinned; other addresses enter the `max_workers` cap only once that
//! worker answered a 2xx (pods come and go: every address Envoy ever sent to would otherwise
//! become stats Envoy never frees), and the rest are `other`.

use crate::capped::CappedSet;
use crate::host::Host;
use crate::labels::sanitize_label_value;
use std::net::SocketAddr;

/// Index of a worker label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerId(u16);

impl WorkerId {
    /// A worker past the cap, or one that never answered a 2xx.
    pub const OTHER: WorkerId = WorkerId(u16::MAX);
    /// No worker: the label is off, the request never reached one, or its answer has not
    /// started yet (the filter learns the worker from the response).
    pub const NONE: WorkerId = WorkerId(u16::MAX - 1);
}

/// The `worker` value of a request past the cap, or from a worker never accepted.
pub const OTHER_WORKER: &str = "other";

pub struct Workers {
    enabled: bool,
    set: CappedSet,
    /// Health targets that name one worker: its address and the target's name. Few, so a
    /// list; compared as addresses, since the config's spelling of one may not be Envoy's
    /// (`[0:0::1]:80` is `[::1]:80`).
    targets: Vec<(SocketAddr, String)>,
}

impl Workers {
    /// `targets`: each health target's name and `host` (an `ip:port` the config checked).
    pub fn new(prefix: &str, enabled: bool, max: u32, targets: &[(String, String)]) -> Workers {
        let targets: Vec<(SocketAddr, String)> = targets
            .iter()
            .filter_map(|(name, host)| Some((host.parse().ok()?, name.clone())))
            .collect();
        let pinned: Vec<String> = targets.iter().map(|(_, name)| name.clone()).collect();
        Workers {
            enabled,
            set: CappedSet::new(
                "worker",
                format!("llm_pulse.workers.{prefix}"),
                max,
                &pinned,
            ),
            targets,
        }
    }

    /// Whether metrics carry the `worker` label (`worker_label`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn label(&self, id: WorkerId) -> &str {
        if id == WorkerId::NONE {
            return "";
        }
        self.set.value(id.0).unwrap_or(OTHER_WORKER)
    }

    /// The label of the worker at `address` (Envoy's `upstream.address`). `accepted`: it
    /// answered this request with a 2xx, so it may enter the cap.
    pub fn resolve(&mut self, host: &dyn Host, address: &[u8], accepted: bool) -> WorkerId {
        let target = std::str::from_utf8(address)
            .ok()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .and_then(|a| self.targets.iter().find(|(t, _)| *t == a));
        let value = match target {
            Some((_, name)) => name.clone(),
            None => sanitize_label_value(address),
        };
        if let Some(id) = self.set.get(&value) {
            return WorkerId(id);
        }
        if value == OTHER_WORKER || !accepted {
            return WorkerId::OTHER;
        }
        self.set
            .admit(host, value)
            .map_or(WorkerId::OTHER, WorkerId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    fn workers(max: u32) -> Workers {
        let targets = [
            ("gpu-0".to_string(), "10.0.0.1:8000".to_string()),
            ("gpu-v6".to_string(), "[0:0::1]:8000".to_string()),
        ];
        Workers::new("llm", true, max, &targets)
    }

    #[test]
    fn a_target_that_names_the_host_names_the_worker() {
        let host = FakeHost::default();
        let mut w = workers(1);
        let id = w.resolve(&host, b"10.0.0.1:8000", false);
        assert_eq!(w.label(id), "gpu-0");
        // The config's spelling of an IPv6 address is not Envoy's.
        let id = w.resolve(&host, b"[::1]:8000", false);
        assert_eq!(w.label(id), "gpu-v6");
        // Pinned: outside the cap, which still has room for one address.
        let id = w.resolve(&host, b"10.0.0.9:8000", true);
        assert_eq!(w.label(id), "10.0.0.9:8000");
    }

    #[test]
    fn an_address_enters_the_cap_only_once_it_answered_a_2xx() {
        let host = FakeHost::default();
        let mut w = workers(2);
        assert_eq!(w.resolve(&host, b"10.0.0.5:80", false), WorkerId::OTHER);
        assert!(host.shared.borrow().is_empty());
        let id = w.resolve(&host, b"10.0.0.5:80", true);
        assert_eq!(w.label(id), "10.0.0.5:80");
        // Known now: its errors are its own.
        assert_eq!(w.resolve(&host, b"10.0.0.5:80", false), id);
        let _ = w.resolve(&host, b"10.0.0.6:80", true);
        // The cap (2) is full: a third address is `other`, whatever it answers.
        assert_eq!(w.resolve(&host, b"10.0.0.7:80", true), WorkerId::OTHER);
        assert_eq!(w.label(WorkerId::OTHER), "other");
        assert_eq!(w.label(WorkerId::NONE), "");
    }

    #[test]
    fn addresses_cannot_forge_labels_or_buckets() {
        let host = FakeHost::default();
        let mut w = workers(8);
        let id = w.resolve(&host, b"x;.;model=.=y", true);
        assert_eq!(w.label(id), "x_._model_._y");
        assert_eq!(w.resolve(&host, b"other", true), WorkerId::OTHER);
    }

    #[test]
    fn churn_past_the_cap_stays_capped_across_vms() {
        let host = FakeHost::default();
        let mut vm1 = workers(32);
        let mut vm2 = workers(32);
        let mut named = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let addr = format!("11.{}.{}.{}:8000", i >> 16, (i >> 8) & 255, i & 255);
            let vm = if i % 2 == 0 { &mut vm1 } else { &mut vm2 };
            let id = vm.resolve(&host, addr.as_bytes(), true);
            named.insert(vm.label(id).to_string());
        }
        // 32 addresses and `other`: the same 33 values on every VM.
        assert_eq!(named.len(), 33);
    }
}
