//! Helpers shared by the fuzz targets: chunk splitting and the metric-name invariants. The
//! in-memory host is core's own `FakeHost` (feature `test-support`), which fails on any metric
//! call Envoy would not take as meant.

/// `input` cut at the (sorted, deduplicated, clamped) positions in `cuts`.
pub fn split<'a>(input: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (input.len() + 1))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for p in at {
        out.push(&input[start..p]);
        start = p;
    }
    out.push(&input[start..]);
    out
}

/// A sanitized label value: no `;`, `=`, control characters; 1..=128 bytes.
pub fn assert_label_value_safe(value: &str) {
    assert!(!value.is_empty(), "empty label value");
    assert!(value.len() <= 128, "label value of {} bytes", value.len());
    for ch in value.chars() {
        assert!(
            ch != ';' && ch != '=' && !ch.is_control(),
            "unsafe char {ch:?} in label value {value:?}"
        );
    }
}

const SUFFIXES: &[&str] = &[
    "requests_total",
    "inflight_requests",
    "queued_requests",
    "output_tokens_total",
    "time_to_first_token_microseconds",
    "inter_token_latency_microseconds",
    "request_duration_microseconds",
    "input_sequence_tokens",
    "output_sequence_tokens",
    "cached_tokens",
    // The exact sums beside the charted histograms.
    "time_to_first_token_microseconds_total",
    "inter_token_latency_microseconds_total",
    "request_duration_microseconds_total",
    "input_sequence_tokens_total",
    "output_sequence_tokens_total",
    // A cluster that refused the usage the filter asked for.
    "usage_stats_refused",
];
const KEYS: &[&str] = &[
    "model",
    "endpoint",
    "request_type",
    "status",
    "error_type",
    "cluster",
];

/// Takes a stat name `P_suffix.k=.=v;.;...` apart, checking every part; returns the suffix and
/// the labels. Panics (a fuzz finding) on anything the `stats_tags` regexes would misread.
pub fn parse_stat_name<'a>(prefix: &str, name: &'a str) -> (&'a str, Vec<(&'a str, &'a str)>) {
    let rest = name
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .unwrap_or_else(|| panic!("{name:?} lacks prefix {prefix}"));
    let (suffix, mut labels) = rest
        .split_once('.')
        .unwrap_or_else(|| panic!("{name:?} has no label part"));
    assert!(
        SUFFIXES.contains(&suffix),
        "unknown metric {suffix} in {name:?}"
    );
    let mut out = Vec::new();
    while !labels.is_empty() {
        let (key, after) = labels
            .split_once("=.=")
            .unwrap_or_else(|| panic!("bad label segment in {name:?}"));
        assert!(KEYS.contains(&key), "unknown label key {key:?} in {name:?}");
        let (value, after) = after
            .split_once(";.;")
            .unwrap_or_else(|| panic!("unterminated label in {name:?}"));
        if key == "model" {
            assert_label_value_safe(value);
        } else {
            assert!(
                value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{key}={value:?} in {name:?}"
            );
        }
        out.push((key, value));
        labels = after;
    }
    assert!(
        out.first().map(|(k, _)| *k) == Some("model"),
        "{name:?}: model must be the first label"
    );
    (suffix, out)
}
