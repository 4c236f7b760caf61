"""Statistics, files and plots of loadtest.py: the per-request CSV, summary.json, latency.png and
timeline.png of a run; report.md, sweep.png of a sweep. No gRPC here."""

import csv
import json
import math
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

CSV_FIELDS = [
    "index", "request_id", "policy", "long_prompt", "target_prompt_tokens", "max_tokens",
    "start_s", "end_s", "status", "finish_reason", "prompt_tokens", "output_tokens",
    "streamed_tokens", "chunks", "ttft_s", "tpot_s", "max_itl_s", "e2e_s", "server_queue_s",
    "server_ttft_s", "server_e2e_s", "kv_policy_used", "kv_head_budgets_used", "kv_compressed",
    "kv_full_bytes",
    "kv_retained_bytes", "kv_saved_bytes", "kv_retained_ratio", "kv_blocks_held", "preemptions",
    "good", "error",
]


# Statistics ------------------------------------------------------------------------------------

def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    pos = (len(values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def stats(values):
    values = [v for v in values if v != "" and v is not None]
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {"count": len(values), "mean": sum(values) / len(values),
            "p50": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "max": max(values)}


def summarize(args, rows, itls, samples, model_info, target):
    ok = [r for r in rows if r["status"] == "OK"]
    by_status, by_finish = {}, {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    for r in ok:
        by_finish[r["finish_reason"]] = by_finish.get(r["finish_reason"], 0) + 1
    started = [r["start_s"] for r in rows if r["start_s"] != ""]
    ended = [r["end_s"] for r in rows if r["end_s"] != ""]
    duration = (max(ended) - min(started)) if started and ended else 0.0
    prompt_tokens = sum(r["prompt_tokens"] for r in ok)
    output_tokens = sum(r["output_tokens"] for r in ok)
    good = sum(1 for r in rows if r["good"] == 1)
    running = [s["running"] for s in samples]
    kv_usage = [s["kv_usage"] for s in samples]

    def per_s(x):
        return x / duration if duration > 0 else 0.0

    return {
        "target": target,
        "model": {"name": model_info.model_name, "architecture": model_info.architecture,
                  "num_layers": model_info.num_layers, "backend": model_info.backend,
                  "kv_num_blocks": model_info.kv_num_blocks,
                  "kv_block_size": model_info.kv_block_size,
                  "kv_bytes_per_block": model_info.kv_bytes_per_block,
                  # A block holds block_size tokens of one (layer, KV head) stream (K and V).
                  "kv_memory_bytes": model_info.kv_num_blocks * model_info.kv_bytes_per_block},
        "load": {"mode": "poisson" if args.request_rate > 0 else "concurrency",
                 "request_rate": args.request_rate,
                 "concurrency": None if args.request_rate > 0 else
                 int(str(args.concurrency).split(",")[0]),
                 "num_requests_limit": args.num_requests, "duration_limit_s": args.duration,
                 "prompt_mode": args.prompt_mode, "prompt_len": repr(args.prompt_len),
                 "long_prompt_len": repr(args.long_prompt_len), "long_fraction": args.long_fraction,
                 "output_len": repr(args.output_len), "kv_policy": args.kv_policy,
                 "kv_ratio": args.kv_ratio, "kv_budget": args.kv_budget, "seed": args.seed},
        "duration_s": duration,
        "requests": {"sent": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
                     "by_status": by_status, "by_finish_reason": by_finish},
        "tokens": {"prompt": prompt_tokens, "generated": output_tokens,
                   "streamed": sum(r["streamed_tokens"] for r in ok),
                   "stream_mismatches": sum(1 for r in ok
                                            if r["streamed_tokens"] != r["output_tokens"])},
        "throughput": {"requests_per_s": per_s(len(ok)),
                       "output_tokens_per_s": per_s(output_tokens),
                       "total_tokens_per_s": per_s(prompt_tokens + output_tokens)},
        "goodput": {"slo_ttft_ms": args.slo_ttft_ms or None,
                    "slo_tpot_ms": args.slo_tpot_ms or None,
                    "slo_e2e_ms": args.slo_e2e_ms or None, "good_requests": good,
                    "requests_per_s": per_s(good),
                    "fraction": good / len(rows) if rows else 0.0},
        "latency_s": {"ttft": stats([r["ttft_s"] for r in ok]),
                      "tpot": stats([r["tpot_s"] for r in ok]),
                      "itl": stats(itls),
                      "e2e": stats([r["e2e_s"] for r in ok]),
                      "server_queue": stats([r["server_queue_s"] for r in ok])},
        "kv": {"saved_bytes_total": sum(r["kv_saved_bytes"] for r in ok),
               "full_bytes_total": sum(r["kv_full_bytes"] for r in ok),
               "retained_bytes_total": sum(r["kv_retained_bytes"] for r in ok),
               "mean_retained_ratio": (sum(r["kv_retained_ratio"] for r in ok) / len(ok))
               if ok else None,
               "preemptions": sum(r["preemptions"] for r in ok),
               "head_budgets_used": sorted({r["kv_head_budgets_used"] for r in ok
                                            if r.get("kv_head_budgets_used")})},
        "server_load": {"samples": len(samples),
                        "max_running": max(running) if running else None,
                        "mean_running": sum(running) / len(running) if running else None,
                        "p50_running": percentile(running, 50),
                        "max_waiting": max((s["waiting"] for s in samples), default=None),
                        "max_kv_usage": max(kv_usage) if kv_usage else None,
                        "mean_kv_usage": sum(kv_usage) / len(kv_usage) if kv_usage else None},
    }


def write_outputs(out_dir, rows, summary, samples, itls, plots, title=""):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "requests.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["index"]):
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v)
                             for k, v in row.items()})
    with open(os.path.join(out_dir, "server_load.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t", "running", "waiting", "kv_usage",
                                               "kv_blocks_used"])
        writer.writeheader()
        writer.writerows(samples)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    if plots:
        plot_run(out_dir, rows, summary, samples, itls, title)


