//! Shared data: one key-value store for all VMs of a host (Envoy keys it by vm_id, and all
//! worker VMs of one plugin share a vm_id), with compare-and-swap as in proxy-wasm-cpp-host.

use std::collections::BTreeMap;

use super::abi::Status;

#[derive(Debug)]
pub(crate) struct SharedData {
    entries: BTreeMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for SharedData {
    fn default() -> Self {
        SharedData {
            entries: BTreeMap::new(),
            next_cas: 1,
        }
    }
}

impl SharedData {
    /// Value and CAS token of `key`, or `NotFound`.
    pub(crate) fn get(&self, key: &str) -> Result<(Vec<u8>, u32), Status> {
        self.entries.get(key).cloned().ok_or(Status::NotFound)
    }

    /// Sets `key`. A non-zero `cas` must match the current token of an existing key, else
    /// `CasMismatch`; a missing key is created whatever `cas` says (cpp-host `SharedData::set`).
    pub(crate) fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
        if let Some((_, current)) = self.entries.get(key) {
            if cas != 0 && cas != *current {
                return Err(Status::CasMismatch);
            }
        }
        let token = self.take_cas();
        self.entries
            .insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        self.entries.clone()
    }

    /// CAS tokens count up from 1 and skip 0 on wrap-around (0 means "no CAS").
    fn take_cas(&mut self) -> u32 {
        let token = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules() {
        let mut d = SharedData::default();
        assert_eq!(d.get("k"), Err(Status::NotFound));
        // A missing key is created even with a stale CAS.
        assert_eq!(d.set("k", b"a", 42), Ok(()));
        let (_, cas) = d.get("k").unwrap_or_default();
        assert_eq!(d.set("k", b"b", cas + 1), Err(Status::CasMismatch));
        assert_eq!(d.set("k", b"b", cas), Ok(()));
        assert_eq!(d.set("k", b"c", cas), Err(Status::CasMismatch));
        assert_eq!(d.set("k", b"c", 0), Ok(()));
        assert_eq!(d.get("k").map(|(v, _)| v), Ok(b"c".to_vec()));
    }
}
