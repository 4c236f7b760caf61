"""Synthetic long-context tasks in the spirit of RULER, for training and evaluating `zigzag-eval`.

What it owns: one generator per task (deterministic given a `random.Random`), the prompt texts, and an
answer checker per task that recomputes the expected answer from the prompt text alone (regular
expressions over the text: it never sees the generator's choices). What it does not own: the corpus,
the tokenizer and the passkey format, which stay in niah_data.py (the `passkey` task below calls
niah_data.ExampleMaker.make unchanged, so its prompts are byte-identical to the shipped model's).

Conventions shared by every task (those of niah_data.py):
- prompt = " ".join(non-empty parts): haystack words and needle sentences, then the question; the
  question ends without a space and the answer text starts with one;
- ids = [BOS] + encode(prompt + answer) + [EOS]; the prompt's ids are a prefix of those;
- the answer is " " + core + "." (core: digits, or digits / names separated by ", ");
- a generation is correct when, after leading spaces, it starts with the core and the next character
  (if any) is neither a letter nor a digit (is_correct; tools/niah/task_file.cc scores the same way).

Tasks (`TASKS`):
  passkey     single needle: "The secret passkey is NNNNN. Remember it." (the shipped format)
  multikey    4-8 needles "The special magic number for <key> is NNNNN." with distinct keys; one key
              is asked for; the others are distractors
  multivalue  4 needles "The first special magic number for <key> is NNNNN.", "The second ...", ...
              for the same key, in that order; all values are asked for, one needle at a time: " N1.
              The second special magic number for <key> is N2. ... The fourth ... is N4."
  vartrack    variable tracking: a chain "The value NNNNN is held by VAR AAAAA." then "The value of VAR
              AAAAA is held by VAR BBBBB." ... (4 variables) among a distractor chain; the question
              asks which variables hold NNNNN and the answer follows the chain hop by hop: " AAAAA.
              The value of VAR AAAAA is held by VAR BBBBB. ... VAR DDDDD."
  multiquery  4-8 "special magic number" needles as in multikey; two keys are asked for ("... for K1
              and for K2?"), the answer " N1, and for K2 is N2." (the question's "and for" leads to K2)

Answers are written so that every lookup is the words that precede the answer in its needle,
followed by what comes next there (an induction lookup, as multikey's "for <key> is"): RULER's
list answers ("AAAAA, BBBBB, ...", "N1, N2" and multivalue's "N1, N2, N3, N4", whose needles all read
"One of the special magic numbers for <key> is") ask a 1.8M-parameter model to find a needle by words
that do not come right before what it must copy, and on 2 CPU cores it did not learn to (issue 14:
vartrack stayed at chance over 300-400 drill steps; the induction form left chance in 200).

Short lengths hold fewer needles: multikey / multiquery drop distractors, multivalue drops values
(down to 2), vartrack shortens the decoy chain, then the chain (down to 2 variables); below about 100
tokens (zigzag-tiny's tokenizer) only passkey fits and the others raise ValueError.

Depth: the position (share of the haystack tokens before it) of the first needle the answer needs;
the other needles take seeded uniform depths (vartrack: the chain's later links come after it).
"""
import re

import niah_data as nd

# --- templates -------------------------------------------------------------------------------------

MK_NEEDLE = "The special magic number for {} is {}."
MK_QUESTION = "What is the special magic number for {}? The special magic number for {} is"
MV_ORDINALS = ("first", "second", "third", "fourth")
MV_NEEDLE = "The {} special magic number for {} is {}."  # (ordinal, key, value)
MV_QUESTION = "What are all the special magic numbers for {}? The first special magic number for {} is"
MV_NEXT = "The {} special magic number for {} is {}"  # one more value of the answer: (ordinal, key, value)
VT_FIRST = "The value {1} is held by VAR {0}."  # (name, value)
VT_LINK = "The value of VAR {1} is held by VAR {0}."  # (name, the variable it copies)
VT_QUESTION = "Which variables hold the value {}? The value {} is held by VAR"
VT_HOP = "The value of VAR {} is held by VAR {}"  # one hop of the answer: (from, to)
MQ_QUESTION = ("What are the special magic numbers for {} and for {}? "
               "The special magic number for {} is")
