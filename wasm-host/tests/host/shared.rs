//! wasm_host: shared data and compare-and-swap across VMs, and parallel hosts.

use std::thread;

use anyhow::{anyhow, Result};
use wasm_host::test_plugin;

#[test]
fn cas_across_three_vms() -> Result<()> {
    // Each VM claims a number with a CAS loop on `tp_vm_seq` during on_configure.
    let mut host = test_plugin()?
        .plugin_config("tick_ms=1000")
        .vms(3)
        .start()?;
    let data = host.shared_data();
    assert_eq!(
        data.get("tp_vm_seq").map(|(v, _)| v.as_slice()),
        Some(&b"3"[..])
    );
    assert!(host.logged("vm1 configured"));
    assert!(host.logged("vm2 configured"));
    assert!(host.logged("vm3 configured"));

    // First tick on each VM reads `tp_owner` and its CAS token; the second writes with it.
    for vm in 0..3 {
        host.tick(vm)?;
    }
    let (_, cas_before) = host.shared_data()["tp_owner"].clone();
    host.tick(1)?; // VM 1 writes first: its token is current.
    host.tick(0)?; // stale token
    host.tick(2)?; // stale token
    assert_eq!(host.counter("tp_cas_ok_total"), Some(1));
    assert_eq!(host.counter("tp_cas_mismatch_total"), Some(2));
    let (owner, cas_after) = host.shared_data()["tp_owner"].clone();
    assert_eq!(owner, b"vm2");
    assert_ne!(cas_after, cas_before);
    assert_ne!(cas_after, 0);

    // A fresh read gets the new token and succeeds.
    host.tick(2)?;
    host.tick(2)?;
    assert_eq!(host.counter("tp_cas_ok_total"), Some(2));
    assert_eq!(host.shared_data()["tp_owner"].0, b"vm3");
    Ok(())
}

#[test]
fn a_write_between_read_and_cas_makes_the_plugin_mismatch() -> Result<()> {
    let mut host = test_plugin()?.start()?;
    host.tick(0)?; // the plugin reads tp_owner and keeps its CAS token
    host.set_shared_data("tp_owner", b"someone else");
    host.tick(0)?; // its write with the old token fails
    assert_eq!(host.counter("tp_cas_mismatch_total"), Some(1));
    assert_eq!(host.counter("tp_cas_ok_total"), Some(0));
    assert_eq!(host.shared_data()["tp_owner"].0, b"someone else");
    Ok(())
}

#[test]
fn hosts_in_parallel_threads_do_not_share_state() -> Result<()> {
    let workers: Vec<_> = (0..6u64)
        .map(|i| {
            thread::spawn(move || -> Result<(u64, Option<u64>, Option<i64>)> {
                let mut host = test_plugin()?.vms(2).start()?;
                for _ in 0..=i {
                    let s = host.new_stream_on((i % 2) as usize)?;
                    host.send_request_headers(s, &[(":method", "GET"), (":path", "/")], true)?;
                    host.send_response_headers(s, &[(":status", "200")], true)?;
                    host.complete_stream(s)?;
                }
                let seq = host.shared_data()["tp_vm_seq"].0.clone();
                let total = host.metrics_named("tp_requests_total")[0].counter();
                assert_eq!(seq, b"2");
                Ok((i, total, host.gauge("tp_inflight")))
            })
        })
        .collect();
    for w in workers {
        let (i, total, inflight) = w.join().map_err(|_| anyhow!("worker panicked"))??;
        assert_eq!(total, Some(i + 1));
        assert_eq!(inflight, Some(0));
    }
    Ok(())
}
