//! The `health` section of the plugin config (docs/design.md, "Health probes" and "Configuration"),
//! validated with field paths.

use super::duration::parse_duration_ms;
use super::{quote, ConfigError};
use crate::labels::Endpoint;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Vllm,
    Sglang,
    Trtllm,
    Openai,
    /// An image-diffusion worker serving the OpenAI Images API (vLLM-Omni with `--omni`).
    Diffusion,
}

impl Backend {
    /// The config name, as the config and `/health` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vllm => "vllm",
            Backend::Sglang => "sglang",
            Backend::Trtllm => "trtllm",
            Backend::Openai => "openai",
            Backend::Diffusion => "diffusion",
        }
    }

    /// What a good answer to this backend's built-in probe looks like.
    pub fn answer(self) -> Expect {
        match self {
            Backend::Diffusion => Expect::Image,
            _ => Expect::Completion,
        }
    }
}

/// What a good 2xx probe answer looks like (`expect`; by default the backend's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The backend's completion: `choices` (SGLang's `/generate`: `text`), no error object,
    /// no aborted finish.
    Completion,
    /// An image: `data` with an element whose `b64_json` or `url` is a non-empty string.
    Image,
    /// Any 2xx answer; the body is not read.
    #[serde(rename = "any_2xx")]
    Any2xx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMode {
    /// Probe only after `interval` without a successful real response (Dynamo's canary).
    Canary,
    /// Probe every `interval`.
    Always,
}

/// Which requests the `/health` and `/live` answers are served to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// Every request with the path, whatever its `:authority` (the default: in a sidecar the
    /// listener's one application is the worker, whose `/health` the probe result replaces).
    All,
    /// Not served: the paths pass to the worker; probes and their metrics still run.
    Off,
    /// Only requests for this `:authority` (compared without case; without a port in the
    /// config, any port matches): a gateway keeps every application's own `/health`.
    Authority(String),
}

impl Serve {
    /// Whether deciding needs the request's `:authority` (read it only then).
    pub fn needs_authority(&self) -> bool {
        matches!(self, Serve::Authority(_))
    }

    /// Whether a request for `authority` (its `:authority` / `Host`) is served.
    pub fn serves(&self, authority: &[u8]) -> bool {
        match self {
            Serve::All => true,
            Serve::Off => false,
            Serve::Authority(want) => {
                let want = want.as_bytes();
                let got = if has_port(want) {
                    authority
                } else {
                    host_part(authority)
                };
                got.eq_ignore_ascii_case(want)
            }
        }
    }
}

/// Whether an authority names a port: `host:port`, `[v6]:port`.
fn has_port(a: &[u8]) -> bool {
    match a.iter().rposition(|&b| b == b']') {
        Some(end) => a.get(end + 1) == Some(&b':'),
        None => a.contains(&b':'),
    }
}

/// An authority without its port.
fn host_part(a: &[u8]) -> &[u8] {
    let end = match a.first() {
        Some(b'[') => a.iter().position(|&b| b == b']').map(|p| p + 1),
        _ => a.iter().position(|&b| b == b':'),
    };
    end.and_then(|e| a.get(..e)).unwrap_or(a)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub cluster: String,
    /// `:authority` of the probe (default: the cluster name).
    pub authority: Option<String>,
    /// One worker `ip:port`, reached through an ORIGINAL_DST cluster.
    pub host: Option<String>,
    pub backend: Backend,
    pub model: Option<String>,
    /// A replacement request body (JSON), sent as is.
    pub payload: Option<String>,
    /// What a good answer looks like: the backend's own, or the custom payload's `expect`.
    pub expect: Expect,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub mode: ProbeMode,
    pub bos_token_id: u64,
    pub use_text_input: bool,
    /// The prefill-only variant for disaggregated prefill workers.
    pub prefill: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub path: String,
    pub live_path: String,
    pub serve: Serve,
    /// Whether `/health` shows internals: each target's cluster, worker address and error text.
    pub details: bool,
    /// Probe and model-list answers longer than this are a failure, not read.
    pub max_answer_bytes: usize,
    pub targets: Vec<TargetConfig>,
    /// Where one target's readiness is answered, the target named by the request's
    /// `:authority` (an Envoy health checker's per-endpoint `hostname`); `None`: not served.
    pub target_path: Option<String>,
    /// Inference requests get a local 503 while a target is not ready (callers' outlier
    /// detection and retries then move past this worker).
    pub fail_fast: bool,
}

pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 3_000;
/// Dynamo falls back to 1 when the tokenizer has no BOS token.
pub const DEFAULT_BOS_TOKEN_ID: u64 = 1;
const MIN_INTERVAL_MS: u64 = 100;
const MAX_TARGETS: usize = 256;

/// Probe answers are judged in at most this many bytes by default: a one-token completion is
/// well under 2 KiB, a model list of a few dozen models under 16 KiB.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The default when a target expects an image: the diffusion probe's 512x512 PNG, base64
/// encoded, is at most ~1.05 MB in RGB and ~1.4 MB in RGBA (incompressible pixels, see
/// `worst_case_png_fits`); a real image compresses below that.
pub const DEFAULT_IMAGE_MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
const MAX_MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
// A default is a value the field itself accepts.
const _: () = assert!(DEFAULT_IMAGE_MAX_ANSWER_BYTES <= MAX_MAX_ANSWER_BYTES);

/// The `health` object as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    path: Option<String>,
    live_path: Option<String>,
    serve: Option<String>,
    details: Option<bool>,
    max_answer_bytes: Option<usize>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    target_path: Option<String>,
    fail_fast: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    cluster: String,
    authority: Option<String>,
    host: Option<String>,
    backend: Backend,
    model: Option<String>,
    payload: Option<serde_json::Value>,
    expect: Option<Expect>,
    interval: Option<String>,
    timeout: Option<String>,
    healthy_threshold: Option<u32>,
    unhealthy_threshold: Option<u32>,
    mode: Option<ProbeMode>,
    bos_token_id: Option<u64>,
    use_text_input: Option<bool>,
    prefill: Option<bool>,
}

impl HealthConfig {
    pub fn validate(raw: RawHealth) -> Result<HealthConfig, ConfigError> {
        let path = endpoint_path("health.path", raw.path, "/health")?;
        let live_path = endpoint_path("health.live_path", raw.live_path, "/live")?;
        if path == live_path {
            return Err(ConfigError::new(
                "health.live_path",
                format!("must differ from health.path ({})", quote(&path)),
            ));
        }
        let target_path = match raw.target_path {
            None => None,
            Some(p) => {
                let p = endpoint_path("health.target_path", Some(p), "")?;
                if p == path || p == live_path {
                    return Err(ConfigError::new(
                        "health.target_path",
                        format!(
                            "must differ from health.path and health.live_path ({})",
                            quote(&p)
                        ),
                    ));
                }
                Some(p)
            }
        };
        let serve = match raw.serve.as_deref() {
            None | Some("all") => Serve::All,
            Some("off") => Serve::Off,
            // `ALL` would be an authority named `all`: /health would then pass to the worker.
            Some(k) if k.eq_ignore_ascii_case("all") || k.eq_ignore_ascii_case("off") => {
                return Err(ConfigError::new(
                    "health.serve",
                    format!(
                        "{}: the keyword is lowercase, {:?} (no authority is named all or off)",
                        quote(k),
                        k.to_ascii_lowercase()
                    ),
                ))
            }
            Some(a) if valid_authority(a) => Serve::Authority(a.to_ascii_lowercase()),
            Some(a) => {
                return Err(ConfigError::new(
                    "health.serve",
                    format!(
                        "{} is not \"all\", \"off\" or an authority (host or host:port)",
                        quote(a)
                    ),
                ))
            }
        };
        if let Some(n) = raw.max_answer_bytes {
            if !(1024..=MAX_MAX_ANSWER_BYTES).contains(&n) {
                return Err(ConfigError::new(
                    "health.max_answer_bytes",
                    format!("must be between 1024 and {MAX_MAX_ANSWER_BYTES}, got {n}"),
                ));
            }
        }
        // With no target, /health would say ready about nothing and hide the worker's own.
        if raw.targets.is_empty() {
            return Err(ConfigError::new(
                "health.targets",
                "must list at least one target (leave `health` out to probe nothing)",
            ));
        }
        if raw.targets.len() > MAX_TARGETS {
            return Err(ConfigError::new(
                "health.targets",
                format!("at most {MAX_TARGETS} targets, got {}", raw.targets.len()),
            ));
        }
        let mut targets: Vec<TargetConfig> = Vec::with_capacity(raw.targets.len());
        for (i, t) in raw.targets.into_iter().enumerate() {
            let target = validate_target(i, t)?;
            if targets.iter().any(|o| o.name == target.name) {
                return Err(ConfigError::new(
                    &format!("health.targets[{i}].name"),
                    format!("duplicate target name {}", quote(&target.name)),
                ));
            }
            targets.push(target);
        }
        let default_cap = if targets.iter().any(|t| t.expect == Expect::Image) {
            DEFAULT_IMAGE_MAX_ANSWER_BYTES
        } else {
            DEFAULT_MAX_ANSWER_BYTES
        };
        let max_answer_bytes = raw.max_answer_bytes.unwrap_or(default_cap);
        Ok(HealthConfig {
            path,
            live_path,
            serve,
            details: raw.details.unwrap_or(false),
            max_answer_bytes,
            targets,
            target_path,
            fail_fast: raw.fail_fast.unwrap_or(false),
        })
    }
}