MQ_SECOND = "and for {} is {}"  # the answer's second part: (key, value); "and for" as in the question

# Keys are "<adjective> <noun>": 32 x 32 = 1024 keys of common words (few tokens each).
ADJECTIVES = ("red blue green black white silver golden quiet loud small large tall short old young "
              "bright dark warm cold soft hard fast slow happy brave calm wild gentle proud lucky "
              "hidden frozen").split()
NOUNS = ("apple river falcon garden window mountain lantern harbor forest candle engine island "
         "pencil rocket violin castle meadow bridge dragon mirror planet shadow thunder tiger "
         "wagon anchor basket cactus desert feather glacier hammer").split()
assert len(ADJECTIVES) == 32 and len(NOUNS) == 32 and len(set(ADJECTIVES)) == 32 and len(set(NOUNS)) == 32

MV_VALUES = len(MV_ORDINALS)
VT_HOPS = 4
TASKS = ("passkey", "multikey", "multivalue", "vartrack", "multiquery")


def tokenizer_lines():
    """Sentences that put every template word into the tokenizer's training text (train.py adds them
    for the eval model only: the shipped tokenizer is trained without them)."""
    lines = []
    for i, adj in enumerate(ADJECTIVES):
        key = f"{adj} {NOUNS[i]}"
        lines.append(MK_NEEDLE.format(key, 12345) + " " + MK_QUESTION.format(key, key) + " 12345.")
        lines.append(MV_NEEDLE.format("first", key, 23456) + " " + MV_NEEDLE.format("second", key, 34567) + " " +
                     MV_QUESTION.format(key, key) + multivalue_answer(key, ["23456", "34567"]))
        lines.append(MQ_QUESTION.format(key, key, key) + multiquery_answer("45678", key, "56789"))
    lines.append(VT_FIRST.format("ABCDE", 12345) + " " + VT_LINK.format("FGHIJ", "ABCDE") + " " +
                 VT_QUESTION.format(12345, 12345) + vartrack_answer(["ABCDE", "FGHIJ"]))
    return lines


# --- answers and checking ---------------------------------------------------------------------------

def answer_text(core):
    return " " + core + "."


def vartrack_answer(names):
    """The chain holding a value, hop by hop: " A. The value of VAR A is held by VAR B. ... VAR D."."""
    return answer_text(". ".join([names[0]] + [VT_HOP.format(a, b) for a, b in zip(names, names[1:])]))


def multivalue_answer(key, values):
    """Every value of `key` in needle order: " N1. The second special magic number for <key> is N2. ..."."""
    return answer_text(". ".join([values[0]] + [MV_NEXT.format(MV_ORDINALS[i], key, v)
                                                for i, v in enumerate(values[1:], 1)]))


def multiquery_answer(first_value, second_key, second_value):
    """" N1, and for <second key> is N2."."""
    return answer_text(first_value + ", " + MQ_SECOND.format(second_key, second_value))


def answer_core(answer):
    """The part a generation must reproduce: answer without leading spaces and its final '.'."""
    core = answer.lstrip(" ")
    return core[:-1] if core.endswith(".") else core


def is_correct(generated, answer):
    """Scoring rule shared with the C++ grid (tools/niah/task_file.cc, IsCorrectTaskAnswer)."""
    core = answer_core(answer)
    text = generated.lstrip(" ")
    if not core or not text.startswith(core):
        return False
    rest = text[len(core):]
    return not rest or not (rest[0].isascii() and rest[0].isalnum())  # ASCII, as the C++ grid


def _only(matches, what):
    if len(matches) != 1:
        raise ValueError(f"expected exactly one {what} in the prompt, found {len(matches)}")
    return matches[0]


