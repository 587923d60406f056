// A minimal proxy-wasm host on Node's V8, to price and profile proxy-wasm modules in the
// engine Envoy uses (docs/benchmarks.md, "V8 outside Envoy"). Envoy runs V8 with Liftoff off
// (proxy-wasm-cpp-host: `--no-liftoff`): pass the same flag.
//
//   node --no-liftoff bench/v8-host/host.mjs STREAMS TOKENS REQUESTS EVENTS_PER_CALLBACK \
//       MODULE.wasm CONFIG [MODULE.wasm CONFIG ...]
//
// Each module gets its own instance and STREAMS interleaved streams (one body callback per
// stream in turn, as a busy Envoy worker calls them) of TOKENS vLLM-shaped chat chunks plus the
// role chunk and [DONE], EVENTS_PER_CALLBACK events per body callback; each stream's next
// read comes 20 ms after its last (a worker's pace), every stream in the same step. Rounds
// alternate between the modules; printed per module:
// the median time per SSE event of the body callbacks, and the median and range of its
// per-round difference to the first module. Host calls are JavaScript functions, so absolute
// figures include their cost; differences between modules that make the same calls do not.
// For a profile by wasm function: perf record -e cpu-clock node --no-liftoff
// --perf-basic-prof ... with a .wasm built with `--config profile.release.strip=false`.
import fs from 'node:fs';

const [streamsArg, tokensArg, reqArg, perArg, ...modArgs] = process.argv.slice(2);
const STREAMS = +streamsArg, TOKENS = +tokensArg, REQS = +reqArg;
const PER = +(perArg ?? 1);
const ROUNDS = +(process.env.ROUNDS ?? 15);
if (!(STREAMS > 0 && TOKENS > 0 && REQS > 0 && PER > 0) || modArgs.length < 2 || modArgs.length % 2) {
  console.error('usage: node --no-liftoff host.mjs STREAMS TOKENS REQUESTS EVENTS_PER_CALLBACK MODULE.wasm CONFIG [MODULE.wasm CONFIG ...]');
  process.exit(2);
}
const enc = new TextEncoder(), dec = new TextDecoder();

const ROLE = 'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n';
const tok = i => `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":" t${i}"},"logprobs":null,"finish_reason":null}]}\n\n`;
const DONE = 'data: [DONE]\n\n';
const single = [ROLE, ...Array.from({ length: TOKENS }, (_, i) => tok(i)), DONE];
const events = [];
for (let i = 0; i < single.length; i += PER) events.push(enc.encode(single.slice(i, i + PER).join('')));
const reqBody = enc.encode('{"model":"bench-model","messages":[{"role":"user","content":"hello"}],"stream":true,"max_tokens":256}');

let inst, mem;
let cachedBuf = null, cachedU8 = null, cachedDv = null;
function refresh() { if (cachedBuf !== mem.buffer) { cachedBuf = mem.buffer; cachedU8 = new Uint8Array(cachedBuf); cachedDv = new DataView(cachedBuf); } }
const u8 = () => { refresh(); return cachedU8; };
const dv = () => { refresh(); return cachedDv; };
let current = null; // bytes the next get_buffer returns
let reqHeaders = { ':path': '/v1/chat/completions', ':method': 'POST', ':authority': 'x', 'content-type': 'application/json' };
let respHeaders = { ':status': '200', 'content-type': 'text/event-stream' };
let configBytes = null;
let clock = 1_000_000_000n;
let calls = 0;

function give(bytes, ptrPtr, sizePtr) {
  const addr = inst.exports.proxy_on_memory_allocate(bytes.length);
  u8().set(bytes, addr);
  dv().setUint32(ptrPtr, addr, true);
  dv().setUint32(sizePtr, bytes.length, true);
}

