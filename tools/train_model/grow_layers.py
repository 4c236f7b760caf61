#!/usr/bin/python3
"""Deepen an exported HF Llama folder without changing what it computes, to fine-tune the deeper model.

  /usr/bin/python3 tools/train_model/grow_layers.py --src models/zigzag-eval --dst /tmp/grown --after 2,5

After each layer named in --after a new layer is inserted: a copy of that layer's weights with its two
residual writers (self_attn.o_proj, mlp.down_proj) set to zero, so the new layer adds nothing to the
residual stream and the grown model's logits equal the source's; training then moves the writers off
zero. Why copies rather than random weights: the new layer starts with its neighbour's features, which
are useful inputs for the gradient the writers get first. numpy only (no torch): the weights keep
their dtype (F32 or BF16) and every other file of the folder is copied as it is.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

WRITERS = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def layer_order(num_layers, after):
    """[(source layer, is_new)] of the grown model: each layer, then its copy if it is in `after`."""
    order = []
    for i in range(num_layers):
        order.append((i, False))
        if i in after:
            order.append((i, True))
    return order


def grow(src, dst, after):
    if os.path.abspath(dst) == os.path.abspath(src):
        raise ValueError("--dst must differ from --src")
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    n = cfg.get("num_hidden_layers")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{src}/config.json: num_hidden_layers is {n!r}")
    bad = [a for a in after if not 0 <= a < n]
    if bad or not after or len(set(after)) != len(after):
        raise ValueError(f"--after {after}: layers must be distinct, in 0..{n - 1}, at least one")
    files = [f for f in os.listdir(src) if f.endswith(".safetensors")]
    if files != ["model.safetensors"]:
        raise ValueError(f"{src}: expected one model.safetensors, found {files}")
    weights = safetensors_io.read_raw(os.path.join(src, "model.safetensors"))
    out = {k: v for k, v in weights.items() if not k.startswith("model.layers.")}
    order = layer_order(n, set(after))
    for j, (i, new) in enumerate(order):
        prefix = f"model.layers.{i}."
        names = [k for k in weights if k.startswith(prefix)]
        if not names:
            raise ValueError(f"{src}: no weights for layer {i}")
        missing = [w for w in WRITERS if prefix + w not in weights]
        if new and missing:  # without them the copy could not be silenced: the output would change
            raise ValueError(f"{src}: layer {i} has no {', '.join(missing)}")
        for k in names:
            dtype, shape, arr = weights[k]
            rest = k[len(prefix):]
            arr = np.zeros_like(arr) if new and rest in WRITERS else arr.copy()
            out[f"model.layers.{j}.{rest}"] = (dtype, shape, arr)
    os.makedirs(dst, exist_ok=True)
    for f in os.listdir(src):
        if f not in ("config.json", "model.safetensors") and os.path.isfile(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)
    cfg["num_hidden_layers"] = len(order)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    safetensors_io.write_raw(os.path.join(dst, "model.safetensors"), out)
    return order


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="HF folder (config.json, model.safetensors)")
    ap.add_argument("--dst", required=True, help="folder to write the grown model to")
    ap.add_argument("--after", required=True, help="comma-separated layer indices (0-based) to insert a copy after")
    args = ap.parse_args()
    try:
        after = [int(x) for x in args.after.split(",")]
    except ValueError:
        sys.exit(f"--after {args.after!r}: comma-separated layer indices expected")
    try:
        order = grow(args.src, args.dst, after)
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"grow_layers: {e}")
    print(f"{args.dst}: {len(order)} layers (new after {sorted(set(after))})")


if __name__ == "__main__":
    main()