def expected_answer(task, prompt):
    """The answer recomputed from the prompt text alone. ValueError when the text does not hold
    exactly what the task's question needs."""
    if task == "passkey":
        _only(re.findall(r"What is the secret passkey\? The secret passkey is$", prompt), "passkey question")
        return answer_text(_only(re.findall(r"The secret passkey is (\d+)\. Remember it\.", prompt),
                                 "passkey needle"))
    if task == "multikey":
        key = _only(re.findall(r"What is the special magic number for ([a-z]+ [a-z]+)\? "
                               r"The special magic number for \1 is$", prompt), "multikey question")
        return answer_text(_only(re.findall(r"The special magic number for " + re.escape(key) +
                                            r" is (\d+)\.", prompt), f"needle for '{key}'"))
    if task == "multivalue":
        key = _only(re.findall(r"What are all the special magic numbers for ([a-z]+ [a-z]+)\? "
                               r"The first special magic number for \1 is$", prompt), "multivalue question")
        found = re.findall(r"The ([a-z]+) special magic number for " + re.escape(key) + r" is (\d+)\.", prompt)
        ordinals = [o for o, _ in found]
        if not found or ordinals != list(MV_ORDINALS[:len(found)]):
            raise ValueError(f"the values of '{key}' are not numbered {', '.join(MV_ORDINALS)} in text order "
                             f"(found: {', '.join(ordinals) or 'none'})")
        return multivalue_answer(key, [v for _, v in found])
    if task == "vartrack":
        value = _only(re.findall(r"Which variables hold the value (\d+)\? "
                                 r"The value \1 is held by VAR$", prompt), "vartrack question")
        # Follow the assignments in text order: a variable holds `value` when it is given the number
        # or the value of a variable that already holds it.
        holders = []
        for number, source, name in re.findall(r"The value (?:(\d+)|of VAR ([A-Z]+)) is held by VAR ([A-Z]+)\.",
                                               prompt):
            if number == value or (source and source in holders):
                if name in holders:
                    raise ValueError(f"variable {name} is assigned twice")
                holders.append(name)
        if not holders:
            raise ValueError(f"no variable holds {value}")
        return vartrack_answer(holders)
    if task == "multiquery":
        m = _only(re.findall(r"What are the special magic numbers for ([a-z]+ [a-z]+) and for ([a-z]+ [a-z]+)\? "
                             r"The special magic number for \1 is$", prompt), "multiquery question")
        values = [_only(re.findall(r"The special magic number for " + re.escape(k) + r" is (\d+)\.", prompt),
                        f"needle for '{k}'") for k in m]
        return multiquery_answer(values[0], m[1], values[1])
    raise ValueError(f"unknown task '{task}' (known: {', '.join(TASKS)})")


def check(task, prompt, generated):
    """Whether `generated` answers the prompt, judged from the prompt text alone."""
    return is_correct(generated, expected_answer(task, prompt))


# --- generators -------------------------------------------------------------------------------------

class Example:
    """One prompt: ids = BOS + prompt + answer + EOS, n_prompt = ids before the answer."""

    def __init__(self, task, ids, n_prompt, prompt, answer, depth):
        self.task, self.ids, self.n_prompt = task, ids, n_prompt
        self.prompt, self.answer, self.depth = prompt, answer, depth


def _distinct_numbers(rng, k):
    out = []
    while len(out) < k:
        v = nd.random_passkey(rng)
        if v not in out:
            out.append(v)
    return out


def _distinct_keys(rng, k):
    picks = rng.sample(range(len(ADJECTIVES) * len(NOUNS)), k)
    return [f"{ADJECTIVES[p // len(NOUNS)]} {NOUNS[p % len(NOUNS)]}" for p in picks]


def _distinct_names(rng, k):
    out = []
    while len(out) < k:
        v = "".join(chr(ord("A") + rng.randrange(26)) for _ in range(5))
        if v not in out:
            out.append(v)
    return out


