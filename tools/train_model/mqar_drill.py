#!/usr/bin/python3
"""Needles-only drill (MQAR-style), the experiment that made key lookup form in the eval model (issue 14).

Each sequence is 6-12 multikey needles "The special magic number for K is V." with no haystack,
then 6 of their questions in the multikey format, each followed by its answer; only the answers are
trained. From the second CPU run's final checkpoint (tools/train_model/README.md), 200 steps of
batch 16 (lr 1e-3, 1 thread, about 22 minutes under a parallel build) took held-out multikey
(with haystack, the evaluation format, teacher-forced, 20 prompts) from 3/20 to 17/20 at 256
tokens and from 3/20 to 13/20 at 512. Not yet part of train.py's recipe: the next step is a drill
stage there, and the other tasks after it.

  /usr/bin/python3 tools/train_model/mqar_drill.py CKPT.pt [LR] [OUT.pt]
      (tokenizer: the checkpoint's work folder's tokenizer.model)
"""
import os, sys, random, time
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch, torch.nn.functional as F
import niah_data as nd, tasks as tk, tinyllama as tl, spm_lite
torch.set_num_threads(1); torch.manual_seed(1)
sp = spm_lite.load_processor(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "tokenizer.model"))
held = nd.ExampleMaker(sp, nd.load_words(nd.corpus_files("")[1]))
cfg = tl.Config(vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=8,
                num_attention_heads=4, num_key_value_heads=4, head_dim=32, max_position_embeddings=4096)
m = tl.TinyLlama(cfg); m.load_state_dict(torch.load(sys.argv[1]))
lr0 = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3
opt = torch.optim.AdamW(m.parameters(), lr=lr0, betas=(0.9, 0.95), weight_decay=0.05)

def drill(rng):
    n = rng.randint(6, 12); keys = tk._distinct_keys(rng, n); vals = tk._distinct_numbers(rng, n)
    text = " ".join(tk.MK_NEEDLE.format(k, v) for k, v in zip(keys, vals))
    ids = [1] + sp.encode(text); spans = []
    order = list(range(n)); rng.shuffle(order)
    for i in order[:6]:
        q = " " + tk.MK_QUESTION.format(keys[i], keys[i]); a = tk.answer_text(vals[i])
        p = [1] + sp.encode(text + q); full = [1] + sp.encode(text + q + a)
        spans.append((len(p), len(full))); text += q + a; ids = full
    return ids, spans

@torch.no_grad()
def evaluate(L, n=20):
    m.eval(); rng = random.Random(5); ok = 0
    for t in range(n):
        e = tk.generate("multikey", held, rng, L, t / (n - 1))
        lg = m(torch.tensor([e.ids[:-1]]))[0]
        pred = lg.argmax(-1)[e.n_prompt - 1:len(e.ids) - 2].tolist()
        ok += pred == e.ids[e.n_prompt:len(e.ids) - 1]
    m.train(); return ok

print("start", evaluate(256), evaluate(512), flush=True)
t0 = time.time(); acc = [0, 0]
for step in range(1, 201):
    rng = random.Random(f"mq-{step}")
    exs = [drill(rng) for _ in range(16)]
    T = max(len(i) for i, _ in exs)
    ids = torch.tensor([i + [2] * (T - len(i)) for i, _ in exs])
    h = m.hidden(ids[:, :-1]); tgt = ids[:, 1:]
    r, c, first = [], [], []
    for b, (i, spans) in enumerate(exs):
        for s0, s1 in spans:
            first.append((len(c), s1 - s0)); r += [b] * (s1 - s0); c += list(range(s0 - 1, s1 - 1))
    r = torch.tensor(r); c = torch.tensor(c)
    lg = m.logits(h[r, c]); loss = F.cross_entropy(lg, tgt[r, c])
    okv = (lg.argmax(-1) == tgt[r, c]); acc[0] += sum(int(okv[s:s + k].all()) for s, k in first); acc[1] += len(first)
    for g in opt.param_groups: g["lr"] = lr0 * min(1, step / 20)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % 50 == 0:
        print(f"step {step} T {T} loss {float(loss):.3f} drill-acc {acc[0]/acc[1]:.2f} {(time.time()-t0)/step:.2f}s/step", flush=True); acc = [0, 0]
    if step % 200 == 0:
        print(f"step {step} EVAL multikey@256 {evaluate(256)}/20 @512 {evaluate(512)}/20", flush=True)
        torch.save(m.state_dict(), sys.argv[3] if len(sys.argv) > 3 else "mqar_drill.pt")
