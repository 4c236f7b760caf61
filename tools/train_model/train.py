#!/usr/bin/python3
"""Train zigzag-serve's embedded default model: a tiny Llama that retrieves a 5-digit passkey from a long
haystack (needle-in-a-haystack). CPU, Debian python3-torch 1.13, 2 threads.

Curriculum: stages of growing total length (prompt + answer). Each stage is "LEN:BATCH:STEPS:LR[:FAR]"; a
step samples one length (75%: in [LEN/2, LEN], 25%: in [128, LEN/2]) and a batch of examples at that length;
with probability FAR (default 0) a step is instead a "far needle" step: length in [3/4 LEN, LEN], depth in
[0, 0.3].
After every stage: checkpoint to --work and export the Hugging Face folder to --out.

  /usr/bin/python3 tools/train_model/train.py --work /work/train-work/run2   # the shipped model (defaults)
  /usr/bin/python3 tools/train_model/train.py --resume        # continue from --work/ckpt.pt
  /usr/bin/python3 tools/train_model/train.py --resume --stages "<old stages>,4096:1:200:5e-4"  # train more
  /usr/bin/python3 tools/train_model/train.py --preset eval --init-from models/zigzag-eval \
      --tokenizer models/zigzag-eval/tokenizer.model --stages ... --work ...   # continue a committed model
  /usr/bin/python3 tools/train_model/train.py --preset eval --work /work/train-work/eval   # zigzag-eval
  python3 tools/train_model/train.py --preset eval-gpu --work /tmp/eval-gpu              # one GPU call

Presets (--preset) set the model shape, the stages, the task mixture, --out and the device; any of
those flags given explicitly wins. `tiny` (the default) is the shipped zigzag-tiny recipe: with it and
no --tasks, every random draw is the one the shipped model was trained with.
"""
import argparse
import json
import math
import os
import random
import sys
import time

# Under CPU contention (others compile on the same 2 cores) spinning OpenMP workers slow us down a lot.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import spm_lite  # noqa: E402
import tasks as tk  # noqa: E402
from stages import parse_stages  # noqa: E402
import tinyllama as tl  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEFAULT_STAGES = ("64:32:500:2e-3,128:16:250:2e-3,256:16:200:2e-3,512:8:200:1.5e-3,1024:4:200:1.5e-3,"
                  "2048:2:200:1e-3,4096:1:300:7e-4,4096:1:250:5e-4:0.4")
ALL_TASKS = "passkey:1,multikey:1,multivalue:1,vartrack:1,multiquery:1"
# zigzag-eval on 2 CPU cores (README: "The evaluation model"): retrieval forms on passkey and the copy
# task at 64-128 tokens and the task lookups start in haystack stages to 512 (a quarter of their steps
# needles-only drills, --drill-frac); drill stages then teach each task's lookups (drills right after
# 128 tokens cost a fresh model its passkey retrieval and taught nothing); haystack stages grow to 4K,
# and haystack drills (drill@N) ask many questions per long sequence.
EVAL_STAGES = ("64:32:300:2e-3,128:16:400:2e-3,256:16:800:1.5e-3,512:8:400:1e-3,drill=multikey+multiquery:16:250:1e-3,"
               "drill=vartrack1+vartrack:16:300:1e-3,drill:16:300:1e-3,256:16:300:1e-3,1024:4:300:8e-4,"
               "drill@1024:4:200:7e-4,2048:2:250:6e-4,drill@2048:2:250:6e-4,"
               "4096:1:300:5e-4:0.3,drill@4096:1:300:5e-4,4096:1:200:3e-4:0.3")
EVAL_TASKS = "passkey:0.5,multikey:1,multivalue:1.5,vartrack:1.5,multiquery:1"
# EVAL_STAGES's order in one GPU call, 8x the examples per step and fewer steps: the drill after 512
# tokens of haystack (on the CPU a drill right after 128 cost the fresh model its passkey retrieval),
# a haystack drill at 2K, far needles at 4K.
EVAL_GPU_STAGES = ("64:256:200:2e-3,128:128:200:2e-3,256:128:300:1.5e-3,512:64:200:1e-3,drill:128:300:1e-3,"
                   "1024:32:200:8e-4,drill@2048:16:150:6e-4,2048:16:200:6e-4,4096:8:300:5e-4:0.3,"
                   "4096:8:200:3e-4:0.3")
