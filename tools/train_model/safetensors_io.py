"""One model.safetensors file as raw little-endian arrays, numpy only: what tinyllama.py (torch) and
grow_layers.py (no torch) read and write. Owns the file format and its checks; not dtype conversion
(BF16 stays its raw 16 bits here; tinyllama widens it to float32).
"""
import json
import os
import struct

import numpy as np

DTYPES = {"F32": "<f4", "BF16": "<u2"}  # BF16 as raw bits: the high half of a float32
MAX_HEADER = 100_000_000


def read_raw(path):
    """{name: (dtype, shape, 1-D numpy array of raw values)}; ValueError naming `path` on a bad file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: shorter than a safetensors header")
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER:
            raise ValueError(f"{path}: header length {n} is not plausible")
        raw = f.read(n)
        if len(raw) != n:
            raise ValueError(f"{path}: truncated in its {n}-byte header")
        try:
            header = json.loads(raw)
        except ValueError as e:
            raise ValueError(f"{path}: header is not JSON ({e})") from None
        data = f.read()
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dtype} (F32 or BF16 expected)")
        try:
            a, b = (int(x) for x in info["data_offsets"])
            shape = [int(x) for x in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name} has no valid data_offsets and shape") from None
        if not 0 <= a <= b <= len(data):
            raise ValueError(f"{path}: tensor {name}'s offsets {a}..{b} lie outside the file's {len(data)} data bytes")
        arr = np.frombuffer(data[a:b], dtype=DTYPES[dtype])
        if arr.size != int(np.prod(shape)):
            raise ValueError(f"{path}: tensor {name} holds {arr.size} values, its shape {shape} says otherwise")
        out[name] = (dtype, shape, arr)
    return out


def write_raw(path, tensors):
    """tensors: {name: (dtype, shape, numpy array of raw values)}, written in name order, data 8-byte
    aligned, through a temporary file so a crash never leaves half a model."""
    header = {"__metadata__": {"format": "pt"}}
    offset, blobs = 0, []
    for name in sorted(tensors):
        dtype, shape, arr = tensors[name]
        raw = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)
