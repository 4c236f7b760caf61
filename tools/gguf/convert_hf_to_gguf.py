#!/usr/bin/env python3
"""Converts a Hugging Face Llama checkpoint folder to one GGUF file that llama.cpp loads.

Owns the Llama mapping: metadata keys, tensor names, the Q/K row permutation and the vocabulary.
The container format lives in gguf.py. Only LlamaForCausalLM (and Mistral, which is the same graph)
is supported; anything else is rejected with the config key that says so.

  convert_hf_to_gguf.py --model DIR --out FILE.gguf --outtype f32|f16|bf16

Why the permutation: Hugging Face applies RoPE "rotate-half" style, pairing dimension i of a head
with i + head_dim/2. GGML's LLAMA rope (the "normal" mode) pairs adjacent dimensions 2i and 2i+1.
Both use frequency theta^(-2i/head_dim) for pair i, so moving row i to 2i and row i + head_dim/2 to
2i+1 in every head of W_q and W_k makes GGML rotate exactly the pairs HF rotates. q.k is a dot
product within a head, so permuting q and k the same way leaves attention scores unchanged; V and O
are untouched.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf  # noqa: E402

MAX_SAFETENSORS_HEADER = 100 << 20
MAX_CONFIG_BYTES = 1 << 20
MAX_TOKENIZER_BYTES = 64 << 20
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")

# SentencePiece piece types; GGUF's tokenizer.ggml.token_type uses the same numbers.
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6


class ConvertError(Exception):
    """A checkpoint we cannot convert; the message names the file and key."""


def permute_rotate_half_to_interleaved(weight, n_heads):
    """Rows of a [n_heads * head_dim, in] projection, reordered from HF rotate-half to GGML pairs.

    Within each head, new row 2i = old row i and new row 2i+1 = old row i + head_dim/2.
    """
    rows = weight.shape[0]
    if rows % n_heads or (rows // n_heads) % 2:
        raise ConvertError(f"cannot permute {rows} rows over {n_heads} heads of even size")
    half = rows // n_heads // 2
    return (weight.reshape(n_heads, 2, half, *weight.shape[1:]).swapaxes(1, 2)
            .reshape(weight.shape))


def _read_json(path, what):
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConvertError(f"{path}: {size} bytes exceeds the {MAX_CONFIG_BYTES}-byte limit")
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as e:
        raise ConvertError(f"{what}: cannot read {path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConvertError(f"{what}: {path} is not valid JSON: {e}") from None


class SafetensorsFile:
    """One .safetensors file: a JSON header of dtype/shape/offsets, then raw little-endian data."""

    DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}

    def __init__(self, path):
        self.path = path
        self.file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise ConvertError(f"{path}: truncated safetensors header length")
            (n,) = struct.unpack("<Q", raw_len)
            if n > MAX_SAFETENSORS_HEADER or 8 + n > self.file_size:
                raise ConvertError(f"{path}: header length {n} exceeds the limit or the file")
            try:
                self.header = json.loads(f.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConvertError(f"{path}: bad safetensors header: {e}") from None
        self.data_start = 8 + n
        self.header.pop("__metadata__", None)

    def names(self):
        return list(self.header)

    def load(self, name):
        info = self.header[name]
        dtype = info.get("dtype")
        if dtype not in self.DTYPES:
            raise ConvertError(f"{self.path}: tensor {name}: dtype {dtype} is not F32, F16 or BF16")
        np_dtype, size = self.DTYPES[dtype]
        shape = [int(d) for d in info.get("shape", [])]
        begin, end = (int(x) for x in info.get("data_offsets", [0, -1]))
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * size or begin < 0 or self.data_start + end > self.file_size:
            raise ConvertError(f"{self.path}: tensor {name}: data_offsets [{begin}, {end}) do not "
                               f"match shape {shape} x {size} bytes or the file size")
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            values = np.frombuffer(f.read(end - begin), dtype=np_dtype)
        if dtype == "BF16":
            values = gguf.bf16_bits_to_f32(values)
        return values.astype(np.float32).reshape(shape)


def open_checkpoint(model_dir):
    """Returns {tensor name: SafetensorsFile} over the single file or the sharded index."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        weight_map = _read_json(index_path, "index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise ConvertError(f"{index_path}: key weight_map missing or not an object")
        files = {}
        where = {}
        for name, shard in weight_map.items():
            if shard not in files:
                if os.path.basename(shard) != shard:
                    raise ConvertError(f"{index_path}: weight_map.{name}: shard {shard!r} "
                                       "must be a file name in the model folder")
                files[shard] = SafetensorsFile(os.path.join(model_dir, shard))
            where[name] = files[shard]
        return where
    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(path):
        raise ConvertError(f"{model_dir}: neither model.safetensors nor its index")
    st = SafetensorsFile(path)
    return {name: st for name in st.names()}


