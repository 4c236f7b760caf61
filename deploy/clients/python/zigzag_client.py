#!/usr/bin/env python3
"""A Python client of zigzag-server (zigzag.v1.Engine over gRPC).

Needs Debian's python3-grpcio and python3-protobuf, plus protoc and grpc_python_plugin
(protobuf-compiler, protobuf-compiler-grpc); scripts/setup.sh installs them. The stubs are
generated at start-up from proto/zigzag/v1/engine.proto into a temporary folder, so nothing
generated is checked in. (pip's grpcio-tools works too, when installed.)

  python3 zigzag_client.py generate --target localhost:50051 --prompt-ids 1,2,3 --max-tokens 8
  python3 zigzag_client.py stream --target localhost:50051 --prompt-ids 1,2,3 \
      --kv-policy zigzag --kv-ratio 0.5
  python3 zigzag_client.py info --target localhost:50051

Usable as a module too: `stubs = load_stubs(); channel = grpc.insecure_channel(...)`.
"""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

import grpc

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DEFAULT_PROTO_ROOT = os.path.join(REPO_ROOT, "proto")
PROTO_FILE = "zigzag/v1/engine.proto"


def _generate(proto_root, out_dir):
    """Runs protoc with the Python and gRPC Python generators into out_dir."""
    proto = os.path.join(proto_root, PROTO_FILE)
    if not os.path.exists(proto):
        sys.exit(f"zigzag_client: {proto} not found (set --proto-root or ZIGZAG_PROTO_ROOT)")
    try:
        from grpc_tools import protoc  # pip's grpcio-tools, when present

        rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out_dir}",
                          f"--grpc_python_out={out_dir}", proto])
        if rc == 0:
            return
    except ImportError:
        pass
    protoc_bin = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if not protoc_bin or not plugin:
        sys.exit("zigzag_client: needs protoc and grpc_python_plugin "
                 "(apt-get install protobuf-compiler protobuf-compiler-grpc)")
    subprocess.run([protoc_bin, f"-I{proto_root}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}",
                    f"--plugin=protoc-gen-grpc_python={plugin}", proto], check=True)


def load_stubs(proto_root=None):
    """Generates and imports the stubs; returns (engine_pb2, engine_pb2_grpc)."""
    proto_root = proto_root or os.environ.get("ZIGZAG_PROTO_ROOT", DEFAULT_PROTO_ROOT)
    out_dir = tempfile.mkdtemp(prefix="zigzag_stubs_")
    _generate(proto_root, out_dir)
    sys.path.insert(0, out_dir)
    pb2 = importlib.import_module("zigzag.v1.engine_pb2")
    pb2_grpc = importlib.import_module("zigzag.v1.engine_pb2_grpc")
    return pb2, pb2_grpc


def _ids(text):
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def build_request(pb2, args):
    request = pb2.GenerateRequest(request_id=args.request_id or "")
    if args.prompt is not None:
        request.text = args.prompt
    elif args.prompt_file:
        with open(args.prompt_file, encoding="utf-8") as f:
            request.text = f.read()
    else:
        request.token_ids.ids.extend(_ids(args.prompt_ids))
    s = request.sampling_params
    for field in ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                  "seed"):
        value = getattr(args, field)
        if value is not None:
            setattr(s, field, value)
    s.stop_token_ids.extend(_ids(args.stop_token_ids))
    s.stop.extend(args.stop or [])
    s.ignore_eos = args.ignore_eos
    s.logprobs = args.logprobs
    kv = request.kv_compression
    if args.kv_policy:
        kv.policy = pb2.KvPolicy.Value("KV_POLICY_" + args.kv_policy.upper())
    if args.kv_budget is not None:
        kv.tokens_per_layer = args.kv_budget
    if args.kv_ratio is not None:
        kv.ratio = args.kv_ratio
    for field in ("window", "kernel", "tau", "rho", "alpha"):
        value = getattr(args, "kv_" + field)
        if value is not None:
            setattr(kv, field, value)
    if args.kv_head_budgets:
        kv.head_budgets = pb2.HeadBudgets.Value("HEAD_BUDGETS_" + args.kv_head_budgets.upper())
    return request


