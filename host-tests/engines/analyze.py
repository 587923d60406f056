#!/usr/bin/env python3
"""analyze.py CAPTURE_DIR — summarise what capture.sh recorded.

For each ENDPOINT-CASE.body: HTTP status, content type, line endings, and per
SSE event: the keys in order, where `usage` sits and what it holds, how many
tokens/characters the event carries, whether the JSON is compact, and for
llama.cpp whether `timings` agree with `usage`. Then whether case a equals
case b minus its usage-only event once ids and timestamps are masked.
"""
import json
import re
import sys
from pathlib import Path

d = Path(sys.argv[1])


def status(name):
    hf = d / f"{name}.headers"
    h = hf.read_text(errors="replace").splitlines() if hf.exists() else []
    st = h[0].strip() if h else "?"
    ct = next((l.split(":", 1)[1].strip() for l in h if l.lower().startswith("content-type:")), "")
    te = next((l.split(":", 1)[1].strip() for l in h if l.lower().startswith("transfer-encoding:")), "")
    return st, ct, te


def events(raw: bytes):
    # Split on the blank line; report which separator was used.
    seps = {"\\r\\n\\r\\n": raw.count(b"\r\n\r\n"), "\\n\\n": raw.count(b"\n\n")}
    return [e for e in re.split(rb"\r?\n\r?\n", raw) if e.strip()], seps


def compact(txt, obj):
    return txt in (json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
                   json.dumps(obj, separators=(",", ":"), ensure_ascii=True))


def mask(raw: bytes) -> bytes:
    raw = re.sub(rb'"id":"[^"]*"', b'"id":"X"', raw)
    raw = re.sub(rb'"created":\d+', b'"created":0', raw)
    raw = re.sub(rb'"timings":\{[^}]*\}', b'"timings":{}', raw)
    raw = re.sub(rb'"system_fingerprint":"[^"]*"', b'"system_fingerprint":"X"', raw)
    # the sampled text differs per request, and so may the prompt-cache hit
    raw = re.sub(rb'"(content|text)":"(?:[^"\\]|\\.)*"', rb'"\1":"T"', raw)
    raw = re.sub(rb'"cached_tokens":\d+', b'"cached_tokens":0', raw)
    return raw


for body in sorted(d.glob("*.body")):
    name = body.stem
    raw = body.read_bytes()
    st, ct, te = status(name)
    print(f"== {name}: {st} | {ct} | te={te} | {len(raw)} bytes | ends {raw[-4:]!r}")
    if not raw.startswith(b"data:"):
        print("   body:", raw[:400].decode(errors="replace"))
        continue
    evs, seps = events(raw)
    print(f"   {len(evs)} events, separators {seps}")
    for i, e in enumerate(evs):
        lines = e.split(b"\n")
        txt = e.decode(errors="replace")
        if not txt.startswith("data: "):
            print(f"   [{i}] non-data event: {txt[:120]!r}")
            continue
        payload = txt[len("data: "):]
        if payload.strip() == "[DONE]":
            print(f"   [{i}] [DONE]")
            continue
        pairs = json.loads(payload, object_pairs_hook=lambda p: p)
        keys = [k for k, _ in pairs]
        obj = json.loads(payload)
        ch = obj.get("choices")
        piece = ""
        fin = None
        if ch:
            c0 = ch[0]
            piece = (c0.get("delta") or {}).get("content") if "delta" in c0 else c0.get("text")
            fin = c0.get("finish_reason")
        u = obj.get("usage", "<absent>")
        t = obj.get("timings")
        tm = ""
        if t:
            tm = f" timings.prompt_n={t.get('prompt_n')} predicted_n={t.get('predicted_n')}"
            tm += f" cache_n={t.get('cache_n')}"
            if isinstance(u, dict):
                # llama.cpp: prompt_n counts only the prompt tokens evaluated
                # this time; cache_n those reused from the slot's KV cache.
                tm += " prompt_tokens==prompt_n:" + str(u.get("prompt_tokens") == t.get("prompt_n"))
                tm += " prompt_tokens==prompt_n+cache_n:" + str(u.get("prompt_tokens") == t.get("prompt_n", 0) + t.get("cache_n", 0))
                tm += " completion_tokens==predicted_n:" + str(u.get("completion_tokens") == t.get("predicted_n"))
        upos = keys.index("usage") if "usage" in keys else None
        print(f"   [{i}] keys={keys} usage@{upos}/{len(keys)}={json.dumps(u) if u != '<absent>' else u}"
              f" choices={len(ch) if ch is not None else None} piece={piece!r} fin={fin}"
              f" compact={compact(payload, obj)} lines={len(lines)}{tm}")

# a versus b minus its usage-only event (ids, timestamps, timings, sampled
# text and prompt-cache hits masked)
for ep in ("chat", "completions"):
    a, b = d / f"{ep}-a-none.body", d / f"{ep}-b-include_usage.body"
    if not (a.exists() and b.exists()):
        continue
    ra, rb = mask(a.read_bytes()), mask(b.read_bytes())
    rb_wo = re.sub(rb'data: \{[^\n]*"choices":\[\][^\n]*\}\r?\n\r?\n', b"", rb)
    print(f"{ep}: masked a == masked b without usage-only event: {ra == rb_wo}")
    if ra != rb_wo:
        for x, y in zip(ra.split(b"\n\n"), rb_wo.split(b"\n\n")):
            if x != y:
                print("   a:", x[:300])
                print("   b:", y[:300])
                break

# HTTP/1.1 chunk framing of case b (capture.sh's *.raw): which events each
# server write carried.
NL2 = b"\n\n"
for raw_file in sorted(d.glob("*.raw")):
    raw = raw_file.read_bytes()
    sizes = []
    i = 0
    while i < len(raw):
        j = raw.index(b"\r\n", i)
        size = int(raw[i:j], 16)
        chunk = raw[j + 2:j + 2 + size]
        i = j + 2 + size + 2
        if size == 0:
            break
        sizes.append((size, chunk.count(b"data: "), chunk.endswith(NL2)))
    print(f"{raw_file.name}: {len(sizes)} chunks; (bytes, events, ends with blank line) = {sizes}")