# RoPE base of the eval presets: with 10000, 300 more steps at 4096 tokens left the sixth CPU run's
# 4K accuracy where it was; the same run moved to 100000 and fine-tuned 650 steps (1-4K) went from
# 13/12/7/3/5 to 20/20/18/14/18 of 20 per task at 4096 (README, "Seventh CPU run").
EVAL_ROPE_THETA = 100000.0
PRESETS = {
    "tiny": dict(rope_theta=10000.0, layers=4, hidden=128, ffn=256, heads=4, kv_heads=2, head_dim=32, stages=DEFAULT_STAGES,
                 tasks="", follow_ups=0, drill_frac=0.0, aux_max_len=256, export_dtype="f32", out=os.path.join(REPO, "models", "zigzag-tiny"), device="cpu"),
    "eval": dict(rope_theta=EVAL_ROPE_THETA, layers=8, hidden=128, ffn=256, heads=4, kv_heads=4, head_dim=32, stages=EVAL_STAGES,
                 tasks=EVAL_TASKS, follow_ups=3, drill_frac=0.25, aux_max_len=128, export_dtype="bf16", out=os.path.join(REPO, "models", "zigzag-eval"), device="cpu"),
    "eval-gpu": dict(rope_theta=EVAL_ROPE_THETA, layers=12, hidden=256, ffn=768, heads=8, kv_heads=4, head_dim=32, stages=EVAL_GPU_STAGES,
                     tasks=ALL_TASKS, follow_ups=3, drill_frac=0.25, aux_max_len=256, export_dtype="bf16", out=os.path.join(REPO, "models", "zigzag-eval"), device="cuda"),
}