const env = {
  proxy_log(level, ptr, size) { if (level >= 3) console.error('log', level, dec.decode(u8().slice(ptr, ptr + size))); return 0; },
  proxy_get_buffer_bytes(type, start, max, ptrPtr, sizePtr) {
    calls++;
    const b = type === 7 ? configBytes : current;
    if (!b) return 1;
    give(b.subarray(start, start + max), ptrPtr, sizePtr);
    return 0;
  },
  proxy_get_header_map_value(type, kp, ks, ptrPtr, sizePtr) {
    calls++;
    const key = dec.decode(u8().slice(kp, kp + ks));
    const map = type === 0 ? reqHeaders : respHeaders;
    const v = map[key];
    if (v === undefined) return 1;
    give(enc.encode(v), ptrPtr, sizePtr);
    return 0;
  },
  proxy_get_current_time_nanoseconds(ptr) { calls++; clock += 1000n; dv().setBigUint64(ptr, clock, true); return 0; },
  proxy_define_metric(type, np, ns, idPtr) { dv().setUint32(idPtr, ++calls & 0xffff, true); return 0; },
  proxy_record_metric() { calls++; return 0; },
  proxy_increment_metric() { calls++; return 0; },
  proxy_get_property() { calls++; return 1; },
  proxy_set_property() { calls++; return 0; },
  proxy_get_shared_data() { return 1; },
  proxy_set_shared_data() { return 0; },
  proxy_set_effective_context() { return 0; },
  proxy_done() { return 0; },
  proxy_set_tick_period_milliseconds() { return 0; },
  proxy_get_log_level(ptr) { dv().setUint32(ptr, 2, true); return 0; },
};
const wasi = {
  random_get(ptr, len) { u8().fill(7, ptr, ptr + len); return 0; },
  environ_get() { return 0; },
  environ_sizes_get(a, b) { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
  fd_write(fd, iovs, n, written) { dv().setUint32(written, 0, true); return 0; },
  proc_exit(c) { throw new Error('proc_exit ' + c); },
  clock_time_get(id, prec, ptr) { dv().setBigUint64(ptr, clock, true); return 0; },
};

function load(wasmPath, config) {
  configBytes = enc.encode(config);
  const module = new WebAssembly.Module(fs.readFileSync(wasmPath));
  const imports = { env: {}, wasi_snapshot_preview1: {} };
  for (const imp of WebAssembly.Module.imports(module)) {
    const table = imp.module === 'env' ? env : wasi;
    imports[imp.module][imp.name] = table[imp.name] ?? (() => 0);
  }
  const i = new WebAssembly.Instance(module, imports);
  const m = { inst: i, mem: i.exports.memory, X: i.exports, nextId: 2, name: wasmPath.split('/').slice(-4).join('/') + ' ' + config };
  use(m);
  m.X._initialize?.();
  m.X.proxy_on_context_create(1, 0);
  if (!m.X.proxy_on_vm_start(1, 0)) throw new Error('vm start refused');
  if (!m.X.proxy_on_configure(1, configBytes.length)) throw new Error('configure refused');
  return m;
}
function use(m) { inst = m.inst; mem = m.mem; cachedBuf = null; }

function run(m, reqs) {
  use(m);
  const X = m.X;
  let t = 0n;
  for (let r = 0; r < reqs; r++) {
    const ids = [];
    for (let s = 0; s < STREAMS; s++) {
      const id = m.nextId++;
      ids.push(id);
      X.proxy_on_context_create(id, 1);
      X.proxy_on_request_headers(id, 4, 0);
      current = reqBody;
      X.proxy_on_request_body(id, reqBody.length, 1);
      X.proxy_on_response_headers(id, 2, 0);
    }
    const c0 = calls;
    const t0 = process.hrtime.bigint();
    for (let e = 0; e < events.length; e++) {
      clock += 20_000_000n; // every stream's next event 20 ms later, as a GPU's decode step
      current = events[e];
      const n = current.length;
      const last = e === events.length - 1 ? 1 : 0;
      for (let s = 0; s < STREAMS; s++) X.proxy_on_response_body(ids[s], n, last);
    }
    t += process.hrtime.bigint() - t0;
    m.calls = (calls - c0) / (STREAMS * single.length);
    for (const id of ids) { X.proxy_on_log(id); X.proxy_on_done(id); X.proxy_on_delete(id); }
  }
  return Number(t) / (reqs * STREAMS * single.length);
}

const mods = [];
for (let i = 0; i < modArgs.length; i += 2) mods.push(load(modArgs[i], modArgs[i + 1]));
for (const m of mods) run(m, Math.max(2, REQS / 5 | 0));
const res = mods.map(() => []);
for (let round = 0; round < ROUNDS; round++) mods.forEach((m, i) => res[i].push(run(m, REQS)));
const med = a => [...a].sort((x, y) => x - y)[a.length >> 1];
mods.forEach((m, i) => {
  const d = res[i].map((v, k) => v - res[0][k]);
  console.log(`${m.name}: ${med(res[i]).toFixed(1)} ns/event (${m.calls.toFixed(2)} host calls/event); minus first: ${med(d).toFixed(1)} [${Math.min(...d).toFixed(1)}, ${Math.max(...d).toFixed(1)}]`);
});
