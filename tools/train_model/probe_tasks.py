#!/usr/bin/python3
"""Where a checkpoint fails on each task: teacher-forced exact answers, per-token accuracy and the
index of the first wrong answer token, on held-out prompts at one length (depths spread over [0, 1]).
A training-time probe (eval_tasks.py is the grid): it told us that the eval model's multikey misses are
nearly all at the first digit (the lookup by key) while the following digits are copied right.

  /usr/bin/python3 tools/train_model/probe_tasks.py --ckpt /work/train-work/eval2/model_stage4.pt \
      --tokenizer /work/train-work/eval2/tokenizer.model --length 1024       (or --model HF_FOLDER)
"""
import argparse
import os
import random
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import niah_data as nd  # noqa: E402
import spm_lite  # noqa: E402
import tasks as tk  # noqa: E402
import tinyllama as tl  # noqa: E402
import train  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="HF folder (its tokenizer.model is used)")
    ap.add_argument("--ckpt", default="", help="train.py's model_stageN.pt, with --tokenizer and --preset")
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--preset", default="eval", choices=sorted(train.PRESETS))
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not 1 <= args.prompts <= 1000 or not 64 <= args.length <= 4096:
        raise SystemExit(f"probe_tasks: --prompts must be in [1, 1000] and --length in [64, 4096] "
                         f"(got {args.prompts}, {args.length})")
    torch.set_num_threads(args.threads)
    if args.model:
        model = tl.load_hf(args.model)
        tok = os.path.join(args.model, "tokenizer.model")
    elif args.ckpt and args.tokenizer:
        p = train.PRESETS[args.preset]
        cfg = tl.Config(vocab_size=4096, hidden_size=p["hidden"], intermediate_size=p["ffn"],
                        num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                        num_key_value_heads=p["kv_heads"], head_dim=p["head_dim"], max_position_embeddings=4096)
        model = tl.TinyLlama(cfg)
        model.load_state_dict(torch.load(args.ckpt, map_location="cpu"))
        tok = args.tokenizer
    else:
        raise SystemExit("probe_tasks: give --model, or --ckpt with --tokenizer")
    model.eval()
    sp = spm_lite.load_processor(tok)
    held = nd.ExampleMaker(sp, nd.load_words(nd.corpus_files("")[1]))
    n = args.prompts
    for task in tk.TASKS:
        rng = random.Random(args.seed)
        exact, tok_ok, tok_n, first_bad = 0, 0, 0, []
        for t in range(n):
            e = tk.generate(task, held, rng, args.length, t / max(1, n - 1))
            with torch.no_grad():
                logits = model(torch.tensor([e.ids[:-1]]))[0]
            pred = logits.argmax(-1)[e.n_prompt - 1:len(e.ids) - 2].tolist()
            gold = e.ids[e.n_prompt:len(e.ids) - 1]  # the answer's tokens, no EOS
            ok = [p == g for p, g in zip(pred, gold)]
            exact += all(ok)
            tok_ok += sum(ok)
            tok_n += len(ok)
            if not all(ok):
                first_bad.append(ok.index(False))
        print(f"{task}@{args.length}: exact {exact}/{n}, token accuracy {tok_ok / tok_n:.2f}, "
              f"first wrong answer token (index) of each miss {sorted(first_bad)}", flush=True)


if __name__ == "__main__":
    main()