def plot_run(out_dir, rows, summary, samples, itls, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "OK"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    panels = [("TTFT (ms)", [r["ttft_s"] * 1e3 for r in ok if r["ttft_s"] != ""]),
              ("TPOT (ms)", [r["tpot_s"] * 1e3 for r in ok if r["tpot_s"] != ""]),
              ("ITL (ms)", [v * 1e3 for v in itls]),
              ("end-to-end latency (s)", [r["e2e_s"] for r in ok])]
    for ax, (name, values) in zip(axes.flat, panels):
        if values:
            ax.hist(values, bins=min(50, max(5, len(values) // 4)), color="#4477aa")
            for q, style in ((50, "-"), (90, "--"), (99, ":")):
                ax.axvline(percentile(values, q), color="#cc3311", linestyle=style,
                           label=f"p{q} {percentile(values, q):.3g}")
            ax.legend(fontsize=8)
        ax.set_title(name)
        ax.set_ylabel("count")
    fig.suptitle(f"{title} latency distributions ({len(ok)} requests OK)".strip())
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "latency.png"), dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True)
    if ok:
        horizon = max(r["end_s"] for r in ok)
        width = max(0.5, horizon / 60.0)
        bins = [i * width for i in range(int(horizon / width) + 2)]
        tokens = [0.0] * len(bins)
        for r in ok:  # output tokens spread evenly between first token and end
            if r["ttft_s"] == "" or not r["output_tokens"]:
                continue
            a, b = r["start_s"] + r["ttft_s"], r["end_s"]
            for i in range(int(a / width), min(int(b / width) + 1, len(bins))):
                lo, hi = max(a, bins[i]), min(b, bins[i] + width)
                if hi > lo and b > a:
                    tokens[i] += r["output_tokens"] * (hi - lo) / (b - a)
        axes[0].bar(bins, [t / width for t in tokens], width=width, align="edge",
                    color="#4477aa")
    axes[0].set_ylabel("output tokens/s")
    if samples:
        t = [s["t"] for s in samples]
        axes[1].plot(t, [s["running"] for s in samples], label="running")
        axes[1].plot(t, [s["waiting"] for s in samples], label="waiting")
        axes[1].legend(fontsize=8)
        axes[2].plot(t, [s["kv_usage"] for s in samples], color="#228833")
    axes[1].set_ylabel("requests (server)")
    axes[2].set_ylabel("KV cache usage")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_xlabel("seconds since start")
    fig.suptitle(f"{title} throughput and server load".strip())
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "timeline.png"), dpi=90)
    plt.close(fig)


def ms(value):
    return "-" if value is None else f"{value * 1e3:.1f}"


def print_summary(summary, out=sys.stdout):
    s = summary
    lat = s["latency_s"]
    print(f"requests: {s['requests']['ok']}/{s['requests']['sent']} OK in {s['duration_s']:.2f}s "
          f"({s['throughput']['requests_per_s']:.2f} req/s, "
          f"{s['throughput']['output_tokens_per_s']:.1f} output tok/s, "
          f"{s['throughput']['total_tokens_per_s']:.1f} total tok/s); "
          f"by status {s['requests']['by_status']}", file=out)
    for name in ("ttft", "tpot", "itl", "e2e"):
        st = lat[name]
        print(f"  {name:5s} ms: mean {ms(st['mean'])} p50 {ms(st['p50'])} p90 {ms(st['p90'])} "
              f"p99 {ms(st['p99'])} max {ms(st['max'])}", file=out)
    g = s["goodput"]
    print(f"goodput: {g['good_requests']} good requests ({g['requests_per_s']:.2f} req/s, "
          f"{100 * g['fraction']:.1f}%)", file=out)
    print(f"tokens: prompt {s['tokens']['prompt']} generated {s['tokens']['generated']}; "
          f"KV saved {s['kv']['saved_bytes_total']} bytes, mean retained ratio "
          f"{s['kv']['mean_retained_ratio']}", file=out)
    sl = s["server_load"]
    print(f"server: max running {sl['max_running']} mean {sl['mean_running']} max waiting "
          f"{sl['max_waiting']} max KV usage {sl['max_kv_usage']}", file=out)


