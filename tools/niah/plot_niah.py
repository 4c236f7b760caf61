#!/usr/bin/env python3
"""Heatmaps and a summary chart from zigzag-niah's results.csv (Debian's python3-matplotlib).

  python3 tools/niah/plot_niah.py --results docs/results/niah/results.csv --out docs/results/niah

Writes heatmap-<policy>.png (accuracy by needle depth x prompt length, one panel per budget)
and accuracy-vs-retained.png (accuracy against the mean retained KV fraction, per policy).
"""
import argparse
import collections
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"plot_niah: {path} has no rows")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results.csv written by zigzag-niah")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args()
    rows = load(args.results)
    os.makedirs(args.out, exist_ok=True)

    lengths = sorted({int(r["length"]) for r in rows})
    depths = sorted({float(r["depth"]) for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    # (policy, budget) -> (length, depth) -> [correct...]
    cells = collections.defaultdict(lambda: collections.defaultdict(list))
    retained = collections.defaultdict(list)
    for r in rows:
        key = (r["policy"], float(r["budget"]))
        cells[key][(int(r["length"]), float(r["depth"]))].append(int(r["correct"]))
        retained[key].append(float(r["retained_fraction"]))

    for policy in policies:
        budgets = sorted(b for (p, b) in cells if p == policy)
        fig, axes = plt.subplots(1, len(budgets), figsize=(3.2 * len(budgets) + 1, 3.4),
                                 squeeze=False)
        for ax, budget in zip(axes[0], budgets):
            grid = [[sum(v) / len(v) if (v := cells[(policy, budget)].get((l, d))) else float("nan")
                     for l in lengths] for d in depths]
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], fontsize=8)
            ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=8)
            ax.set_xlabel("prompt tokens")
            if ax is axes[0][0]:
                ax.set_ylabel("needle depth")
            label = "full cache" if policy == "full" else f"budget {budget:.0%}"
            mean_kept = sum(retained[(policy, budget)]) / len(retained[(policy, budget)])
            ax.set_title(f"{label} (kept {mean_kept:.0%})", fontsize=9)
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7)
        fig.suptitle(f"Needle in a haystack: {policy}")
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
        path = os.path.join(args.out, f"heatmap-{policy}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        print("wrote", path)

    fig, ax = plt.subplots(figsize=(6, 4))
    for policy in policies:
        points = sorted((sum(retained[k]) / len(retained[k]),
                         sum(sum(v) for v in cells[k].values()) /
                         sum(len(v) for v in cells[k].values()))
                        for k in cells if k[0] == policy)
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=policy)
    ax.set_xlabel("mean retained KV fraction")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Needle-in-a-haystack accuracy vs KV kept")
    path = os.path.join(args.out, "accuracy-vs-retained.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print("wrote", path)


if __name__ == "__main__":
    main()
