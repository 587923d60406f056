#!/usr/bin/env python3
"""make-tiny-gguf.py OUT.gguf — a tiny random-weight llama model for llama-server.

Why: the filter's tests want a *real* engine's bytes (its SSE framing, usage
and timings), not a real model's text. A 2-layer, 64-wide llama with random
weights loads in milliseconds and decodes hundreds of tokens per second on one
CPU core, and needs nothing from a model hub.

Tokenizer: GPT-2 style byte-level BPE ("gpt2"): all 256 byte tokens (so any
prompt tokenizes), a few merges (so prompts are not purely one token per
byte), and the ChatML control tokens, with a ChatML chat template so
/v1/chat/completions works.

Output: gibberish. The output-projection rows of every token except printable
ASCII ones are zero, so their logits sit at 0 while the ~100 printable tokens
spread around it with a standard deviation of ~8; llama-server's default
top-k 40 / min-p 0.05 sampling therefore never picks them in practice. That
keeps every streamed piece valid one-token UTF-8 and keeps EOS from ending a
stream early: each request runs to its max_tokens (finish_reason "length").
Fixed seed, so the file is the same on every machine.
"""
import sys

import numpy as np
import gguf

OUT = sys.argv[1]
rng = np.random.default_rng(1234)

# --- tokenizer ----------------------------------------------------------------


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()
tokens = [B2U[b] for b in range(256)]
types = [gguf.TokenType.NORMAL] * 256
printable = {i for i in range(256) if 0x20 <= i <= 0x7E}

# A few merges, in rank order; both halves of each must already be tokens,
# and the merged token is appended to the vocabulary.
SP = B2U[ord(" ")]  # "Ġ", byte-level BPE's stand-in for a space
MERGES = ["t h", "h e", "th e", f"{SP} t", f"{SP} th", f"{SP}th e", "i n", "e r",
          "a n", "o n", f"{SP} a", "r e", f"{SP} s", "e d", "l l", f"{SP} w",
          "o r", "e n", "H e", "He ll", "Hell o", f"{SP} Hello", "er e", f"{SP}th ere"]
merges = []
for m in MERGES:
    a, b = m.split(" ")
    assert a in tokens and b in tokens, m
    merges.append(m)
    if a + b not in tokens:
        tokens.append(a + b)
        types.append(gguf.TokenType.NORMAL)
        printable.add(len(tokens) - 1)

specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
for s in specials:
    tokens.append(s)
    types.append(gguf.TokenType.CONTROL)
ENDOFTEXT, IM_START, IM_END = (tokens.index(s) for s in specials)
n_vocab = len(tokens)

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# --- model shape ----------------------------------------------------------------
n_embd, n_layer, n_head, n_ff, n_ctx = 64, 2, 4, 128, 512
head_dim = n_embd // n_head

w = gguf.GGUFWriter(OUT, "llama")
w.add_name("tiny-random-llama")
w.add_context_length(n_ctx)
w.add_embedding_length(n_embd)
w.add_block_count(n_layer)
w.add_feed_forward_length(n_ff)
w.add_head_count(n_head)
w.add_head_count_kv(n_head)
w.add_rope_dimension_count(head_dim)
w.add_rope_freq_base(10000.0)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(n_vocab)
w.add_file_type(gguf.LlamaFileType.ALL_F32)

w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre("gpt-2")
w.add_token_list(tokens)
w.add_token_types(types)
w.add_token_merges(merges)
w.add_bos_token_id(ENDOFTEXT)
w.add_eos_token_id(IM_END)
w.add_eot_token_id(IM_END)
w.add_add_bos_token(False)
w.add_add_eos_token(False)
w.add_chat_template(CHATML)


def rand(*shape, std=0.02):
    return (rng.standard_normal(shape) * std).astype(np.float32)


# numpy shape is (rows, cols) = ggml's (ne1, ne0): token_embd is {n_embd, n_vocab}.
w.add_tensor("token_embd.weight", rand(n_vocab, n_embd, std=1.0))
w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
out = rand(n_vocab, n_embd, std=1.0)
mask = np.zeros(n_vocab, dtype=bool)
mask[sorted(printable)] = True
out[~mask] = 0.0  # see docstring: non-printable, byte >= 0x80 and control tokens never win
w.add_tensor("output.weight", out)
for i in range(n_layer):
    p = f"blk.{i}."
    w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor(p + "attn_q.weight", rand(n_embd, n_embd, std=0.1))
    w.add_tensor(p + "attn_k.weight", rand(n_embd, n_embd, std=0.1))
    w.add_tensor(p + "attn_v.weight", rand(n_embd, n_embd, std=0.1))
    w.add_tensor(p + "attn_output.weight", rand(n_embd, n_embd, std=0.1))
    w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
    w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd, std=0.1))
    w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd, std=0.1))
    w.add_tensor(p + "ffn_down.weight", rand(n_embd, n_ff, std=0.1))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"{OUT}: {n_vocab} tokens, {len(merges)} merges, {n_layer} layers x {n_embd}")
