#!/usr/bin/env python3
"""Uniform against adaptive head budgets, from zigzag-niah runs (one split per run).

  python3 tools/niah/plot_head_split.py --out docs/results/niah-heads \
      --run uniform:7:docs/results/niah-heads/uniform-k7/results.csv \
      --run adaptive:7:docs/results/niah-heads/adaptive-k7/results.csv ...

Each --run is SPLIT:KERNEL:RESULTS_CSV. Writes accuracy-by-budget.png (one panel per kernel,
accuracy against the budget for every scoring policy, solid = uniform, dashed = adaptive) and
comparison.md (the same numbers as a table, with adaptive minus uniform in points). Runs of
--tasks_file (results.csv with a task column) get one row of panels and a table column per task.
"""
import argparse
import collections
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCORING = ("snapkv", "pyramidkv", "zigzag")


def parse_run(text):
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] not in ("uniform", "adaptive") or not parts[1].isdigit():
        sys.exit(f"plot_head_split: --run '{text}' is not SPLIT:KERNEL:RESULTS_CSV "
                 "(SPLIT uniform or adaptive)")
    return parts[0], int(parts[1]), parts[2]


def accuracy(path):
    """{(task, policy, budget): (correct, total)} of the scoring policies in one results.csv (task ""
    for the passkey grid, whose results.csv has no task column)."""
    counts = collections.defaultdict(lambda: [0, 0])
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["policy"] in SCORING:
                    key = (row.get("task", ""), row["policy"], float(row["budget"]))
                    counts[key][0] += int(row["correct"])
                    counts[key][1] += 1
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"plot_head_split: cannot read {path}: {e}")
    if not counts:
        sys.exit(f"plot_head_split: {path} has no snapkv, pyramidkv or zigzag rows")
    return {k: tuple(v) for k, v in counts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="SPLIT:KERNEL:RESULTS_CSV")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    data = {}  # (split, kernel) -> accuracy dict
    for text in args.run:
        split, kernel, path = parse_run(text)
        data[(split, kernel)] = accuracy(path)
    kernels = sorted({k for _, k in data})
    tasks = list(dict.fromkeys(t for acc in data.values() for t, _, _ in acc))
    os.makedirs(args.out, exist_ok=True)

    fig, axes = plt.subplots(len(tasks), len(kernels), figsize=(6 * len(kernels), 4.5 * len(tasks)),
                             squeeze=False)
    colors = {"snapkv": "tab:blue", "pyramidkv": "tab:green", "zigzag": "tab:red"}
    for row_axes, task in zip(axes, tasks):
        for ax, kernel in zip(row_axes, kernels):
            for split, style in (("uniform", "-"), ("adaptive", "--")):
                acc = data.get((split, kernel))
                if acc is None:
                    continue
                for policy in SCORING:
                    budgets = sorted(b for t, p, b in acc if t == task and p == policy)
                    ys = [100.0 * acc[(task, policy, b)][0] / acc[(task, policy, b)][1] for b in budgets]
                    ax.plot([100 * b for b in budgets], ys, style, marker="o", color=colors[policy],
                            label=f"{policy} {split}")
            ax.set_xscale("log")
            ax.set_xlabel("KV budget (% of the prompt, window included)")
            ax.set_ylabel(f"{task or 'passkey'} accuracy (%)")
            ax.set_title(f"{task + ', ' if task else ''}pooling kernel {kernel}")
            ax.set_ylim(0, 102)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "accuracy-by-budget.png"), dpi=110)

    with_task = tasks != [""]
    lines = [("| task " if with_task else "") + "| kernel | policy | budget | uniform | adaptive | adaptive - uniform |",
             ("|---" if with_task else "") + "|---|---|---|---|---|---|"]
    for task in tasks:
        for kernel in kernels:
            uni, ada = data.get(("uniform", kernel), {}), data.get(("adaptive", kernel), {})
            for policy in SCORING:
                for budget in sorted({b for t, p, b in list(uni) + list(ada) if t == task and p == policy}):
                    cells = []
                    for acc in (uni, ada):
                        c = acc.get((task, policy, budget))
                        cells.append(None if c is None else 100.0 * c[0] / c[1])
                    fmt = ["-" if v is None else f"{v:.1f}%" for v in cells]
                    diff = "-" if None in cells else f"{cells[1] - cells[0]:+.1f}"
                    lines.append((f"| {task} " if with_task else "") +
                                 f"| {kernel} | {policy} | {100 * budget:g}% | {fmt[0]} | {fmt[1]} | {diff} |")
    with open(os.path.join(args.out, "comparison.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}/accuracy-by-budget.png, comparison.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