# Sweep report ----------------------------------------------------------------------------------

def grpc_version():
    try:
        import grpc
        return grpc.__version__
    except ImportError:
        return ""


def machine_info():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = ""
    try:
        commit = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "grpcio": grpc_version(), "commit": commit}


def plot_sweep(out_dir, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in results]
    s = [r["summary"] for r in results]
    panels = [
        ("max running requests held", [x["server_load"]["max_running"] or 0 for x in s]),
        ("mean running requests", [x["server_load"]["mean_running"] or 0 for x in s]),
        ("output tokens/s", [x["throughput"]["output_tokens_per_s"] for x in s]),
        ("requests/s", [x["throughput"]["requests_per_s"] for x in s]),
        ("TTFT p50 / p99 (s)", [(x["latency_s"]["ttft"]["p50"] or 0,
                                 x["latency_s"]["ttft"]["p99"] or 0) for x in s]),
        ("e2e p50 / p99 (s)", [(x["latency_s"]["e2e"]["p50"] or 0,
                                x["latency_s"]["e2e"]["p99"] or 0) for x in s]),
    ]
    colors = ["#4477aa" if r["config"]["policy"] == "full" else "#ee6677" for r in results]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, values) in zip(axes.flat, panels):
        xs = range(len(names))
        if isinstance(values[0], tuple):
            ax.bar([x - 0.2 for x in xs], [v[0] for v in values], width=0.4, color=colors,
                   label="p50")
            ax.bar([x + 0.2 for x in xs], [v[1] for v in values], width=0.4, color=colors,
                   alpha=0.5, hatch="//", label="p99")
            ax.legend(fontsize=8)
        else:
            ax.bar(xs, values, color=colors)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_title(title)
    fig.suptitle("full vs compressed KV at the same server KV memory")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "sweep.png"), dpi=90)
    plt.close(fig)


def write_report(args, report):
    lines = ["# Load-test sweep", "",
             f"Command: `{report['command']}`", "",
             f"Server flags (every configuration): `{' '.join(report['server_flags'])}`", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
             f"{report['machine']['platform']}; commit {report['machine']['commit'] or '-'}",
             ""]
    if report["results"]:
        m = report["results"][0]["summary"]["model"]
        lines += [f"Model: {m['name']} ({m['architecture']}, {m['num_layers']} layers) on "
                  f"{m['backend']}; KV cache {m['kv_num_blocks']} blocks of "
                  f"{m['kv_block_size']} tokens of one (layer, KV head) "
                  f"({m['kv_memory_bytes'] / 2**20:.1f} MiB).", ""]
    lines += ["| run | OK/sent | max running | mean running | max KV usage | req/s | out tok/s | "
              "TTFT p50/p90/p99 ms | TPOT p50/p99 ms | e2e p50/p90/p99 s | goodput req/s | "
              "KV saved MiB | preemptions |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        s = r["summary"]
        lat, sl = s["latency_s"], s["server_load"]

        def sec(v):
            return "-" if v is None else f"{v:.2f}"
        lines.append(
            f"| {r['name']} | {s['requests']['ok']}/{s['requests']['sent']} | "
            f"{sl['max_running']} | {(sl['mean_running'] or 0):.1f} | "
            f"{(sl['max_kv_usage'] or 0):.2f} | {s['throughput']['requests_per_s']:.2f} | "
            f"{s['throughput']['output_tokens_per_s']:.1f} | "
            f"{ms(lat['ttft']['p50'])}/{ms(lat['ttft']['p90'])}/{ms(lat['ttft']['p99'])} | "
            f"{ms(lat['tpot']['p50'])}/{ms(lat['tpot']['p99'])} | "
            f"{sec(lat['e2e']['p50'])}/{sec(lat['e2e']['p90'])}/{sec(lat['e2e']['p99'])} | "
            f"{s['goodput']['requests_per_s']:.2f} | "
            f"{s['kv']['saved_bytes_total'] / 2**20:.1f} | {s['kv']['preemptions']} |")
    lines += ["", "Per-run CSV, JSON and plots are in the folder of each run; sweep.png compares "
              "them.", ""]
    with open(os.path.join(args.out_dir, "report.md"), "w") as f:
        f.write("\n".join(lines))
