"""Client of loadtest.py: the loopback check, the generated gRPC stubs, the asyncio GenerateStream
runner (closed loop or Poisson arrivals, deadlines, grace, cancellation), per-request measurement
and server-load sampling. It builds no prompts (workload.py) and computes no statistics (report.py).
"""

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CLIENTS_DIR = os.path.join(REPO_ROOT, "deploy", "clients", "python")
if CLIENTS_DIR not in sys.path:  # zigzag_client, for the stubs
    sys.path.insert(0, CLIENTS_DIR)

import grpc  # noqa: E402
from grpc import aio  # noqa: E402

import local_server  # noqa: E402
from report import CSV_FIELDS, print_summary, summarize, write_outputs  # noqa: E402
from workload import WORDS, PromptFactory, RequestFactory, poisson_arrivals  # noqa: E402

MAX_SAMPLES = 200_000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_loopback(target):
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit():
        raise SystemExit(f"loadtest: --target must be HOST:PORT, not '{target}'")
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise SystemExit(f"loadtest: only loopback targets are allowed ({target}); "
                         "forward a remote server with `kubectl port-forward`")
    return target


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
                    kv_head_budgets_used=pb2.HeadBudgets.Name(done.kv_stats.head_budgets)
                    .replace("HEAD_BUDGETS_", "").lower(),
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
            arrivals = poisson_arrivals(args.seed, args.request_rate, t0)

            async def guarded(spec):
                try:
                    await run_one(stub, pb2, spec, args, metadata, t0, itls)
                finally:
                    gate.release()

            while True:
                next_arrival = next(arrivals)
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
