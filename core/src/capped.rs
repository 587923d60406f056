//! A set of label values that grows only up to a cap every VM of the `vm_id` shares (through
//! shared data), so `--concurrency N` does not multiply it by N: the `model` names workers
//! accepted ([`crate::models`]) and the workers that answered ([`crate::workers`]). Envoy never
//! frees a stat, so a label whose values can grow without end would grow Envoy's memory without
//! end; past the cap, values go to the caller's `other` bucket.

use crate::host::Host;
use crate::shared::{self, Cas, Step};
use hashbrown::{HashMap, HashSet};

/// Values recently refused (the cap is full), so a flood of distinct values costs one
/// shared-data read each, not one per request. Bounded: cleared when full.
const REFUSED_CACHE: usize = 256;

pub struct CappedSet {
    /// What the values are, for the log line (`model`, `worker`).
    what: &'static str,
    max: usize,
    shared_key: String,
    /// Pinned values first, then admitted ones; a value's index is its id.
    values: Vec<String>,
    pinned: usize,
    index: HashMap<String, u16>,
    refused: HashSet<String>,
}

/// Ids above this are left to callers for their buckets (`other`, `unknown`, ...).
pub const MAX_ID: u16 = u16::MAX - 8;

impl CappedSet {
    /// `pinned` values are in the set from the start, outside the cap (callers checked them).
    pub fn new(what: &'static str, shared_key: String, max: u32, pinned: &[String]) -> CappedSet {
        let mut set = CappedSet {
            what,
            max: max as usize,
            shared_key,
            values: Vec::new(),
            pinned: 0,
            index: HashMap::new(),
            refused: HashSet::new(),
        };
        for value in pinned {
            if !set.index.contains_key(value) && set.values.len() < usize::from(MAX_ID) {
                set.push(value.clone());
            }
        }
        set.pinned = set.values.len();
        set
    }

    fn push(&mut self, value: String) -> u16 {
        let id = u16::try_from(self.values.len()).unwrap_or(MAX_ID);
        self.values.push(value.clone());
        self.index.insert(value, id);
        id
    }

    /// The id of a value already in the set.
    pub fn get(&self, value: &str) -> Option<u16> {
        self.index.get(value).copied()
    }

    pub fn value(&self, id: u16) -> Option<&str> {
        self.values.get(usize::from(id)).map(String::as_str)
    }

    /// Admits `value` if the cap has room (or another VM admitted it); `None` when full.
    pub fn admit(&mut self, host: &dyn Host, value: String) -> Option<u16> {
        if let Some(id) = self.index.get(&value) {
            return Some(*id);
        }
        let admitted = self.values.len().saturating_sub(self.pinned);
        if self.refused.contains(&value)
            || admitted >= self.max
            || self.values.len() >= usize::from(MAX_ID)
        {
            return None;
        }
        if self.admit_globally(host, &value) {
            Some(self.push(value))
        } else {
            if self.refused.len() >= REFUSED_CACHE {
                self.refused.clear();
            }
            self.refused.insert(value);
            None
        }
    }

    /// Adds `value` to the shared list unless the list is full. Values are `\n`-separated
    /// (label values hold no control characters).
    fn admit_globally(&self, host: &dyn Host, value: &str) -> bool {
        let added = shared::update(host, &self.shared_key, |listed| {
            let listed = listed.unwrap_or_default();
            let values = listed
                .split(|&b| b == b'\n')
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>();
            if values.contains(&value.as_bytes()) {
                return Step::Keep(true);
            }
            if values.len() >= self.max {
                return Step::Keep(false);
            }
            let mut next = listed;
            if !next.is_empty() {
                next.push(b'\n');
            }
            next.extend_from_slice(value.as_bytes());
            Step::Write(next, true)
        });
        match added {
            Cas::Done(admitted) => admitted,
            // Lost the race every time: admit locally; the per-VM cap still bounds it.
            Cas::Contended(_) => true,
            Cas::Refused(_, e) => {
                // Without shared data the cap still holds per VM.
                host.log_warn(&format!(
                    "llm-pulse: {} cap falls back to per-VM: {e}",
                    self.what
                ));
                true
            }
        }
    }

    #[cfg(test)]
    pub fn refused_len(&self) -> usize {
        self.refused.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn the_cap_is_shared_between_vms_and_pinned_values_are_outside_it() {
        let host = FakeHost::default(); // one host = one shared-data store
        let pinned = ["p".to_string()];
        let mut vm1 = CappedSet::new("model", "k".into(), 2, &pinned);
        let mut vm2 = CappedSet::new("model", "k".into(), 2, &pinned);
        assert_eq!(vm1.get("p"), Some(0));
        assert!(vm1.admit(&host, "a".into()).is_some());
        assert!(vm2.admit(&host, "b".into()).is_some());
        assert_eq!(vm1.admit(&host, "c".into()), None);
        assert_eq!(vm2.admit(&host, "c".into()), None);
        // A value another VM admitted is admitted here too, cap full or not.
        let b = vm1.admit(&host, "b".into());
        assert_eq!(b.and_then(|id| vm1.value(id)), Some("b"));
    }

    #[test]
    fn ten_thousand_values_stay_capped() {
        let host = FakeHost::default();
        let mut set = CappedSet::new("worker", "k".into(), 32, &[]);
        let admitted = (0..10_000)
            .filter(|i| {
                set.admit(&host, format!("10.0.{}.{}:8000", i / 256, i % 256))
                    .is_some()
            })
            .count();
        assert_eq!(admitted, 32);
        assert!(set.refused_len() <= REFUSED_CACHE);
        let shared = host.get_shared_data("k").0.unwrap_or_default();
        assert_eq!(shared.split(|&b| b == b'\n').count(), 32);
    }

    #[test]
    fn without_shared_data_the_cap_holds_per_vm_and_says_so() {
        let host = FakeHost::default();
        host.refuse_shared_writes.set(true);
        let mut set = CappedSet::new("worker", "k".into(), 2, &[]);
        assert!(set.admit(&host, "a".into()).is_some());
        assert!(set.admit(&host, "b".into()).is_some());
        assert_eq!(set.admit(&host, "c".into()), None);
        assert!(host
            .logs
            .borrow()
            .iter()
            .any(|l| l
                == "llm-pulse: worker cap falls back to per-VM: set_shared_data refused: test"));
    }
}
