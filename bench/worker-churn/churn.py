#!/usr/bin/env python3
"""Envoy's memory while llm-pulse's `worker` label sees 10,000 distinct worker addresses over
time, as pods come and go (docs/benchmarks.md, "Worker churn").

Workers are loopback listeners on distinct 127.x.y.z addresses (Linux routes all of 127/8 to
lo), opened in waves and closed when their wave is done, so each address is a worker that
served and went away. Envoy routes each request to the address in `x-envoy-original-dst-host`
(the ORIGINAL_DST cluster envoy/envoy.yaml already has for probes), so every request reaches
the worker the client picked. Two Envoys run the same churn one after the other: llm-pulse
with `worker_label` on, and with it off (the baseline: Envoy's own per-host memory). After
each wave the script reads Envoy's `/memory` (tcmalloc's allocated bytes), its RSS, and how
many distinct `worker` values `/stats/prometheus` shows.

Run with scripts/bench-worker-churn (it builds the filter and finds Envoy first); stdlib only.
"""

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

SETTLE_S = 12
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","model":"churn-model",'
    b'"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","model":"churn-model",'
    b'"choices":[{"index":0,"delta":{"content":"b"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"content-length: %d\r\n\r\n" % len(SSE)
) + SSE


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def address(i):
    """The i-th worker address: 127.1.0.1 onwards (never 127.0.0.1, where Envoy listens)."""
    c, d = divmod(i, 254)  # last octet 1..254
    return "127.%d.%d.%d" % (1 + c // 256, c % 256, d + 1)


class Wave:
    """Listeners on `addrs` (each its own worker), answering every request with a short stream;
    closed together when the wave is done."""

    def __init__(self, addrs, port):
        self.socks = []
        for a in addrs:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a, port))
            s.listen(64)
            self.socks.append(s)
        self.stop = False
        self.threads = [threading.Thread(target=self.accept, args=(s,), daemon=True) for s in self.socks]
        for t in self.threads:
            t.start()

    def accept(self, sock):
        sock.settimeout(0.2)
        while not self.stop:
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def serve(conn):
        conn.settimeout(10)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                need = int(m.group(1)) if m else 0
                while len(rest) < need:
                    data = conn.recv(65536)
                    if not data:
                        return
                    rest += data
                buf = rest[need:]
                conn.sendall(ANSWER)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop = True
        for t in self.threads:
            t.join()
        for s in self.socks:
            s.close()


def render_envoy(dir_, wasm, plugin_config, listen, admin):
    with open(os.path.join(ROOT, "envoy/envoy.yaml")) as f:
        text = f.read()
    values = {
        "LISTEN_PORT": str(listen),
        "ADMIN_PORT": str(admin),
        "WORKER_HOST": "127.0.0.1",
        "WORKER_PORT": "9",
        "WASM_PATH": wasm,
        "PLUGIN_CONFIG": plugin_config,
        "ACCESS_LOG_PATH": "/dev/null",
        "STATS_FLUSH": "1s",
    }
    for k, v in values.items():
        text = text.replace("${%s}" % k, v)
    # Route to the per-request destination cluster instead of the static `workers`.
    route = "                            cluster: workers\n"
    assert route in text, "envoy.yaml's route to `workers` moved"
    text = text.replace(route, "                            cluster: llm_pulse_probe\n")
    path = os.path.join(dir_, "envoy.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def wait_ready(port, proc, log):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("Envoy exited:\n" + open(log).read()[-4000:])
        try:
            if get(port, "/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("Envoy did not become ready")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample(admin, pid):
    mem = json.loads(get(admin, "/memory")[1])
    text = get(admin, "/stats/prometheus")[1].decode()
    workers = set(re.findall(r'worker="([^"]*)"', text))
    series = sum(1 for line in text.splitlines() if 'worker="' in line and not line.startswith("#"))
    return int(mem["allocated"]), rss_kib(pid), workers, series


def request(listen, addr, port):
    c = http.client.HTTPConnection("127.0.0.1", listen, timeout=30)
    body = b'{"model":"churn-model","messages":[{"role":"user","content":"hi"}],"stream":true}'
    c.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={
            "content-type": "application/json",
            "x-envoy-original-dst-host": "%s:%d" % (addr, port),
        },
    )
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def run(envoy_bin, wasm, worker_label, total, wave_size, checkpoints):
    tmp = tempfile.mkdtemp(prefix="llm-pulse-churn-")
    listen, admin = free_port(), free_port()
    config = json.dumps({"worker_label": worker_label, "usage_stats": "off"})
    yaml = render_envoy(tmp, wasm, config, listen, admin)
    log = os.path.join(tmp, "envoy.log")
    proc = subprocess.Popen(
        [envoy_bin, "-c", yaml, "--concurrency", "2", "--disable-hot-restart", "-l", "warning"],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
    )
    rows = []
    try:
        wait_ready(admin, proc, log)
        port = free_port()
        before = sample(admin, proc.pid)
        rows.append((0, before))
        failed = 0
        done = 0
        with ThreadPoolExecutor(max_workers=4) as pool:
            while done < total:
                addrs = [address(i) for i in range(done, min(total, done + wave_size))]
                wave = Wave(addrs, port)
                try:
                    statuses = list(pool.map(lambda a: request(listen, a, port), addrs))
                finally:
                    wave.close()
                failed += sum(1 for s in statuses if s != 200)
                done += len(addrs)
                if done in checkpoints:
                    # Settle before reading: the ORIGINAL_DST cluster drops idle hosts every
                    # 5 s (its cleanup_interval), and stats reach /stats/prometheus at the
                    # stats flush (1 s); without the wait, Envoy's own per-host memory of the
                    # last wave is the noise.
                    time.sleep(SETTLE_S)
                    rows.append((done, sample(admin, proc.pid)))
        return rows, failed
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--addresses", type=int, default=10_000)
    ap.add_argument("--wave", type=int, default=500)
    args = ap.parse_args()
    checkpoints = {n for n in (500, 1_000, 2_000, 5_000, 10_000, args.addresses) if n <= args.addresses}
    print(
        "machine: %d CPUs, %s; Envoy %s; %d addresses in waves of %d, one stream each"
        % (os.cpu_count(), os.uname().release, args.envoy, args.addresses, args.wave)
    )
    results = {}
    for label in (True, False):
        rows, failed = run(args.envoy, args.wasm, label, args.addresses, args.wave, checkpoints)
        results[label] = rows
        if failed:
            print("worker_label %s: %d requests did not get a 200" % (label, failed))
    print()
    print("| addresses seen | allocated, label on (MiB) | allocated, off (MiB) | on − off (MiB) | RSS on / off (MiB) | worker values | worker series |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (n, on), (_, off) in zip(results[True], results[False]):
        mib = lambda b: b / 1048576
        print(
            "| %d | %.1f | %.1f | %+.1f | %.0f / %.0f | %d | %d |"
            % (n, mib(on[0]), mib(off[0]), mib(on[0] - off[0]), on[1] / 1024, off[1] / 1024, len(on[2]), on[3])
        )
    last = results[True][-1][1][2]
    print()
    print("worker values at the end: %s" % ", ".join(sorted(last)[:5] + (["…"] if len(last) > 5 else [])))


if __name__ == "__main__":
    main()
