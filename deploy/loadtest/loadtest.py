#!/usr/bin/env python3
"""Load generator for zigzag-server: what users feel (TTFT, ITL/TPOT, end-to-end latency), what the
server delivers (request and token throughput, goodput under SLOs, KV bytes saved) and how much
load it holds (running requests sampled from GetServerInfo).

Runs on Debian's python3-grpcio (grpc.aio, streaming GenerateStream), python3-protobuf,
python3-numpy and python3-matplotlib (Agg backend); the stubs are generated from
proto/zigzag/v1/engine.proto at start-up, as in deploy/clients/python/zigzag_client.py.

  # 30 s at 8 concurrent streams (closed loop), 512..2048-token prompts, 64 new tokens, ZigZag 20%:
  python3 deploy/loadtest/loadtest.py run --target 127.0.0.1:50051 --concurrency 8 \
      --duration 30 --prompt-len uniform:512,2048 --output-len fixed:64 \
      --kv-policy zigzag --kv-ratio 0.2 --out-dir /tmp/lt
  # Poisson arrivals at 4 req/s, SLOs for goodput, 10% long-context prompts:
  python3 deploy/loadtest/loadtest.py run --target 127.0.0.1:50051 --request-rate 4 \
      --num-requests 200 --prompt-len normal:512,128,64,1024 --long-prompt-len fixed:3500 \
      --long-fraction 0.1 --slo-ttft-ms 500 --slo-tpot-ms 50 --out-dir /tmp/lt
  # full vs zigzag at the same KV memory; starts a local server per configuration:
  python3 deploy/loadtest/loadtest.py sweep --server-binary build/server/zigzag-server \
      --model models/zigzag-tiny --server-flags="--kv-memory-mb 16" --configs full,zigzag:0.2 \
      --concurrency 16 --duration 60 --out-dir /tmp/sweep

Only loopback targets are accepted (use `kubectl port-forward` for a pod). Every loop is bounded:
--num-requests and --duration stop new requests, every request carries a gRPC deadline
(--request-timeout), and requests still running --grace seconds after the end are cancelled.

Outputs in --out-dir: requests.csv (one row a request), summary.json, latency.png (TTFT, TPOT,
ITL, e2e distributions), timeline.png (throughput and server load over time); the sweep writes one
such folder per configuration plus report.md, sweep.json and sweep.png.

This file is the command line only (flags, `run`, `sweep`): workload.py builds the requests,
client.py sends and measures them, sweep.py drives the configurations, report.py computes the
statistics and writes the files, local_server.py starts and stops servers.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO_ROOT, "deploy", "clients", "python"))

from client import check_loopback, run_and_report  # noqa: E402
from sweep import cmd_sweep  # noqa: E402
from workload import POLICIES, Dist, policies_of  # noqa: E402

MAX_REQUESTS = 1_000_000
MAX_DURATION_S = 24 * 3600


# Arguments -------------------------------------------------------------------------------------

def bounded(kind, lo, hi):
    def parse(text):
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text} is outside [{lo}, {hi}]")
        return value
    return parse


def add_load_arguments(parser):
    g = parser.add_argument_group("load")
    g.add_argument("--concurrency", default="4",
                   help="closed loop: this many streams at once (sweep: a comma list of levels)")
    g.add_argument("--request-rate", type=bounded(float, 0.0, 10000.0), default=0.0,
                   help="open loop: Poisson arrivals at this many requests/s (overrides "
                        "--concurrency; --max-concurrency caps streams in flight)")
    g.add_argument("--max-concurrency", type=bounded(int, 1, 10000), default=1024)
    g.add_argument("--num-requests", type=bounded(int, 1, MAX_REQUESTS), default=1000,
                   help="stop after this many requests")
    g.add_argument("--duration", type=bounded(float, 0.1, MAX_DURATION_S), default=30.0,
                   help="stop sending after this many seconds")
    g.add_argument("--request-timeout", type=bounded(float, 0.1, 3600.0), default=120.0,
                   help="gRPC deadline of each request, seconds")
    g.add_argument("--grace", type=bounded(float, 0.0, 3600.0), default=None,
                   help="after the end, wait this long for running requests, then cancel them "
                        "(default: --request-timeout)")
    g.add_argument("--seed", type=int, default=1)
    g = parser.add_argument_group("requests")
    g.add_argument("--prompt-mode", choices=["ids", "text"], default="ids",
                   help="token ids (random, from the model's vocabulary) or text")
    g.add_argument("--text-file", default="",
                   help="text mode: take prompts from spans of this file (default: random words)")
    g.add_argument("--tokens-per-word", type=float, default=0.0,
                   help="text mode: tokens per word; 0 = measure with Tokenize (1.3 when that fails)")
    g.add_argument("--prompt-len", type=Dist, default=Dist("uniform:128,512"),
                   help="prompt tokens: fixed:N, uniform:LO,HI, normal:MEAN,STD[,MIN,MAX]")
    g.add_argument("--output-len", type=Dist, default=Dist("fixed:32"), help="max_tokens")
    g.add_argument("--long-prompt-len", type=Dist, default=None,
                   help="long-context prompts, used for --long-fraction of the requests")
    g.add_argument("--long-fraction", type=bounded(float, 0.0, 1.0), default=0.0)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                   help="stop at EOS (default: ignore it, so outputs have the asked length)")
    g.add_argument("--kv-policy", default="default",
                   help="per-request KV policy, or a comma list used in turn: "
                        + ", ".join(POLICIES) + " (default: the server's)")
    g.add_argument("--kv-ratio", type=float, default=None, help="budget as a fraction of the prompt")
    g.add_argument("--kv-budget", type=int, default=None, help="budget in tokens per layer")
    g.add_argument("--kv-window", type=int, default=None)
    g.add_argument("--kv-head-budgets", choices=("uniform", "adaptive"), default=None,
                   help="per-request head split of snapkv, pyramidkv and zigzag "
                        "(default: the server's)")
    g = parser.add_argument_group("SLOs (goodput counts OK requests within all that are set)")
    g.add_argument("--slo-ttft-ms", type=float, default=0.0)
    g.add_argument("--slo-tpot-ms", type=float, default=0.0)
    g.add_argument("--slo-e2e-ms", type=float, default=0.0)
    g = parser.add_argument_group("client")
    g.add_argument("--auth-token", default=os.environ.get("ZIGZAG_AUTH_TOKEN", ""))
    g.add_argument("--proto-root", default=None)
    g.add_argument("--sample-interval", type=bounded(float, 0.01, 60.0), default=0.25,
                   help="GetServerInfo sampling period, seconds")
    g.add_argument("--no-plots", dest="plots", action="store_false")
    g.add_argument("--quiet", action="store_true")


def cmd_run(args):
    target = check_loopback(args.target)
    metrics_url = args.metrics_url or None
    run_and_report(args, target, args.out_dir, metrics_url=metrics_url)
    return 0


# Main ------------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for examples.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one load test against a running server")
    run.add_argument("--target", default="127.0.0.1:50051", help="loopback HOST:PORT")
    run.add_argument("--metrics-url", default="",
                     help="http://127.0.0.1:PORT/metrics: add the server's counter deltas")
    run.add_argument("--out-dir", default="loadtest-out")
    add_load_arguments(run)
    sweep = sub.add_parser("sweep", help="compare KV policies at the same server KV memory")
    sweep.add_argument("--configs", default="full,zigzag:0.2",
                       help="comma list of POLICY[:RATIO[:HEADS]] (HEADS uniform or adaptive); "
                            "one server each")
    sweep.add_argument("--target", default="",
                       help="use this running server (loopback) instead of starting one")
    sweep.add_argument("--server-binary", default="")
    sweep.add_argument("--model", default="")
    sweep.add_argument("--server-flags", default="--kv-memory-mb 64",
                       help="flags for every server (quoted); --kv-policy/--kv-ratio (and "
                            "--kv-head-budgets) are added")
    sweep.add_argument("--max-wall", type=bounded(float, 1.0, MAX_DURATION_S), default=3600.0,
                       help="start no configuration after this many seconds")
    sweep.add_argument("--out-dir", default="loadtest-sweep")
    add_load_arguments(sweep)
    args = parser.parse_args(argv)
    policies_of(args)
    try:
        levels = [int(x) for x in str(args.concurrency).split(",") if x.strip()]
    except ValueError:
        parser.error(f"--concurrency must be an integer or a comma list, not {args.concurrency}")
    if not levels or not all(1 <= level <= 10000 for level in levels):
        parser.error("--concurrency levels must be in [1, 10000]")
    if args.command == "run" and len(levels) > 1:
        parser.error("run takes one --concurrency level (sweep takes a list)")
    if args.command == "run":
        return cmd_run(args)
    return cmd_sweep(args)


if __name__ == "__main__":
    sys.exit(main())
