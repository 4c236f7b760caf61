#!/usr/bin/env python3
"""Checks our engine against Hugging Face transformers on the same checkpoint folder.

1. Logits: reads what bench_dump_logits wrote (PREFIX.json + PREFIX.logits.f32: every prompt
   position's logits for one prompt), runs the same prompt ids through transformers in bf16 on
   CUDA, and compares. "Within bf16 tolerance" is judged two ways (either passes):
     direct    ||ours - hf_bf16|| / ||hf_bf16|| <= --direct-tol (default 2e-2, the issue's
               per-op bf16 tolerance);
     relative  against a float32 reference (the same weights upcast, transformers in fp32):
               err(ours) <= 2 x err(hf_bf16) + 1e-3, i.e. our bf16 error is of the same size as
               transformers' own bf16 error.
   Norms are Frobenius norms over all rows. Also reports argmax agreement per row and the greedy
   continuation of both (informative: random weights give near-ties that bf16 noise can flip).
2. Decode speed of `generate` (greedy, KV cache, default attention) at each --batches size with
   --context prompt tokens: decode tokens/s = batch x (N - 1) / (t(N new tokens) - t(1 new token)),
   so the prefill is subtracted out, as bench_e2e's decode figure excludes it.

Writes every figure to --json-out and prints a short summary. Dependencies: torch and
transformers (safetensors through transformers). Exit code 0 when the logits check passes,
1 when it fails, 2 for usage errors, 3 when torch/transformers/CUDA are missing.

  python3 bench/gpu/compare_transformers.py --model DIR --ours /tmp/ours --json-out cmp.json
"""
import argparse
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint folder (config.json + safetensors)")
    p.add_argument("--ours", help="prefix written by bench_dump_logits (PREFIX.json)")
    p.add_argument("--batches", default="1,8,32,64", help="generate batch sizes ('' = skip)")
    p.add_argument("--context", type=int, default=512, help="prompt tokens for generate")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per sequence")
    p.add_argument("--direct-tol", type=float, default=2e-2)
    p.add_argument("--no-fp32-reference", action="store_true",
                   help="skip the float32 reference (saves time and 2x the weights in memory)")
    p.add_argument("--json-out", help="write the figures here")
    p.add_argument("--device", default="cuda", help="torch device (cpu for a smoke run)")
    return p.parse_args()


def load_ours(prefix, torch):
    with open(prefix + ".json") as f:
        meta = json.load(f)
    path = meta.get("logits_file") or prefix + ".logits.f32"
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    rows, vocab = int(meta["rows"]), int(meta["vocab"])
    logits = torch.frombuffer(raw, dtype=torch.float32)
    if logits.numel() != rows * vocab:
        raise SystemExit(f"{path}: {logits.numel()} floats, expected rows {rows} x vocab {vocab}")
    return meta, logits.view(rows, vocab)


def rel_err(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def compare(name, a, b):
    per_row = ((a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-30)).tolist()
    return {
        "pair": name,
        "rel_l2": rel_err(a, b),
        "max_row_rel_l2": max(per_row),
        "max_abs": float((a - b).abs().max()),
        "argmax_agree": float((a.argmax(dim=1) == b.argmax(dim=1)).float().mean()),
    }


def load_model(transformers, path, dtype, device):
    kwargs = {"device_map": device}
    try:  # transformers >= 4.56 calls it dtype; older ones torch_dtype
        return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except TypeError:
        return transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kwargs)


def fmt_row(values, n=6):
    return "[" + ", ".join(f"{v:+.4f}" for v in values[:n]) + ", ...]"