def _alike_names(rng, k):
    """Distinct names, most sharing their first one to three letters with an earlier one: hard negatives
    for vartrack's copy. The CPU model's misses were such pairs: after "VAR P" it went on with the
    other P-name's letters (PRASW copied as PQ... from PQMZQ), as names are spelt a letter or two a
    piece. Drills only (vartrack-alike); the evaluation prompts keep _distinct_names."""
    out = []
    while len(out) < k:
        prefix = rng.choice(out)[:rng.randint(1, 3)] if out and rng.random() < 0.75 else ""
        v = prefix + "".join(chr(ord("A") + rng.randrange(26)) for _ in range(5 - len(prefix)))
        if v not in out:
            out.append(v)
    return out


def _alike_numbers(rng, k):
    """Distinct five-digit numbers, most a near copy of an earlier one (one to three of its digits
    redrawn): hard negatives for the numbers' copy, as _alike_names are for names'. Digits are single
    tokens, and the CPU model's multivalue and multiquery misses went on with another value's digits
    after a shared run (79752 came out 79753, beside 69753). Drills only (TASK-alike)."""
    out = []
    while len(out) < k:
        if out and rng.random() < 0.75:
            digits = list(rng.choice(out))
            for i in rng.sample(range(5), rng.randint(1, 3)):
                digits[i] = str(rng.randrange(1 if i == 0 else 0, 10))
            v = "".join(digits)
        else:
            v = nd.random_passkey(rng)
        if v not in out:
            out.append(v)
    return out


def _assemble(maker, rng, total_len, needles, question, answer):
    """needles: [(depth, sentence)] in any order (ties keep their order). Fills the token budget with
    haystack words from a random start, places each needle after the haystack words holding `depth`
    of the haystack tokens, and returns (ids, n_prompt, prompt)."""
    sp = maker.sp
    skeleton = " ".join([s for _, s in needles] + [question]) + answer
    fixed = len(sp.encode(skeleton)) + 2  # BOS, EOS
    if fixed > total_len:
        raise ValueError(f"length {total_len} does not hold the needles, question and answer ({fixed} tokens)")
    budget = total_len - fixed
    n = len(maker.words)
    start = rng.randrange(0, n - 1)
    counts, used = [], 0
    while True:
        c = maker.counts[(start + len(counts)) % n]
        if used + c > budget:
            break
        counts.append(c)
        used += c
    # word index before which each needle goes (the same rounding as niah_data.ExampleMaker.make)
    cut_of = []
    for depth, _ in needles:
        if depth <= 0.0:
            cut_of.append(0)
            continue
        if depth >= 1.0:
            cut_of.append(len(counts))
            continue
        acc, k = 0, 0
        while k < len(counts) and acc + counts[k] / 2 <= depth * used:
            acc += counts[k]
            k += 1
        cut_of.append(k)
    order = sorted(range(len(needles)), key=lambda i: (cut_of[i], i))
    parts, w = [], 0
    for i in order:
        parts.extend(maker.words[(start + j) % n] for j in range(w, cut_of[i]))
        w = cut_of[i]
        parts.append(needles[i][1])
    parts.extend(maker.words[(start + j) % n] for j in range(w, len(counts)))
    parts.append(question)
    prompt = " ".join(p for p in parts if p)
    p_ids = [sp.bos_id()] + sp.encode(prompt)
    full = [sp.bos_id()] + sp.encode(prompt + answer) + [sp.eos_id()]
    assert full[:len(p_ids)] == p_ids, "prompt ids must be a prefix of prompt+answer ids"
    assert len(full) <= total_len, (len(full), total_len)
    return full, len(p_ids), prompt


def _others(rng, k):
    return [rng.random() for _ in range(k)]


