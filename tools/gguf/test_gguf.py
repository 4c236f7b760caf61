#!/usr/bin/env python3
"""Tests of tools/gguf: the GGUF writer read back by our reader, byte-level header fields checked
against the spec by hand, the Q/K permutation against a hand-worked example, and the converter's
mapping on a small generated checkpoint (written here as safetensors, no C++ tools needed)."""

import json
import math
import os
import struct
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_hf_to_gguf as conv  # noqa: E402
import gguf  # noqa: E402


def write_safetensors(path, tensors, dtype="F32"):
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        if dtype == "F32":
            raw = np.asarray(array, dtype="<f4").tobytes()
        else:
            raw = gguf.f32_to_bf16_bits(np.asarray(array, dtype=np.float32)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def make_checkpoint(folder, *, vocab=300, hidden=16, layers=2, heads=4, kv_heads=2, ffn=24,
                    tie=False, rope_scaling=None, dtype="F32"):
    rng = np.random.default_rng(7)
    head_dim = hidden // heads
    t = {"model.embed_tokens.weight": rng.standard_normal((vocab, hidden)),
         "model.norm.weight": rng.standard_normal(hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = rng.standard_normal(hidden)
        t[p + "post_attention_layernorm.weight"] = rng.standard_normal(hidden)
        t[p + "self_attn.q_proj.weight"] = rng.standard_normal((heads * head_dim, hidden))
        t[p + "self_attn.k_proj.weight"] = rng.standard_normal((kv_heads * head_dim, hidden))
        t[p + "self_attn.v_proj.weight"] = rng.standard_normal((kv_heads * head_dim, hidden))
        t[p + "self_attn.o_proj.weight"] = rng.standard_normal((hidden, heads * head_dim))
        t[p + "mlp.gate_proj.weight"] = rng.standard_normal((ffn, hidden))
        t[p + "mlp.up_proj.weight"] = rng.standard_normal((ffn, hidden))
        t[p + "mlp.down_proj.weight"] = rng.standard_normal((hidden, ffn))
    if not tie:
        t["lm_head.weight"] = rng.standard_normal((vocab, hidden))
    t = {k: v.astype(np.float32) for k, v in t.items()}
    write_safetensors(os.path.join(folder, "model.safetensors"), t, dtype)
    config = {"architectures": ["LlamaForCausalLM"], "vocab_size": vocab, "hidden_size": hidden,
              "intermediate_size": ffn, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
              "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": 2,
              "rope_scaling": rope_scaling}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return t


class GgufFormatTest(unittest.TestCase):
    def test_header_bytes_match_the_spec_by_hand(self):
        w = gguf.GgufWriter()
        w.add("a", gguf.UINT32, 7)
        w.add_tensor("t", np.arange(6, dtype=np.float32).reshape(2, 3), gguf.GGML_TYPE_F32)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.gguf")
            w.write(path)
            data = open(path, "rb").read()
        # magic, version 3, 1 tensor, 1 kv
        self.assertEqual(data[:4], b"GGUF")
        self.assertEqual(struct.unpack("<IQQ", data[4:24]), (3, 1, 1))
        # kv: key len 1, "a", type UINT32 (4), value 7
        self.assertEqual(data[24:41], struct.pack("<Q", 1) + b"a" + struct.pack("<II", 4, 7))
        # tensor info: name "t", 2 dims innermost first (3, 2), type F32 (0), offset 0
        info = struct.pack("<Q", 1) + b"t" + struct.pack("<IQQIQ", 2, 3, 2, 0, 0)
        self.assertEqual(data[41:41 + len(info)], info)
        # data starts at the next multiple of 32 after the 82-byte header
        self.assertEqual(41 + len(info), 82)
        self.assertEqual(data[96:120], np.arange(6, dtype="<f4").tobytes())
        self.assertEqual(len(data), 128)  # 24 bytes of data padded to 32

    def test_round_trip_of_every_value_type_and_tensor_type(self):
        w = gguf.GgufWriter()
        values = {"u8": (gguf.UINT8, 200), "i8": (gguf.INT8, -5), "u16": (gguf.UINT16, 60000),
                  "i16": (gguf.INT16, -3), "u32": (gguf.UINT32, 4000000000),
                  "i32": (gguf.INT32, -7), "f32": (gguf.FLOAT32, 1.5),
                  "b": (gguf.BOOL, True), "s": (gguf.STRING, "héllo"),
                  "u64": (gguf.UINT64, 1 << 40), "i64": (gguf.INT64, -(1 << 40)),
                  "f64": (gguf.FLOAT64, 0.1),
                  "arr_s": (gguf.ARRAY, (gguf.STRING, ["a", "", "\u2581b"])),
                  "arr_i": (gguf.ARRAY, (gguf.INT32, [1, -2, 3])),
                  "arr_f": (gguf.ARRAY, (gguf.FLOAT32, [0.5, -0.25]))}
        for k, (t, v) in values.items():
            w.add(k, t, v)
        a = np.array([[1.0, -2.5, 3.0], [0.1, 65504.0, -1e-3]], dtype=np.float32)
        w.add_tensor("f32", a, gguf.GGML_TYPE_F32)
        w.add_tensor("f16", a, gguf.GGML_TYPE_F16)
        w.add_tensor("bf16", a, gguf.GGML_TYPE_BF16)
        w.add_tensor("vec", np.arange(5, dtype=np.float32), gguf.GGML_TYPE_F32)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.gguf")
            w.write(path)
            meta, tensors = gguf.read_gguf(path)
        for k, (_, v) in values.items():
            expect = list(v[1]) if isinstance(v, tuple) else v
            if isinstance(expect, float):
                self.assertAlmostEqual(meta[k], expect, places=6, msg=k)
            else:
                self.assertEqual(meta[k], expect, k)
        self.assertEqual(tensors["f32"][0], (3, 2))
        np.testing.assert_array_equal(tensors["f32"][2], a)
        np.testing.assert_array_equal(tensors["f16"][2], a.astype(np.float16).astype(np.float32))
        # bf16 keeps 8 mantissa bits: 0.1 -> 0.10009765625, 65504 -> 65536, -1e-3 -> -131/128 * 2^-10
        np.testing.assert_array_equal(
            tensors["bf16"][2], np.array([[1.0, -2.5, 3.0], [0.10009765625, 65536.0,
                                                             -0.00099945068359375]],
                                         dtype=np.float32))
        self.assertEqual(tensors["bf16"][1], gguf.GGML_TYPE_BF16)
        np.testing.assert_array_equal(tensors["vec"][2], np.arange(5))

    def test_bf16_rounds_to_nearest_even(self):
        # 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties go to the even one, 1.0.
        # 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to 1 + 2^-6.
        x = np.array([1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20], dtype=np.float32)
        self.assertEqual(list(gguf.f32_to_bf16_bits(x)), [0x3F80, 0x3F82, 0x3F81])

    def test_truncated_or_bad_files_get_named_errors(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.gguf")
            with open(path, "wb") as f:
                f.write(b"GGML" + bytes(20))
            with self.assertRaisesRegex(gguf.GgufError, "bad magic"):
                gguf.read_gguf(path)
            with open(path, "wb") as f:
                f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40))
            with self.assertRaisesRegex(gguf.GgufError, "metadata key #0: string of .* limit"):
                gguf.read_gguf(path)
            with open(path, "wb") as f:
                f.write(b"GGUF" + struct.pack("<IQQ", 3, 1 << 30, 0))
            with self.assertRaisesRegex(gguf.GgufError, "tensor_count"):
                gguf.read_gguf(path)
            with open(path, "wb") as f:
                f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k")
            with self.assertRaisesRegex(gguf.GgufError, "metadata k type: truncated"):
                gguf.read_gguf(path)


class PermutationTest(unittest.TestCase):
    def test_hand_worked_example(self):
        # 2 heads of head_dim 4: HF rows per head [r0 r1 | r2 r3] pair (r0, r2) and (r1, r3);
        # GGML pairs adjacent rows, so each head becomes [r0 r2 r1 r3].
        w = np.arange(8, dtype=np.float32).reshape(8, 1) * 10 + np.array([[0, 1]])
        out = conv.permute_rotate_half_to_interleaved(w, 2)
        np.testing.assert_array_equal(out[:, 0], [0, 20, 10, 30, 40, 60, 50, 70])
        np.testing.assert_array_equal(out[:, 1], [1, 21, 11, 31, 41, 61, 51, 71])

    def test_rope_outputs_match_after_permutation(self):
        # HF rotate-half RoPE on x equals GGML adjacent-pair RoPE on the permuted x, permuted.
        head_dim, theta, pos = 8, 10000.0, 5
        x = np.random.default_rng(1).standard_normal((head_dim, 1)).astype(np.float64)
        half = head_dim // 2
        freqs = theta ** (-2.0 * np.arange(half) / head_dim)
        cos, sin = np.cos(pos * freqs), np.sin(pos * freqs)
        a, b = x[:half, 0], x[half:, 0]
        hf = np.concatenate([a * cos - b * sin, b * cos + a * sin])
        y = conv.permute_rotate_half_to_interleaved(x, 1)[:, 0]
        ggml = np.empty(head_dim)
        ggml[0::2] = y[0::2] * cos - y[1::2] * sin
        ggml[1::2] = y[1::2] * cos + y[0::2] * sin
        np.testing.assert_allclose(ggml, conv.permute_rotate_half_to_interleaved(
            hf.reshape(-1, 1), 1)[:, 0], rtol=1e-12)

    def test_odd_head_dim_is_rejected(self):
        with self.assertRaisesRegex(conv.ConvertError, "even size"):
            conv.permute_rotate_half_to_interleaved(np.zeros((6, 2)), 2)


class ConverterTest(unittest.TestCase):
    def convert(self, **kwargs):
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(d))
        outtype = kwargs.pop("outtype", "f32")
        tensors = make_checkpoint(d, **kwargs)
        out = os.path.join(d, "m.gguf")
        conv.convert(d, out, outtype)
        return tensors, *gguf.read_gguf(out)

    def test_llama_metadata_and_tensors(self):
        t, meta, g = self.convert()
        self.assertEqual(meta["general.architecture"], "llama")
        expect = {"llama.vocab_size": 300, "llama.context_length": 1024,
                  "llama.embedding_length": 16, "llama.block_count": 2,
                  "llama.feed_forward_length": 24, "llama.attention.head_count": 4,
                  "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 4,
                  "general.file_type": 0, "tokenizer.ggml.bos_token_id": 1,
                  "tokenizer.ggml.eos_token_id": 2}
        for k, v in expect.items():
            self.assertEqual(meta[k], v, k)
        self.assertEqual(meta["llama.rope.freq_base"], 500000.0)
        self.assertAlmostEqual(meta["llama.attention.layer_norm_rms_epsilon"], 1e-5)
        self.assertEqual(meta["tokenizer.ggml.model"], "llama")
        tokens = meta["tokenizer.ggml.tokens"]
        self.assertEqual(len(tokens), 300)
        self.assertEqual(len(set(tokens)), 300)
        self.assertEqual(tokens[:3], ["<unk>", "<s>", "</s>"])
        self.assertEqual(tokens[3 + 10], "<0x0A>")
        self.assertEqual(meta["tokenizer.ggml.token_type"][13], conv.TOKEN_BYTE)
        self.assertEqual(len(g), 1 + 2 * 9 + 2)  # embd, 2 x 9 per layer, output_norm, output
        np.testing.assert_array_equal(g["token_embd.weight"][2], t["model.embed_tokens.weight"])
        self.assertEqual(g["token_embd.weight"][0], (16, 300))
        np.testing.assert_array_equal(g["output.weight"][2], t["lm_head.weight"])
        np.testing.assert_array_equal(g["blk.1.ffn_down.weight"][2],
                                      t["model.layers.1.mlp.down_proj.weight"])
        np.testing.assert_array_equal(g["blk.0.attn_v.weight"][2],
                                      t["model.layers.0.self_attn.v_proj.weight"])
        # q over 4 heads, k over 2 (kv) heads, each of head_dim 4: rows [0 2 1 3] per head.
        q = t["model.layers.0.self_attn.q_proj.weight"]
        np.testing.assert_array_equal(g["blk.0.attn_q.weight"][2][:4], q[[0, 2, 1, 3]])
        np.testing.assert_array_equal(g["blk.0.attn_q.weight"][2][12:], q[[12, 14, 13, 15]])
        k = t["model.layers.0.self_attn.k_proj.weight"]
        np.testing.assert_array_equal(g["blk.0.attn_k.weight"][2][4:], k[[4, 6, 5, 7]])
        self.assertNotIn("rope_freqs.weight", g)

    def test_tied_embeddings_write_no_output_tensor(self):
        _, _, g = self.convert(tie=True)
        self.assertNotIn("output.weight", g)

    def test_bf16_and_f16_outtypes(self):
        t, meta, g = self.convert(outtype="bf16")
        self.assertEqual(meta["general.file_type"], 32)
        self.assertEqual(g["blk.0.ffn_up.weight"][1], gguf.GGML_TYPE_BF16)
        self.assertEqual(g["blk.0.attn_norm.weight"][1], gguf.GGML_TYPE_F32)
        np.testing.assert_array_equal(
            g["blk.0.ffn_up.weight"][2],
            gguf.bf16_bits_to_f32(gguf.f32_to_bf16_bits(t["model.layers.0.mlp.up_proj.weight"])))
        _, meta, g = self.convert(outtype="f16")
        self.assertEqual(meta["general.file_type"], 1)
        self.assertEqual(g["output.weight"][1], gguf.GGML_TYPE_F16)

    def test_llama3_rope_scaling_writes_rope_freqs(self):
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        _, _, g = self.convert(rope_scaling=scaling, hidden=32, heads=2, kv_heads=1)
        f = g["rope_freqs.weight"][2]
        self.assertEqual(f.shape, (8,))
        # head_dim 16, theta 5e5: pair 0 has wavelength 2*pi (< 8192/4): unchanged; pair 7 has
        # wavelength 2*pi*5e5^(14/16) ~ 6.9e5 (> 8192): divided by the full factor 8.
        self.assertEqual(f[0], 1.0)
        self.assertEqual(f[7], 8.0)
        # pair 4: wavelength 2*pi*5e5^0.5 = 4443 is in the band; smooth = (8192/4443 - 1)/3.
        wavelen = 2 * math.pi * 500000.0 ** 0.5
        smooth = (8192 / wavelen - 1) / 3
        self.assertAlmostEqual(float(f[4]), 1 / ((1 - smooth) / 8 + smooth), places=5)

    def test_bad_inputs_get_named_errors(self):
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: __import__("shutil").rmtree(d))
        make_checkpoint(d)
        out = os.path.join(d, "m.gguf")
        with self.assertRaisesRegex(conv.ConvertError, "--outtype"):
            conv.convert(d, out, "q4")
        config = json.load(open(os.path.join(d, "config.json")))
        config["hidden_size"] = 20
        json.dump(config, open(os.path.join(d, "config.json"), "w"))
        with self.assertRaisesRegex(conv.ConvertError, "embed_tokens.weight has shape"):
            conv.convert(d, out, "f32")
        config["hidden_size"] = 16
        config["rope_scaling"] = {"rope_type": "yarn"}
        json.dump(config, open(os.path.join(d, "config.json"), "w"))
        with self.assertRaisesRegex(conv.ConvertError, "rope_scaling.rope_type 'yarn'"):
            conv.convert(d, out, "f32")
        config["rope_scaling"] = None
        config["architectures"] = ["GPT2LMHeadModel"]
        json.dump(config, open(os.path.join(d, "config.json"), "w"))
        with self.assertRaisesRegex(conv.ConvertError, "architectures"):
            conv.convert(d, out, "f32")
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", 1 << 40))
        config["architectures"] = ["LlamaForCausalLM"]
        json.dump(config, open(os.path.join(d, "config.json"), "w"))
        with self.assertRaisesRegex(conv.ConvertError, "header length"):
            conv.convert(d, out, "f32")

    def test_embedded_model_tokenizer_is_carried_over(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        pieces = conv.read_sentencepiece(os.path.join(root, "models/zigzag-tiny/tokenizer.model"))
        # models/zigzag-tiny/README.md: 4096 pieces, <unk>=0, <s>=1, </s>=2, byte fallback.
        self.assertEqual(len(pieces), 4096)
        self.assertEqual([p[0] for p in pieces[:3]], ["<unk>", "<s>", "</s>"])
        self.assertEqual([p[2] for p in pieces[:3]],
                         [conv.TOKEN_UNKNOWN, conv.TOKEN_CONTROL, conv.TOKEN_CONTROL])
        self.assertIn(("<0x0A>", conv.TOKEN_BYTE), [(p[0], p[2]) for p in pieces])


if __name__ == "__main__":
    unittest.main()
