#!/usr/bin/python3
"""Passkey (needle-in-a-haystack) accuracy of an exported model folder, full attention, greedy.

Haystack text comes from the held-out RelNotes files (every 8th file, never used for training); each
trial has its own passkey and haystack offset (seeded). A trial passes when greedy decoding produces
exactly "▁" + the 5 passkey digits. Greedy decoding yields the target sequence exactly when every
teacher-forced argmax along the target equals the target, so one forward pass per trial decides it.

  /usr/bin/python3 tools/train_model/eval_passkey.py --model models/zigzag-tiny
"""
import argparse
import json
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import spm_lite  # noqa: E402
import tinyllama as tl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


@torch.no_grad()
def trial(model, sp, ids, n_prompt):
    """True when greedy decoding from ids[:n_prompt] reproduces '▁' + 5 digits; also returns the greedy
    text up to the first wrong token (for failures)."""
    x = torch.tensor([ids[:n_prompt + 6]])
    h = model.hidden(x[:, :-1])
    pred = model.logits(h[0, n_prompt - 1:]).argmax(-1).tolist()
    target = ids[n_prompt:n_prompt + 6]
    ok = pred == target
    got = []
    for p, t in zip(pred, target):
        got.append(p)
        if p != t:
            break
    return ok, sp.decode(got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "zigzag-tiny"))
    ap.add_argument("--lengths", default="512,1024,2048,3072,4000")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1.0")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20251)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-text", action="store_true", help="use the training part of the corpus instead")
    ap.add_argument("--json", default="", help="write the grid here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    sp = spm_lite.load_processor(os.path.join(args.model, "tokenizer.model"))
    model = tl.load_hf(args.model)
    train_files, held_files = nd.corpus_files()
    maker = nd.ExampleMaker(sp, nd.load_words(train_files if args.train_text else held_files))
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [float(x) for x in args.depths.split(",")]

    t0 = time.time()
    grid, fails = {}, []
    for L in lengths:
        for d in depths:
            rng = random.Random(f"{args.seed}-{L}-{d}")
            ok = 0
            for _ in range(args.trials):
                ids, n, pk, _ = maker.make(rng, L, d)
                good, got = trial(model, sp, ids, n)
                ok += int(good)
                if not good:
                    fails.append(f"len {L} depth {d}: passkey {pk}, greedy '{got}'")
            grid[(L, d)] = ok
    total = sum(grid.values())
    n_all = len(grid) * args.trials

    print(f"passkey accuracy, {args.trials} trials per cell, greedy, full attention "
          f"({'training' if args.train_text else 'held-out'} text), model {args.model}")
    print("| length \\ depth | " + " | ".join(f"{d:g}" for d in depths) + " | row |")
    print("|---" * (len(depths) + 2) + "|")
    for L in lengths:
        row = [grid[(L, d)] for d in depths]
        print(f"| {L} | " + " | ".join(f"{r}/{args.trials}" for r in row) +
              f" | {100.0 * sum(row) / (len(row) * args.trials):.0f}% |")
    print(f"overall: {total}/{n_all} = {100.0 * total / n_all:.1f}%  ({time.time() - t0:.0f}s)")
    for f in fails[:20]:
        print("  fail:", f)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trials": args.trials, "overall": total / n_all,
                       "grid": {f"{L}@{d:g}": grid[(L, d)] for L in lengths for d in depths}}, f, indent=2)


if __name__ == "__main__":
    main()
