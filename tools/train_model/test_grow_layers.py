#!/usr/bin/python3
"""grow_layers.py: the grown folder's layout, what each bad input gets, and (with --generate) that the
C++ engine's greedy tokens and log-probabilities on the grown zigzag-tiny equal the source's.

  /usr/bin/python3 tools/train_model/test_grow_layers.py -v [--generate build/tools/zigzag-generate]
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grow_layers as gl  # noqa: E402
import safetensors_io  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "models", "zigzag-tiny")
GENERATE = None


class GrowLayersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dst = os.path.join(cls.tmp.name, "grown")
        cls.order = gl.grow(TINY, cls.dst, [0, 2])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_layout(self):
        # zigzag-tiny has 4 layers; copies after 0 and 2: 0, 0', 1, 2, 2', 3
        self.assertEqual(self.order, [(0, False), (0, True), (1, False), (2, False), (2, True), (3, False)])
        with open(os.path.join(self.dst, "config.json")) as f:
            self.assertEqual(json.load(f)["num_hidden_layers"], 6)
        src = safetensors_io.read_raw(os.path.join(TINY, "model.safetensors"))
        out = safetensors_io.read_raw(os.path.join(self.dst, "model.safetensors"))
        self.assertEqual(len(out), len(src) + 2 * 9)  # 9 tensors a layer: 4 attention, 3 MLP, 2 norms
        for j, (i, new) in enumerate(self.order):
            for rest in ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                         "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                         "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"):
                d0, s0, a0 = src[f"model.layers.{i}.{rest}"]
                d1, s1, a1 = out[f"model.layers.{j}.{rest}"]
                self.assertEqual((d0, s0), (d1, s1), rest)
                if new and rest in gl.WRITERS:
                    self.assertFalse(a1.any(), f"layer {j} {rest} should be zero")
                    self.assertTrue(a0.any())
                else:
                    np.testing.assert_array_equal(a0, a1, err_msg=f"layer {j} {rest}")
        np.testing.assert_array_equal(src["model.embed_tokens.weight"][2], out["model.embed_tokens.weight"][2])
        for f in ("tokenizer.model", "generation_config.json", "tokenizer_config.json"):
            with open(os.path.join(TINY, f), "rb") as a, open(os.path.join(self.dst, f), "rb") as b:
                self.assertEqual(a.read(), b.read(), f)

    def test_engine_output_unchanged(self):
        if GENERATE is None:
            self.skipTest("no --generate binary given")
        ids = "1," + ",".join(str(3 + (i * 37) % 4000) for i in range(60))

        def run(model):
            r = subprocess.run([GENERATE, "--model", model, "--prompt_ids", ids, "--max_tokens", "12",
                                "--ignore_eos", "--logprobs", "--cpu_weight_dtype", "f32", "--backend", "cpu"],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            # the answer lines; timings and the per-layer KV lines differ by construction
            return [line for line in r.stdout.splitlines() if line.split(":")[0] in ("tokens", "text", "logprobs")]

        a, b = run(TINY), run(self.dst)
        self.assertEqual([line.split(":")[0] for line in a], ["tokens", "text", "logprobs"])
        self.assertEqual(len(a[0].split(",")), 12)
        self.assertEqual(a, b)

    def test_bad_inputs(self):
        with tempfile.TemporaryDirectory() as t:
            for after, msg in (([4], "in 0..3"), ([-1], "in 0..3"), ([1, 1], "distinct"), ([], "at least one")):
                with self.assertRaisesRegex(ValueError, msg):
                    gl.grow(TINY, os.path.join(t, "x"), after)
            with self.assertRaisesRegex(ValueError, "must differ"):
                gl.grow(TINY, TINY, [0])
            with self.assertRaises(OSError):
                gl.grow(os.path.join(t, "missing"), os.path.join(t, "y"), [0])
            # a truncated weights file: an error naming it, not a crash or a short model
            bad = os.path.join(t, "bad")
            os.makedirs(bad)
            for f in ("config.json", "tokenizer.model"):
                with open(os.path.join(TINY, f), "rb") as a, open(os.path.join(bad, f), "wb") as b:
                    b.write(a.read())
            with open(os.path.join(TINY, "model.safetensors"), "rb") as a:
                data = a.read()
            for cut in (4, 200, len(data) - 8):
                with open(os.path.join(bad, "model.safetensors"), "wb") as b:
                    b.write(data[:cut])
                with self.assertRaisesRegex(ValueError, "model.safetensors"):
                    gl.grow(bad, os.path.join(t, "z"), [0])
        r = subprocess.run([sys.executable, gl.__file__, "--src", TINY, "--dst", "/nonexistent-parent/x",
                            "--after", "a,b"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--after 'a,b'", r.stderr)


if __name__ == "__main__":
    if "--generate" in sys.argv:
        i = sys.argv.index("--generate")
        GENERATE = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    unittest.main()