def gen_passkey(maker, rng, total_len, depth):
    fixed = len(maker.sp.encode(nd.build_prompt([], [], "10000") + nd.ANSWER.format("10000"))) + 2
    if fixed > total_len:  # (niah_data would fail an assertion)
        raise ValueError(f"length {total_len} does not hold the needle, question and answer ({fixed} tokens)")
    ids, n, pk, prompt = maker.make(rng, total_len, depth)
    return Example("passkey", ids, n, prompt, nd.ANSWER.format(pk), depth)


def _fits(maker, needles, question, answer, total_len):
    skeleton = " ".join([s for _, s in needles] + [question]) + answer
    return len(maker.sp.encode(skeleton)) + 2 <= total_len


def gen_multikey(maker, rng, total_len, depth):
    k = rng.randint(4, 8)
    keys, values = _distinct_keys(rng, k), _distinct_numbers(rng, k)
    depths = [depth] + _others(rng, k - 1)
    needles = [(d, MK_NEEDLE.format(key, v)) for d, key, v in zip(depths, keys, values)]
    answer, question = answer_text(values[0]), MK_QUESTION.format(keys[0], keys[0])
    while len(needles) > 2 and not _fits(maker, needles, question, answer, total_len):
        needles.pop()  # short lengths hold fewer distractors (down to one)
    ids, n, prompt = _assemble(maker, rng, total_len, needles, question, answer)
    return Example("multikey", ids, n, prompt, answer, depth)


def gen_multivalue(maker, rng, total_len, depth):
    key, values = _distinct_keys(rng, 1)[0], _distinct_numbers(rng, MV_VALUES)
    # the first value sits at `depth`, the others after it, in order of appearance
    depths = [depth] + sorted(depth + (1.0 - depth) * r for r in _others(rng, MV_VALUES - 1))
    question = MV_QUESTION.format(key, key)
    while True:  # short lengths hold fewer values (down to two)
        needles = [(d, MV_NEEDLE.format(MV_ORDINALS[i], key, v)) for i, (d, v) in enumerate(zip(depths, values))]
        answer = multivalue_answer(key, values)
        if len(values) == 2 or _fits(maker, needles, question, answer, total_len):
            break
        values, depths = values[:-1], depths[:-1]
    ids, n, prompt = _assemble(maker, rng, total_len, needles, question, answer)
    return Example("multivalue", ids, n, prompt, answer, depth)


def gen_vartrack(maker, rng, total_len, depth):
    names = _distinct_names(rng, 2 * VT_HOPS)
    value, other = _distinct_numbers(rng, 2)
    starts = (depth, rng.random())
    links = [sorted(first + (1.0 - first) * r for r in _others(rng, VT_HOPS - 1)) for first in starts]
    question = VT_QUESTION.format(value, value)

    def build(hops, decoy_hops):
        needles = []
        for ch, val, first, later, h in ((names[:VT_HOPS], value, starts[0], links[0], hops),
                                        (names[VT_HOPS:], other, starts[1], links[1], decoy_hops)):
            if h == 0:
                continue
            needles.append((first, VT_FIRST.format(ch[0], val)))
            needles += [(later[i - 1], VT_LINK.format(ch[i], ch[i - 1])) for i in range(1, h)]
        return needles, vartrack_answer(names[:hops])

    # short lengths: the decoy chain shortens and goes first, then the chain itself (down to two)
    for hops, decoy_hops in [(VT_HOPS, h) for h in range(VT_HOPS, -1, -1)] + \
            [(h, 0) for h in range(VT_HOPS - 1, 1, -1)]:
        needles, answer = build(hops, decoy_hops)
        if _fits(maker, needles, question, answer, total_len):
            break
    ids, n, prompt = _assemble(maker, rng, total_len, needles, question, answer)
    return Example("vartrack", ids, n, prompt, answer, depth)


