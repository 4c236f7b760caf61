#!/usr/bin/python3
"""Writes the fixed tokenizers (fuzz/data/) and the seed corpora (fuzz/corpus/<target>/) of the
fuzz targets. Deterministic: rerunning it rewrites the same files. The SentencePiece seeds are
trained with Debian's spm_train (package sentencepiece); the rest is written here by hand.

Generator-mode seeds (see shaped_input.h) start with 0xFF, a kind, a variant and a 3-byte size;
their "@@" / "@$" placeholder is where the generated shape goes. Their sizes and variants stay
just below what crashes today's code (a crashing seed would stop every run at start-up); the
crashing inputs are in fuzz/regressions/, and mutating the size or variant bytes reaches them.

Usage: fuzz/make_seeds.py   (from anywhere; paths are relative to this file)
"""
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")
DATA = os.path.join(HERE, "data")

# ShapeKind values (shaped_input.h).
DEEP_ARRAYS, DEEP_OBJECTS, WHITESPACE, HUGE_NUMBER, LONG_TEXT, MANY_ENTRIES = range(6)


def shaped(kind, variant, size, template):
    """A generator-mode input: size is written as 2^e - 1 + m (m < 65536), the nearest below."""
    if isinstance(template, str):
        template = template.encode()
    e = max(k for k in range(22) if (1 << k) - 1 <= size)
    m = min(size - ((1 << e) - 1), 0xFFFF)
    return bytes([0xFF, kind, variant]) + struct.pack("<H", m) + bytes([e]) + template


def write(target, name, content):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(content)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# Fixed tokenizers ------------------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def merges_for(words, vocab):
    """Left-to-right merges spelling each word, added to vocab."""
    merges = []
    for word in words:
        current = word[0]
        for ch in word[1:]:
            merged = current + ch
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append(current + " " + ch)
            current = merged
    return merges


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bytelevel_tokenizer():
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    g = table[ord(" ")]
    merges = merges_for([g + "the", g + "and", "ing", g + "a", "in", "er", g + "to", "he",
                         g + "of", "'s", "12", "ll", g + g], vocab)
    next_id = len(vocab)
    added = []
    for content, special in [("<|begin_of_text|>", True), ("<|end_of_text|>", True),
                             ("<|eot_id|>", True), ("<tool>", False)]:
        added.append({"id": next_id, "content": content, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": special})
        next_id += 1
    return {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<|begin_of_text|>": {
                               "id": "<|begin_of_text|>", "ids": [256 + len(merges)],
                               "tokens": ["<|begin_of_text|>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }


def metaspace_tokenizer():
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for ch in "▁abcdefghijklmnopqrstuvwxyz,.!'" + "éü日本":
        vocab[ch] = len(vocab)
    merges = merges_for(["▁the", "▁and", "ing", "▁a", "in", "er", "▁to", "he", "▁▁"], vocab)
    return {
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, c in enumerate(["<unk>", "<s>", "</s>"])],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1],
                                                      "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def small_tokenizer():
    """The fuzz_tokenizer_config target's quick-to-load tokenizer.json: the special tokens its
    seeds name, letters, an unknown token, no regexes."""
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|begin_of_text|>", "<|eot_id|>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in "abcdefghijklmnopqrstuvwxyz ":
        vocab[ch] = len(vocab)
    merges = merges_for(["he", "ll", "wo"], vocab)
    return {
        "added_tokens": [{"id": i, "content": t, "special": True}
                         for i, t in enumerate(specials) if i > 0],
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin_of_text|>"}},
                                      {"Sequence": {"id": "A"}}],
                           "special_tokens": {"<|begin_of_text|>": {"ids": [4]}}},
        "model": {"type": "BPE", "unk_token": "<unk>", "vocab": vocab, "merges": merges},
    }


def small_vocab(chars, words):
    vocab = {"[UNK]": 0}
    for ch in chars:
        vocab[ch] = len(vocab)
    merges = merges_for(words, vocab)
    return vocab, merges


def variant_tokenizers():
    """Small tokenizer.json files, each exercising other components."""
    out = {}
    vocab, merges = small_vocab("abcdefghijklmnopqrstuvwxyz0123456789.,!?'▁ ",
                                ["the", "and", "ing", "12"])
    out["whitespace_lowercase"] = {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "left": True,
                                                      "right": True}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Whitespace"}, {"type": "Digits", "individual_digits": True}]},
        "decoder": {"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "Strip",
                                                                        "content": "a",
                                                                        "start": 0,
                                                                        "stop": 1}]},
        "model": {"type": "BPE", "unk_token": "[UNK]", "fuse_unk": True, "vocab": vocab,
                  "merges": [m.split(" ") for m in merges]},
        "added_tokens": [{"id": len(vocab), "content": "[MASK]", "special": True,
                          "lstrip": True, "rstrip": True, "single_word": True}],
    }
    out["split_behaviors"] = {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFD"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "NFC"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": ","}, "behavior": "Removed"},
            {"type": "Split", "pattern": {"Regex": "[.!?]"}, "behavior": "MergedWithPrevious"},
            {"type": "Split", "pattern": {"String": "'"}, "behavior": "MergedWithNext"},
            {"type": "Split", "pattern": {"Regex": "\\d"}, "behavior": "Contiguous",
             "invert": True},
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
             "split": False}]},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"},
        "model": {"type": "BPE", "unk_token": "[UNK]", "vocab": vocab, "merges": merges},
    }
    vocab2, merges2 = small_vocab("abcdefghijklmnopqrstuvwxyzĠ", ["Ġthe", "Ġa", "er"])
    out["gpt2_prefix_space"] = {
        "normalizer": {"type": "NFKD"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "trim_offsets": False},
            {"type": "TemplateProcessing",
             "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<eos>"}}],
             "special_tokens": {"<eos>": {"id": "<eos>", "ids": [len(vocab2)]}}}]},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "unk_token": "[UNK]", "vocab": vocab2, "merges": merges2},
        "added_tokens": [{"id": len(vocab2), "content": "<eos>", "special": True}],
    }
    return out


