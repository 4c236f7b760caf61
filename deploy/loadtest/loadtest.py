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
such folder per configuration plus report.md, sweep.json and sweep.png. (report.py computes the
statistics and writes the files; local_server.py starts and stops servers.)
"""

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO_ROOT, "deploy", "clients", "python"))

import grpc  # noqa: E402
from grpc import aio  # noqa: E402

import local_server  # noqa: E402
from report import (CSV_FIELDS, machine_info, plot_sweep, print_summary,  # noqa: E402
                    summarize, write_outputs, write_report)

MAX_REQUESTS = 1_000_000
MAX_DURATION_S = 24 * 3600
MAX_SAMPLES = 200_000
POLICIES = ("full", "streaming", "snapkv", "pyramidkv", "zigzag", "default")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# Words for text prompts (prompt-mode text) when no --text-file is given.
WORDS = (
    "the of and to in is was for on that with as by at from his an were are which this be or "
    "has had not but their its first after new two who one been they year other city time "
    "during some world all more would people when school state over into most where known "
    "between only later three several part while river since these under many team both "
    "government then being such used american history national may north there war family "
    "series four around century area south university found like game season including "
    "group number early following before second named well life through album music "
    "played village county until population company also against film work called local "
    "small large old place best high long great water light model memory cache layer token "
    "budget attention window request server signal value table house road north west east"
).split()


# Arguments -------------------------------------------------------------------------------------

class Dist:
    """A length distribution: fixed:N, uniform:LO,HI or normal:MEAN,STD[,MIN,MAX] (clipped)."""

    def __init__(self, text):
        self.text = text
        kind, _, params = text.partition(":")
        try:
            values = [float(v) for v in params.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad numbers in '{text}'")
        self.kind = kind
        if kind == "fixed" and len(values) == 1:
            self.lo = self.hi = values[0]
        elif kind == "uniform" and len(values) == 2:
            self.lo, self.hi = values
        elif kind == "normal" and len(values) in (2, 4):
            self.mean, self.std = values[0], values[1]
            self.lo, self.hi = (values[2], values[3]) if len(values) == 4 else (
                1, values[0] + 4 * values[1])
        else:
            raise argparse.ArgumentTypeError(
                f"'{text}': expected fixed:N, uniform:LO,HI or normal:MEAN,STD[,MIN,MAX]")
        if self.lo < 1 or self.hi < self.lo:
            raise argparse.ArgumentTypeError(f"'{text}': lengths must be >= 1 and LO <= HI")

    def sample(self, rng):
        if self.kind == "fixed":
            value = self.lo
        elif self.kind == "uniform":
            value = rng.uniform(self.lo, self.hi)
        else:
            value = min(max(rng.gauss(self.mean, self.std), self.lo), self.hi)
        return max(1, int(round(value)))

    def __repr__(self):
        return self.text


def check_loopback(target):
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit():
        raise SystemExit(f"loadtest: --target must be HOST:PORT, not '{target}'")
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"loadtest: only loopback targets are allowed ({target}); "
                         "forward a remote server with `kubectl port-forward`")
    return target


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


def policies_of(args):
    policies = [p.strip() for p in args.kv_policy.split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            raise SystemExit(f"loadtest: unknown --kv-policy '{p}' ({', '.join(POLICIES)})")
    if args.kv_ratio is not None and args.kv_budget is not None:
        raise SystemExit("loadtest: --kv-ratio and --kv-budget exclude each other")
    return policies or ["default"]


# Stubs -----------------------------------------------------------------------------------------

_STUBS = None


def load_stubs(proto_root=None):
    """Generates the Python stubs into a temporary folder, imports them and removes the folder."""
    global _STUBS
    if _STUBS is None:
        import importlib
        import zigzag_client
        proto_root = proto_root or os.environ.get("ZIGZAG_PROTO_ROOT",
                                                  zigzag_client.DEFAULT_PROTO_ROOT)
        out_dir = tempfile.mkdtemp(prefix="zigzag_loadtest_stubs_")
        try:
            zigzag_client._generate(proto_root, out_dir)
            sys.path.insert(0, out_dir)
            pb2 = importlib.import_module("zigzag.v1.engine_pb2")
            pb2_grpc = importlib.import_module("zigzag.v1.engine_pb2_grpc")
        finally:
            if out_dir in sys.path:
                sys.path.remove(out_dir)
            shutil.rmtree(out_dir, ignore_errors=True)
        _STUBS = (pb2, pb2_grpc)
    return _STUBS


# Prompts and requests --------------------------------------------------------------------------

class PromptFactory:
    def __init__(self, args, model_info, tokens_per_word):
        self.mode = args.prompt_mode
        self.vocab = int(model_info.vocab_size)
        special = set(model_info.eos_token_ids)
        if model_info.HasField("bos_token_id"):
            special.add(model_info.bos_token_id)
        # Ids above the special ones (small ids are often control tokens in real vocabularies).
        self.id_low = min(max(special) + 1, self.vocab - 1) if special and max(special) < 1000 \
            else 0
        self.special = special
        self.tokens_per_word = tokens_per_word
        self.corpus = None
        if args.text_file:
            with open(args.text_file, "r", errors="replace") as f:
                self.corpus = f.read().split()
            if not self.corpus:
                raise SystemExit(f"loadtest: {args.text_file} holds no words")

    def ids(self, rng, n):
        out = []
        while len(out) < n:
            t = rng.randrange(self.id_low, self.vocab)
            if t not in self.special:
                out.append(t)
        return out

    def text(self, rng, n_tokens):
        n_words = max(1, int(round(n_tokens / self.tokens_per_word)))
        if self.corpus:
            start = rng.randrange(0, max(1, len(self.corpus) - n_words))
            words = self.corpus[start:start + n_words]
            while len(words) < n_words:
                words += self.corpus[:n_words - len(words)]
        else:
            words = [rng.choice(WORDS) for _ in range(n_words)]
        return " ".join(words)


class RequestFactory:
    """Request i is the same for a given seed whatever the timing, so configurations compare."""

    def __init__(self, args, pb2, model_info, prompts, run_tag):
        self.args = args
        self.pb2 = pb2
        self.prompts = prompts
        self.policies = policies_of(args)
        self.max_context = int(model_info.max_context) or 1 << 30
        self.max_tokens_limit = int(model_info.max_tokens_limit) or 1 << 30
        self.run_tag = run_tag

    def make(self, index):
        args = self.args
        rng = random.Random(args.seed * 1_000_003 + index)
        long_prompt = args.long_prompt_len is not None and rng.random() < args.long_fraction
        prompt_len = (args.long_prompt_len if long_prompt else args.prompt_len).sample(rng)
        max_tokens = min(args.output_len.sample(rng), self.max_tokens_limit)
        max_tokens = min(max_tokens, self.max_context - 1)
        prompt_len = max(1, min(prompt_len, self.max_context - max_tokens))
        policy = self.policies[index % len(self.policies)]
        request = self.pb2.GenerateRequest(request_id=f"{self.run_tag}-{index}")
        if self.prompts.mode == "ids":
            request.token_ids.ids.extend(self.prompts.ids(rng, prompt_len))
        else:
            request.text = self.prompts.text(rng, prompt_len)
        s = request.sampling_params
        s.max_tokens = max_tokens
        s.temperature = args.temperature
        s.seed = index
        s.ignore_eos = args.ignore_eos
        kv = request.kv_compression
        if policy != "default":
            kv.policy = self.pb2.KvPolicy.Value("KV_POLICY_" + policy.upper())
        if policy != "full":
            if args.kv_ratio is not None:
                kv.ratio = args.kv_ratio
            if args.kv_budget is not None:
                kv.tokens_per_layer = args.kv_budget
            if args.kv_window is not None:
                kv.window = args.kv_window
        return {"index": index, "request": request, "policy": policy, "long": long_prompt,
                "target_prompt_tokens": prompt_len, "max_tokens": max_tokens}


# Running ---------------------------------------------------------------------------------------

async def run_one(stub, pb2, spec, args, metadata, t0, itl_sink):
    row = {k: "" for k in CSV_FIELDS}
    request = spec["request"]
    row.update(index=spec["index"], request_id=request.request_id, policy=spec["policy"],
               long_prompt=int(spec["long"]), target_prompt_tokens=spec["target_prompt_tokens"],
               max_tokens=spec["max_tokens"], streamed_tokens=0, chunks=0)
    start = time.perf_counter()
    row["start_s"] = start - t0
    first = last = end = None
    itls = []
    call = stub.GenerateStream(request, timeout=args.request_timeout, metadata=metadata)
    try:
        async for message in call:
            now = time.perf_counter()
            if message.HasField("chunk"):
                n = len(message.chunk.token_ids)
                if n == 0:
                    continue
                row["chunks"] += 1
                row["streamed_tokens"] += n
                if first is None:
                    first = now
                    itls.extend([0.0] * (n - 1))
                else:
                    itls.extend([(now - last) / n] * n)
                last = now
            else:
                done = message.complete
                end = now
                row.update(
                    status="OK", finish_reason=pb2.FinishReason.Name(done.finish_reason)
                    .replace("FINISH_REASON_", "").lower(),
                    prompt_tokens=done.usage.prompt_tokens,
                    output_tokens=done.usage.completion_tokens,
                    server_queue_s=done.timings.queue_seconds,
                    server_ttft_s=done.timings.ttft_seconds,
                    server_e2e_s=done.timings.e2e_seconds,
                    kv_policy_used=pb2.KvPolicy.Name(done.kv_stats.policy)
                    .replace("KV_POLICY_", "").lower(),
                    kv_compressed=int(done.kv_stats.compressed),
                    kv_full_bytes=done.kv_stats.full_kv_bytes,
                    kv_retained_bytes=done.kv_stats.retained_kv_bytes,
                    kv_saved_bytes=done.kv_stats.saved_kv_bytes,
                    kv_retained_ratio=done.kv_stats.retained_ratio,
                    kv_blocks_held=done.kv_stats.blocks_held,
                    preemptions=done.kv_stats.num_preemptions)
                if first is None:  # no chunk: the first token came with the final message
                    first = end
        end = time.perf_counter()
        if row["status"] != "OK":
            row.update(status="NO_COMPLETE", error="the stream ended without a complete message")
    except asyncio.CancelledError:
        call.cancel()
        end = time.perf_counter()
        row.update(status="CLIENT_CANCELLED", error="still running after --grace")
        raise
    except grpc.RpcError as error:
        end = time.perf_counter()
        code = error.code()
        row.update(status=code.name if code else "UNKNOWN", error=(error.details() or "")[:200])
    finally:
        row["end_s"] = (end if end is not None else time.perf_counter()) - t0
        row["e2e_s"] = row["end_s"] - row["start_s"]
        if first is not None:
            row["ttft_s"] = first - start
            out = row["output_tokens"] if row["output_tokens"] != "" else row["streamed_tokens"]
            if out and out > 1:
                row["tpot_s"] = (row["e2e_s"] - row["ttft_s"]) / (out - 1)
            row["max_itl_s"] = max(itls) if itls else 0.0
        if row["status"] == "OK":
            itl_sink.extend(itls)
        row["good"] = int(is_good(row, args))
        spec["row"] = row
    return row


def is_good(row, args):
    if row["status"] != "OK":
        return False
    if args.slo_ttft_ms and (row["ttft_s"] == "" or row["ttft_s"] * 1e3 > args.slo_ttft_ms):
        return False
    if args.slo_tpot_ms and row["tpot_s"] != "" and row["tpot_s"] * 1e3 > args.slo_tpot_ms:
        return False
    if args.slo_e2e_ms and row["e2e_s"] * 1e3 > args.slo_e2e_ms:
        return False
    return True


async def sample_load(stub, pb2, metadata, t0, interval, stop, samples):
    while not stop.is_set() and len(samples) < MAX_SAMPLES:
        try:
            info = await stub.GetServerInfo(pb2.GetServerInfoRequest(), timeout=2.0,
                                            metadata=metadata)
            samples.append({"t": time.perf_counter() - t0,
                            "running": info.num_requests_running,
                            "waiting": info.num_requests_waiting,
                            "kv_usage": info.kv_cache_usage_ratio,
                            "kv_blocks_used": info.kv_blocks_used})
        except grpc.RpcError:
            pass
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass


async def run_load(args, target, run_tag="lt"):
    pb2, pb2_grpc = load_stubs(args.proto_root)
    metadata = [("authorization", "Bearer " + args.auth_token)] if args.auth_token else None
    options = [("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]
    async with aio.insecure_channel(target, options=options) as channel:
        stub = pb2_grpc.EngineStub(channel)
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
            model_info = await stub.GetModelInfo(pb2.GetModelInfoRequest(), timeout=10,
                                                 metadata=metadata)
        except (asyncio.TimeoutError, grpc.RpcError) as error:
            raise SystemExit(f"loadtest: cannot reach {target}: {error}")
        tokens_per_word = args.tokens_per_word
        if args.prompt_mode == "text" and tokens_per_word <= 0:
            tokens_per_word = 1.3
            sample = " ".join(random.Random(0).choice(WORDS) for _ in range(200))
            try:
                reply = await stub.Tokenize(pb2.TokenizeRequest(text=sample), timeout=10,
                                            metadata=metadata)
                if reply.token_ids:
                    tokens_per_word = len(reply.token_ids) / 200.0
            except grpc.RpcError:
                pass
        prompts = PromptFactory(args, model_info, tokens_per_word)
        factory = RequestFactory(args, pb2, model_info, prompts, run_tag)
        grace = args.request_timeout if args.grace is None else args.grace
        itls, samples, specs = [], [], []
        next_index = 0
        t0 = time.perf_counter()
        deadline = t0 + args.duration
        stop = asyncio.Event()
        sampler = asyncio.create_task(
            sample_load(stub, pb2, metadata, t0, args.sample_interval, stop, samples))

        def take():
            nonlocal next_index
            if next_index >= args.num_requests or time.perf_counter() >= deadline:
                return None
            spec = factory.make(next_index)
            next_index += 1
            specs.append(spec)
            return spec

        tasks = []
        if args.request_rate > 0:
            gate = asyncio.Semaphore(args.max_concurrency)
            arrivals = random.Random(args.seed)

            async def guarded(spec):
                try:
                    await run_one(stub, pb2, spec, args, metadata, t0, itls)
                finally:
                    gate.release()

            next_arrival = t0
            while True:
                next_arrival += arrivals.expovariate(args.request_rate)
                delay = next_arrival - time.perf_counter()
                if next_arrival >= deadline:
                    break
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await asyncio.wait_for(gate.acquire(), timeout=max(0.0, deadline -
                                                                       time.perf_counter()))
                except asyncio.TimeoutError:
                    break
                spec = take()
                if spec is None:
                    gate.release()
                    break
                tasks.append(asyncio.create_task(guarded(spec)))
        else:
            concurrency = int(str(args.concurrency).split(",")[0])

            async def worker():
                while True:
                    spec = take()
                    if spec is None:
                        return
                    await run_one(stub, pb2, spec, args, metadata, t0, itls)

            tasks = [asyncio.create_task(worker()) for _ in range(max(1, concurrency))]
        # Wait for what runs, up to the end of sending plus the grace period.
        remaining = max(0.0, deadline - time.perf_counter()) + grace
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=remaining)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=10)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
        stop.set()
        await asyncio.wait([sampler], timeout=5)
    rows = []
    for spec in specs:
        if "row" in spec:
            rows.append(spec["row"])
        else:  # cancelled before run_one recorded anything
            rows.append(dict({k: "" for k in CSV_FIELDS}, index=spec["index"],
                             request_id=spec["request"].request_id, status="CLIENT_CANCELLED"))
    return rows, itls, samples, model_info


def run_and_report(args, target, out_dir, title="", run_tag="lt", metrics_url=None):
    before = local_server.scrape(metrics_url) if metrics_url else None
    rows, itls, samples, model_info = asyncio.run(run_load(args, target, run_tag))
    summary = summarize(args, rows, itls, samples, model_info, target)
    if metrics_url:
        after = local_server.parse_metrics(local_server.scrape(metrics_url))
        before = local_server.parse_metrics(before)
        summary["server_metrics_delta"] = {
            name: local_server.metric_sum(after, name) - local_server.metric_sum(before, name)
            for name in ("zigzag_request_success_total", "zigzag_prompt_tokens_total",
                         "zigzag_generation_tokens_total", "zigzag_kv_bytes_saved_total",
                         "zigzag_num_preemptions_total", "zigzag_request_failure_total")}
    write_outputs(out_dir, rows, summary, samples, itls, args.plots, title)
    if not args.quiet:
        print_summary(summary)
        print(f"wrote {out_dir}/requests.csv, summary.json"
              + (", latency.png, timeline.png" if args.plots else ""))
    return summary


def cmd_run(args):
    target = check_loopback(args.target)
    metrics_url = args.metrics_url or None
    run_and_report(args, target, args.out_dir, metrics_url=metrics_url)
    return 0


# Sweep -----------------------------------------------------------------------------------------

def parse_configs(text):
    configs = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        policy, _, ratio = item.partition(":")
        if policy not in POLICIES or policy == "default":
            raise SystemExit(f"loadtest: bad sweep config '{item}' (POLICY[:RATIO])")
        configs.append({"name": item.replace(":", "-"), "policy": policy,
                        "ratio": float(ratio) if ratio else None})
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
        server = None
        if not args.target:
            flags = server_flags + ["--kv-policy", config["policy"]]
            if run_args.kv_ratio is not None:
                flags += ["--kv-ratio", str(run_args.kv_ratio)]
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
                       help="comma list of POLICY[:RATIO]; one server each")
    sweep.add_argument("--target", default="",
                       help="use this running server (loopback) instead of starting one")
    sweep.add_argument("--server-binary", default="")
    sweep.add_argument("--model", default="")
    sweep.add_argument("--server-flags", default="--kv-memory-mb 64",
                       help="flags for every server (quoted); --kv-policy/--kv-ratio are added")
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
