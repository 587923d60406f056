//! Shared data for one filter config, in process memory: what proxy-wasm's shared data is to
//! the `.wasm`'s VMs, here for Envoy's worker threads, with the same compare-and-swap tokens
//! (core's `shared::update` loop runs on it unchanged).

use llm_pulse_core::host::HostError;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct SharedData {
    entries: Mutex<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedData {
    /// The value and its CAS token; `(None, None)` for a key never written.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.lock() {
            Ok(map) => match map.get(key) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            },
            Err(_) => (None, None),
        }
    }

    /// Writes `value`; with `cas`, only if nobody wrote since the read that gave it.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut map = self
            .entries
            .lock()
            .map_err(|_| HostError::Refused("set_shared_data", "lock poisoned".to_string()))?;
        let current = map.get(key).map(|(_, c)| *c);
        if let Some(expected) = cas {
            if expected != 0 && current != Some(expected) {
                return Err(HostError::CasMismatch);
            }
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_token_loses() {
        let s = SharedData::default();
        assert_eq!(s.get("k"), (None, None));
        s.set("k", b"a", None).unwrap();
        let (v, cas) = s.get("k");
        assert_eq!(v.as_deref(), Some(&b"a"[..]));
        s.set("k", b"b", cas).unwrap();
        assert_eq!(s.set("k", b"c", cas), Err(HostError::CasMismatch));
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]));
    }
}
