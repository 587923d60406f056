use super::*;
use crate::config::health::DEFAULT_MAX_ANSWER_BYTES;
use crate::config::Config;
use crate::host::fake::FakeHost;

const COMPLETION: &[u8] = br#"{"id":"c","object":"text_completion","choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

fn targets(extra: &str) -> Vec<TargetConfig> {
    let json = format!(
        r#"{{"health":{{"targets":[{{"name":"w0","cluster":"workers","backend":"vllm","model":"m","interval":"1s","timeout":"300ms"{extra}}}]}}}}"#
    );
    Config::parse(json.as_bytes(), None)
        .unwrap()
        .health
        .unwrap()
        .targets
}

/// Delivers a call answer with `body` as Envoy would: the body stays host-side until read.
fn respond(vm: &mut Prober, host: &FakeHost, token: u32, status: Option<u32>, body: &[u8]) {
    *host.call_body.borrow_mut() = body.to_vec();
    vm.on_http_call_response(host, token, status, body.len());
    host.call_body.borrow_mut().clear();
}

/// N VMs (probers) sharing one host: one shared-data store, one metric registry.
struct Rig {
    host: FakeHost,
    vms: Vec<Prober>,
}

impl Rig {
    fn new(vms: usize, extra: &str) -> Rig {
        let host = FakeHost::default();
        host.clock_ns.set(1_700_000_000_000 * 1_000_000);
        let mut vms: Vec<Prober> = (0..vms)
            .map(|n| Prober::new("llm", targets(extra), n as u64 + 1))
            .collect();
        for vm in &mut vms {
            vm.start(&host);
        }
        Rig { host, vms }
    }

    /// Advances the clock by `ms` in tick steps; every VM ticks at every step.
    fn run_ms(&mut self, ms: u64) {
        let step = self.vms[0].tick_period_ms().unwrap();
        let mut left = ms;
        while left > 0 {
            let d = step.min(left);
            self.host.advance_ms(d);
            left -= d;
            for vm in &mut self.vms {
                vm.tick(&self.host);
            }
        }
    }

    /// Ticks until a new call goes out (at most 5 s): the clock then stands at its dispatch.
    fn run_until_call(&mut self) {
        let before = self.calls();
        let step = self.vms[0].tick_period_ms().unwrap();
        for _ in 0..5_000 / step {
            self.run_ms(step);
            if self.calls() > before {
                return;
            }
        }
        panic!("no probe within 5 s");
    }

    fn calls(&self) -> usize {
        self.host.calls.borrow().len()
    }

    fn last_call(&self) -> crate::host::fake::FakeCall {
        self.host.calls.borrow().last().cloned().unwrap()
    }

    /// Answers the newest call (whichever VM owns it).
    fn answer(&mut self, status: Option<u32>, body: &[u8]) {
        let token = self.last_call().token;
        for vm in &mut self.vms {
            respond(vm, &self.host, token, status, body);
        }
    }

    fn state(&self) -> TargetState {
        self.vms[0].state(&self.host, 0)
    }

    fn status_gauge(&self) -> u64 {
        let s = self.host.samples("llm_health_status.target=.=w0;.;");
        *s.last().unwrap()
    }

    fn checks(&self, result: &str) -> i64 {
        self.host.value(&format!(
            "llm_health_checks_total.target=.=w0;.;result=.={result};.;"
        ))
    }
}

