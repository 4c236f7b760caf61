#!/usr/bin/env python3
"""Heatmaps and a summary chart from zigzag-niah's results.csv (Debian's python3-matplotlib).

  python3 tools/niah/plot_niah.py --results docs/results/niah/results.csv --out docs/results/niah

Writes heatmap-<policy>.png (accuracy by needle depth x prompt length, one panel per budget and
kernel) and accuracy-vs-retained.png (accuracy against the mean retained KV fraction, per policy
and kernel). For a --tasks_file run (results.csv with a task column): <task>-heatmap-<policy>.png
per task, and accuracy-vs-retained.png with one panel per task.
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


def kernel_of(row):
    """The pooling kernel of a row ("-" for full and streaming, or results.csv files older than it)."""
    k = row.get("kernel", "-") or "-"
    return "-" if row["policy"] in ("full", "streaming") else k


def plot_heatmaps(rows, out, prefix, title):
    lengths = sorted({int(r["length"]) for r in rows})
    depths = sorted({float(r["depth"]) for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    # (policy, budget, kernel) -> (length, depth) -> [correct...]
    cells = collections.defaultdict(lambda: collections.defaultdict(list))
    retained = collections.defaultdict(list)
    for r in rows:
        key = (r["policy"], float(r["budget"]), kernel_of(r))
        cells[key][(int(r["length"]), float(r["depth"]))].append(int(r["correct"]))
        retained[key].append(float(r["retained_fraction"]))

    for policy in policies:
        keys = sorted((k for k in cells if k[0] == policy),
                      key=lambda k: (k[1], int(k[2]) if k[2].isdigit() else -1))
        several_kernels = len({k[2] for k in keys}) > 1
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 1, 3.4), squeeze=False)
        for ax, key in zip(axes[0], keys):
            grid = [[sum(v) / len(v) if (v := cells[key].get((l, d))) else float("nan")
                     for l in lengths] for d in depths]
            image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], fontsize=8)
            ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths], fontsize=8)
            ax.set_xlabel("prompt tokens")
            if ax is axes[0][0]:
                ax.set_ylabel("needle depth")
            label = "full cache" if policy == "full" else f"budget {key[1]:.0%}"
            if several_kernels:
                label += f" k{key[2]}"
            mean_kept = sum(retained[key]) / len(retained[key])
            ax.set_title(f"{label} (kept {mean_kept:.0%})", fontsize=9)
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=7)
        fig.suptitle(f"{title}: {policy}")
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
        path = os.path.join(out, f"{prefix}heatmap-{policy}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        print("wrote", path)
    return cells, retained


def plot_tradeoff(ax, cells, retained, title):
    series = collections.defaultdict(list)  # "zigzag k13" -> [(retained, accuracy)]
    kernels = collections.defaultdict(set)
    for key in cells:
        kernels[key[0]].add(key[2])
    for key in cells:
        name = key[0] + (f" k{key[2]}" if len(kernels[key[0]]) > 1 else "")
        series[name].append((sum(retained[key]) / len(retained[key]),
                             sum(sum(v) for v in cells[key].values()) /
                             sum(len(v) for v in cells[key].values())))
    for name, points in series.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("mean retained KV fraction")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="results.csv written by zigzag-niah")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args()
    rows = load(args.results)
    os.makedirs(args.out, exist_ok=True)

    if "task" not in rows[0]:  # the passkey grid
        cells, retained = plot_heatmaps(rows, args.out, "", "Needle in a haystack")
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_tradeoff(ax, cells, retained, "Needle-in-a-haystack accuracy vs KV kept")
    else:  # --tasks_file: the same per task, and one accuracy-vs-retained panel per task
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            task_rows = [r for r in rows if r["task"] == task]
            cells, retained = plot_heatmaps(task_rows, args.out, f"{task}-", task)
            plot_tradeoff(ax, cells, retained, task)
    path = os.path.join(args.out, "accuracy-vs-retained.png")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print("wrote", path)


if __name__ == "__main__":
    main()
