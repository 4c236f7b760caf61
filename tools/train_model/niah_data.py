"""Haystack corpus from Debian's own text docs, the SentencePiece tokenizer, and passkey examples.

Prompt format (one plain text string, tokenized as a whole with BOS, SentencePiece adds the dummy "▁"):
    " ".join(nonempty([HAYSTACK_PREFIX, NEEDLE, HAYSTACK_REST, QUESTION]))
    NEEDLE   = "The secret passkey is NNNNN. Remember it."
    QUESTION = "What is the secret passkey? The secret passkey is"
and the expected completion is " NNNNN." followed by </s>.
The haystack is ASCII text with every whitespace run collapsed to one space (see clean_text).
"""
import glob
import os
import random
import re

NEEDLE = "The secret passkey is {}. Remember it."
QUESTION = "What is the secret passkey? The secret passkey is"
ANSWER = " {}."

LICENSE_DIR = "/usr/share/common-licenses"
RELNOTES_DIR = "/usr/share/doc/git/RelNotes"


def clean_text(s):
    s = s.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"\s+", " ", s).strip()


def _read(path):
    if path.endswith(".gz"):
        import gzip
        with gzip.open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def corpus_files(root=""):
    """(train_files, heldout_files), deterministic. Every 8th RelNotes file is held out for evaluation.
    root: a folder holding a copy of the two directories at their paths (`cp -a` keeps the licenses'
    relative symlinks, which the de-duplication below relies on), e.g. on a GPU machine without them."""
    lic, seen = [], set()
    for p in sorted(glob.glob(os.path.join(root + LICENSE_DIR, "*"))):
        real = os.path.realpath(p)
        if os.path.isfile(real) and real not in seen:
            seen.add(real)
            lic.append(real)
    rel_dir = root + RELNOTES_DIR
    rel = sorted(glob.glob(os.path.join(rel_dir, "*.txt")) + glob.glob(os.path.join(rel_dir, "*.txt.gz")))
    train = lic + [p for i, p in enumerate(rel) if i % 8 != 7]
    held = [p for i, p in enumerate(rel) if i % 8 == 7]
    return train, held


def load_words(files):
    words = []
    for p in files:
        words.extend(clean_text(_read(p)).split(" "))
    return [w for w in words if w]


def train_tokenizer(files, prefix, vocab_size=4096, extra_lines=None):
    """extra_lines: more sentences for the tokenizer's text (the eval model's task templates); None
    leaves the text, and so the tokenizer, exactly as for the shipped model."""
    import sentencepiece as spm
    tmp = prefix + ".corpus.txt"
    with open(tmp, "w") as f:
        for p in files:
            t = clean_text(_read(p))
            # one "sentence" per ~2000 chars, cut at spaces
            while t:
                cut = t.find(" ", 2000)
                if cut < 0:
                    cut = len(t)
                f.write(t[:cut].strip() + "\n")
                t = t[cut:]
        # make sure the needle/question words are in the training text
        for _ in range(50):
            f.write(NEEDLE.format(12345) + " " + QUESTION + ANSWER.format(67890) + "\n")
        for _ in range(10 if extra_lines else 0):
            for line in extra_lines:
                f.write(line + "\n")
    spm.SentencePieceTrainer.train(
        input=tmp, model_prefix=prefix, model_type="bpe", vocab_size=vocab_size,
        character_coverage=1.0, split_digits=True, byte_fallback=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        max_sentence_length=8192, num_threads=2, input_sentence_size=0, shuffle_input_sentence=False,
        seed_sentencepiece_size=200000, minloglevel=1,
    )
    os.remove(tmp)
    return prefix + ".model"


def build_prompt(prefix_words, rest_words, passkey):
    parts = [" ".join(prefix_words), NEEDLE.format(passkey), " ".join(rest_words), QUESTION]
    return " ".join(p for p in parts if p)


def random_passkey(rng):
    return str(rng.randint(10000, 99999))


class ExampleMaker:
    """Builds prompts of an exact token budget. SentencePiece splits on whitespace first, so the ids of
    a space-joined text are the concatenation of each word's ids; that lets us count tokens per word,
    but every example is still encoded as one whole string."""

    def __init__(self, sp, words):
        self.sp = sp
        self.words = words
        self.counts = [len(x) for x in sp.encode(words)]
        # prefix sums
        self.cum = [0]
        for c in self.counts:
            self.cum.append(self.cum[-1] + c)

    def make(self, rng, total_len, depth, passkey=None, start=None):
        """Returns (ids, n_prompt, passkey, text): ids = BOS + prompt + answer + EOS with len(ids) <= total_len,
        n_prompt = number of ids before the answer."""
        passkey = passkey or random_passkey(rng)
        fixed = len(self.sp.encode(build_prompt([], [], passkey) + ANSWER.format(passkey))) + 2  # BOS, EOS
        budget = max(0, total_len - fixed)
        n = len(self.words)
        if start is None:
            start = rng.randrange(0, n - 1)
        # take words from start while they fit (wrap around the corpus)
        hay, used, i = [], 0, start
        while True:
            c = self.counts[i % n]
            if used + c > budget:
                break
            hay.append(self.words[i % n])
            used += c
            i += 1
        # split at depth (by tokens)
        target = depth * used
        acc, k = 0, 0
        while k < len(hay) and acc + self.counts[(start + k) % n] / 2 <= target:
            acc += self.counts[(start + k) % n]
            k += 1
        if depth >= 1.0:
            k = len(hay)
        if depth <= 0.0:
            k = 0
        prompt = build_prompt(hay[:k], hay[k:], passkey)
        p_ids = [self.sp.bos_id()] + self.sp.encode(prompt)
        full = [self.sp.bos_id()] + self.sp.encode(prompt + ANSWER.format(passkey)) + [self.sp.eos_id()]
        assert full[:len(p_ids)] == p_ids, "prompt ids must be a prefix of prompt+answer ids"
        assert len(full) <= total_len, (len(full), total_len)
        return full, len(p_ids), passkey, prompt