def generate_speed(model, torch, device, vocab, batches, context, new_tokens):
    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for batch in batches:
        ids = torch.randint(0, vocab, (batch, context), generator=gen).to(device)
        mask = torch.ones_like(ids)

        def run(n):
            sync()
            start = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                                 use_cache=True)
            sync()
            assert out.shape == (batch, context + n), out.shape
            return time.perf_counter() - start

        run(2)  # warm-up
        t1 = min(run(1) for _ in range(2))
        tn = run(new_tokens)
        decode = max(tn - t1, 1e-9)
        row = {"batch": batch, "context": context, "new_tokens": new_tokens,
               "seconds_1_token": t1, "seconds_n_tokens": tn,
               "decode_step_ms": 1e3 * decode / (new_tokens - 1),
               "decode_tokens_per_s": batch * (new_tokens - 1) / decode}
        rows.append(row)
        print(f"  generate batch {batch:3d}: {row['decode_tokens_per_s']:9.1f} decode tokens/s "
              f"({row['decode_step_ms']:.2f} ms/step; prefill+1 token {t1:.3f} s)", flush=True)
        del ids, mask
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def main():
    args = parse_args()
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"compare_transformers: {e}; needs torch and transformers", file=sys.stderr)
        return 3
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("compare_transformers: torch sees no CUDA device", file=sys.stderr)
        return 3
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        print(f"compare_transformers: --batches must be a comma list of ints, got {args.batches!r}",
              file=sys.stderr)
        return 2
    if args.new_tokens < 2:
        print("compare_transformers: --new-tokens must be >= 2", file=sys.stderr)
        return 2

    result = {"model": args.model, "torch": torch.__version__,
              "transformers": transformers.__version__,
              "device": (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                         else args.device)}

    def save():
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(result, f, indent=2)

    start = time.perf_counter()
    model = load_model(transformers, args.model, torch.bfloat16, args.device)
    model.eval()
    result["load_seconds"] = time.perf_counter() - start
    vocab = model.config.vocab_size
    print(f"compare_transformers: loaded {args.model} in {result['load_seconds']:.1f} s "
          f"(transformers {transformers.__version__}, torch {torch.__version__})", flush=True)

    ok = True
    ours = hf_bf16 = None
    if args.ours:
        meta, ours = load_ours(args.ours, torch)
        ids = torch.tensor([meta["prompt_ids"]], dtype=torch.long, device=args.device)
        with torch.no_grad():
            hf_bf16 = model(input_ids=ids).logits[0].float().cpu()
        if hf_bf16.shape != ours.shape:
            print(f"compare_transformers: shapes differ: ours {tuple(ours.shape)}, "
                  f"transformers {tuple(hf_bf16.shape)}", file=sys.stderr)
            return 1
        direct = compare("ours_vs_hf_bf16", ours, hf_bf16)
        logits = {"ours_backend": meta.get("backend"), "ours_dtype": meta.get("dtype"),
                  "rows": ours.shape[0], "vocab": ours.shape[1], "direct": direct,
                  "direct_tol": args.direct_tol,
                  "first_row": {"ours": ours[0, :8].tolist(), "hf": hf_bf16[0, :8].tolist()},
                  "last_row": {"ours": ours[-1, :8].tolist(), "hf": hf_bf16[-1, :8].tolist()}}
        print(f"  first row  ours {fmt_row(ours[0].tolist())}\n"
              f"             hf   {fmt_row(hf_bf16[0].tolist())}")
        print(f"  last row   ours {fmt_row(ours[-1].tolist())}\n"
              f"             hf   {fmt_row(hf_bf16[-1].tolist())}")
        print(f"  ours vs transformers bf16: rel L2 {direct['rel_l2']:.3e} (max row "
              f"{direct['max_row_rel_l2']:.3e}), max |diff| {direct['max_abs']:.3e}, argmax agree "
              f"{100 * direct['argmax_agree']:.1f}%", flush=True)
        greedy = meta.get("greedy_tokens") or []
        if greedy:
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     do_sample=False, max_new_tokens=len(greedy),
                                     min_new_tokens=len(greedy), pad_token_id=0)
            hf_greedy = out[0, ids.shape[1]:].tolist()
            same = 0
            while same < len(greedy) and greedy[same] == hf_greedy[same]:
                same += 1
            logits["greedy"] = {"ours": greedy, "hf": hf_greedy, "same_prefix": same}
            print(f"  greedy continuation: first {same} of {len(greedy)} tokens identical")
        result["logits"] = logits
        save()

    if batches:
        print("compare_transformers: generate decode speed", flush=True)
        result["generate"] = generate_speed(model, torch, args.device, vocab, batches,
                                            args.context, args.new_tokens)
        save()

    if ours is not None:
        logits = result["logits"]
        if not args.no_fp32_reference:
            model = model.float()  # the same weights, upcast exactly
            with torch.no_grad():
                ref = model(input_ids=ids).logits[0].float().cpu()
            ours_err = compare("ours_vs_fp32", ours, ref)
            hf_err = compare("hf_bf16_vs_fp32", hf_bf16, ref)
            logits["fp32_reference"] = {"ours": ours_err, "hf_bf16": hf_err}
            relative_ok = ours_err["rel_l2"] <= 2 * hf_err["rel_l2"] + 1e-3
            logits["relative_pass"] = relative_ok
            print(f"  vs float32 reference: ours rel L2 {ours_err['rel_l2']:.3e}, transformers "
                  f"bf16 {hf_err['rel_l2']:.3e} -> {'PASS' if relative_ok else 'FAIL'} "
                  f"(ours <= 2 x transformers + 1e-3)")
        else:
            relative_ok = False
        direct_ok = logits["direct"]["rel_l2"] <= args.direct_tol
        logits["direct_pass"] = direct_ok
        ok = direct_ok or relative_ok
        logits["pass"] = ok
        logits["criterion"] = (f"direct rel L2 <= {args.direct_tol:g}, or ours' error vs the fp32 "
                               "reference <= 2 x transformers' bf16 error + 1e-3")
        print(f"compare_transformers: logits {'PASS' if ok else 'FAIL'} "
              f"(direct {'pass' if direct_ok else 'fail'}, relative "
              f"{'pass' if relative_ok else 'fail/not run'})")
        save()
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
