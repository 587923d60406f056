//! Which `model` label values exist (docs/design.md, "The model cap"): names pinned in the
//! config, names a worker accepted (admitted into the `max_models` cap, shared by every VM of
//! the `vm_id`: [`crate::capped`]), and the `other` and `unknown` buckets.

use crate::capped::CappedSet;
use crate::host::Host;
use crate::labels::{sanitize_label_value, OTHER_MODEL, UNKNOWN_MODEL};

/// Index of a model label: a pinned or admitted name, or one of the reserved buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(u16);

impl ModelId {
    /// Names past the cap, never accepted by a worker, or a client's reserved word.
    pub const OTHER: ModelId = ModelId(u16::MAX);
    /// Requests that name no model.
    pub const UNKNOWN: ModelId = ModelId(u16::MAX - 1);
}

/// What a request's `model` value maps to before the worker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A label already decided: pinned, admitted, or a reserved bucket.
    Known(ModelId),
    /// A name not admitted yet (sanitized): `other` until a worker accepts it.
    Pending(String),
}

/// Model names seen by this VM. Pinned names (`models` in the config) are labelled as they
/// are; other names enter the `max_models` cap only once a worker accepted them, so requests a
/// worker refuses (404 for a made-up model) cannot fill the cap.
pub struct Models {
    set: CappedSet,
}

impl Models {
    pub fn new(prefix: &str, max: u32, pinned: &[String]) -> Models {
        // The config checked each pinned name is a label value as is and not reserved.
        Models {
            set: CappedSet::new("model", format!("llm_pulse.models.{prefix}"), max, pinned),
        }
    }

    pub fn label(&self, id: ModelId) -> &str {
        if id == ModelId::UNKNOWN {
            return UNKNOWN_MODEL;
        }
        self.set.value(id.0).unwrap_or(OTHER_MODEL)
    }

    /// The label of a request's raw `model` value (`None`: the request names none), before
    /// any worker answered it.
    pub fn lookup(&self, raw: Option<&[u8]>) -> Lookup {
        let Some(raw) = raw else {
            return Lookup::Known(ModelId::UNKNOWN);
        };
        let name = sanitize_label_value(raw);
        if let Some(id) = self.set.get(&name) {
            return Lookup::Known(ModelId(id));
        }
        if name == UNKNOWN_MODEL && raw != UNKNOWN_MODEL.as_bytes() {
            return Lookup::Known(ModelId::UNKNOWN); // blank
        }
        if name == OTHER_MODEL || name == UNKNOWN_MODEL {
            // A client naming a bucket must not be counted as one of its own.
            return Lookup::Known(ModelId::OTHER);
        }
        Lookup::Pending(name)
    }

    /// A worker accepted a request for `name` (from [`Lookup::Pending`]): its id if the cap
    /// has room (or another VM admitted it), else `other`.
    pub fn admit(&mut self, host: &dyn Host, name: String) -> ModelId {
        self.set.admit(host, name).map_or(ModelId::OTHER, ModelId)
    }

    /// Lookup then admission at once: for tests and callers that know the worker accepted.
    #[cfg(test)]
    pub fn resolve(&mut self, host: &dyn Host, raw: &[u8]) -> ModelId {
        match self.lookup(Some(raw)) {
            Lookup::Known(id) => id,
            Lookup::Pending(name) => self.admit(host, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake::FakeHost;

    #[test]
    fn model_cap_is_shared_between_vms() {
        let host = FakeHost::default(); // one host = one shared-data store
        let mut vm1 = Models::new("llm", 2, &[]);
        let mut vm2 = Models::new("llm", 2, &[]);
        let a = vm1.resolve(&host, b"a");
        let b = vm2.resolve(&host, b"b");
        assert_ne!(a, ModelId::OTHER);
        assert_ne!(b, ModelId::OTHER);
        // The cap is global: a third name is refused on either VM...
        assert_eq!(vm1.resolve(&host, b"c"), ModelId::OTHER);
        assert_eq!(vm2.resolve(&host, b"c"), ModelId::OTHER);
        // ...while a name another VM admitted is admitted here too.
        let b1 = vm1.resolve(&host, b"b");
        assert_ne!(b1, ModelId::OTHER);
        assert_eq!(vm1.label(b1), "b");
        assert_eq!(vm1.label(ModelId::OTHER), "other");
    }

    #[test]
    fn model_values_are_sanitized_before_the_cap() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 8, &[]);
        let id = m.resolve(&host, b"evil;.;endpoint=.=x");
        assert_eq!(m.label(id), "evil_._endpoint_._x");
        assert_eq!(m.resolve(&host, b"evil;.;endpoint=.=x"), id);
    }

    #[test]
    fn ten_thousand_names_stay_capped() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 32, &[]);
        let mut admitted = 0;
        for i in 0..10_000 {
            if m.resolve(&host, format!("model-{i}").as_bytes()) != ModelId::OTHER {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 32);
    }

    #[test]
    fn names_wait_for_a_worker_and_buckets_are_reserved() {
        let host = FakeHost::default();
        let mut m = Models::new("llm", 1, &["pinned-a".to_string()]);
        assert_eq!(m.lookup(None), Lookup::Known(ModelId::UNKNOWN));
        assert_eq!(m.lookup(Some(b"  ")), Lookup::Known(ModelId::UNKNOWN));
        // A client naming a bucket lands in `other`, never in a series of its own.
        assert_eq!(m.lookup(Some(b"other")), Lookup::Known(ModelId::OTHER));
        assert_eq!(m.lookup(Some(b"unknown")), Lookup::Known(ModelId::OTHER));
        // Pinned: known at once, outside the cap.
        let Lookup::Known(p) = m.lookup(Some(b"pinned-a")) else {
            panic!("pinned not known");
        };
        assert_eq!(m.label(p), "pinned-a");
        // Looking a name up admits nothing: a thousand never-accepted names leave the cap free.
        for i in 0..1000 {
            let name = format!("junk-{i}");
            assert_eq!(m.lookup(Some(name.as_bytes())), Lookup::Pending(name));
        }
        assert!(host.shared.borrow().is_empty());
        let real = m.admit(&host, "real".to_string());
        assert_eq!(m.label(real), "real");
        assert_eq!(m.lookup(Some(b"real")), Lookup::Known(real));
        // The cap (1) holds the accepted name; the pinned one does not count against it.
        assert_eq!(m.admit(&host, "late".to_string()), ModelId::OTHER);
        assert_eq!(m.label(ModelId::UNKNOWN), "unknown");
    }
}
