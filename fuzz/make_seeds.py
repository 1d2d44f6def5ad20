#!/usr/bin/env python3
"""Writes the hand-made fuzz seeds to fuzz/seeds/<target>/ (the starting
corpus; `cargo fuzz cmin` then keeps a minimized set in fuzz/corpus/).

Sources: the shared fixtures (config.json files, the real safetensors
headers cut down, the SmolLM2 GGUF header and chat template) and small
synthetic files (a tiny llama GGUF model, plans, tokenizer vocabularies in
the layouts of tests/src/fuzz.rs).
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("ASDSL_SHARED", os.path.join(ROOT, "..", "..", "shared"))
OUT = os.path.join(ROOT, "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- config.json -----------------------------------------------------------
for model in ["llama-tiny", "phi3-tiny", "qwen2-tiny"]:
    with open(os.path.join(SHARED, "fixtures", "hf", model, "config.json"), "rb") as f:
        put("config_json", model, f.read())
base = json.load(open(os.path.join(SHARED, "fixtures", "hf", "llama-tiny", "config.json")))
variants = {
    "zero-heads": {"num_attention_heads": 0},
    "huge": {"hidden_size": 2**62, "num_attention_heads": 2**31, "vocab_size": 2**63},
    "rope-llama3": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
    "rope-linear": {"rope_scaling": {"type": "linear", "factor": 2.0}},
    "rope-yarn": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
    "eos-list": {"eos_token_id": [1, 2, 3], "bos_token_id": None},
    "strings": {"hidden_size": "64", "rms_norm_eps": "x"},
    "negative": {"hidden_size": -64, "rope_theta": -1},
    "float-dims": {"hidden_size": 64.5, "head_dim": 1e300},
}
for name, patch in variants.items():
    c = dict(base)
    c.update(patch)
    put("config_json", name, json.dumps(c))

# ---- safetensors -----------------------------------------------------------
def safetensors(tensors, metadata=None):
    header = {}
    data = b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors_header", "floats", safetensors({
    "a.weight": ("F32", [2, 3], struct.pack("<6f", *range(6))),
    "b.weight": ("BF16", [4], b"\x80\x3f" * 4),
    "c.weight": ("F16", [2, 2], b"\x00\x3c" * 4),
}, {"format": "pt"}))
put("safetensors_header", "ints", safetensors({
    "q": ("I8", [8], bytes(range(8))),
    "s": ("U8", [0], b""),
    "z": ("F32", [], struct.pack("<f", 1.0)),
}))
for model in ["llama-tiny", "qwen2-tiny"]:
    with open(os.path.join(SHARED, "fixtures", "hf", model, "model.safetensors"), "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    # the real header with every tensor cut to a few elements
    tensors = {}
    for name, info in sorted(header.items()):
        if name == "__metadata__":
            continue
        size = {"F32": 4, "BF16": 2, "F16": 2}[info["dtype"]]
        tensors[name] = (info["dtype"], [2], bytes(2 * size))
    put("safetensors_header", model + "-cut", safetensors(tensors, header.get("__metadata__")))
    # the real header, its data truncated
    put("safetensors_header", model + "-truncated", raw[: 8 + n + 64])

# ---- GGUF: the SmolLM2 header, tensor data dropped ---------------------------
def gguf_string(b, off):
    (n,) = struct.unpack_from("<Q", b, off)
    return b[off + 8: off + 8 + n], off + 8 + n


SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_value(b, off, ty):
    if ty == 8:
        s, off = gguf_string(b, off)
        return s, off
    if ty == 9:
        (ety, n) = struct.unpack_from("<IQ", b, off)
        off += 12
        items = []
        for _ in range(n):
            v, off = gguf_value(b, off, ety)
            items.append(v)
        return items, off
    return b[off: off + SIZES[ty]], off + SIZES[ty]


gguf_path = os.path.join(SHARED, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
template = None
if os.path.exists(gguf_path):
    with open(gguf_path, "rb") as f:
        head = f.read(8 << 20)
    n_tensors, n_kv = struct.unpack_from("<QQ", head, 8)
    off = 24
    kv_start = off
    kvs = []
    for _ in range(n_kv):
        start = off
        key, off = gguf_string(head, off)
        (ty,) = struct.unpack_from("<I", head, off)
        off += 4
        value, off = gguf_value(head, off, ty)
        kvs.append((key, ty, head[start:off], value))
        if key == b"tokenizer.chat_template":
            template = value.decode()
    tensors_start = off
    # metadata without the big vocabulary arrays, and the first tensors
    small = [raw for key, ty, raw, _ in kvs if ty != 9]
    tensor_infos = []
    for _ in range(4):
        start = off
        _, off = gguf_string(head, off)
        (nd,) = struct.unpack_from("<I", head, off)
        off += 4 + 8 * nd + 4 + 8
        tensor_infos.append(head[start:off])
    body = b"".join(small) + b"".join(tensor_infos[:1])
    put("gguf_header", "smollm2-meta", b"GGUF" + struct.pack("<IQQ", 3, 1, len(small)) + body + bytes(64))
    put("gguf_header", "smollm2-truncated", head[:4096])

# ---- chat templates ----------------------------------------------------------
templates = {
    "chatml": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "llama3": "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
    "phi3": "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
    "mistral": "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
    "macros": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}x{% endif %}{% endmacro %}{{ f(10) }}{% set ns = namespace(a=0) %}{% for m in messages %}{% set ns.a = ns.a + 1 %}{{ m.content|upper|replace('a', 'bb') }}{{ m.content.split(' ')|join(',') }}{{ m | tojson }}{% endfor %}{{ ns.a }}{{ strftime_now('%Y') }}{{ range(5)|list|length }}",
    "filters": "{{ 'abc' * 3 }}{{ messages|length }}{{ (messages|first).content|indent(2) }}{{ messages|map(attribute='role')|join('|') }}{{ '%s-%d'|format('a', 3) }}{{ 'x'.strip().startswith('x') }}{{ {'a': 1}|items|list }}{{ [3,1,2]|sort|reverse|list }}{% for a, b in [[1,2]] %}{{ a ~ b }}{% endfor %}{{ 'A B'|lower|title|wordcount }}{{ none|default('d') }}",
}
if template:
    templates["smollm2"] = template
messages = b"\0You are helpful.\0Hi there, how are you?\0Fine.\0One more"
for name, t in templates.items():
    put("chat_template", name, t.encode() + messages)
print("seeds written to", OUT, file=sys.stderr)

# ---- a tiny llama GGUF model (q8_0 matrices of zeros, f32 norms) -------------
def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def tiny_model(arch="llama", hidden=64, ffn=64, heads=2, kv_heads=1, vocab=32, qtype=8):
    kv = [
        ("general.architecture", 8, gguf_str(arch)),
        (arch + ".embedding_length", 4, struct.pack("<I", hidden)),
        (arch + ".block_count", 4, struct.pack("<I", 1)),
        (arch + ".feed_forward_length", 4, struct.pack("<I", ffn)),
        (arch + ".attention.head_count", 4, struct.pack("<I", heads)),
        (arch + ".attention.head_count_kv", 4, struct.pack("<I", kv_heads)),
        (arch + ".context_length", 4, struct.pack("<I", 128)),
        (arch + ".attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        (arch + ".rope.freq_base", 6, struct.pack("<f", 10000.0)),
        (arch + ".vocab_size", 4, struct.pack("<I", vocab)),
    ]
    head_dim = hidden // heads
    mats = [
        ("token_embd.weight", hidden, vocab),
        ("blk.0.attn_q.weight", hidden, heads * head_dim),
        ("blk.0.attn_k.weight", hidden, kv_heads * head_dim),
        ("blk.0.attn_v.weight", hidden, kv_heads * head_dim),
        ("blk.0.attn_output.weight", heads * head_dim, hidden),
        ("blk.0.ffn_gate.weight", hidden, ffn),
        ("blk.0.ffn_up.weight", hidden, ffn),
        ("blk.0.ffn_down.weight", ffn, hidden),
    ]
    vecs = ["blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight"]
    tensors = []
    for name, cols, rows in mats:
        if qtype == 8:
            data = (b"\x00\x3c" + bytes(32)) * (cols * rows // 32)  # scale 1.0, codes 0
        else:
            data = bytes(4 * cols * rows)
            qtype = 0
        tensors.append((name, [cols, rows], qtype, data))
    for name in vecs:
        tensors.append((name, [hidden], 0, struct.pack("<f", 1.0) * hidden))
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, ty, raw in kv:
        out += gguf_str(key) + struct.pack("<I", ty) + raw
    offset = 0
    datas = b""
    for name, dims, ty, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        pad = -len(data) % 32
        datas += data + bytes(pad)
        offset += len(data) + pad
    out += bytes(-len(out) % 32)
    return out + datas


put("gguf_model", "tiny-llama-q8_0", tiny_model())
put("gguf_model", "tiny-qwen2-f32", tiny_model("qwen2", hidden=32, ffn=32, vocab=16, qtype=0))
put("gguf_header", "tiny-llama-q8_0", tiny_model())

# ---- plans -------------------------------------------------------------------
def measured(variant, rows_per_chunk=64, schedule="static"):
    return {"variant": variant, "partition": {"rows_per_chunk": rows_per_chunk, "schedule": schedule},
            "secs": 1.5e-06, "gbs": 12.25, "roofline_pct": 40.0, "samples": 7}


plan = {
    "version": 1, "asdsl_version": "0.1.0", "registry_hash": "0123456789abcdef", "registry_variants": 1128,
    "fingerprint": {"vendor": "GenuineIntel", "brand": "Fuzz CPU", "family": 6, "model": 85, "stepping": 7,
                    "features": ["sse4.1", "avx", "avx2", "fma", "f16c"], "logical_cores": 2, "physical_cores": 1,
                    "caches": [{"level": 1, "kind": "data", "size_bytes": 32768, "shared_by_logical": 2},
                               {"level": 3, "kind": "unified", "size_bytes": 33554432, "shared_by_logical": 2}]},
    "created_unix": 1764380000, "tune_secs": 12.5, "budget_secs": 60.0,
    "roofline": [{"threads": 1, "gbs": 10.5}, {"threads": 2, "gbs": 15.0}],
    "entries": [
        {"key": {"format": "q4_0", "rows": 64, "cols": 64, "sparsity": "dense", "columns": 1}, "threads": 1,
         "choice": measured("q4_0.r4.c32.dense.q8.avx2"), "runners_up": [measured("q4_0.r1.c32.dense.f32.scalar")],
         "heuristic": measured("q4_0.r1.c32.dense.f32.scalar", 256), "candidates": 2},
        {"key": {"format": "q8_0", "rows": 96, "cols": 256, "sparsity": "dense", "columns": 1}, "threads": 2,
         "choice": measured("q8_0.r1.c32.dense.f32.scalar", 32, "dynamic"), "candidates": 1},
        {"key": {"format": "q4_k", "rows": 32, "cols": 256, "sparsity": "colsparse", "columns": 4}, "threads": 1,
         "choice": measured("no_such_variant", 18446744073709551615), "slowest": measured("x"), "candidates": 1},
    ],
}
put("plan_json", "plan", json.dumps(plan, indent=1))
put("plan_json", "plan-compact", json.dumps(dict(plan, entries=plan["entries"][:1])))
put("plan_json", "wrong-version", json.dumps(dict(plan, version=2)))

# ---- tokenizers: tokenizer_text (mode byte + text/ids) and tokenizer_vocab ----
for mode, text in [(0, "hello world 123 it's"), (2, "H\u00e9llo\n\n  w\u00f6rld 1234567 <|im_end|>"),
                   (3, "<|im_start|>user\nHi<|im_end|>"), (0x18 | 4, "\U0001f680 x  \t\r\n y"),
                   (5, "hello world  \u00e9\u6771"), (0x18 | 5, "<s>hello</s>")]:
    put("tokenizer_text", "text-%d" % mode, bytes([mode]) + text.encode())
put("tokenizer_text", "ids-bpe", bytes([0x80, 1, 0, 0, 1, 7, 1, 0xFF, 0xFF]))
put("tokenizer_text", "ids-spm", bytes([0x85, 0xE9, 0, 0x9E, 0, 0xB4, 0, 1, 0, 0x10, 1]))


def gpt2_bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


bmap = gpt2_bytes_to_unicode()
bpe = bytearray([0x10 | 2 << 1])
for b in range(256):
    if bmap[b] != "\n":
        bpe += b"1" + bmap[b].encode() + b"\n"
bpe += b"1he\n1ll\n1hello\n3<|im_end|>\n4<tool>\n6<0x-1>\n\0h e\nl l\nhe ll\nhe llo\n\0"
bpe += b"hello world<|im_end|><tool> it's 1234\0\x01\x00\x02\x01\xff\xff"
put("tokenizer_vocab", "bpe", bytes(bpe))
spm = bytearray([0x01 | 0x10 | 0x20])
spm += b"2<unk>\n3<s>\n3</s>\n"
for b in range(256):
    spm += b"6<0x%02X>\n" % b
spm += "1\u2581\n1\u2581h\n1ll\n1\u2581hello\n1\u2581w\n1or\n6<0x-1>\n\0\0h\u00e9llo world <s>\0\x05\x00\x00\x01".encode()
put("tokenizer_vocab", "spm", bytes(spm))
spm_ok = spm.replace(b"6<0x-1>\n", b"")
put("tokenizer_vocab", "spm-valid", bytes(spm_ok))
put("tokenizer_vocab", "bpe-valid", bytes(bpe).replace(b"6<0x-1>\n", b""))