#[test]
fn exactly_one_probe_per_interval_whatever_the_vm_count() {
    let mut rig = Rig::new(4, r#","mode":"always""#);
    assert_eq!(rig.status_gauge(), 0, "not ready until the first success");
    rig.run_ms(200);
    assert_eq!(rig.calls(), 1, "4 VMs, one lease");
    rig.answer(Some(200), COMPLETION);
    for second in 2..=10 {
        rig.run_ms(1_000);
        assert_eq!(rig.calls(), second, "one probe per second");
        rig.answer(Some(200), COMPLETION);
    }
    assert_eq!(rig.checks("success"), 10);
    assert_eq!(rig.status_gauge(), 1);
    let c = rig.last_call();
    assert_eq!(c.cluster, "workers");
    assert_eq!(c.header(":method"), Some("POST"));
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    assert_eq!(c.header(":authority"), Some("workers"));
    assert_eq!(c.header("content-type"), Some("application/json"));
    assert_eq!(c.header("x-envoy-original-dst-host"), None);
    assert_eq!(c.timeout_ms, 300);
    assert!(c.body.unwrap().contains(r#""max_tokens":1"#));
}

#[test]
fn thresholds_flip_the_status_and_the_gauge() {
    let mut rig = Rig::new(
        2,
        r#","mode":"always","healthy_threshold":2,"unhealthy_threshold":3"#,
    );
    let probe = |rig: &mut Rig, status: u32, body: &[u8]| {
        rig.run_ms(1_000);
        rig.answer(Some(status), body);
        (rig.state().healthy, rig.status_gauge())
    };
    assert_eq!(probe(&mut rig, 200, COMPLETION), (false, 0));
    assert_eq!(probe(&mut rig, 200, COMPLETION), (true, 1));
    assert_eq!(probe(&mut rig, 500, b"{}"), (true, 1));
    assert_eq!(probe(&mut rig, 200, b"not json"), (true, 1));
    assert_eq!(probe(&mut rig, 200, br#"{"choices":[]}"#), (false, 0));
    let s = rig.state();
    assert_eq!(s.consecutive_failures, 3);
    assert_eq!(s.last_error.as_deref(), Some("answer has no choices"));
    assert_eq!(rig.checks("failure"), 3);
    assert_eq!(probe(&mut rig, 200, COMPLETION), (false, 0));
    assert_eq!(probe(&mut rig, 200, COMPLETION), (true, 1));
}

#[test]
fn a_hung_worker_times_out() {
    let mut rig = Rig::new(2, r#","mode":"always","unhealthy_threshold":1"#);
    rig.run_ms(1_000);
    rig.answer(Some(200), COMPLETION);
    assert!(rig.state().healthy);
    rig.run_until_call();
    // Envoy gives up after the call's timeout and reports no answer.
    rig.host.advance_ms(300);
    rig.answer(None, b"");
    let s = rig.state();
    assert!(!s.healthy);
    assert_eq!(rig.checks("timeout"), 1);
    assert!(s.last_error.unwrap().starts_with("timeout"));
    assert_eq!(
        rig.host
            .samples("llm_health_check_duration_microseconds.target=.=w0;.;")
            .last(),
        Some(&300_000)
    );
    // Envoy's own answer to a call past its timeout is a 504: a timeout too.
    rig.run_until_call();
    rig.host.advance_ms(300);
    rig.answer(Some(504), b"upstream request timeout");
    assert_eq!(rig.checks("timeout"), 2);
    // A worker's quick 504 is a failure.
    rig.run_until_call();
    rig.host.advance_ms(20);
    rig.answer(Some(504), b"gateway timeout");
    assert_eq!(rig.checks("failure"), 1);
    // A refused connection is a failure, not a timeout.
    rig.run_until_call();
    rig.host.advance_ms(2);
    rig.answer(None, b"");
    assert_eq!(rig.checks("failure"), 2);
}

#[test]
fn the_model_is_discovered_and_rediscovered_after_a_failure() {
    let json = r#"{"health":{"targets":[{"name":"w0","cluster":"workers","backend":"vllm","interval":"1s","timeout":"300ms","mode":"always"}]}}"#;
    let t = Config::parse(json.as_bytes(), None)
        .unwrap()
        .health
        .unwrap()
        .targets;
    let host = FakeHost::default();
    host.clock_ns.set(1_000_000_000_000_000);
    let mut vm = Prober::new("llm", t, 1);
    vm.start(&host);
    let run = |vm: &mut Prober, ms: u64| {
        for _ in 0..ms / 100 {
            host.advance_ms(100);
            vm.tick(&host);
        }
    };
    let last = |h: &FakeHost| h.calls.borrow().last().cloned().unwrap();
    run(&mut vm, 1_000);
    let c = last(&host);
    assert_eq!(
        (c.header(":method"), c.header(":path")),
        (Some("GET"), Some("/v1/models"))
    );
    respond(
        &mut vm,
        &host,
        c.token,
        Some(200),
        br#"{"data":[{"id":"llama-3"}]}"#,
    );
    let c = last(&host);
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    assert!(c.body.as_deref().unwrap().contains(r#""model":"llama-3""#));
    respond(&mut vm, &host, c.token, Some(200), COMPLETION);
    assert_eq!(vm.state(&host, 0).model.as_deref(), Some("llama-3"));
    // Next interval: the known model is used directly.
    run(&mut vm, 1_000);
    let c = last(&host);
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    respond(
        &mut vm,
        &host,
        c.token,
        Some(404),
        br#"{"message":"model not found"}"#,
    );
    assert_eq!(vm.state(&host, 0).model, None);
    run(&mut vm, 1_000);
    assert_eq!(last(&host).header(":path"), Some("/v1/models"));
}

#[test]
fn canary_probes_only_an_idle_target() {
    let mut rig = Rig::new(2, ""); // canary by default
    rig.run_ms(1_000);
    assert_eq!(rig.calls(), 1);
    rig.answer(Some(200), COMPLETION);
    // Real traffic keeps succeeding every 300 ms: no probe goes out.
    for _ in 0..10 {
        rig.run_ms(300);
        let vm = &mut rig.vms[1];
        vm.on_real_success(&rig.host, "workers", "127.0.0.1:8000");
    }
    assert_eq!(rig.calls(), 1, "a busy worker is never probed");
    // Traffic stops: a probe follows one interval after the last success.
    rig.run_ms(900);
    assert_eq!(rig.calls(), 1);
    rig.run_ms(400);
    assert_eq!(rig.calls(), 2);
    // Traffic to another cluster is no evidence for this target.
    rig.answer(Some(200), COMPLETION);
    rig.vms[0].on_real_success(&rig.host, "other", "127.0.0.1:8000");
    rig.run_ms(1_100);
    assert_eq!(rig.calls(), 3);
}

#[test]
fn a_real_success_makes_a_target_ready() {
    let mut rig = Rig::new(1, "");
    rig.run_ms(100);
    rig.vms[0].on_real_success(&rig.host, "workers", "10.0.0.5:8000");
    assert!(rig.state().healthy);
    assert_eq!(rig.status_gauge(), 1);
}

#[test]
fn host_targets_route_through_original_dst_and_match_by_address() {
    let mut rig = Rig::new(
        1,
        r#","host":"10.0.0.7:8000","authority":"vllm.internal","mode":"always""#,
    );
    rig.run_ms(1_000);
    let c = rig.last_call();
    assert_eq!(c.header("x-envoy-original-dst-host"), Some("10.0.0.7:8000"));
    assert_eq!(c.header(":authority"), Some("vllm.internal"));
    rig.answer(Some(200), COMPLETION);
    let before = rig.state().last_success_ms;
    rig.host.advance_ms(500);
    rig.vms[0].on_real_success(&rig.host, "workers", "10.0.0.8:8000");
    assert_eq!(
        rig.state().last_success_ms,
        before,
        "another worker of the cluster"
    );
    rig.vms[0].on_real_success(&rig.host, "any", "10.0.0.7:8000");
    assert_ne!(rig.state().last_success_ms, before);
}

#[test]
fn a_refused_call_is_a_failure_and_a_lost_vm_only_delays() {
    let mut rig = Rig::new(2, r#","mode":"always","unhealthy_threshold":1"#);
    rig.host.refuse_calls.set(true);
    rig.run_ms(1_000);
    assert_eq!(rig.checks("failure"), 1);
    assert!(rig
        .state()
        .last_error
        .unwrap()
        .contains("cannot call cluster"));
    assert!(!rig.state().lease_active(rig.host.now_ms()));
    rig.host.refuse_calls.set(false);
    // A VM takes the lease and never hears back (it vanished): after the lease runs out
    // (timeout + slack), the next due probe goes out from another VM.
    rig.run_until_call();
    let n = rig.calls();
    rig.run_ms(1_200);
    assert_eq!(
        rig.calls(),
        n,
        "lease still held (due at 1 s, held until 1.3 s)"
    );
    rig.run_ms(200);
    assert_eq!(rig.calls(), n + 1);
}

/// An answer over `max_answer_bytes` is a failure that says so, and not
/// one of its bytes is copied into the VM; within the cap it is read in bounded chunks.
#[test]
fn oversized_answers_fail_unread() {
    let mut rig = Rig::new(1, r#","mode":"always""#);
    rig.run_until_call();
    let huge = format!(r#"{{"choices":[{}0]}}"#, "0,".repeat(16 << 20));
    rig.answer(Some(200), huge.as_bytes());
    assert_eq!(rig.host.call_body_read.get(), 0);
    let s = rig.state();
    assert_eq!(
        s.last_error.as_deref(),
        Some(answer::too_large(huge.len(), DEFAULT_MAX_ANSWER_BYTES).as_str())
    );
    assert_eq!(rig.checks("failure"), 1);
    // Exactly at the cap: read (in chunks), judged.
    rig.run_until_call();
    let pad = DEFAULT_MAX_ANSWER_BYTES - COMPLETION.len();
    let at_cap = [COMPLETION, " ".repeat(pad).as_bytes()].concat();
    rig.answer(Some(200), &at_cap);
    assert_eq!(rig.host.call_body_read.get(), DEFAULT_MAX_ANSWER_BYTES);
    assert_eq!(rig.checks("success"), 1);
    // A non-2xx body is not read at all without details.
    rig.run_until_call();
    rig.answer(Some(500), b"secret=hunter2 internal error");
    assert_eq!(rig.host.call_body_read.get(), DEFAULT_MAX_ANSWER_BYTES);
    assert_eq!(rig.state().last_error.as_deref(), Some("status 500"));
}

/// The worker's words reach `last_error` only with details on, bounded.
#[test]
fn worker_text_only_with_details() {
    let host = FakeHost::default();
    host.clock_ns.set(1_000_000_000_000_000);
    let mut vm = Prober::new("llm", targets(r#","mode":"always""#), 1).answers(2048, true);
    vm.start(&host);
    let next = |vm: &mut Prober, status: u32, body: &[u8]| {
        let before = host.calls.borrow().len();
        while host.calls.borrow().len() == before {
            host.advance_ms(100);
            vm.tick(&host);
        }
        let token = host.calls.borrow().last().unwrap().token;
        respond(vm, &host, token, Some(status), body);
        vm.state(&host, 0).last_error.unwrap_or_default()
    };
    let body = format!("secret=hunter2\n{}", "x".repeat(10_000));
    let e = next(&mut vm, 500, body.as_bytes());
    assert!(e.starts_with("status 500: secret=hunter2 xxx"), "{e}");
    assert_eq!(e.len(), "status 500: ".len() + answer::WORKER_TEXT_BYTES);
    assert_eq!(host.call_body_read.get(), answer::WORKER_TEXT_BYTES);
    let e = next(&mut vm, 200, &vec![b' '; 2049]);
    assert_eq!(e, answer::too_large(2049, 2048));
    let e = next(&mut vm, 200, br#"{"object":"error","message":"CUDA OOM"}"#);
    assert_eq!(e, "answer is an error object: CUDA OOM");
}

/// A model id past its bound is a failed discovery, never kept.
#[test]
fn a_huge_model_id_is_not_kept() {
    let mut rig = Rig::new(2, "");
    // No model in the config: discovery first.
    let t = targets("").remove(0);
    let t = TargetConfig { model: None, ..t };
    for vm in &mut rig.vms {
        *vm = Prober::new("llm", vec![t.clone()], 7).answers(8 << 20, false);
        vm.start(&rig.host);
    }
    rig.run_until_call();
    assert_eq!(rig.last_call().header(":path"), Some("/v1/models"));
    let body = format!(r#"{{"data":[{{"id":"{}"}}]}}"#, "m".repeat(5 << 20));
    rig.answer(Some(200), body.as_bytes());
    let s = rig.state();
    assert_eq!(s.model, None);
    assert_eq!(
        s.last_error.as_deref(),
        Some("model discovery (GET /v1/models): first model id is longer than 128 bytes (set `model` in the config)")
    );
    let record = rig.host.shared.borrow().values().next().unwrap().0.len();
    assert!(record < 600, "{record} bytes in shared data");
    assert_eq!(rig.calls(), 1, "no probe with a cut model id");
}

/// `GET /v1/models` of a worker serving 1,800 LoRA adapters: about 150 KB.
fn lora_model_list(adapters: usize) -> String {
    let mut data = vec![
        r#"{"id":"meta-llama/Llama-3.1-8B-Instruct","object":"model","created":1795000000,"owned_by":"vllm"}"#.to_string(),
    ];
    for i in 0..adapters {
        data.push(format!(
            r#"{{"id":"lora-{i:04}","object":"model","created":1795000000,"owned_by":"vllm","parent":"m"}}"#
        ));
    }
    format!(r#"{{"object":"list","data":[{}]}}"#, data.join(","))
}

fn discovering_rig() -> Rig {
    let mut rig = Rig::new(1, "");
    let t = TargetConfig {
        model: None,
        ..targets(r#","mode":"always""#).remove(0)
    };
    rig.vms[0] = Prober::new("llm", vec![t], 7);
    rig.vms[0].start(&rig.host);
    rig
}

/// A model list longer than `max_answer_bytes` (1,800 LoRA adapters,
/// ~150 KB) no longer fails discovery: only the first id is needed, and reading stops there.
#[test]
fn discovery_reads_a_long_model_list_only_to_its_first_id() {
    let mut rig = discovering_rig();
    let list = lora_model_list(1_800);
    assert!(
        (140_000..170_000).contains(&list.len()),
        "{} bytes",
        list.len()
    );
    rig.run_until_call();
    assert_eq!(rig.last_call().header(":path"), Some("/v1/models"));
    rig.answer(Some(200), list.as_bytes());
    assert_eq!(rig.state().last_error, None);
    assert_eq!(
        rig.state().model.as_deref(),
        Some("meta-llama/Llama-3.1-8B-Instruct")
    );
    let read = rig.host.call_body_read.get();
    assert!(read <= READ_CHUNK, "{read} bytes read of {}", list.len());
    let c = rig.last_call();
    assert_eq!(c.header(":path"), Some("/v1/completions"));
    assert!(c
        .body
        .unwrap()
        .contains(r#""model":"meta-llama/Llama-3.1-8B-Instruct""#));
    rig.answer(Some(200), COMPLETION);
    assert_eq!(rig.checks("success"), 1);
}

/// The cap still bounds what is read: a list whose first id is not within
/// `max_answer_bytes` fails with an error that says so, after reading at most the cap; a probe
/// answer over the cap still fails unread.
#[test]
fn discovery_reads_at_most_the_cap() {
    let mut rig = discovering_rig();
    rig.run_until_call();
    let padding = "p".repeat(200_000);
    let late_id = format!(r#"{{"object":"list","data":[{{"root":"{padding}","id":"m"}}]}}"#);
    rig.answer(Some(200), late_id.as_bytes());
    let s = rig.state();
    assert_eq!(s.model, None);
    assert_eq!(
        s.last_error.as_deref(),
        Some(
            format!(
                "model discovery (GET /v1/models): no model id in the first {DEFAULT_MAX_ANSWER_BYTES} bytes (health.max_answer_bytes) of an answer of {} bytes; set `model` in the config",
                late_id.len()
            )
            .as_str()
        )
    );
    assert_eq!(rig.host.call_body_read.get(), DEFAULT_MAX_ANSWER_BYTES);
    assert_eq!(rig.calls(), 1, "no probe without a model");
    // A list with its first id early, then not JSON: the id is all discovery needs.
    rig.run_until_call();
    rig.answer(Some(200), br#"{"data":[{"id":"m"},{"id":"#);
    assert_eq!(rig.state().model.as_deref(), Some("m"));
    // The probe answer itself is still refused unread over the cap.
    let read = rig.host.call_body_read.get();
    let huge = [COMPLETION, " ".repeat(DEFAULT_MAX_ANSWER_BYTES).as_bytes()].concat();
    rig.answer(Some(200), &huge);
    assert_eq!(rig.host.call_body_read.get(), read);
    assert_eq!(
        rig.state().last_error.as_deref(),
        Some(answer::too_large(huge.len(), DEFAULT_MAX_ANSWER_BYTES).as_str())
    );
}

/// One prober for a target given in full, its answer cap as the filter sets it.
fn rig_for(target: &str) -> Rig {
    let json = format!(r#"{{"health":{{"targets":[{target}]}}}}"#);
    let h = Config::parse(json.as_bytes(), None)
        .unwrap()
        .health
        .unwrap();
    let mut rig = Rig::new(1, "");
    rig.vms[0] = Prober::new("llm", h.targets, 7).answers(h.max_answer_bytes, false);
    rig.vms[0].start(&rig.host);
    rig
}

/// An image-diffusion worker is probed on the Images API with no model discovery; an image
/// is a success, a completion or an empty `data` a failure, and the default cap holds a
/// 512x512 image (read in chunks) but not an answer over it.
#[test]
fn an_image_worker_is_judged_by_its_image() {
    let mut rig = rig_for(
        r#"{"name":"w0","cluster":"workers","backend":"diffusion","interval":"1s","timeout":"300ms","mode":"always"}"#,
    );
    rig.run_until_call();
    let c = rig.last_call();
    assert_eq!(c.header(":path"), Some("/v1/images/generations"));
    assert!(c.body.unwrap().contains(r#""num_inference_steps":1"#));
    let png = "A".repeat(1_400_000);
    let good = format!(r#"{{"created":1,"data":[{{"b64_json":"{png}","url":null}}]}}"#);
    rig.answer(Some(200), good.as_bytes());
    assert_eq!(rig.state().last_error, None);
    assert_eq!(rig.checks("success"), 1);
    assert_eq!(rig.host.call_body_read.get(), good.len());
    rig.run_until_call();
    rig.answer(Some(200), COMPLETION);
    assert_eq!(
        rig.state().last_error.as_deref(),
        Some("answer has no image in `data`")
    );
    rig.run_until_call();
    rig.answer(Some(200), br#"{"created":1,"data":[{"b64_json":""}]}"#);
    assert_eq!(
        rig.state().last_error.as_deref(),
        Some("answer's images have no `b64_json` or `url`")
    );
    let read = rig.host.call_body_read.get();
    rig.run_until_call();
    let cap = crate::config::health::DEFAULT_IMAGE_MAX_ANSWER_BYTES;
    let over = format!(r#"{{"data":[{{"b64_json":"{}"}}]}}"#, "A".repeat(cap));
    rig.answer(Some(200), over.as_bytes());
    assert_eq!(rig.host.call_body_read.get(), read, "not read");
    assert_eq!(
        rig.state().last_error.as_deref(),
        Some(answer::too_large(over.len(), cap).as_str())
    );
    assert_eq!(rig.checks("failure"), 3);
}

/// `expect: any_2xx`: the status decides, the body is never read.
#[test]
fn any_2xx_reads_no_body() {
    let mut rig = rig_for(
        r#"{"name":"w0","cluster":"workers","backend":"openai","model":"m","payload":{"model":"m","messages":[],"stream":true},"expect":"any_2xx","interval":"1s","timeout":"300ms","mode":"always"}"#,
    );
    rig.run_until_call();
    rig.answer(Some(200), b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
    assert_eq!(rig.checks("success"), 1);
    assert_eq!(rig.host.call_body_read.get(), 0);
    rig.run_until_call();
    rig.answer(Some(503), b"busy");
    assert_eq!(rig.state().last_error.as_deref(), Some("status 503"));
}