def gen_multiquery(maker, rng, total_len, depth):
    k = rng.randint(4, 8)
    keys, values = _distinct_keys(rng, k), _distinct_numbers(rng, k)
    depths = [depth] + _others(rng, k - 1)
    needles = [(d, MK_NEEDLE.format(key, v)) for d, key, v in zip(depths, keys, values)]
    answer = multiquery_answer(values[0], keys[1], values[1])
    question = MQ_QUESTION.format(keys[0], keys[1], keys[0])
    while len(needles) > 2 and not _fits(maker, needles, question, answer, total_len):
        needles.pop()  # short lengths hold fewer distractors (down to none)
    ids, n, prompt = _assemble(maker, rng, total_len, needles, question, answer)
    return Example("multiquery", ids, n, prompt, answer, depth)


GENERATORS = {"passkey": gen_passkey, "multikey": gen_multikey, "multivalue": gen_multivalue,
              "vartrack": gen_vartrack, "multiquery": gen_multiquery}
assert tuple(GENERATORS) == TASKS


def generate(task, maker, rng, total_len, depth):
    """One example of `task` with len(ids) <= total_len (prompt + answer + EOS), the answer's first
    needle at `depth` in [0, 1]. `maker` is a niah_data.ExampleMaker (its tokenizer and words)."""
    if task not in GENERATORS:
        raise ValueError(f"unknown task '{task}' (known: {', '.join(TASKS)})")
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} is outside [0, 1]")
    return GENERATORS[task](maker, rng, total_len, depth)


def follow_up_questions(task, prompt, rng, k):
    """Up to k more (question, answer) pairs about the needles of `prompt`, for training only: the
    training text is prompt + answer, then " " + question + answer for each pair, so one haystack
    teaches up to 1 + k retrievals (a single one per prompt left the CPU-trained eval model unable to
    match keys: issue 14). Each pair asks what the task's question asks, about needles the first
    question did not ask for: multikey other keys, multiquery other pairs of keys, vartrack the decoy
    chain. passkey and multivalue (one needle kind, one key) have none. Every answer is the one
    expected_answer recomputes from the text before it (test_tasks.py checks that)."""
    out = []
    if task in ("multikey", "multiquery"):
        pairs = re.findall(r"The special magic number for ([a-z]+ [a-z]+) is (\d+)\.", prompt)
        asked = re.findall(r"What is the special magic number for ([a-z]+ [a-z]+)\? "
                           r"The special magic number for \1 is$", prompt) if task == "multikey" else \
            re.findall(r"What are the special magic numbers for ([a-z]+ [a-z]+) and for ([a-z]+ [a-z]+)\? "
                       r"The special magic number for \1 is$", prompt)
        done = set(asked[0] if asked and isinstance(asked[0], tuple) else asked)
        rest = [(key, v) for key, v in pairs if key not in done]
        rng.shuffle(rest)
        if task == "multikey":
            out = [(MK_QUESTION.format(key, key), answer_text(v)) for key, v in rest[:k]]
        else:
            out = [(MQ_QUESTION.format(a[0], b[0], a[0]), multiquery_answer(a[1], b[0], b[1]))
                   for a, b in zip(rest[0:2 * k:2], rest[1:2 * k:2])]
    elif task == "vartrack" and k > 0:
        asked = re.findall(r"Which variables hold the value (\d+)\? The value \1 is held by VAR$", prompt)
        firsts = [v for v in re.findall(r"The value (\d+) is held by VAR [A-Z]+\.", prompt) if v not in asked]
        for value in firsts[:k]:
            q = VT_QUESTION.format(value, value)
            out.append((q, expected_answer("vartrack", prompt + " " + q)))
    return out


def append_follow_ups(task, example, maker, rng, k, max_len):
    """The training text of `example` with up to k follow-up questions (follow_up_questions) after its
    answer, each with its answer, while the ids fit in max_len. Returns (ids, spans): ids = BOS + text +
    EOS, and the (start, end) id range of each follow-up answer (its tokens: ids[start:end]). The
    example's own ids (all but its EOS) stay a prefix."""
    sp = maker.sp
    text, ids, spans = example.prompt + example.answer, list(example.ids), []
    for q, a in follow_up_questions(task, example.prompt, rng, k):
        n_q, full = _ask(sp, text, ids, q, a)
        if len(full) > max_len:
            break
        text, ids = text + " " + q + a, full
        spans.append((n_q, len(full) - 1))
    return ids, spans