# Seeds per target ------------------------------------------------------------------------------

SAMPLE_TEXT = "Hello world! It's 2024, naïve café\n\n  spaces\t<|eot_id|>日本語 😀 12345"


def seeds_tokenizer_json(bytelevel, metaspace):
    t = "fuzz_tokenizer_json"
    write(t, "bytelevel", dumps(bytelevel) + "\0" + SAMPLE_TEXT)
    write(t, "metaspace", dumps(metaspace) + "\0" + "the and  ing a\n日本 \x01")
    for name, tok in variant_tokenizers().items():
        write(t, name, dumps(tok) + "\0" + "The 12 Apples, don't STOP! ok.  x [MASK] y")
    tiny = '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}'
    write(t, "minimal", tiny + "\0abab")
    write(t, "gen_deep_arrays_merges",
          shaped(DEEP_ARRAYS, 0, 2000,
                 '{"model":{"type":"BPE","vocab":{"a":0},"merges":@@}}\0a'))
    write(t, "gen_deep_objects_normalizer",
          shaped(DEEP_OBJECTS, 0, 2000,
                 '{"model":{"type":"BPE","vocab":{"a":0}},"normalizer":@@}\0a'))
    write(t, "gen_huge_vocab_id",
          shaped(HUGE_NUMBER, 2, 0, '{"model":{"type":"BPE","vocab":{"a":0,"b":@@}}}\0ab'))
    write(t, "gen_huge_added_id",
          shaped(HUGE_NUMBER, 12, 0, '{"model":{"type":"BPE","vocab":{"a":0}},"added_tokens":'
                 '[{"id":@@,"content":"x","special":true}]}\0axa'))
    write(t, "gen_many_vocab_entries",
          shaped(MANY_ENTRIES, 0, 5000, '{"model":{"type":"BPE","vocab":{@@}}}\0t1 t2'))
    write(t, "gen_whitespace_run_bytelevel",
          shaped(WHITESPACE, 0, 1 << 16, dumps(bytelevel) + "\0x@$y"))
    write(t, "gen_newline_run_bytelevel",
          shaped(WHITESPACE, 1, 1 << 16, dumps(bytelevel) + "\0x@$y"))
    write(t, "gen_long_word_metaspace",
          shaped(LONG_TEXT, 0, 1 << 14, dumps(metaspace) + "\0@$"))
    write(t, "gen_replace_content",
          shaped(LONG_TEXT, 1, 4096,
                 '{"model":{"type":"BPE","vocab":{"a":0},"unk_token":"a"},"normalizer":'
                 '{"type":"Replace","pattern":{"String":"a"},"content":"@@"}}\0aaaaaaaaaaaaaaaa'))


