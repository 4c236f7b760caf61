#!/usr/bin/env python3
"""Tests of spm_lite.py (the pure-Python SentencePiece BPE encoder for machines without the
sentencepiece module) against two independent encoders of the same tokenizer.model:
- zigzag-tokenize, our C++ SentencePiece tokenizer (itself tested against sentencepiece), on the
  embedded model's tokenizer: always (ctest passes the binary);
- the python sentencepiece module, where it is installed (it is not in CI).
Texts: license and release-note prose (as the haystack), the task templates with numbers and keys,
runs of spaces, tabs and newlines, and characters outside the vocabulary (byte fallback). Also:
decode(encode(text)) == text, and models of another kind are refused.

  python3 tools/train_model/test_spm_lite.py -v --tokenize build/tools/zigzag-tokenize
"""
import glob
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spm_lite  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(REPO, "models", "zigzag-tiny", "tokenizer.model")
TOKENIZE = None  # set from --tokenize


def sample_texts():
    texts = ["a", " ", "   three spaces  and two ", "The special magic number for red apple is 12345.",
             "What are all the special magic numbers for soft basket? The special magic numbers for soft "
             "basket are 18537, 53496, 49499, 89050.", "VAR ABCDE = 90210. VAR FGHIJ = VAR ABCDE.",
             "tab\there\nnew line\r\n", "héllo wörld, naïve café", "中文 and emoji 🙂 and \u2047"]
    prose = sorted(glob.glob("/usr/share/common-licenses/*")) + \
        sorted(glob.glob("/usr/share/doc/git/RelNotes/*.txt"))[::40]
    for path in prose:
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read()[:4000])
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        texts.append(f.read()[:6000])
    return texts


class SpmLiteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lite = spm_lite.SentencePieceBpe(MODEL)
        cls.texts = sample_texts()

    def test_special_ids_and_size(self):
        self.assertEqual(self.lite.bos_id(), 1)
        self.assertEqual(self.lite.eos_id(), 2)
        self.assertEqual(self.lite.get_piece_size(), 4096)
        self.assertTrue(self.lite.word_additive)

    def test_matches_zigzag_tokenize(self):
        if TOKENIZE is None:
            self.skipTest("no --tokenize binary given")
        self.assertGreater(len(self.texts), 12)
        for text in self.texts:
            out = subprocess.run([TOKENIZE, "--model", os.path.dirname(MODEL), "--text", text],
                                 check=True, capture_output=True, text=True).stdout.strip()
            want = [int(t) for t in out.split(",")] if out else []
            self.assertEqual(self.lite.encode(text), want, repr(text[:80]))

    def test_a_list_gives_a_list_of_encodings(self):
        words = ["alpha", "beta gamma", ""]
        self.assertEqual(self.lite.encode(words), [self.lite.encode(w) for w in words])

    def test_word_cache_changes_nothing(self):
        # The same texts through the whole-text merge loop (no per-word split, no cache).
        for text in self.texts:
            normalized = spm_lite.SPACE + text.replace(" ", spm_lite.SPACE)
            self.assertEqual(self.lite.encode(text), self.lite._encode_normalized(normalized),
                             repr(text[:80]))

    def test_matches_sentencepiece_where_installed(self):
        try:
            import sentencepiece as spm
        except ImportError:
            self.skipTest("python sentencepiece is not installed")
        ref = spm.SentencePieceProcessor(model_file=MODEL)
        for text in self.texts:
            ids = ref.encode(text)
            self.assertEqual(self.lite.encode(text), ids, repr(text[:80]))
            self.assertEqual(self.lite.decode(ids), ref.decode(ids), repr(text[:80]))

    def test_decode_inverts_encode(self):
        for text in self.texts:
            if text.startswith(" "):
                continue  # the dummy prefix: a leading space is not recoverable (as in sentencepiece)
            self.assertEqual(self.lite.decode(self.lite.encode(text)), text, repr(text[:80]))

    def test_other_models_are_refused(self):
        with open(MODEL, "rb") as f:
            data = f.read()
        # The same model with TrainerSpec.model_type (field 3 of ModelProto's field 2) set to
        # UNIGRAM (1), re-serialized field by field.
        def message(fields):
            out = bytearray()
            for field, wire, value in fields:
                out += varint(field << 3 | wire)
                if wire == 0:
                    out += varint(value)
                elif wire == 1:
                    out += value.to_bytes(8, "little")
                elif wire == 2:
                    out += varint(len(value)) + value
                else:
                    out += value.to_bytes(4, "little")
            return bytes(out)

        def varint(n):
            out = bytearray()
            while True:
                out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
                n >>= 7
                if not n:
                    return bytes(out)

        top = list(spm_lite._fields(data))
        self.assertEqual(message(top), data)  # the re-serializer is faithful
        edited = []
        for field, wire, value in top:
            if field == 2:
                value = message([(f, w, 1 if f == 3 else v) for f, w, v in spm_lite._fields(value)])
            edited.append((field, wire, value))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tokenizer.model")
            with open(path, "wb") as f:
                f.write(message(edited))
            with self.assertRaisesRegex(ValueError, "model_type is 1, not BPE"):
                spm_lite.SentencePieceBpe(path)


class SpmLiteBadFileTest(unittest.TestCase):
    def test_a_truncated_model_is_a_value_error(self):
        with open(MODEL, "rb") as f:
            data = f.read()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tokenizer.model")
            for cut in (1, len(data) // 2, len(data) - 3):
                with open(path, "wb") as f:
                    f.write(data[:cut])
                with self.assertRaisesRegex(ValueError, "tokenizer.model: (truncated|field)"):
                    spm_lite.SentencePieceBpe(path)


if __name__ == "__main__":
    if "--tokenize" in sys.argv:
        i = sys.argv.index("--tokenize")
        TOKENIZE = sys.argv[i + 1]
        del sys.argv[i:i + 2]
    unittest.main()