/// A host name or address, with an optional port: no scheme, path, spaces or userinfo.
fn valid_authority(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 255
        && a.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

fn endpoint_path(field: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let p = value.unwrap_or_else(|| default.to_string());
    if p.contains(char::is_control) {
        return Err(ConfigError::new(
            field,
            format!("{} has a control character", quote(&p)),
        ));
    }
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            field,
            format!("{} must be a path starting with / (no query)", quote(&p)),
        ));
    }
    // Answered locally, an inference path would shadow the API the workers serve (a GET of
    // /v1/models is what clients and our own discovery send). Recognised as the meter
    // recognises endpoints: by the end of the path, so a route prefix is no way around it.
    let trimmed = p.strip_suffix('/').unwrap_or(&p);
    if Endpoint::from_path(p.as_bytes()).is_inference() || trimmed.ends_with("/v1/models") {
        return Err(ConfigError::new(
            field,
            format!(
                "{} is a path of the inference API; health answers need a path of their own",
                quote(&p)
            ),
        ));
    }
    Ok(p)
}

/// The reason a string that reaches a header, a shared-data key or a log line is refused.
fn control_character(value: &str) -> Option<String> {
    value
        .contains(char::is_control)
        .then(|| format!("{} has a control character", quote(value)))
}

fn validate_target(i: usize, t: RawTarget) -> Result<TargetConfig, ConfigError> {
    let field = |name: &str| format!("health.targets[{i}].{name}");
    let err = |name: &str, reason: String| ConfigError::new(&field(name), reason);
    let name = &t.name;
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !name_ok {
        return Err(err(
            "name",
            format!("{} must be 1-64 characters of [A-Za-z0-9_.:-]", quote(name)),
        ));
    }
    if t.cluster.is_empty() {
        return Err(err("cluster", "must not be empty".into()));
    }
    if let Some(reason) = control_character(&t.cluster) {
        return Err(err("cluster", reason));
    }
    if let Some(h) = &t.host {
        if h.parse::<SocketAddr>().is_err() {
            return Err(err("host", format!("{} is not an ip:port", quote(h))));
        }
    }
    if let Some(a) = &t.authority {
        if a.is_empty() || a.contains(char::is_whitespace) {
            return Err(err(
                "authority",
                format!("{} is not a valid authority", quote(a)),
            ));
        }
        if let Some(reason) = control_character(a) {
            return Err(err("authority", reason));
        }
    }
    if t.model.as_deref() == Some("") {
        return Err(err(
            "model",
            "must not be empty (leave it out to discover it)".into(),
        ));
    }
    if let Some(reason) = t.model.as_deref().and_then(control_character) {
        return Err(err("model", reason));
    }
    let payload = match t.payload {
        None => None,
        // serde_json's map keeps keys sorted: the body is sent with its keys in order.
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(_) => return Err(err("payload", "must be a JSON object".into())),
    };
    let expect = match (t.expect, &payload) {
        (None, _) => t.backend.answer(),
        (Some(e), Some(_)) => e,
        // The built-in payload's answer is the backend's: an `expect` would only contradict it.
        (Some(_), None) => {
            return Err(err(
                "expect",
                "says what a good answer to a custom `payload` looks like; set `payload` too (the built-in one's answer is the backend's)".into(),
            ))
        }
    };
    let interval_ms = match &t.interval {
        None => DEFAULT_INTERVAL_MS,
        Some(s) => parse_duration_ms(s).map_err(|r| err("interval", r))?,
    };
    let timeout_ms = match &t.timeout {
        None => DEFAULT_TIMEOUT_MS.min(interval_ms),
        Some(s) => parse_duration_ms(s).map_err(|r| err("timeout", r))?,
    };
    if interval_ms < MIN_INTERVAL_MS {
        return Err(err(
            "interval",
            format!("must be at least {MIN_INTERVAL_MS}ms, got {interval_ms}ms"),
        ));
    }
    if timeout_ms == 0 || timeout_ms > interval_ms {
        return Err(err(
            "timeout",
            format!("must be more than 0 and at most the interval ({interval_ms}ms), got {timeout_ms}ms"),
        ));
    }
    let threshold = |name: &str, v: Option<u32>, default: u32| match v.unwrap_or(default) {
        n @ 1..=100 => Ok(n),
        n => Err(err(name, format!("must be between 1 and 100, got {n}"))),
    };
    let healthy_threshold = threshold("healthy_threshold", t.healthy_threshold, 1)?;
    let unhealthy_threshold = threshold("unhealthy_threshold", t.unhealthy_threshold, 2)?;
    let prefill = t.prefill.unwrap_or(false);
    if prefill && matches!(t.backend, Backend::Openai | Backend::Diffusion) {
        return Err(err(
            "prefill",
            format!(
                "the {} backend has no prefill-only request; use vllm, sglang or trtllm",
                t.backend.name()
            ),
        ));
    }
    if t.backend == Backend::Diffusion {
        // The image probe sends a text prompt, never token ids: these would be silently unused.
        for (name, set) in [
            ("bos_token_id", t.bos_token_id.is_some()),
            ("use_text_input", t.use_text_input.is_some()),
        ] {
            if set {
                return Err(err(
                    name,
                    "the diffusion backend's probe is a text prompt; leave it out".into(),
                ));
            }
        }
    }
    Ok(TargetConfig {
        name: t.name,
        cluster: t.cluster,
        authority: t.authority,
        host: t.host,
        backend: t.backend,
        model: t.model,
        payload,
        expect,
        interval_ms,
        timeout_ms,
        healthy_threshold,
        unhealthy_threshold,
        mode: t.mode.unwrap_or(ProbeMode::Canary),
        bos_token_id: t.bos_token_id.unwrap_or(DEFAULT_BOS_TOKEN_ID),
        use_text_input: t.use_text_input.unwrap_or(false),
        prefill,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes(), None)
    }

    #[test]
    fn defaults() {
        let c =
            parse(r#"{"health":{"targets":[{"name":"w0","cluster":"workers","backend":"vllm"}]}}"#)
                .unwrap();
        let h = c.health.unwrap();
        assert_eq!(
            (h.path.as_str(), h.live_path.as_str()),
            ("/health", "/live")
        );
        let t = &h.targets[0];
        assert_eq!((t.interval_ms, t.timeout_ms), (10_000, 3_000));
        assert_eq!((t.healthy_threshold, t.unhealthy_threshold), (1, 2));
        assert_eq!(t.mode, ProbeMode::Canary);
        assert_eq!(t.bos_token_id, 1);
        assert!(!t.use_text_input && !t.prefill);
        assert_eq!(parse("{}").unwrap().health, None);
    }

    #[test]
    fn expect_defaults_to_the_backend_answer() {
        let target = |fields: &str| {
            let json =
                format!(r#"{{"health":{{"targets":[{{"name":"w","cluster":"c",{fields}}}]}}}}"#);
            parse(&json).unwrap().health.unwrap()
        };
        let vllm = target(r#""backend":"vllm""#);
        assert_eq!(vllm.targets[0].expect, Expect::Completion);
        assert_eq!(vllm.max_answer_bytes, DEFAULT_MAX_ANSWER_BYTES);
        let image = target(r#""backend":"diffusion""#);
        assert_eq!(image.targets[0].expect, Expect::Image);
        assert_eq!(image.max_answer_bytes, DEFAULT_IMAGE_MAX_ANSWER_BYTES);
        for (expect, want) in [
            ("completion", Expect::Completion),
            ("image", Expect::Image),
            ("any_2xx", Expect::Any2xx),
        ] {
            let h = target(&format!(
                r#""backend":"openai","payload":{{"prompt":"x"}},"expect":"{expect}""#
            ));
            assert_eq!(h.targets[0].expect, want);
        }
        // A custom payload expecting an image raises the default cap; a set cap stays.
        let h = target(r#""backend":"openai","payload":{"prompt":"x"},"expect":"image""#);
        assert_eq!(h.max_answer_bytes, DEFAULT_IMAGE_MAX_ANSWER_BYTES);
        let json = r#"{"health":{"max_answer_bytes":4096,"targets":[{"name":"w","cluster":"c","backend":"diffusion"}]}}"#;
        assert_eq!(parse(json).unwrap().health.unwrap().max_answer_bytes, 4096);
    }

    /// The image cap holds the diffusion probe's 512x512 image base64-encoded whatever its
    /// pixels: an incompressible PNG (stored deflate blocks) in RGB and in RGBA.
    #[test]
    fn worst_case_png_fits() {
        let b64_png = |channels: usize| {
            let raw = 512 * (1 + 512 * channels); // a filter byte per row
            let zlib = 2 + raw + 5 * raw.div_ceil(65_535) + 4;
            let png = 8 + 25 + 12 + zlib + 12; // signature, IHDR, IDAT, IEND
            4 * png.div_ceil(3)
        };
        assert_eq!(b64_png(3), 1_049_432);
        assert_eq!(b64_png(4), 1_398_984);
        // The JSON around it is a few hundred bytes.
        assert!(b64_png(4) + 1_024 < DEFAULT_IMAGE_MAX_ANSWER_BYTES);
    }

    #[test]
    fn serve_matches_the_authority() {
        let serve = |v: &str| {
            let json = format!(
                r#"{{"health":{{"serve":"{v}","targets":[{{"name":"w","cluster":"c","backend":"vllm"}}]}}}}"#
            );
            parse(&json).unwrap().health.unwrap().serve
        };
        assert_eq!(serve("all"), Serve::All);
        assert_eq!(serve("off"), Serve::Off);
        let by_host = serve("Health.Internal");
        assert!(by_host.needs_authority() && !Serve::All.needs_authority());
        for (authority, served) in [
            (&b"health.internal"[..], true),
            (b"HEALTH.internal:8080", true),
            (b"health.internal.evil", false),
            (b"app.example.com", false),
            (b"", false),
        ] {
            assert_eq!(by_host.serves(authority), served, "{authority:?}");
        }
        let with_port = serve("health.internal:15021");
        assert!(with_port.serves(b"health.internal:15021"));
        assert!(!with_port.serves(b"health.internal:8080"));
        assert!(!with_port.serves(b"health.internal"));
        let v6 = serve("[::1]");
        assert!(v6.serves(b"[::1]:80") && v6.serves(b"[::1]") && !v6.serves(b"[::2]"));
        assert!(Serve::All.serves(b"anything") && !Serve::Off.serves(b"anything"));
        let e = parse(r#"{"health":{"serve":"http://x/","targets":[{"name":"w","cluster":"c","backend":"vllm"}]}}"#).unwrap_err();
        assert_eq!(e.field, "health.serve");
    }

    #[test]
    fn every_error_names_its_field() {
        let t = r#""name":"w0","cluster":"c","backend":"vllm""#;
        let cases: Vec<(String, &str, &str)> = vec![
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"10"}}]}}}}"#), "health.targets[0].interval", "needs a unit"),
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"50ms"}}]}}}}"#), "health.targets[0].interval", "at least"),
            (format!(r#"{{"health":{{"targets":[{{{t},"interval":"1s","timeout":"2s"}}]}}}}"#), "health.targets[0].timeout", "at most the interval"),
            (format!(r#"{{"health":{{"targets":[{{{t},"healthy_threshold":0}}]}}}}"#), "health.targets[0].healthy_threshold", "between 1 and 100"),
            (format!(r#"{{"health":{{"targets":[{{{t},"unhealthy_threshold":101}}]}}}}"#), "health.targets[0].unhealthy_threshold", "between 1 and 100"),
            (format!(r#"{{"health":{{"targets":[{{{t},"host":"worker-1"}}]}}}}"#), "health.targets[0].host", "ip:port"),
            (format!(r#"{{"health":{{"targets":[{{{t},"payload":[1]}}]}}}}"#), "health.targets[0].payload", "JSON object"),
            (format!(r#"{{"health":{{"targets":[{{{t},"model":""}}]}}}}"#), "health.targets[0].model", "must not be empty"),
            (format!(r#"{{"health":{{"targets":[{{{t},"mode":"sometimes"}}]}}}}"#), "health.targets[0].mode", "unknown variant"),
            (format!(r#"{{"health":{{"targets":[{{{t},"colour":1}}]}}}}"#), "health.targets[0].colour", "unknown field `colour`"),
            (format!(r#"{{"health":{{"targets":[{{{t}}},{{{t}}}]}}}}"#), "health.targets[1].name", "duplicate"),
            (r#"{"health":{"targets":[{"name":"w 0","cluster":"c","backend":"vllm"}]}}"#.into(), "health.targets[0].name", "[A-Za-z0-9_.:-]"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"","backend":"vllm"}]}}"#.into(), "health.targets[0].cluster", "must not be empty"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"tgi"}]}}"#.into(), "health.targets[0].backend", "unknown variant"),
            (r#"{"health":{"targets":[{"name":"w","backend":"vllm"}]}}"#.into(), "health.targets[0]", "missing field `cluster`"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"openai","prefill":true}]}}"#.into(), "health.targets[0].prefill", "no prefill-only"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"diffusion","prefill":true}]}}"#.into(), "health.targets[0].prefill", "diffusion backend has no prefill-only"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"diffusion","bos_token_id":2}]}}"#.into(), "health.targets[0].bos_token_id", "text prompt"),
            (r#"{"health":{"targets":[{"name":"w","cluster":"c","backend":"diffusion","use_text_input":true}]}}"#.into(), "health.targets[0].use_text_input", "text prompt"),
            (format!(r#"{{"health":{{"targets":[{{{t},"expect":"image"}}]}}}}"#), "health.targets[0].expect", "set `payload` too"),
            (format!(r#"{{"health":{{"targets":[{{{t},"payload":{{}},"expect":"png"}}]}}}}"#), "health.targets[0].expect", "unknown variant `png`, expected one of `completion`, `image`, `any_2xx`"),
            (format!(r#"{{"health":{{"targets":[{{{t},"payload":{{}},"expect":"Image"}}]}}}}"#), "health.targets[0].expect", "unknown variant"),
            (r#"{"health":{"path":"health"}}"#.into(), "health.path", "starting with /"),
            (r#"{"health":{"path":"/x","live_path":"/x"}}"#.into(), "health.live_path", "must differ"),
        ];
        for (json, field, reason) in cases {
            let e = parse(&json).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.reason.contains(reason), "{json}: {e}");
        }
    }
}

/// Lenient values that would turn a safeguard off are refused.
#[cfg(test)]
mod strict {
    use crate::config::{Config, ConfigError};

    fn parse(json: &str) -> Result<Config, ConfigError> {
        Config::parse(json.as_bytes(), None)
    }

    fn health(fields: &str) -> String {
        format!(
            r#"{{"health":{{{fields}"targets":[{{"name":"w","cluster":"c","backend":"vllm"}}]}}}}"#
        )
    }

    /// `"ALL"` was taken as an authority named `all`: `/health` then reached the worker's own.
    #[test]
    fn serve_keywords_are_lowercase() {
        for v in ["ALL", "All", "aLL", "OFF", "Off", "oFf"] {
            let e = parse(&health(&format!(r#""serve":"{v}","#))).unwrap_err();
            assert_eq!(e.field, "health.serve", "{v}: {e}");
            assert!(e.reason.contains("keyword is lowercase"), "{v}: {e}");
            let keyword = v.to_ascii_lowercase();
            assert!(e.reason.contains(&format!("\"{keyword}\"")), "{v}: {e}");
        }
        for ok in ["all", "off", "All.example", "health.internal"] {
            parse(&health(&format!(r#""serve":"{ok}","#))).unwrap();
        }
    }

    /// A health path that is an inference path would answer the inference API locally.
    #[test]
    fn health_paths_are_not_inference_paths() {
        for p in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/responses",
            "/v1/embeddings",
            "/generate",
            "/v1/models",
            "/v1/models/",
            "/openai/v1/chat/completions",
            "/openai/v1/models",
        ] {
            for field in ["path", "live_path"] {
                let e = parse(&health(&format!(r#""{field}":"{p}","#))).unwrap_err();
                assert_eq!(e.field, format!("health.{field}"), "{p}: {e}");
                assert!(e.reason.contains("inference API"), "{p}: {e}");
            }
        }
        for ok in ["/healthz", "/v1/health", "/models/health", "/ready"] {
            parse(&health(&format!(r#""path":"{ok}","#))).unwrap();
        }
    }

    /// NUL and control characters would reach a header, a shared-data key or a log line.
    #[test]
    fn control_characters_are_refused_in_every_string_field() {
        let t = r#""name":"w","cluster":"c","backend":"vllm""#;
        for bad in [r"\u0000", r"\n", r"\u001b[31m", r"\u007f", r"\u0085"] {
            let rows = [
                (
                    format!(
                        r#"{{"health":{{"targets":[{{"name":"w","cluster":"c{bad}","backend":"vllm"}}]}}}}"#
                    ),
                    "health.targets[0].cluster",
                ),
                (
                    format!(r#"{{"health":{{"targets":[{{{t},"authority":"a{bad}"}}]}}}}"#),
                    "health.targets[0].authority",
                ),
                (
                    format!(r#"{{"health":{{"targets":[{{{t},"model":"m{bad}"}}]}}}}"#),
                    "health.targets[0].model",
                ),
                (health(&format!(r#""path":"/h{bad}","#)), "health.path"),
                (
                    health(&format!(r#""live_path":"/l{bad}","#)),
                    "health.live_path",
                ),
                (
                    format!(
                        r#"{{"health":{{"targets":[{{"name":"w{bad}","cluster":"c","backend":"vllm"}}]}}}}"#
                    ),
                    "health.targets[0].name",
                ),
                (
                    format!(r#"{{"health":{{"targets":[{{{t},"host":"10.0.0.1:80{bad}"}}]}}}}"#),
                    "health.targets[0].host",
                ),
                (health(&format!(r#""serve":"h{bad}","#)), "health.serve"),
                (format!(r#"{{"models":["m{bad}"]}}"#), "models[0]"),
            ];
            for (json, field) in rows {
                let e = parse(&json).unwrap_err();
                assert_eq!(e.field, field, "{json}: {e}");
                let shown = e.to_string();
                assert!(!shown.contains(char::is_control), "{json}: {shown:?}");
            }
        }
    }
}
