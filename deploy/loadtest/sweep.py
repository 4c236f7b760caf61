"""Sweep of loadtest.py: one `run` per KV configuration (POLICY[:RATIO[:HEADS]]) and concurrency
level, each against a local server it starts and stops (local_server.py) or a given --target; then
sweep.json, sweep.png and report.md. The load itself is client.py's, the statistics report.py's.
"""

import argparse
import json
import os
import shlex
import sys
import time

import local_server
from client import check_loopback, run_and_report
from report import machine_info, plot_sweep, write_report
from workload import POLICIES


def parse_configs(text):
    configs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        policy, _, rest = item.partition(":")
        ratio, _, heads = rest.partition(":")
        if (policy not in POLICIES or policy == "default" or
                heads not in ("", "uniform", "adaptive")):
            raise SystemExit(f"loadtest: bad sweep config '{item}' (POLICY[:RATIO[:HEADS]], "
                             "HEADS uniform or adaptive)")
        try:
            ratio = float(ratio) if ratio else None
        except ValueError:
            raise SystemExit(f"loadtest: bad sweep config '{item}': RATIO '{ratio}' is no number")
        configs.append({"name": item.replace(":", "-"), "policy": policy, "ratio": ratio,
                        "head_budgets": heads or None})
    if not configs:
        raise SystemExit("loadtest: --configs names no configuration")
    return configs


def cmd_sweep(args):
    configs = parse_configs(args.configs)
    levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    if args.request_rate > 0:
        levels = [0]
    if not args.target and not (args.server_binary and args.model):
        raise SystemExit("loadtest: sweep needs --target, or --server-binary and --model")
    if args.target:
        check_loopback(args.target)
    server_flags = shlex.split(args.server_flags)
    os.makedirs(args.out_dir, exist_ok=True)
    results = []
    wall_start = time.monotonic()
    for config in configs:
        if time.monotonic() - wall_start > args.max_wall:
            print(f"sweep: --max-wall {args.max_wall:.0f}s reached; skipping {config['name']}")
            break
        run_args = argparse.Namespace(**vars(args))
        run_args.kv_policy = config["policy"]
        run_args.kv_ratio = config["ratio"] if config["policy"] != "full" else None
        run_args.kv_head_budgets = config["head_budgets"] or getattr(args, "kv_head_budgets", None)
        server = None
        if not args.target:
            flags = server_flags + ["--kv-policy", config["policy"]]
            if run_args.kv_ratio is not None:
                flags += ["--kv-ratio", str(run_args.kv_ratio)]
            if run_args.kv_head_budgets:
                flags += ["--kv-head-budgets", run_args.kv_head_budgets]
            server = local_server.LocalServer(
                args.server_binary, args.model, flags,
                log_path=os.path.join(args.out_dir, f"server-{config['name']}.log"))
        try:
            if server:
                server.start()
            target = server.target if server else args.target
            metrics_url = server.metrics_url if server else None
            for level in levels:
                run_args.concurrency = str(level)
                name = f"{config['name']}-c{level}" if level else f"{config['name']}-" \
                       f"r{args.request_rate:g}"
                print(f"== {name}: {target}", flush=True)
                summary = run_and_report(run_args, target, os.path.join(args.out_dir, name),
                                         title=name, run_tag=name, metrics_url=metrics_url)
                results.append({"name": name, "config": config, "level": level,
                                "summary": summary})
        finally:
            if server:
                server.stop()
    report = {"command": " ".join(shlex.quote(a) for a in sys.argv), "server_flags": server_flags,
              "results": results, "machine": machine_info()}
    with open(os.path.join(args.out_dir, "sweep.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    if args.plots and results:
        plot_sweep(args.out_dir, results)
    write_report(args, report)
    print(f"wrote {args.out_dir}/report.md, sweep.json" + (", sweep.png" if args.plots else ""))
    return 0