def seeds_safetensors():
    t = "fuzz_safetensors"

    def file(header, data):
        h = dumps(header).encode()
        return struct.pack("<Q", len(h)) + h + data

    write(t, "f32_2x2", file({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                             struct.pack("<4f", 1, 2, 3, 4)))
    write(t, "mixed", file({
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F16", "shape": [1, 2], "data_offsets": [6, 10]},
        "scalar": {"dtype": "F32", "shape": [], "data_offsets": [10, 14]},
        "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [14, 14]}}, bytes(range(14))))
    write(t, "unsupported_dtype",
          file({"x": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)))
    write(t, "bad_offsets", file({"x": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
                                 bytes(8)))
    write(t, "header_too_long", struct.pack("<Q", 1 << 40) + b"{}")
    # Generator mode: "<header>\0<data>", the length prefix is written by the target.
    write(t, "gen_deep_shape", shaped(DEEP_ARRAYS, 0, 2000,
                                      '{"t":{"dtype":"F32","shape":@@,"data_offsets":[0,4]}}\0abcd'))
    write(t, "gen_deep_metadata", shaped(DEEP_OBJECTS, 0, 100000,
                                         '{"__metadata__":@@,"t":{"dtype":"F32","shape":[1],'
                                         '"data_offsets":[0,4]}}\0abcd'))
    write(t, "gen_huge_dim", shaped(HUGE_NUMBER, 7, 0,
                                    '{"t":{"dtype":"F32","shape":[@@,0],"data_offsets":[0,0]}}\0'))
    write(t, "gen_huge_offset", shaped(HUGE_NUMBER, 9, 0,
                                       '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,@@]}}'
                                       '\0abcd'))
    write(t, "gen_many_dims", shaped(MANY_ENTRIES, 1, 100000,
                                     '{"t":{"dtype":"F16","shape":[@@],"data_offsets":[0,0]}}\0'))
    write(t, "gen_whitespace_header", shaped(WHITESPACE, 0, 1 << 20, '{@@"t":{"dtype":"F32",'
                                             '"shape":[1],"data_offsets":[0,4]}}\0abcd'))


TINY_CONFIG = open(os.path.join(ROOT, "models/zigzag-tiny/config.json")).read()
TINY_GENERATION = open(os.path.join(ROOT, "models/zigzag-tiny/generation_config.json")).read()
TINY_TOKENIZER_CONFIG = open(os.path.join(ROOT, "models/zigzag-tiny/tokenizer_config.json")).read()


def seeds_model_config():
    t = "fuzz_model_config"
    write(t, "tiny", TINY_CONFIG + "\0" + TINY_GENERATION)
    base = {"vocab_size": 1000, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 4096}
    llama3 = dict(base, architectures=["LlamaForCausalLM"], rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                  eos_token_id=[128001, 128009], bos_token_id=128000, attention_bias=True)
    write(t, "llama3_scaling", dumps(llama3) + "\0" + dumps({"eos_token_id": [128001, 128008]}))
    mistral = dict(base, architectures=["MistralForCausalLM"], sliding_window=1024,
                   head_dim=32, tie_word_embeddings=False, torch_dtype="bfloat16")
    write(t, "mistral_window", dumps(mistral))
    qwen = dict(base, architectures=["Qwen2ForCausalLM"], sliding_window=2048,
                use_sliding_window=True, rope_scaling=None, eos_token_id=2)
    write(t, "qwen2", dumps(qwen) + "\0" + dumps({"bos_token_id": 1, "eos_token_id": None}))
    write(t, "gen_deep_rope_scaling",
          shaped(DEEP_OBJECTS, 0, 100000, dumps(dict(base, architectures=["LlamaForCausalLM"]))
                 [:-1] + ',"rope_scaling":@@}'))
    write(t, "gen_huge_vocab",
          shaped(HUGE_NUMBER, 8, 0, '{"architectures":["LlamaForCausalLM"],"vocab_size":@@,'
                 '"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,'
                 '"num_attention_heads":4}'))
    write(t, "gen_huge_eos_generation",
          shaped(HUGE_NUMBER, 2, 0, dumps(llama3) + '\0{"eos_token_id":[@@]}'))
    write(t, "gen_many_eos",
          shaped(MANY_ENTRIES, 1, 2000, dumps(llama3)[:-1] + ',"eos_token_id":[@@]}'))
    write(t, "gen_huge_head_dim",
          shaped(HUGE_NUMBER, 7, 0, dumps(dict(base, architectures=["LlamaForCausalLM"]))
                 [:-1] + ',"head_dim":@@}'))


def seeds_tokenizer_config():
    t = "fuzz_tokenizer_config"
    write(t, "tiny_sentencepiece",
          TINY_TOKENIZER_CONFIG + "\0" + TINY_GENERATION + "\0" + TINY_CONFIG + "\0\x02")
    write(t, "small_added_token_objects",
          dumps({"bos_token": {"content": "<|begin_of_text|>", "lstrip": False},
                 "eos_token": {"content": "<|eot_id|>"}, "pad_token": None,
                 "add_bos_token": True, "add_eos_token": True})
          + "\0" + dumps({"eos_token_id": [5, 2], "bos_token_id": 4}) + "\0\0\x00")
    write(t, "metaspace_ids_only",
          "\0" + dumps({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}) + "\0"
          + dumps({"eos_token_id": [2, 0]}) + "\0\x01")
    write(t, "unknown_token", dumps({"eos_token": "<nope>"}) + "\0\0\0\x01")
    write(t, "gen_huge_eos",
          shaped(HUGE_NUMBER, 0, 0, '{"add_bos_token":true}\0{"eos_token_id":@@}\0\0\x02'))
    write(t, "gen_huge_eos_list",
          shaped(HUGE_NUMBER, 5, 0, '\0\0{"eos_token_id":[1,@@]}\0\x01'))
    write(t, "gen_deep_bos", shaped(DEEP_ARRAYS, 0, 2000, '{"bos_token":@@}\0\0\0'))
    write(t, "gen_many_eos", shaped(MANY_ENTRIES, 1, 2000, '\0{"eos_token_id":[@@]}\0\0\x02'))


def seeds_request():
    import sys
    sys.path.insert(0, tempfile.mkdtemp())
    out_dir = sys.path[0]
    subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
                    "--python_out=" + out_dir, os.path.join(ROOT, "proto/zigzag/v1/engine.proto")],
                   check=True)
    from zigzag.v1 import engine_pb2 as pb
    t = "fuzz_request"
    r = pb.GenerateRequest(request_id="r1", text="Hello world, tell me a story.")
    r.sampling_params.temperature = 0.7
    r.sampling_params.top_p = 0.9
    r.sampling_params.max_tokens = 32
    r.sampling_params.stop.extend(["\n\n", "THE END"])
    r.kv_compression.policy = pb.KV_POLICY_ZIGZAG
    r.kv_compression.ratio = 0.25
    r.kv_compression.window = 8
    r.kv_compression.tau = 0.9
    for mode in (1, 2, 3):
        write(t, "text_tokenizer%d" % mode, bytes([mode]) + r.SerializeToString())
    r = pb.GenerateRequest(token_ids=pb.TokenIds(ids=[1, 2, 3, 400, 4095]))
    r.sampling_params.stop_token_ids.extend([2, 7])
    r.sampling_params.max_tokens = 4090
    r.kv_compression.policy = pb.KV_POLICY_STREAMING
    r.kv_compression.tokens_per_layer = 64
    r.kv_compression.kernel = 7
    write(t, "token_ids_no_tokenizer", bytes([0]) + r.SerializeToString())
    r = pb.GenerateRequest(text="x", add_special_tokens=False)
    r.sampling_params.top_k = 5
    r.sampling_params.min_p = 0.05
    r.sampling_params.repetition_penalty = 1.1
    r.sampling_params.seed = 2 ** 64 - 1
    r.sampling_params.skip_special_tokens = False
    r.kv_compression.policy = 5
    r.kv_compression.rho = 0.2
    write(t, "text_no_tokenizer", bytes([0]) + r.SerializeToString())
    write(t, "text_sentencepiece_flags", bytes([3]) + r.SerializeToString())
    rng = random.Random(11)
    for i in range(6):
        write(t, "structured_%d" % i,
              bytes([4 | (i % 4)]) + bytes(rng.randrange(256) for _ in range(64 + 96 * i)))


def seeds_detokenize():
    t = "fuzz_detokenize"
    rng = random.Random(7)
    for i, length in enumerate([16, 64, 200, 600, 1500]):
        write(t, "random_%d" % i, bytes(rng.randrange(256) for _ in range(length)))
    for i, text in enumerate([SAMPLE_TEXT, "stop here. STOP. The end\n\n", "日本語のテキスト😀"]):
        write(t, "text_%d" % i, text.encode() + bytes(rng.randrange(256) for _ in range(40)))


def seeds_sentencepiece():
    t = "fuzz_sentencepiece"
    work = tempfile.mkdtemp()
    # A small corpus (few distinct characters) keeps the models a few KB.
    corpus = os.path.join(work, "corpus.txt")
    with open(corpus, "w") as f:
        for i in range(200):
            f.write("the cat and the dog ran to the tree %d times, it's a tale of 12 ings.\n" % i)
            f.write("Another line: hello world, the end. café naïve 日本\n")
    rules = os.path.join(work, "rules.tsv")
    with open(rules, "w") as f:
        # A tiny custom normalization (a precompiled charsmap of a few hundred bytes):
        # full-width A -> A, "ﬁ" -> "fi", U+3000 -> space.
        f.write("FF21\t41\nFB01\t66 69\n3000\t20\n")
    common = ["--input=" + corpus, "--model_type=bpe", "--num_threads=1", "--minloglevel=2",
              "--character_coverage=1.0", "--max_sentence_length=2048"]
    models = {
        "bpe_small": ["--vocab_size=120", "--normalization_rule_name=identity"],
        "bpe_byte_fallback": ["--vocab_size=340", "--byte_fallback=true",
                              "--normalization_rule_name=identity", "--split_digits=true"],
        "bpe_symbols": ["--vocab_size=130", "--normalization_rule_name=identity",
                        "--user_defined_symbols=<tool>,@@,日本",
                        "--control_symbols=<ctl>", "--treat_whitespace_as_suffix=true",
                        "--remove_extra_whitespaces=false", "--add_dummy_prefix=false",
                        "--pad_id=3"],
        "bpe_charsmap": ["--vocab_size=120", "--normalization_rule_tsv=" + rules],
        "unigram_rejected": ["--vocab_size=40", "--hard_vocab_limit=false", "--model_type=unigram",
                             "--normalization_rule_name=identity"],
    }
    blobs = {}
    for name, flags in models.items():
        prefix = os.path.join(work, name)
        subprocess.run(["spm_train", *common, "--model_prefix=" + prefix, *flags], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(prefix + ".model", "rb") as f:
            blobs[name] = f.read()
        write(t, name, blobs[name])
    shutil.rmtree(work)
    # fuzz_tokenizer_config's SentencePiece model: small (fast to load), with control, user-defined
    # and pad pieces.
    with open(os.path.join(DATA, "tokenizer_small.model"), "wb") as f:
        f.write(blobs["bpe_symbols"])
    small = blobs["bpe_small"]
    write(t, "gen_whitespace_run", shaped(WHITESPACE, 0, 1 << 18, small))
    write(t, "gen_ideographic_spaces", shaped(WHITESPACE, 5, 1 << 18, blobs["bpe_charsmap"]))
    write(t, "gen_long_word", shaped(LONG_TEXT, 0, 1 << 16, blobs["bpe_byte_fallback"]))
    write(t, "gen_many_pieces", shaped(MANY_ENTRIES, 0, 20000, small))


def main():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    os.makedirs(DATA, exist_ok=True)
    bytelevel = bytelevel_tokenizer()
    metaspace = metaspace_tokenizer()
    for name, tok in [("tokenizer_bytelevel.json", bytelevel),
                      ("tokenizer_metaspace.json", metaspace),
                      ("tokenizer_small.json", small_tokenizer())]:
        with open(os.path.join(DATA, name), "w") as f:
            f.write(json.dumps(tok, ensure_ascii=False, indent=None, separators=(",", ":")))
            f.write("\n")
    seeds_tokenizer_json(bytelevel, metaspace)
    seeds_safetensors()
    seeds_model_config()
    seeds_tokenizer_config()
    seeds_request()
    seeds_detokenize()
    seeds_sentencepiece()


if __name__ == "__main__":
    main()
