//! The plugin configuration parser (`Config::parse`) under arbitrary bytes and environment.
//! Invariants: no panic; an accepted config satisfies every documented bound; a refusal names
//! a field; parsing is deterministic.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use llm_pulse_core::config::Config;
use std::collections::HashSet;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    env: Option<&'a str>,
    config: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let got = Config::parse(input.config, input.env);
    assert_eq!(
        got,
        Config::parse(input.config, input.env),
        "not deterministic"
    );
    match got {
        Ok(c) => {
            let p = c.metrics_prefix.as_bytes();
            assert!(
                !p.is_empty() && p.len() <= 64,
                "prefix {:?}",
                c.metrics_prefix
            );
            assert!(p[0].is_ascii_alphabetic() || p[0] == b'_');
            assert!(p.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_'));
            assert!((1..=1024).contains(&c.max_models));
            if let Some(h) = c.health {
                let mut names = HashSet::new();
                for t in &h.targets {
                    assert!(names.insert(t.name.clone()), "duplicate target {}", t.name);
                    assert!(!t.name.is_empty());
                    assert!(t
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)));
                    assert!(t.interval_ms >= 100, "interval {}", t.interval_ms);
                    assert!(t.timeout_ms > 0 && t.timeout_ms <= t.interval_ms);
                    assert!(t.healthy_threshold >= 1 && t.unhealthy_threshold >= 1);
                }
            }
        }
        Err(e) => {
            assert!(!e.field.is_empty(), "error without a field: {e}");
            assert!(!e.reason.is_empty(), "error without a reason: {e}");
        }
    }
});
