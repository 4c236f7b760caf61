"""A pure-Python stand-in for the parts of sentencepiece's SentencePieceProcessor that the training
scripts use (encode, decode, bos_id, eos_id, get_piece_size), for machines without the python
sentencepiece module (the GPU machine may lack it). It reads only BPE models of the kind
niah_data.train_tokenizer writes (identity normalization, dummy prefix, byte fallback, no
user-defined or unused pieces) and refuses any other with ValueError. Training a tokenizer still
needs sentencepiece itself.

The encoding is SentencePiece's BPE: the normalized text split into characters, then the adjacent
pair whose concatenation is a piece with the highest score merged first (the leftmost among equal
scores) until no pair is a piece; characters that are no piece become their UTF-8 byte pieces.
Where no piece has "▁" after its first character (SentencePiece's split_by_whitespace, the
default), words are encoded separately and cached, which makes haystack prompts cheap.
test_spm_lite.py checks it against zigzag-tokenize (our C++ tokenizer) and, where installed,
against sentencepiece itself.

  from spm_lite import load_processor
  sp = load_processor("tokenizer.model")   # sentencepiece's processor if importable, else this one
"""
import heapq
import struct
import sys

SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
BPE = 2


def _varint(buf, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("tokenizer.model: truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a protobuf message; value is an int for varint and
    fixed32/64 fields, bytes for length-delimited ones. ValueError on a truncated message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        size = {1: 8, 5: 4}.get(wire)
        if wire == 2:
            size, pos = _varint(buf, pos)
        if size is not None and pos + size > len(buf):
            raise ValueError(f"tokenizer.model: field {field} runs past the end")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        yield field, wire, value


class SentencePieceBpe:
    def __init__(self, model_file):
        with open(model_file, "rb") as f:
            data = f.read()
        self.pieces, self.scores, self.types = [], [], []
        trainer, normalizer = {}, {}
        for field, _, value in _fields(data):
            if field == 1:  # ModelProto.pieces
                piece, score, kind = "", 0.0, NORMAL
                for f, _, v in _fields(value):
                    if f == 1:
                        piece = v.decode("utf-8")
                    elif f == 2:
                        score = struct.unpack("<f", struct.pack("<I", v))[0]
                    elif f == 3:
                        kind = v
                self.pieces.append(piece)
                self.scores.append(score)
                self.types.append(kind)
            elif field == 2:  # trainer_spec
                trainer = {f: v for f, _, v in _fields(value)}
            elif field == 3:  # normalizer_spec
                normalizer = {f: v for f, _, v in _fields(value)}
        # TrainerSpec: model_type 3 (default UNIGRAM = 1), byte_fallback 35, treat_whitespace_as_suffix
        # 24. NormalizerSpec: name 1, precompiled_charsmap 2, add_dummy_prefix 3 (default true),
        # remove_extra_whitespaces 4 (default true), escape_whitespaces 5 (default true).
        where = f"{model_file}: spm_lite reads only BPE models as niah_data.train_tokenizer writes them"
        if trainer.get(3, 1) != BPE:
            raise ValueError(f"{where} (model_type is {trainer.get(3, 1)}, not BPE)")
        if not trainer.get(35, 0) or trainer.get(24, 0):
            raise ValueError(f"{where} (byte_fallback off or whitespace as suffix)")
        if normalizer.get(2, b"") or not normalizer.get(5, 1) or normalizer.get(4, 1):
            raise ValueError(f"{where} (a normalization rule, or whitespace not escaped, or extra "
                             "whitespace removed)")
        if any(t in (USER_DEFINED, UNUSED) for t in self.types):
            raise ValueError(f"{where} (user-defined or unused pieces)")
        self.add_dummy_prefix = bool(normalizer.get(3, 1))
        self.ids = {p: i for i, (p, t) in enumerate(zip(self.pieces, self.types)) if t == NORMAL}
        self.byte_ids = {}
        for i, (p, t) in enumerate(zip(self.pieces, self.types)):
            if t == BYTE:
                self.byte_ids[int(p[3:5], 16)] = i
        if len(self.byte_ids) != 256:
            raise ValueError(f"{where} (byte_fallback without all 256 byte pieces)")
        self.unk = self.types.index(UNKNOWN)
        self.word_additive = all(SPACE not in p[1:] for p in self.ids)
        self._cache = {}
        self._bos = self.pieces.index("<s>") if "<s>" in self.pieces else -1
        self._eos = self.pieces.index("</s>") if "</s>" in self.pieces else -1

    def bos_id(self):
        return self._bos

    def eos_id(self):
        return self._eos

    def get_piece_size(self):
        return len(self.pieces)

    def encode(self, text):
        """The ids of `text`; a list of texts gives a list of id lists (as sentencepiece's)."""
        if isinstance(text, list):
            return [self.encode(t) for t in text]
        if not text:
            return []
        normalized = (SPACE if self.add_dummy_prefix else "") + text.replace(" ", SPACE)
        if not self.word_additive:
            return self._encode_normalized(normalized)
        # No piece has "▁" after its first character, so no merge crosses the start of a word:
        # the text's ids are its words' ids, each word encoded once and remembered.
        out = []
        start = 0
        while start < len(normalized):
            end = normalized.find(SPACE, start + 1)
            if end < 0:
                end = len(normalized)
            word = normalized[start:end]
            ids = self._cache.get(word)
            if ids is None:
                ids = self._encode_normalized(word)
                if len(self._cache) < 1_000_000:
                    self._cache[word] = ids
            out.extend(ids)
            start = end
        return out

    def _encode_normalized(self, normalized):
        symbols = list(normalized)
        prev = list(range(-1, len(symbols) - 1))
        nxt = list(range(1, len(symbols))) + [-1]
        agenda = []

        def push(left, right):
            if left < 0 or right < 0:
                return
            piece = symbols[left] + symbols[right]
            i = self.ids.get(piece)
            if i is not None:
                # heapq pops the smallest: highest score first, then the leftmost.
                heapq.heappush(agenda, (-self.scores[i], left, right, piece))

        for i in range(1, len(symbols)):
            push(i - 1, i)
        while agenda:
            _, left, right, piece = heapq.heappop(agenda)
            if symbols[left] + symbols[right] != piece or nxt[left] != right:
                continue  # stale: one side has merged since
            symbols[left], symbols[right] = piece, ""
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            push(prev[left], left)
            push(left, nxt[left])
        out = []
        i = 0
        while i >= 0:
            piece = symbols[i]
            if piece in self.ids:
                out.append(self.ids[piece])
            else:
                out.extend(self.byte_ids[b] for b in piece.encode("utf-8"))
            i = nxt[i]
        return out

    def decode(self, ids):
        data = bytearray()
        for i in ids:
            t = self.types[i]
            if t == BYTE:
                data.append(int(self.pieces[i][3:5], 16))
            elif t == NORMAL:
                data += self.pieces[i].replace(SPACE, " ").encode("utf-8")
            elif t == UNKNOWN:
                data += " \u2047 ".encode("utf-8")
        text = data.decode("utf-8", errors="replace")
        if self.add_dummy_prefix and text.startswith(" "):
            text = text[1:]
        return text


def load_processor(model_file):
    """sentencepiece's SentencePieceProcessor when the module is importable, else SentencePieceBpe."""
    try:
        import sentencepiece as spm
    except ImportError:
        print("spm_lite: python sentencepiece is missing; using the pure-Python BPE encoder",
              file=sys.stderr)
        return SentencePieceBpe(model_file)
    return spm.SentencePieceProcessor(model_file=model_file)
