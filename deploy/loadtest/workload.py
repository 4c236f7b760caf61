"""Workload of loadtest.py: length distributions (Dist), KV policies per request, prompts in ids or
text mode and the deterministic request i of a seed (RequestFactory), and the Poisson arrival times.
It sends nothing (client.py does) and writes no files (report.py does).
"""

import argparse
import random

POLICIES = ("full", "streaming", "snapkv", "pyramidkv", "zigzag", "default")

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


# Lengths and policies --------------------------------------------------------------------------

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


def policies_of(args):
    policies = [p.strip() for p in args.kv_policy.split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            raise SystemExit(f"loadtest: unknown --kv-policy '{p}' ({', '.join(POLICIES)})")
    if args.kv_ratio is not None and args.kv_budget is not None:
        raise SystemExit("loadtest: --kv-ratio and --kv-budget exclude each other")
    return policies or ["default"]


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
            if getattr(args, "kv_head_budgets", None):
                kv.head_budgets = self.pb2.HeadBudgets.Value(
                    "HEAD_BUDGETS_" + args.kv_head_budgets.upper())
        return {"index": index, "request": request, "policy": policy, "long": long_prompt,
                "target_prompt_tokens": prompt_len, "max_tokens": max_tokens}


# Arrivals --------------------------------------------------------------------------------------

def poisson_arrivals(seed, rate, t0):
    """Open-loop arrival times from t0: exponential gaps at `rate` per second, the same per seed."""
    rng = random.Random(seed)
    arrival = t0
    while True:
        arrival += rng.expovariate(rate)
        yield arrival