def lr_at(stage, step, warmup):
    base = stage["lr"]
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, stage["steps"] - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def sample_len(rng, L):
    if L <= 256:
        return rng.randint(max(36, L // 2), L)
    if rng.random() < 0.25:
        return rng.randint(128, L // 2)
    return rng.randint(L // 2, L)


def sample_depth(rng):
    r = rng.random()
    if r < 0.1:
        return 0.0
    if r < 0.2:
        return 1.0
    return rng.random()


@torch.no_grad()
def quick_eval(model, maker, L, trials, seed, task=None, device="cpu"):
    """Share of `trials` prompts (depths spread over [0, 1]) whose answer is the teacher-forced argmax.
    task None: the passkey prompts of the shipped recipe (same draws as before tasks existed)."""
    model.eval()
    rng = random.Random(seed)
    ok = 0
    for t in range(trials):
        depth = t / max(1, trials - 1)
        if task is None:
            ids, n, pk, _ = maker.make(rng, L, depth)
            ex = (ids, n, len(ids), "key")
        else:
            e = tk.generate(task, maker, rng, L, depth)
            ex = (e.ids, e.n_prompt, len(e.ids), "key", len(e.ids) - e.n_prompt - 1)
        _, _, _, c = batch_loss_padded(model, [ex], rng, lm_positions=1, device=device)
        ok += sum(c)
    model.train()
    return ok / trials


# Room kept per follow-up question and its answer: a multiquery pair takes about 45 tokens, so three fit
# in 150; vartrack's one follow-up (the decoy chain, answered hop by hop) takes up to about 95, so it fits
# from two on (L >= 200) and is dropped below.
FOLLOW_UP_TOKENS = 50


def make_task_example(rng, mixture, maker, L, depth, follow_ups=0):
    """One example of a task drawn from the mixture; a task whose needles do not fit in L tokens
    (under ~100) falls back to passkey. Returns (ids, n_prompt, score_len, extra, task): the answer's tokens
    (all but EOS) are what a correct example reproduces; extra lists the (start, end) id spans of the
    follow-up answers (tasks.follow_up_questions: up to `follow_ups`, at most one per 100 tokens of L,
    appended after the answer while the text fits in L), which are trained but not scored."""
    task = rng.choices([t for t, _ in mixture], weights=[w for _, w in mixture])[0]
    k = min(follow_ups, L // 100)
    try:
        e = tk.generate(task, maker, rng, L - FOLLOW_UP_TOKENS * k, depth)
    except ValueError:
        e = tk.generate("passkey", maker, rng, L, depth)
        k = 0  # (e.task says which task the example became)
    ids, extra = tk.append_follow_ups(task, e, maker, rng, k, L) if k else (e.ids, [])
    return ids, e.n_prompt, len(e.ids) - e.n_prompt - 1, extra, e.task


def save_ckpt(path, model, opt, state):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state,
                "config": model.config.to_hf()}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/work/train-work")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                    help="model shape, stages, tasks, --out and device (explicit flags win)")
    ap.add_argument("--out", default=None, help="HF folder to export to (preset: models/zigzag-<name>)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--stages", default=None, help="LEN:BATCH:STEPS:LR[:FAR],... (preset)")
    ap.add_argument("--tasks", default=None,
                    help="task mixture 'name:weight,...' of " + ",".join(tk.TASKS) +
                         " for the non-copy examples; empty: passkey only, as the shipped model (preset)")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--ffn", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--heads", type=int, default=None, help="query heads")
    ap.add_argument("--kv-heads", type=int, default=None, help="KV heads (GQA: divides --heads)")
    ap.add_argument("--head-dim", type=int, default=None)
    ap.add_argument("--rope-theta", type=float, default=None,
                    help="RoPE base (preset: tiny 10000, eval and eval-gpu 100000); with --init-from it may differ from the folder's: the "
                         "weights are then fine-tuned to the new positions (as Code Llama's longer context was)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None)
    ap.add_argument("--tokenizer", default="",
                    help="reuse this tokenizer.model instead of training one into --work")
    ap.add_argument("--corpus-root", default="",
                    help="folder with a copy of usr/share/common-licenses and usr/share/doc/git/RelNotes")
    ap.add_argument("--prepare-only", action="store_true",
                    help="train the tokenizer into --work, print the corpus sizes and stop")
    ap.add_argument("--follow-ups", type=int, default=None,
                    help="task examples: up to this many more questions (and answers) about the same "
                         "needles after the answer, trained like the first (preset)")
    ap.add_argument("--lm-weight", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100, help="warm-up steps of the first stage (later: 20)")
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--init-from", default="",
                    help="HF folder whose weights start a new run (its shape must be the flags'; pass its "
                         "tokenizer.model as --tokenizer); the optimizer starts fresh. --resume of an existing "
                         "--work/ckpt.pt wins")
    ap.add_argument("--aux-frac", type=float, default=0.5, help="share of each batch that is the copy task")
    ap.add_argument("--aux-max-len", type=int, default=None,
                    help="copy task only in stages up to this length (preset: tiny and eval-gpu 256, eval 128)")
    ap.add_argument("--early-acc", type=float, default=0.97,
                    help="short stages end early once a 10-step window reaches this training accuracy")
    ap.add_argument("--early-max-len", type=int, default=512)
    ap.add_argument("--start-stage", type=int, default=-1,
                    help="with --resume: keep weights and optimizer, restart the schedule at this stage, step 0")
    ap.add_argument("--drill-frac", type=float, default=None,
                    help="share of the steps of haystack stages of 256+ tokens that are needles-only drill steps (preset)")
    ap.add_argument("--drill-batch", type=int, default=16, help="batch of a drill step in a haystack stage")
    ap.add_argument("--export-dtype", choices=["f32", "bf16"], default=None,
                    help="weights of the exported HF folder (preset: tiny f32, eval bf16)")
    ap.add_argument("--export-only", action="store_true",
                    help="export --work/ckpt.pt's weights to --out (with --export-dtype) and stop")
    ap.add_argument("--stop-at", default="",
                    help="STAGE:STEP: checkpoint and stop there (reproduces a run that was stopped by hand)")
    args = ap.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    mixture = tk.parse_mixture(args.tasks) if args.tasks else None
    drills = [(t, w) for t, w in (mixture or []) if t in tk.DRILL_TASKS]
    if not 0 <= args.follow_ups <= 8:
        raise SystemExit(f"--follow-ups {args.follow_ups} must be in [0, 8]")
    if not 100.0 <= args.rope_theta <= 1e8:
        raise SystemExit(f"--rope-theta {args.rope_theta} must be in [100, 1e8]")
    if args.heads % args.kv_heads != 0:
        raise SystemExit(f"--kv-heads {args.kv_heads} must divide --heads {args.heads}")
    # --prepare-only (tokenizer and corpus, on the CPU machine) needs no device.
    if args.device == "cuda" and not args.prepare_only and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    dev = torch.device(args.device)
    if args.device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls (fp32 storage and accumulation)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)
    stages = parse_stages(args.stages)
    if not drills and (args.drill_frac > 0 or any(st["drill"] for st in stages)):
        raise SystemExit(f"drill stages and --drill-frac need one of {', '.join(tk.DRILL_TASKS)} in --tasks")
    for st in stages:
        missing = [t for t in st["only"] if tk.drill_base(t) not in dict(drills)]
        if missing:
            raise SystemExit(f"--stages: drill task(s) {', '.join(missing)} are not in --tasks")
    stop_at = None
    if args.stop_at:
        try:
            stop_at = tuple(int(x) for x in args.stop_at.split(":"))
        except ValueError:
            stop_at = ()
        if len(stop_at) != 2 or min(stop_at) < 0:
            raise SystemExit(f"--stop-at '{args.stop_at}' is not STAGE:STEP (two numbers >= 0)")
    if not 0 <= args.drill_frac <= 1:
        raise SystemExit(f"--drill-frac {args.drill_frac} must be in [0, 1]")
    if not 1 <= args.drill_batch <= 4096:
        raise SystemExit(f"--drill-batch {args.drill_batch} must be in [1, 4096]")
    if args.init_from:  # before the corpus and tokenizer work; the weights are checked when loaded
        missing = [n for n in ("config.json", "model.safetensors") if not os.path.isfile(os.path.join(args.init_from, n))]
        if missing:
            raise SystemExit(f"--init-from {args.init_from}: no {' or '.join(missing)} there (an HF model folder)")

    tok_prefix = os.path.join(args.work, "tokenizer")
    train_files, held_files = nd.corpus_files(args.corpus_root)
    if not train_files or not held_files:
        raise SystemExit(f"no haystack corpus under '{args.corpus_root or '/'}' ({nd.LICENSE_DIR}, {nd.RELNOTES_DIR})")
    if args.tokenizer:
        if not os.path.exists(tok_prefix + ".model"):
            with open(args.tokenizer, "rb") as src, open(tok_prefix + ".model", "wb") as dst:
                dst.write(src.read())
    elif not os.path.exists(tok_prefix + ".model"):
        # the task templates' words go into the tokenizer's text only when tasks are trained
        nd.train_tokenizer(train_files, tok_prefix, args.vocab,
                           extra_lines=tk.tokenizer_lines() if mixture else None)
    sp = spm_lite.load_processor(tok_prefix + ".model")  # sentencepiece, or our copy of its BPE
    maker = nd.ExampleMaker(sp, nd.load_words(train_files))
    held = nd.ExampleMaker(sp, nd.load_words(held_files))
    print(f"corpus: {len(train_files)} train files, {maker.cum[-1]} tokens; {len(held_files)} held-out files, "
          f"{held.cum[-1]} tokens; vocab {sp.get_piece_size()}", flush=True)
    if args.prepare_only:
        print(f"tokenizer: {tok_prefix}.model", flush=True)
        return

    cfg = tl.Config(vocab_size=sp.get_piece_size(), hidden_size=args.hidden, intermediate_size=args.ffn,
                    num_hidden_layers=args.layers, num_attention_heads=args.heads,
                    num_key_value_heads=args.kv_heads, head_dim=args.head_dim, max_position_embeddings=4096,
                    rope_theta=args.rope_theta)
    model = tl.TinyLlama(cfg).to(dev)  # initialised on the CPU generator: the same weights on any device
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=stages[0]["lr"], betas=(0.9, 0.95))
    print(f"params: {sum(p.numel() for p in model.parameters())}", flush=True)

    ckpt_path = os.path.join(args.work, "ckpt.pt")
    state = {"stage": 0, "step": 0, "elapsed": 0.0, "history": []}
    if args.resume and os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location=dev)
        if "config" in ck and ck["config"] != cfg.to_hf():
            raise SystemExit(f"--resume: {ckpt_path} holds a model of another shape ({ck['config']}) than "
                             f"the flags ask for ({cfg.to_hf()})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
        if args.start_stage >= 0:
            state["stage"], state["step"] = args.start_stage, 0
        print(f"resumed at stage {state['stage']} step {state['step']} ({state['elapsed']:.0f}s trained)", flush=True)
    elif args.init_from:
        # bf16 folders load as float32 (read_safetensors widens); AdamW's moments start at zero.
        try:
            with open(os.path.join(args.init_from, "config.json")) as f:
                init_cfg = tl.Config.from_hf(json.load(f)).to_hf()
            if init_cfg["rope_theta"] != cfg.rope_theta:  # same weights, new positions: fine-tuning adapts
                print(f"--init-from: rope_theta {init_cfg['rope_theta']:g} -> {cfg.rope_theta:g}", flush=True)
                init_cfg["rope_theta"] = cfg.rope_theta
            if init_cfg != cfg.to_hf():
                raise SystemExit(f"--init-from: {args.init_from} holds a model of another shape ({init_cfg}) "
                                 f"than the flags ask for ({cfg.to_hf()})")
            model.load_hf_state({k: v.to(dev) for k, v in
                                 tl.read_safetensors(os.path.join(args.init_from, "model.safetensors")).items()})
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # unreadable, malformed, missing tensors
            raise SystemExit(f"--init-from: cannot load {args.init_from}: {e}")
        print(f"initialised from {args.init_from}", flush=True)

    if args.export_only:
        if not os.path.exists(ckpt_path):
            raise SystemExit(f"--export-only: no checkpoint {ckpt_path}")
        ck = torch.load(ckpt_path, map_location=dev)
        if ck.get("config", cfg.to_hf()) != cfg.to_hf():
            raise SystemExit(f"--export-only: {ckpt_path} holds a model of another shape ({ck['config']})")
        model.load_state_dict(ck["model"])
        tl.export_hf(model, args.out, tok_prefix + ".model", args.export_dtype.upper())
        print(f"exported {args.out} ({args.export_dtype}) from {ckpt_path}", flush=True)
        return

    model.train()
    while state["stage"] < len(stages):
        si = state["stage"]
        st = stages[si]
        warm = args.warmup if si == 0 else 20
        t_stage = time.time()
        win = {"lm": 0.0, "ans": 0.0, "acc": 0, "n": 0, "t": time.time(), "tok": 0}
        per_task = {}  # task -> [exact, examples] since the last per-task line
        # this stage's drill tasks, in the mixture's order, then drill-only variants (their task's weight)
        if stop_at == (si, state["step"]):  # (STAGE:0 stops where the previous stage ended)
            save_ckpt(ckpt_path, model, opt, state)
            print(f"stopped at stage {si} step {state['step']} (--stop-at)", flush=True)
            return
        pool = [(t, w) for t, w in drills if not st["only"] or t in st["only"]] + \
            [(t, dict(drills)[tk.drill_base(t)]) for t in st["only"] if t != tk.drill_base(t)]
        while state["step"] < st["steps"]:
            step = state["step"]
            rng = random.Random(f"{args.seed}-{si}-{step}")
            # not below 256 tokens: a fresh model first learns to copy there, and a drill step costs
            # several of those stages' steps
            drill = st["drill"] or (args.drill_frac > 0 and st["len"] >= 256 and rng.random() < args.drill_frac)
            L = sample_len(rng, st["len"]) if not st["drill"] else 0
            far = not drill and st["far"] > 0 and rng.random() < st["far"]  # needle far from the question
            if far:
                L = rng.randint(st["len"] * 3 // 4, st["len"])
            exs, names = [], []  # names: the task of each "key" example, in order
            n_aux = int(round(args.aux_frac * st["batch"])) if 0 < st["len"] <= args.aux_max_len and not drill else 0
            for j in range(st["batch"] if st["drill"] or not drill else args.drill_batch):
                if drill:
                    task = rng.choices([t for t, _ in pool], weights=[w for _, w in pool])[0]
                    if st["hay"]:
                        ids, n, score_len, extra, _ = tk.drill_example(
                            task, sp, rng, maker=maker, total_len=rng.randint(st["hay"] // 2, st["hay"]))
                    else:
                        ids, n, score_len, extra, _ = tk.drill_example(task, sp, rng)
                    exs.append((ids, n, "key", score_len, extra))
                    names.append("drill-" + task)
                    continue
                if j < n_aux:
                    # auxiliary copy task (grows induction heads): BOS + S + S, scored on the second S
                    m = (L - 1) // 2
                    S = [rng.randrange(3, sp.get_piece_size()) for _ in range(m)]
                    exs.append(([sp.bos_id()] + S + S, 2 + m, "aux"))
                    continue
                depth = rng.uniform(0.0, 0.3) if far else sample_depth(rng)
                if mixture is None:
                    ids, n, _, _ = maker.make(rng, L, depth)
                    exs.append((ids, n, "key", 6))
                    names.append("passkey")
                else:
                    ids, n, score_len, extra, task = make_task_example(rng, mixture, maker, L, depth,
                                                                       args.follow_ups)
                    exs.append((ids, n, "key", score_len, extra))
                    names.append(task)
            # examples may be a token or two shorter than L: right-pad with EOS; padding is never scored
            # (causal attention: real positions never see it).
            T = max(len(e[0]) for e in exs)
            exs = [(e[0] + [sp.eos_id()] * (T - len(e[0])), e[1], len(e[0]), *e[2:]) for e in exs]
            for g in opt.param_groups:
                g["lr"] = lr_at(st, step, warm)
            lm_loss, ans_loss, aux_loss, correct = batch_loss_padded(model, exs, rng, device=dev)
            loss = args.lm_weight * lm_loss + ans_loss + aux_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            state["step"] += 1
            win["lm"] += float(lm_loss)
            win["ans"] += float(ans_loss)
            win["acc"] += sum(correct)
            for name, ok in zip(names, correct):
                per_task.setdefault(name, [0, 0])
                per_task[name][0] += ok
                per_task[name][1] += 1
            win["n"] += len(exs) - n_aux
            win["aux"] = win.get("aux", 0.0) + float(aux_loss)
            win["tok"] += T * len(exs)
            if state["step"] % 10 == 0 or state["step"] == st["steps"]:
                dt = time.time() - win["t"]
                k = 10 if state["step"] % 10 == 0 else max(1, state["step"] % 10)
                state["elapsed"] += dt
                print(f"stage {si} len {st['len'] or ('drill@' + str(st['hay']) if st['hay'] else 'drill')} step {state['step']}/{st['steps']} T~{T} lr {lr_at(st, step, warm):.2e} "
                      f"lm {win['lm'] / k:.3f} ans {win['ans'] / k:.3f} acc {win['acc'] / max(1, win['n']):.2f} "
                      f"aux {win.get('aux', 0.0) / max(1, k):.3f} {dt / k:.2f}s/step total {state['elapsed'] / 60:.1f}min", flush=True)
                early = (st["len"] <= args.early_max_len and state["step"] >= 0.4 * st["steps"]
                         and win["acc"] >= args.early_acc * win["n"])
                win = {"lm": 0.0, "ans": 0.0, "acc": 0, "n": 0, "t": time.time(), "tok": 0}
                if state["step"] % 100 == 0 and mixture is not None:  # 100 steps: enough examples per task
                    print("  training accuracy per task, last 100 steps: " +
                          ", ".join(f"{t} {c}/{n}" for t, (c, n) in sorted(per_task.items())), flush=True)
                    per_task = {}
                if early:
                    print(f"early end of stage {si}: window accuracy >= {args.early_acc}", flush=True)
                    break
            if state["step"] % args.save_every == 0:
                save_ckpt(ckpt_path, model, opt, state)
            if stop_at == (si, state["step"]):
                save_ckpt(ckpt_path, model, opt, state)
                print(f"stopped at stage {si} step {state['step']} (--stop-at)", flush=True)
                return
        # stage done: evaluate on held-out text at this length, checkpoint, export
        eval_len = st["len"] or st["hay"] or 256  # a drill stage: its skill, measured on haystack prompts
        acc = quick_eval(model, held, eval_len, 10, args.seed + 7 + si, device=dev)
        acc_short = quick_eval(model, held, 512, 10, args.seed + 99 + si, device=dev)
        rec = {"stage": si, **st, "minutes": (time.time() - t_stage) / 60, "heldout_acc_at_len": acc,
               "heldout_acc_512": acc_short}
        if mixture is not None:  # per task, 6 prompts at the stage's length (passkey: above)
            rec["heldout_task_acc_at_len"] = {
                t: quick_eval(model, held, max(eval_len, 128), 6, args.seed + 7 + si, task=t, device=dev)
                for t, _ in mixture if t != "passkey"}
        state["history"].append(rec)
        print("STAGE DONE " + json.dumps(rec), flush=True)
        state["stage"] += 1
        state["step"] = 0
        save_ckpt(ckpt_path, model, opt, state)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, os.path.join(args.work, f"model_stage{si}.pt"))
        tl.export_hf(model, args.out, tok_prefix + ".model", args.export_dtype.upper())
        with open(os.path.join(args.work, "train_history.json"), "w") as f:
            json.dump({"args": vars(args), "history": state["history"], "elapsed_s": state["elapsed"]}, f, indent=2)
        print(f"exported {args.out}", flush=True)
    print("training done", flush=True)


def batch_loss_padded(model, exs, rng, lm_positions=256, device="cpu"):
    """exs: (ids padded to equal length, n_prompt, true_len, kind[, score_len[, extra]]) with kind "key"
    (a passkey or task example) or "aux" (copy task); a "key" example counts as exact when its first
    score_len answer tokens (default 6: "▁" + 5 digits) are the argmax. extra: (start, end) id spans
    of follow-up answers, added to the answer loss. Returns (haystack lm loss, answer loss, aux copy
    loss, [exact or not for each "key" example, in order])."""
    ids = torch.tensor([e[0] for e in exs], device=device)
    h = model.hidden(ids[:, :-1])
    tgt = ids[:, 1:]
    sel = {"key": ([], []), "aux": ([], [])}
    lr_, lc = [], []
    spans = []
    for b, (seq, n, ln, kind, *score) in enumerate(exs):
        a = list(range(n - 1, ln - 1)) if len(score) < 2 or not score[1] else list(range(n - 1, n + score[0] - 1))
        for s0, s1 in (score[1] if len(score) > 1 else []):
            a += range(s0 - 1, s1 - 1)  # predicts ids[s0..s1-1], the follow-up answer (no EOS after it)
        rows, cols = sel[kind]
        if kind == "key":
            spans.append((len(cols), score[0] if score else 6))
            pick = rng.sample(range(0, n - 1), min(lm_positions, n - 1))
            lr_ += [b] * len(pick)
            lc += pick
        rows += [b] * len(a)
        cols += a
    losses = {}
    correct = []
    for kind, (rows, cols) in sel.items():
        if not rows:
            losses[kind] = torch.zeros((), device=device)
            continue
        r, c = torch.tensor(rows, device=device), torch.tensor(cols, device=device)
        lg = model.logits(h[r, c])
        losses[kind] = F.cross_entropy(lg, tgt[r, c])
        if kind == "key":
            pred = (lg.argmax(-1) == tgt[r, c]).cpu()
            correct = [int(pred[s:s + k].all()) for s, k in spans]
    lr_, lc = torch.tensor(lr_, device=device), torch.tensor(lc, device=device)
    lm_loss = F.cross_entropy(model.logits(h[lr_, lc]), tgt[lr_, lc])
    return lm_loss, losses["key"], losses["aux"], correct

if __name__ == "__main__":
    main()
