#!/usr/bin/python3
"""Checks that the C++ engine (zigzag-generate, greedy, full attention) produces the same tokens and
log-probabilities as the torch reference model for passkey prompts built from held-out text.

  /usr/bin/python3 tools/train_model/check_cpp.py --model models/zigzag-tiny --lengths 200,3000
"""
import argparse
import os
import random
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import tinyllama as tl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "zigzag-tiny"))
    ap.add_argument("--generate", default=os.path.join(REPO, "build", "tools", "zigzag-generate"))
    ap.add_argument("--lengths", default="200,3000")
    ap.add_argument("--depth", type=float, default=0.4)
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(2)

    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    model = tl.load_hf(args.model)
    _, held = nd.corpus_files()
    maker = nd.ExampleMaker(sp, nd.load_words(held))
    all_ok = True
    for L in [int(x) for x in args.lengths.split(",")]:
        rng = random.Random(f"{args.seed}-{L}")
        ids, n, pk, text = maker.make(rng, L, args.depth)
        prompt = ids[:n]
        assert prompt == [sp.bos_id()] + sp.encode(text)
        ref = model.greedy(prompt, args.max_tokens, eos_id=sp.eos_id())
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([prompt + ref]))[0], -1)
        ref_lp = [lp[n - 1 + i, t].item() for i, t in enumerate(ref)]
        r = subprocess.run([args.generate, "--model", args.model, "--prompt_ids", ",".join(map(str, prompt)),
                            "--max_tokens", str(args.max_tokens), "--backend", "cpu", "--logprobs"],
                           capture_output=True, text=True, check=True)
        cpp, cpp_lp = [], []
        for line in r.stdout.splitlines():
            if line.startswith("tokens:"):
                cpp = [int(x) for x in line.split(":", 1)[1].strip().split(",") if x]
            if line.startswith("logprobs:"):
                cpp_lp = [float(x) for x in line.split(":", 1)[1].strip().split(",") if x]
        same = cpp == ref
        diff = max((abs(a - b) for a, b in zip(ref_lp, cpp_lp)), default=float("nan"))
        all_ok &= same
        print(f"prompt {n} tokens, passkey {pk}: torch {ref} '{sp.decode(ref)}' | C++ {cpp} '{sp.decode(cpp)}' | "
              f"{'SAME' if same else 'DIFFERENT'}, max |logprob diff| {diff:.2e}")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
