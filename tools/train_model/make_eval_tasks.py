#!/usr/bin/python3
"""Writes the held-out evaluation prompts of tasks.py as JSONL, the input of
`zigzag-niah --tasks_file` (tools/niah/task_file.h reads it).

One line per (task, length, depth, trial), from the held-out haystack (every 8th git RelNotes file):
  {"task": "vartrack", "length": 4096, "depth": 0.5, "trial": 0, "prompt": "<text>",
   "prompt_ids": [1, ...], "answer": " ABCDE, FGHIJ.", "max_new_tokens": 23, "prompt_tokens": 4063}
- length: the budget of prompt + answer + EOS (as in training); prompt_tokens = len(prompt_ids);
- prompt_ids: BOS + SentencePiece ids of the prompt with --tokenizer (the model's), so the grid runs
  exactly the ids the checker judged; the C++ tool tokenizes `prompt` itself when they are absent;
- max_new_tokens: the answer's tokens + EOS; the grid scores with the rule of tasks.is_correct.
Every prompt's answer is checked against tasks.expected_answer (from the text alone) before it is
written. Each trial draws from random.Random("<seed>-<task>-<length>-<depth>-<trial>"), so a cell's
prompts do not change when other cells are added.

  /usr/bin/python3 tools/train_model/make_eval_tasks.py --tokenizer models/zigzag-eval/tokenizer.model \\
      --out /work/eval/tasks.jsonl     # defaults: every task, 512..4096 tokens, 5 depths, 4 trials
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import spm_lite  # noqa: E402
import tasks as tk  # noqa: E402


def records(maker, task_names, lengths, depths, trials, seed, with_ids):
    for task in task_names:
        for length in lengths:
            for depth in depths:
                for trial in range(trials):
                    rng = random.Random(f"{seed}-{task}-{length}-{depth:g}-{trial}")
                    ex = tk.generate(task, maker, rng, length, depth)
                    if tk.expected_answer(task, ex.prompt) != ex.answer:
                        raise SystemExit(f"make_eval_tasks: {task} {length} {depth} {trial}: the checker "
                                         f"disagrees with the generator")
                    rec = {"task": task, "length": length, "depth": depth, "trial": trial, "prompt": ex.prompt}
                    if with_ids:
                        rec["prompt_ids"] = ex.ids[:ex.n_prompt]
                    rec.update({"answer": ex.answer, "max_new_tokens": len(ex.ids) - ex.n_prompt,
                                "prompt_tokens": ex.n_prompt})
                    yield rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="the model's SentencePiece tokenizer.model")
    ap.add_argument("--out", required=True, help="JSONL file to write")
    ap.add_argument("--tasks", default=",".join(tk.TASKS))
    ap.add_argument("--lengths", default="512,1024,2048,3072,4096")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=31337)
    ap.add_argument("--no-ids", action="store_true", help="leave prompt_ids out (the grid tokenizes)")
    ap.add_argument("--corpus-root", default="", help="as train.py's")
    args = ap.parse_args()

    task_names = [t for t, _ in tk.parse_mixture(args.tasks)]
    lengths = [int(x) for x in args.lengths.split(",")]
    depths = [float(x) for x in args.depths.split(",")]
    if args.trials < 1 or any(not 0 <= d <= 1 for d in depths) or any(L < 1 for L in lengths):
        raise SystemExit("make_eval_tasks: need --trials >= 1, depths in [0, 1] and positive lengths")
    sp = spm_lite.load_processor(args.tokenizer)
    _, held = nd.corpus_files(args.corpus_root)
    if not held:
        raise SystemExit(f"make_eval_tasks: no held-out haystack files in {nd.RELNOTES_DIR}")
    maker = nd.ExampleMaker(sp, nd.load_words(held))
    tmp = args.out + ".tmp"
    n = 0
    with open(tmp, "w") as f:
        for rec in records(maker, task_names, lengths, depths, args.trials, args.seed, not args.no_ids):
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            n += 1
    os.replace(tmp, args.out)
    print(f"wrote {n} prompts to {args.out}")


if __name__ == "__main__":
    main()