def _ask(sp, text, ids, q, a):
    """The ids of text + " " + q + a (BOS ... EOS) and how many of them come before the answer a.
    ids: those of text (None for the first question), which must stay a prefix."""
    p_ids = [sp.bos_id()] + sp.encode(text + " " + q)
    full = [sp.bos_id()] + sp.encode(text + " " + q + a) + [sp.eos_id()]
    # SentencePiece splits at spaces first, so appending text after a space keeps the ids before it
    assert full[:len(p_ids)] == p_ids and (ids is None or full[:len(ids) - 1] == ids[:-1]), \
        "ids must grow by appending"
    return len(p_ids), full


DRILL_TASKS = ("multikey", "multivalue", "vartrack", "multiquery", "vartrack1", "vartrack-alike",
               "multikey-alike", "multivalue-alike", "multiquery-alike")


def drill_base(task):
    """The task whose format a drill task trains: vartrack1 (one-hop lookups) is vartrack's, and
    TASK-alike (hard negatives: names or numbers that nearly repeat each other) is TASK's."""
    base = task[:-len("-alike")] if task.endswith("-alike") else task
    return "vartrack" if base == "vartrack1" else base


def drill_example(task, sp, rng, questions=6, maker=None, total_len=0):
    """A needles-only training sequence (no haystack) for one of DRILL_TASKS, MQAR-style: many needles
    of the task, then up to `questions` of its questions, each followed by its answer. On haystack
    prompts alone the 8-layer CPU model learned to copy a needle but not to pick the one whose key
    matches (issue 14); without haystack, matching is the only way to lower the loss.
      multikey / multiquery: 6-12 "special magic number" needles; one key (multiquery: two) per question
      multivalue: 2-4 keys with 2-4 values each, interleaved; every key's values, in text order (numbered)
      vartrack: 2-3 chains of 2-4 variables with distinct values, interleaved; every chain, hop by hop
      vartrack1: 6-12 chains of one variable ("The value NNNNN is held by VAR NAME.") and 6 questions,
        each answered by one name: vartrack's value -> name lookup alone, as multikey drills key -> value
      vartrack-alike: vartrack's chains with names that mostly share their first 1-3 letters with
        another name of the sequence (_alike_names), so that a copy must follow its own needle
      multikey-alike / multivalue-alike / multiquery-alike: those drills with values that are mostly
        near copies of one another (_alike_numbers), for the same reason
    With `maker` and `total_len`, the same needles (in the same order) stand at seeded depths in haystack
    words up to about total_len tokens, and the questions come after it while they fit: many long-range
    retrievals per sequence, where a haystack prompt teaches one to four.
    Returns (ids, n_prompt, score_len, spans, text): ids = BOS + text + EOS, n_prompt = ids before the
    first answer, score_len its token count, spans the (start, end) ids of every later answer (as
    append_follow_ups). Every answer is what
    expected_answer recomputes from the needles and that question alone (test_tasks.py checks it)."""
    if task not in DRILL_TASKS:
        raise ValueError(f"no drill for task '{task}' (drills: {', '.join(DRILL_TASKS)})")
    base = drill_base(task)
    numbers = _alike_numbers if task.endswith("-alike") and base != "vartrack" else _distinct_numbers
    if base in ("multikey", "multiquery"):
        n = rng.randint(6, 12)
        keys, values = _distinct_keys(rng, n), numbers(rng, n)
        needles = [MK_NEEDLE.format(k, v) for k, v in zip(keys, values)]
        order = list(range(n))
        rng.shuffle(order)
        if base == "multikey":
            qa = [(MK_QUESTION.format(keys[i], keys[i]), answer_text(values[i])) for i in order[:questions]]
        else:
            pairs = [(a, b) for a in range(n) for b in range(n) if a != b]  # ordered: "x and y" != "y and x"
            qa = [(MQ_QUESTION.format(keys[a], keys[b], keys[a]), multiquery_answer(values[a], keys[b], values[b]))
                  for a, b in rng.sample(pairs, min(questions, len(pairs)))]
    elif base == "multivalue":
        m = rng.randint(2, 4)
        keys = _distinct_keys(rng, m)
        counts = [rng.randint(2, 4) for _ in range(m)]
        values = numbers(rng, sum(counts))
        owner = [i for i in range(m) for _ in range(counts[i])]
        rng.shuffle(owner)  # interleaved keys; each key's values in the order they appear
        needles, per_key = [], [[] for _ in range(m)]
        for i, v in zip(owner, values):
            needles.append(MV_NEEDLE.format(MV_ORDINALS[len(per_key[i])], keys[i], v))
            per_key[i].append(v)
        ask = list(range(m))
        rng.shuffle(ask)
        qa = [(MV_QUESTION.format(keys[i], keys[i]), multivalue_answer(keys[i], per_key[i])) for i in ask]
    elif base == "vartrack":
        if task == "vartrack1":
            c = rng.randint(6, 12)
            hops = [1] * c
        else:
            c = rng.randint(2, 3)
            hops = [rng.randint(2, VT_HOPS) for _ in range(c)]
        names = (_alike_names if task == "vartrack-alike" else _distinct_names)(rng, sum(hops))
        values = _distinct_numbers(rng, c)
        chains, at = [], 0
        for h in hops:
            chains.append(names[at:at + h])
            at += h
        owner = [i for i in range(c) for _ in range(hops[i])]
        rng.shuffle(owner)  # interleaved chains, each in its own order
        needles, pos = [], [0] * c
        for i in owner:
            ch, k = chains[i], pos[i]
            needles.append(VT_FIRST.format(ch[0], values[i]) if k == 0 else VT_LINK.format(ch[k], ch[k - 1]))
            pos[i] += 1
        ask = list(range(c))
        rng.shuffle(ask)
        qa = [(VT_QUESTION.format(values[i], values[i]), vartrack_answer(chains[i])) for i in ask]
    qa = qa[:max(1, questions)]
    if maker is None:
        text = " ".join(needles)
    else:
        depths = sorted(rng.random() for _ in needles)  # sorted: the needles keep their order
        while True:
            # room for the questions (a token or two of slack: pieces may join across the spaces);
            # a short total_len keeps the first ones (ValueError when not even one fits)
            room = len(sp.encode(" ".join(q + a for q, a in qa))) + 2 * len(qa)
            try:
                _, _, text = _assemble(maker, rng, total_len - room, list(zip(depths, needles)), "", "")
                break
            except ValueError:
                if len(qa) == 1:
                    raise
                qa = qa[:-1]
    ids, n_prompt, score_len, spans = None, 0, 0, []
    for q, a in qa:
        n_q, full = _ask(sp, text, ids, q, a)
        if maker is not None and ids is not None and len(full) > total_len:
            break
        if ids is None:
            n_prompt, score_len = n_q, len(full) - 1 - n_q
        else:
            spans.append((n_q, len(full) - 1))
        text, ids = text + " " + q + a, full
    return ids, n_prompt, score_len, spans, text


def parse_mixture(text):
    """"passkey:1,multikey:2" -> [("passkey", 1.0), ("multikey", 2.0)]; a bare name weighs 1."""
    out = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, weight = part.strip().partition(":")
        if name not in GENERATORS:
            raise ValueError(f"task mixture: unknown task '{name}' (known: {', '.join(TASKS)})")
        w = float(weight) if weight else 1.0
        if not w > 0:
            raise ValueError(f"task mixture: weight of '{name}' must be > 0, got {weight}")
        out.append((name, w))
    if not out:
        raise ValueError("task mixture is empty")
    return out
