#!/usr/bin/env python3
"""Write a random-weight Hugging Face folder (config.json, model.safetensors
in bf16) of a llama geometry, for timing `asdsl quantize` and the loads.

    python3 scripts/random-hf-folder.py smollm2-135m /tmp/smollm2-random
    python3 scripts/random-hf-folder.py llama-1b /tmp/llama-1b-random

Needs numpy only (the safetensors file is written by hand). The weights are
uniform in [-0.05, 0.05) and the norms ones: for speed, not for text.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np

GEOMETRIES = {
    # hidden, intermediate, layers, heads, kv heads, vocab, tied
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, True),
    "llama-1b": (2048, 8192, 16, 32, 8, 128256, True),
}


def bf16(a: np.ndarray) -> bytes:
    """float32 -> bf16 bytes (round to nearest even)."""
    bits = a.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in GEOMETRIES:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(GEOMETRIES)}}} OUT_DIR")
    name, out = sys.argv[1], Path(sys.argv[2])
    hidden, inter, layers, heads, kv_heads, vocab, tied = GEOMETRIES[name]
    head_dim = hidden // heads
    rng = np.random.default_rng(0)
    tensors = {}

    def matrix(rows: int, cols: int) -> bytes:
        return bf16(rng.uniform(-0.05, 0.05, size=(rows, cols)).astype(np.float32))

    tensors["model.embed_tokens.weight"] = ((vocab, hidden), matrix(vocab, hidden))
    tensors["model.norm.weight"] = ((hidden,), bf16(np.ones(hidden, np.float32)))
    for i in range(layers):
        p = f"model.layers.{i}"
        tensors[f"{p}.input_layernorm.weight"] = ((hidden,), bf16(np.ones(hidden, np.float32)))
        tensors[f"{p}.post_attention_layernorm.weight"] = ((hidden,), bf16(np.ones(hidden, np.float32)))
        for proj, rows, cols in [
            ("self_attn.q_proj", heads * head_dim, hidden),
            ("self_attn.k_proj", kv_heads * head_dim, hidden),
            ("self_attn.v_proj", kv_heads * head_dim, hidden),
            ("self_attn.o_proj", hidden, heads * head_dim),
            ("mlp.gate_proj", inter, hidden),
            ("mlp.up_proj", inter, hidden),
            ("mlp.down_proj", hidden, inter),
        ]:
            tensors[f"{p}.{proj}.weight"] = ((rows, cols), matrix(rows, cols))
        print(f"layer {i + 1}/{layers}", file=sys.stderr, end="\r")

    header, offset = {}, 0
    for key, (shape, data) in tensors.items():
        header[key] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, data in tensors.values():
            f.write(data)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": tied,
        "torch_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    print(f"wrote {out} ({offset / 2**20:.0f} MiB of bf16 weights)", file=sys.stderr)


if __name__ == "__main__":
    main()
