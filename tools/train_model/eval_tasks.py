#!/usr/bin/python3
"""Full-cache accuracy of an exported model folder on the long-context tasks (tasks.py), greedy, in
PyTorch: the acceptance check of zigzag-eval (>= 95% on every task at every length).

Prompts come from a JSONL written by make_eval_tasks.py (the same file zigzag-niah --tasks_file
runs), so the PyTorch and C++ grids score the same prompts. A prompt passes when greedy decoding
reproduces the answer's tokens (all but EOS); greedy decoding yields that sequence exactly when
every teacher-forced argmax along it is the target, so one forward pass per prompt decides it.

  /usr/bin/python3 tools/train_model/eval_tasks.py --model models/zigzag-eval --tasks-file /work/eval/tasks.jsonl
"""
import argparse
import collections
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as tk  # noqa: E402
import spm_lite  # noqa: E402
import tinyllama as tl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


@torch.no_grad()
def passes(model, sp, rec, device="cpu"):
    prompt = rec["prompt_ids"] if "prompt_ids" in rec else [sp.bos_id()] + sp.encode(rec["prompt"])
    full = [sp.bos_id()] + sp.encode(rec["prompt"] + rec["answer"])
    if full[:len(prompt)] != prompt:
        raise SystemExit(f"eval_tasks: {rec['task']} trial {rec['trial']}: prompt ids are not a prefix of "
                         f"prompt + answer (another tokenizer?)")
    target = full[len(prompt):]
    x = torch.tensor([prompt + target[:-1]], device=device)
    pred = model.logits(model.hidden(x)[0, len(prompt) - 1:]).argmax(-1).tolist()
    got = []
    for p, t in zip(pred, target):
        got.append(p)
        if p != t:
            break
    return pred == target, sp.decode(got)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(REPO, "models", "zigzag-eval"))
    ap.add_argument("--tasks-file", required=True, help="JSONL from make_eval_tasks.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", default="", help="write the grid here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sp = spm_lite.load_processor(os.path.join(args.model, "tokenizer.model"))
    model = tl.load_hf(args.model).to(args.device)
    t0 = time.time()
    grid = collections.defaultdict(lambda: [0, 0])  # (task, length) -> [correct, total]
    fails = []
    with open(args.tasks_file) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if tk.expected_answer(rec["task"], rec["prompt"]) != rec["answer"]:
                raise SystemExit(f"eval_tasks: the checker disagrees with the file's answer: {rec['task']} "
                                 f"{rec['length']} {rec['depth']} {rec['trial']}")
            ok, got = passes(model, sp, rec, args.device)
            cell = grid[(rec["task"], rec["length"])]
            cell[0] += int(ok)
            cell[1] += 1
            if not ok:
                fails.append(f"{rec['task']} len {rec['length']} depth {rec['depth']}: answer "
                             f"'{rec['answer']}', greedy '{got}'")
    task_names = list(dict.fromkeys(t for t, _ in grid))
    lengths = sorted({L for _, L in grid})
    print(f"full-cache accuracy, greedy, model {args.model}, prompts {args.tasks_file}")
    print("| task \\ length | " + " | ".join(str(L) for L in lengths) + " | all |")
    print("|---" * (len(lengths) + 2) + "|")
    worst = 1.0
    for t in task_names:
        cells = [grid.get((t, L), [0, 0]) for L in lengths]
        row = [f"{c}/{n}" if n else "-" for c, n in cells]
        c_all, n_all = sum(c for c, _ in cells), sum(n for _, n in cells)
        worst = min([worst] + [c / n for c, n in cells if n])
        print(f"| {t} | " + " | ".join(row) + f" | {100.0 * c_all / max(1, n_all):.1f}% |")
    print(f"lowest cell: {100.0 * worst:.1f}% ({time.time() - t0:.0f}s)")
    for f in fails[:30]:
        print("  fail:", f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"grid": {f"{t}@{L}": grid[(t, L)] for t, L in grid}, "lowest_cell": worst}, f, indent=2)


if __name__ == "__main__":
    main()