def _varint(data, pos):
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ConvertError("tokenizer.model: truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def _protobuf_fields(data, what):
    """Yields (field number, wire type, value) of one protobuf message (no nesting decoded)."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            if pos + n > len(data):
                raise ConvertError(f"{what}: field {field} runs past the end")
            value, pos = data[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ConvertError(f"{what}: unsupported protobuf wire type {wire}")
        yield field, wire, value


def read_sentencepiece(path):
    """tokenizer.model (SentencePiece ModelProto): [(piece, score, type)] in id order."""
    if os.path.getsize(path) > MAX_TOKENIZER_BYTES:
        raise ConvertError(f"{path}: larger than {MAX_TOKENIZER_BYTES} bytes")
    with open(path, "rb") as f:
        data = f.read()
    pieces = []
    for field, wire, value in _protobuf_fields(data, path):
        if field != 1 or wire != 2:  # ModelProto.pieces
            continue
        piece, score, kind = "", 0.0, TOKEN_NORMAL
        for f2, w2, v2 in _protobuf_fields(value, f"{path} piece #{len(pieces)}"):
            if f2 == 1 and w2 == 2:
                piece = v2.decode("utf-8", errors="replace")
            elif f2 == 2 and w2 == 5:
                (score,) = struct.unpack("<f", v2)
            elif f2 == 3 and w2 == 0:
                kind = v2
        pieces.append((piece, score, kind))
    if not pieces:
        raise ConvertError(f"{path}: no pieces (not a SentencePiece model?)")
    return pieces


def synthetic_vocab(vocab_size):
    """A valid SentencePiece-style vocabulary for checkpoints without a tokenizer.

    The benchmarks feed token ids, so the strings only need to be unique and well-typed:
    <unk> <s> </s>, the 256 byte tokens llama.cpp looks for (<0x0A> for newline), then filler.
    """
    pieces = [("<unk>", 0.0, TOKEN_UNKNOWN), ("<s>", 0.0, TOKEN_CONTROL), ("</s>", 0.0, TOKEN_CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, TOKEN_BYTE) for b in range(256)]
    pieces += [(f"\u2581t{i}", -float(i), TOKEN_NORMAL) for i in range(len(pieces), vocab_size)]
    return pieces[:vocab_size]


def _config_int(config, key, default=None):
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConvertError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def llama3_rope_factors(rope_scaling, theta, head_dim):
    """Per-pair frequency divisors of Llama 3.1 rope scaling (GGML's rope_freqs tensor).

    Pairs with wavelength shorter than original_context/high_freq_factor keep their frequency,
    those longer than original_context/low_freq_factor are divided by factor, and the band between
    is interpolated smoothly; GGML divides each pair's frequency by the stored factor.
    """
    factor = float(rope_scaling.get("factor", 8.0))
    low = float(rope_scaling.get("low_freq_factor", 1.0))
    high = float(rope_scaling.get("high_freq_factor", 4.0))
    original = float(rope_scaling.get("original_max_position_embeddings", 8192))
    if not (factor > 0 and high > low > 0 and original > 0):
        raise ConvertError("config.json: rope_scaling needs factor > 0 and high_freq_factor > "
                           "low_freq_factor > 0")
    out = []
    for i in range(head_dim // 2):
        freq = theta ** (-2.0 * i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def convert(model_dir, out_path, outtype, name=None):
    config = _read_json(os.path.join(model_dir, "config.json"), "config")
    archs = config.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise ConvertError(f"config.json: architectures {archs} has none of "
                           f"{list(SUPPORTED_ARCHITECTURES)}")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ConvertError("config.json: attention_bias / mlp_bias are not supported")
    hidden = _config_int(config, "hidden_size")
    layers = _config_int(config, "num_hidden_layers")
    heads = _config_int(config, "num_attention_heads")
    kv_heads = _config_int(config, "num_key_value_heads", heads)
    ffn = _config_int(config, "intermediate_size")
    vocab_size = _config_int(config, "vocab_size")
    context = _config_int(config, "max_position_embeddings", 2048)
    head_dim = config.get("head_dim") or hidden // heads
    head_dim = _config_int({"head_dim": head_dim}, "head_dim")
    if heads % kv_heads:
        raise ConvertError(f"config.json: num_attention_heads {heads} is not a multiple of "
                           f"num_key_value_heads {kv_heads}")
    theta = float(config.get("rope_theta", 10000.0))
    eps = float(config.get("rms_norm_eps", 1e-6))
    types = {"f32": (gguf.GGML_TYPE_F32, 0), "f16": (gguf.GGML_TYPE_F16, 1),
             "bf16": (gguf.GGML_TYPE_BF16, 32)}
    if outtype not in types:
        raise ConvertError(f"--outtype must be f32, f16 or bf16, got {outtype!r}")
    matrix_type, file_type = types[outtype]

    w = gguf.GgufWriter()
    w.add("general.architecture", gguf.STRING, "llama")
    w.add("general.name", gguf.STRING, name or os.path.basename(os.path.abspath(model_dir)))
    w.add("general.file_type", gguf.UINT32, file_type)
    w.add("llama.vocab_size", gguf.UINT32, vocab_size)
    w.add("llama.context_length", gguf.UINT32, context)
    w.add("llama.embedding_length", gguf.UINT32, hidden)
    w.add("llama.block_count", gguf.UINT32, layers)
    w.add("llama.feed_forward_length", gguf.UINT32, ffn)
    w.add("llama.attention.head_count", gguf.UINT32, heads)
    w.add("llama.attention.head_count_kv", gguf.UINT32, kv_heads)
    w.add("llama.attention.key_length", gguf.UINT32, head_dim)
    w.add("llama.attention.value_length", gguf.UINT32, head_dim)
    w.add("llama.rope.dimension_count", gguf.UINT32, head_dim)
    w.add("llama.rope.freq_base", gguf.FLOAT32, theta)
    w.add("llama.attention.layer_norm_rms_epsilon", gguf.FLOAT32, eps)

    rope_scaling = config.get("rope_scaling")
    rope_factors = None
    if rope_scaling:
        kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
        if kind != "llama3":
            raise ConvertError(f"config.json: rope_scaling.rope_type {kind!r} is not supported "
                               "(only llama3)")
        rope_factors = llama3_rope_factors(rope_scaling, theta, head_dim)

    spm_path = os.path.join(model_dir, "tokenizer.model")
    pieces = read_sentencepiece(spm_path) if os.path.exists(spm_path) else synthetic_vocab(vocab_size)
    if len(pieces) > vocab_size:
        raise ConvertError(f"tokenizer.model: {len(pieces)} pieces > vocab_size {vocab_size}")
    pieces += [(f"[PAD{i}]", 0.0, TOKEN_UNUSED) for i in range(len(pieces), vocab_size)]
    w.add("tokenizer.ggml.model", gguf.STRING, "llama")
    w.add("tokenizer.ggml.tokens", gguf.ARRAY, (gguf.STRING, [p[0] for p in pieces]))
    w.add("tokenizer.ggml.scores", gguf.ARRAY, (gguf.FLOAT32, [p[1] for p in pieces]))
    w.add("tokenizer.ggml.token_type", gguf.ARRAY, (gguf.INT32, [p[2] for p in pieces]))
    w.add("tokenizer.ggml.bos_token_id", gguf.UINT32, int(config.get("bos_token_id", 1) or 1))
    w.add("tokenizer.ggml.eos_token_id", gguf.UINT32, int(config.get("eos_token_id", 2) or 2))
    w.add("tokenizer.ggml.unknown_token_id", gguf.UINT32, 0)
    w.add("tokenizer.ggml.add_bos_token", gguf.BOOL, True)
    w.add("tokenizer.ggml.add_eos_token", gguf.BOOL, False)

    where = open_checkpoint(model_dir)

    def get(hf_name, shape):
        if hf_name not in where:
            raise ConvertError(f"{model_dir}: tensor {hf_name} missing")
        t = where[hf_name].load(hf_name)
        if list(t.shape) != list(shape):
            raise ConvertError(f"{model_dir}: tensor {hf_name} has shape {list(t.shape)}, "
                               f"config.json implies {list(shape)}")
        return t

    w.add_tensor("token_embd.weight", get("model.embed_tokens.weight", [vocab_size, hidden]),
                 matrix_type)
    if rope_factors is not None:
        w.add_tensor("rope_freqs.weight", rope_factors, gguf.GGML_TYPE_F32)
    for i in range(layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q = get(p + "self_attn.q_proj.weight", [heads * head_dim, hidden])
        k = get(p + "self_attn.k_proj.weight", [kv_heads * head_dim, hidden])
        w.add_tensor(b + "attn_norm.weight", get(p + "input_layernorm.weight", [hidden]),
                     gguf.GGML_TYPE_F32)
        w.add_tensor(b + "attn_q.weight", permute_rotate_half_to_interleaved(q, heads), matrix_type)
        w.add_tensor(b + "attn_k.weight", permute_rotate_half_to_interleaved(k, kv_heads),
                     matrix_type)
        w.add_tensor(b + "attn_v.weight", get(p + "self_attn.v_proj.weight",
                                              [kv_heads * head_dim, hidden]), matrix_type)
        w.add_tensor(b + "attn_output.weight", get(p + "self_attn.o_proj.weight",
                                                   [hidden, heads * head_dim]), matrix_type)
        w.add_tensor(b + "ffn_norm.weight", get(p + "post_attention_layernorm.weight", [hidden]),
                     gguf.GGML_TYPE_F32)
        w.add_tensor(b + "ffn_gate.weight", get(p + "mlp.gate_proj.weight", [ffn, hidden]),
                     matrix_type)
        w.add_tensor(b + "ffn_up.weight", get(p + "mlp.up_proj.weight", [ffn, hidden]), matrix_type)
        w.add_tensor(b + "ffn_down.weight", get(p + "mlp.down_proj.weight", [hidden, ffn]),
                     matrix_type)
    w.add_tensor("output_norm.weight", get("model.norm.weight", [hidden]), gguf.GGML_TYPE_F32)
    # Tied embeddings: llama.cpp reuses token_embd when output.weight is absent.
    if not config.get("tie_word_embeddings", False) or "lm_head.weight" in where:
        w.add_tensor("output.weight", get("lm_head.weight", [vocab_size, hidden]), matrix_type)
    w.write(out_path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="Hugging Face model folder")
    parser.add_argument("--out", required=True, help="GGUF file to write")
    parser.add_argument("--outtype", default="f32", help="f32, f16 or bf16 for the matrices")
    parser.add_argument("--name", default=None, help="general.name (default: the folder name)")
    args = parser.parse_args(argv)
    try:
        convert(args.model, args.out, args.outtype, args.name)
    except (ConvertError, gguf.GgufError, OSError) as e:
        print(f"convert_hf_to_gguf: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
