#!/usr/bin/python3
"""Checks that the C++ engine (zigzag-generate, greedy, full attention) produces the same tokens and
log-probabilities as the torch reference model for passkey prompts built from held-out text.

  /usr/bin/python3 tools/train_model/check_cpp.py --model models/zigzag-tiny --lengths 200,3000
  /usr/bin/python3 tools/train_model/check_cpp.py --model models/zigzag-eval --tasks-file tasks.jsonl --per-task 2

With --tasks-file (make_eval_tasks.py's JSONL), the first --per-task prompts of every task in the file
are checked instead of passkey prompts, each generating its answer's length (max_new_tokens). With
--tasks, one held-out prompt per task and length (depth --depth) is generated here instead.

--write-golden FILE also writes every checked case (prompt ids, torch's greedy tokens, their logprobs
and the smallest top-1 - top-2 logprob gap) as text, for tests/eval_model_test.cc, which replays them
on the C++ engine in the test suite without torch:

  /usr/bin/python3 tools/train_model/check_cpp.py --model models/zigzag-eval --cpu-weight-dtype f32 \
      --tasks passkey,multikey,multivalue,vartrack,multiquery --lengths 512,2048 \
      --write-golden tests/data/zigzag_eval_golden.txt
"""
import json
import argparse
import os
import random
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import spm_lite  # noqa: E402
import tasks as tk  # noqa: E402
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
    ap.add_argument("--tasks-file", default="", help="check prompts of this JSONL instead")
    ap.add_argument("--per-task", type=int, default=2)
    ap.add_argument("--tasks", default="", help="comma-separated tasks: one generated prompt each per length")
    ap.add_argument("--write-golden", default="", help="write the checked cases here (text)")
    ap.add_argument("--cpu-weight-dtype", default="auto", choices=["auto", "f32", "bf16", "f16"],
                    help="zigzag-generate --cpu_weight_dtype: auto keeps bf16 weights 16-bit, and on CPUs "
                         "with AVX512_BF16 multiplies them by activations rounded to bf16 (logprobs differ "
                         "from PyTorch's float32 by up to ~1e-2); f32 converts them on load")
    args = ap.parse_args()
    torch.set_num_threads(2)

    sp = spm_lite.load_processor(os.path.join(args.model, "tokenizer.model"))
    model = tl.load_hf(args.model)
    cases = []  # (label, prompt ids, max tokens)
    if args.tasks_file:
        seen = {}
        with open(args.tasks_file) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                if seen.get(rec["task"], 0) >= args.per_task:
                    continue
                seen[rec["task"]] = seen.get(rec["task"], 0) + 1
                ids = rec.get("prompt_ids") or [sp.bos_id()] + sp.encode(rec["prompt"])
                cases.append((f"{rec['task']} answer '{rec['answer']}'", ids, rec.get("max_new_tokens", 8)))
    elif args.tasks:
        _, held = nd.corpus_files()
        maker = nd.ExampleMaker(sp, nd.load_words(held))
        for L in [int(x) for x in args.lengths.split(",")]:
            for task in args.tasks.split(","):
                e = tk.generate(task, maker, random.Random(f"{args.seed}-{task}-{L}"), L, args.depth)
                prompt = e.ids[:e.n_prompt]
                answer_len = len(e.ids) - e.n_prompt - 1
                cases.append((f"{task} {L} answer '{e.answer}'", prompt, answer_len + 1))
    else:
        _, held = nd.corpus_files()
        maker = nd.ExampleMaker(sp, nd.load_words(held))
        for L in [int(x) for x in args.lengths.split(",")]:
            rng = random.Random(f"{args.seed}-{L}")
            ids, n, pk, text = maker.make(rng, L, args.depth)
            assert ids[:n] == [sp.bos_id()] + sp.encode(text)
            cases.append((f"passkey {pk}", ids[:n], args.max_tokens))
    all_ok = True
    golden = []
    for label, prompt, max_tokens in cases:
        n = len(prompt)
        ref = model.greedy(prompt, max_tokens, eos_id=sp.eos_id())
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([prompt + ref]))[0], -1)
        ref_lp = [lp[n - 1 + i, t].item() for i, t in enumerate(ref)]
        top2 = lp[n - 1:n - 1 + len(ref)].topk(2, dim=-1).values
        gap = (top2[:, 0] - top2[:, 1]).min().item()  # how far the closest greedy choice is from a tie
        golden.append((label, prompt, ref, ref_lp, gap))
        r = subprocess.run([args.generate, "--model", args.model, "--prompt_ids", ",".join(map(str, prompt)),
                            "--max_tokens", str(max_tokens), "--backend", "cpu", "--logprobs",
                            "--cpu_weight_dtype", args.cpu_weight_dtype],
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
        print(f"prompt {n} tokens, {label}: torch {ref} '{sp.decode(ref)}' | C++ {cpp} '{sp.decode(cpp)}' | "
              f"{'SAME' if same else 'DIFFERENT'}, max |logprob diff| {diff:.2e}")
    if args.write_golden:
        with open(args.write_golden, "w") as f:
            f.write(f"# {os.path.basename(os.path.normpath(args.model))}: greedy tokens of the PyTorch model "
                    f"(tools/train_model/tinyllama.py, float32) written by check_cpp.py --write-golden; "
                    f"per case: label, prompt ids, tokens, their logprobs, smallest top-1 - top-2 gap\n")
            for label, prompt, ref, ref_lp, gap in golden:
                f.write(f"case {label}\nprompt {' '.join(map(str, prompt))}\ntokens {' '.join(map(str, ref))}\n"
                        f"logprobs {' '.join(f'{x:.6f}' for x in ref_lp)}\ngap {gap:.6f}\n")
        print(f"wrote {len(golden)} cases to {args.write_golden}")
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