def print_response(pb2, response):
    print("request_id:", response.request_id)
    print("tokens:", ",".join(str(t) for t in response.token_ids))
    print("text:", repr(response.text))
    if response.logprobs:
        print("logprobs:", ",".join(f"{p:.4f}" for p in response.logprobs))
    print("finish_reason:", pb2.FinishReason.Name(response.finish_reason))
    print(f"prompt_tokens: {response.usage.prompt_tokens} "
          f"completion_tokens: {response.usage.completion_tokens}")
    t = response.timings
    print(f"queue: {t.queue_seconds:.4f}s prefill: {t.prefill_seconds:.4f}s "
          f"decode: {t.decode_seconds:.4f}s ttft: {t.ttft_seconds:.4f}s e2e: {t.e2e_seconds:.4f}s")
    kv = response.kv_stats
    budget = kv.WhichOneof("budget")
    budget_text = f"{budget}={getattr(kv, budget):g}" if budget else "-"
    print(f"kv_policy: {pb2.KvPolicy.Name(kv.policy)} budget: {budget_text} "
          f"compressed: {kv.compressed} average_budget: {kv.average_budget} window: {kv.window}")
    print("kv_kept_prompt_tokens_per_layer:", ",".join(str(n) for n in kv.prompt_kept_per_layer))
    print("kv_head_budgets:", "adaptive" if kv.head_budgets == pb2.HEAD_BUDGETS_ADAPTIVE else "uniform",
          "alpha:", round(kv.alpha, 6))
    print("kv_kept_prompt_tokens_per_head:", ",".join(str(n) for n in kv.prompt_kept_per_head))
    print(f"kv_full_bytes: {kv.full_kv_bytes} kv_retained_bytes: {kv.retained_kv_bytes} "
          f"kv_saved_bytes: {kv.saved_kv_bytes} kv_retained_ratio: {kv.retained_ratio:.4f} "
          f"kv_blocks_held: {kv.blocks_held} preemptions: {kv.num_preemptions}")


def make_channel(args):
    if not args.tls:
        return grpc.insecure_channel(args.target)
    root = open(args.tls_ca, "rb").read() if args.tls_ca else None
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] \
        if args.tls_server_name else []
    return grpc.secure_channel(args.target, grpc.ssl_channel_credentials(root), options=options)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["generate", "stream", "info", "abort"])
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--auth-token", default=os.environ.get("ZIGZAG_AUTH_TOKEN", ""),
                        help="bearer token (shows in the process list: prefer --auth-token-file)")
    parser.add_argument("--auth-token-file", default="",
                        help="file holding the bearer token (one trailing newline is removed)")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--tls-ca", default="")
    parser.add_argument("--tls-server-name", default="")
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    parser.add_argument("--proto-root", default=None)
    parser.add_argument("--request-id", default="")
    parser.add_argument("--prompt", default=None, help="prompt text")
    parser.add_argument("--prompt-file", default="", help="read the prompt text from a file")
    parser.add_argument("--prompt-ids", default="")
    parser.add_argument("--stop", action="append", help="a stop string (repeatable)")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--top-p", type=float)
    parser.add_argument("--min-p", type=float)
    parser.add_argument("--repetition-penalty", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stop-token-ids", default="")
    parser.add_argument("--ignore-eos", action="store_true")
    parser.add_argument("--logprobs", action="store_true")
    parser.add_argument("--kv-policy", choices=["full", "streaming", "snapkv", "pyramidkv",
                                                "zigzag"])
    parser.add_argument("--kv-budget", type=int)
    parser.add_argument("--kv-ratio", type=float)
    parser.add_argument("--kv-window", type=int)
    parser.add_argument("--kv-kernel", type=int)
    parser.add_argument("--kv-tau", type=float)
    parser.add_argument("--kv-rho", type=float)
    parser.add_argument("--kv-head-budgets", choices=["uniform", "adaptive"])
    parser.add_argument("--kv-alpha", type=float)
    args = parser.parse_args(argv)
    if args.auth_token_file:
        with open(args.auth_token_file, encoding="ascii") as f:
            token = f.read()
        token = token[:-1] if token.endswith("\n") else token
        token = token[:-1] if token.endswith("\r") else token
        if not token:
            parser.error(f"--auth-token-file: {args.auth_token_file} is empty")
        args.auth_token = token

    pb2, pb2_grpc = load_stubs(args.proto_root)
    stub = pb2_grpc.EngineStub(make_channel(args))
    metadata = [("authorization", "Bearer " + args.auth_token)] if args.auth_token else []
    call = {"metadata": metadata, "timeout": args.timeout}
    try:
        if args.command == "generate":
            print_response(pb2, stub.Generate(build_request(pb2, args), **call))
        elif args.command == "stream":
            for message in stub.GenerateStream(build_request(pb2, args), **call):
                if message.HasField("chunk"):
                    print("chunk:", ",".join(str(t) for t in message.chunk.token_ids),
                          "text:", repr(message.chunk.text), flush=True)
                else:
                    print_response(pb2, message.complete)
        elif args.command == "info":
            print(stub.GetModelInfo(pb2.GetModelInfoRequest(), **call))
            print(stub.GetServerInfo(pb2.GetServerInfoRequest(), **call))
        else:
            print("found:", stub.Abort(pb2.AbortRequest(request_id=args.request_id), **call).found)
    except grpc.RpcError as error:
        print(f"zigzag_client: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
