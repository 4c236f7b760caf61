#!/usr/bin/env python3
"""Side-by-side CPU timing of zigzag-generate and llama.cpp (node-llama-cpp) on the same
checkpoints and prompt ids; bench/peers/run.sh prepares everything and calls this.

Owns the measurement plan and the report: which cases run, in what order (the two engines
interleaved, each case repeated, medians reported: the machine is shared), the greedy-token
agreement check on fp32 (exit 1 when it fails), and the Markdown table of tok/s and ratios.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

AGREE_TOKENS = 32


def run(cmd, timeout, what):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"compare: {what}: timed out after {timeout} s: {' '.join(cmd)}")
    if p.returncode != 0:
        sys.exit(f"compare: {what}: exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return p.stdout


def run_ours(args, case):
    cmd = [args.zigzag_generate, "--model", case["hf"], "--prompt_ids", case["ids_text"],
           "--max_tokens", str(case["decode"] + 1), "--ignore_eos", "--threads", str(args.threads),
           "--backend", "cpu", "--kv_memory_mb", "1024",
           "--cpu_weight_dtype", case["ours_dtype"]]
    out = run(cmd, args.timeout, f"zigzag-generate {case['name']}")
    tokens = [int(t) for t in re.search(r"^tokens: ([\d,]*)$", out, re.M).group(1).split(",")]
    m = re.search(r"^prefill_seconds: ([\d.]+) decode_seconds: ([\d.]+)$", out, re.M)
    if not m:
        sys.exit("compare: zigzag-generate prints no prefill_seconds line (an older build?)")
    return {"prefill_s": float(m.group(1)), "decode_s": float(m.group(2)),
            "decode_tokens": len(tokens) - 1, "tokens": tokens}


def run_llamacpp(args, case):
    cmd = ["node", args.llamacpp_bench, "--model", case["gguf"], "--prompt-ids", case["ids_file"],
           "--decode", str(case["decode"]), "--threads", str(args.threads),
           "--context", str(case["context"])]
    out = run(cmd, args.timeout, f"llama.cpp {case['name']}")
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, help="build/peers: models, prompts")
    ap.add_argument("--zigzag-generate", required=True)
    ap.add_argument("--llamacpp-bench", required=True)
    ap.add_argument("--tiny-model", required=True, help="models/zigzag-tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per engine run")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--contexts", default="512,4096")
    args = ap.parse_args()

    cases = []
    for dtype in args.dtypes.split(","):
        for n in (int(c) for c in args.contexts.split(",")):
            cases.append({"name": f"124M {dtype} @{n}", "dtype": dtype, "n": n,
                          "hf": os.path.join(args.work, "models", f"llama124m-{dtype}"),
                          "gguf": os.path.join(args.work, "models", f"llama124m-{dtype}.gguf"),
                          "ids_file": os.path.join(args.work, "prompts", f"random-{n}.ids"),
                          "decode": args.decode, "context": n + args.decode + 64,
                          "ours_dtype": dtype})
    cases.append({"name": "zigzag-tiny demo", "dtype": "f32", "n": None,
                  "hf": args.tiny_model,
                  "gguf": os.path.join(args.work, "models", "zigzag-tiny.gguf"),
                  "ids_file": os.path.join(args.work, "prompts", "demo.ids"),
                  "decode": 8, "ours_dtype": "f32"})
    for case in cases:
        with open(case["ids_file"]) as f:
            case["ids_text"] = f.read().strip()
        case["n"] = case["ids_text"].count(",") + 1
        case.setdefault("context", case["n"] + case["decode"] + 64)
        case["ours"], case["llama"] = [], []

    # Interleave: every repeat runs every case on both engines, alternating which goes first.
    for r in range(args.repeats):
        for i, case in enumerate(cases):
            order = [("ours", run_ours), ("llama", run_llamacpp)]
            if (r + i) % 2:
                order.reverse()
            for key, fn in order:
                t0 = time.time()
                result = fn(args, case)
                case[key].append(result)
                print(f"[{r + 1}/{args.repeats}] {case['name']:<18} {key:<5} prefill "
                      f"{case['n'] / result['prefill_s']:8.1f} tok/s  decode "
                      f"{result['decode_tokens'] / result['decode_s']:7.2f} tok/s  "
                      f"({time.time() - t0:.1f} s)", file=sys.stderr, flush=True)

    failures = []
    for case in cases:
        ours, theirs = case["ours"][0]["tokens"], case["llama"][0]["tokens"]
        k = min(AGREE_TOKENS, len(ours), len(theirs))
        case["agree"] = next((i for i in range(k) if ours[i] != theirs[i]), k)
        case["agree_of"] = k
        if case["dtype"] == "f32" and case["agree"] < k:
            failures.append(f"{case['name']}: greedy tokens differ at index {case['agree']}: "
                            f"ours {ours[:k]} llama.cpp {theirs[:k]}")

    def med(runs, key, tokens):
        return statistics.median(tokens(r) / r[key] for r in runs)

    print(f"threads {args.threads}, {args.repeats} repeats (median), decode {args.decode} "
          "tokens after the prompt; ratio = ours / llama.cpp (> 1: we are faster)\n")
    print("| case | weights | prompt | prefill ours | prefill llama.cpp | ratio | decode ours | "
          "decode llama.cpp | ratio | greedy agree |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in cases:
        n = c["n"]
        po = med(c["ours"], "prefill_s", lambda r: n)
        pl = med(c["llama"], "prefill_s", lambda r: n)
        do = med(c["ours"], "decode_s", lambda r: r["decode_tokens"])
        dl = med(c["llama"], "decode_s", lambda r: r["decode_tokens"])
        print(f"| {c['name']} | {c['dtype']} | {n} | {po:.1f} | {pl:.1f} | {po / pl:.2f} | "
              f"{do:.2f} | {dl:.2f} | {do / dl:.2f} | {c['agree']}/{c['agree_of']} |")
    print("\n(tok/s; prefill = prompt tokens / time to the first generated token)")
    if failures:
        print("\nGREEDY TOKENS DISAGREE ON FP32:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
