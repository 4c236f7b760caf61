"""GGUF v3 writer and reader (our own, from the GGUF spec in ggml's docs/gguf.md).

Owns the container format only: header, typed metadata, tensor infos, aligned tensor data. It knows
nothing of Llama or Hugging Face; tools/gguf/convert_hf_to_gguf.py maps a checkpoint onto it.
The reader exists to check the writer (tests) and to inspect files; it bounds every count it reads.
"""

import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32

# Metadata value types (gguf_metadata_value_type).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (
    range(13))
_SCALAR_FORMATS = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
                   FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# Tensor types (ggml_type) this project writes.
GGML_TYPE_F32 = 0
GGML_TYPE_F16 = 1
GGML_TYPE_BF16 = 30
GGML_TYPE_NAMES = {GGML_TYPE_F32: "F32", GGML_TYPE_F16: "F16", GGML_TYPE_BF16: "BF16"}
_ELEMENT_BYTES = {GGML_TYPE_F32: 4, GGML_TYPE_F16: 2, GGML_TYPE_BF16: 2}

# Reader limits: a corrupt count must give an error, not a huge allocation.
MAX_STRING_BYTES = 1 << 24
MAX_ARRAY_ELEMENTS = 1 << 24
MAX_KV_COUNT = 1 << 16
MAX_TENSOR_COUNT = 1 << 16
MAX_DIMS = 4


class GgufError(ValueError):
    """A malformed or unsupported GGUF file; the message names the field."""


def f32_to_bf16_bits(values):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if np.any(nan):
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _pack_string(text):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return struct.pack("<Q", len(data)) + data


def _pack_value(value_type, value):
    if value_type == STRING:
        return _pack_string(value)
    if value_type == ARRAY:
        element_type, elements = value
        out = [struct.pack("<IQ", element_type, len(elements))]
        if element_type in _SCALAR_FORMATS and element_type != BOOL:
            dtype = np.dtype(_SCALAR_FORMATS[element_type])
            out.append(np.asarray(elements, dtype=dtype).tobytes())
        else:
            out.extend(_pack_value(element_type, e) for e in elements)
        return b"".join(out)
    if value_type not in _SCALAR_FORMATS:
        raise GgufError(f"unknown metadata value type {value_type}")
    return struct.pack(_SCALAR_FORMATS[value_type], value)


class GgufWriter:
    """Collects metadata and tensors, then writes one GGUF v3 file.

    Tensors are given as numpy arrays in row-major order with the Hugging Face shape [rows, cols];
    GGUF lists dimensions innermost first (ne[0] = cols), so the stored dims are the shape reversed.
    """

    def __init__(self, alignment=DEFAULT_ALIGNMENT):
        self.alignment = alignment
        self.metadata = []  # (key, type, value)
        self.tensors = []  # (name, shape, ggml_type, raw bytes)
        if alignment != DEFAULT_ALIGNMENT:
            self.add("general.alignment", UINT32, alignment)

    def add(self, key, value_type, value):
        if any(k == key for k, _, _ in self.metadata):
            raise GgufError(f"metadata key {key!r} added twice")
        self.metadata.append((key, value_type, value))

    def add_tensor(self, name, array, ggml_type):
        array = np.asarray(array)
        if not 1 <= array.ndim <= MAX_DIMS:
            raise GgufError(f"tensor {name}: {array.ndim} dims (1..{MAX_DIMS} supported)")
        if ggml_type == GGML_TYPE_F32:
            raw = np.ascontiguousarray(array, dtype="<f4").tobytes()
        elif ggml_type == GGML_TYPE_F16:
            raw = np.ascontiguousarray(array, dtype="<f2").tobytes()
        elif ggml_type == GGML_TYPE_BF16:
            raw = f32_to_bf16_bits(np.asarray(array, dtype=np.float32)).astype("<u2").tobytes()
        else:
            raise GgufError(f"tensor {name}: unsupported ggml type {ggml_type}")
        if any(t[0] == name for t in self.tensors):
            raise GgufError(f"tensor {name} added twice")
        self.tensors.append((name, tuple(array.shape), ggml_type, raw))

    def _pad(self, n):
        return (-n) % self.alignment

    def write(self, path):
        header = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(self.tensors),
                                          len(self.metadata))]
        for key, value_type, value in self.metadata:
            header.append(_pack_string(key) + struct.pack("<I", value_type) +
                          _pack_value(value_type, value))
        offset = 0
        for name, shape, ggml_type, raw in self.tensors:
            dims = tuple(reversed(shape))
            header.append(_pack_string(name) + struct.pack("<I", len(dims)) +
                          struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ggml_type, offset))
            offset += len(raw) + self._pad(len(raw))
        head = b"".join(header)
        with open(path, "wb") as f:
            f.write(head)
            f.write(b"\0" * self._pad(len(head)))
            for _, _, _, raw in self.tensors:
                f.write(raw)
                f.write(b"\0" * self._pad(len(raw)))


class _Cursor:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n, what):
        if n < 0 or self.pos + n > len(self.data):
            raise GgufError(f"{what}: truncated file (need {n} bytes at offset {self.pos}, "
                            f"file has {len(self.data)})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def string(self, what):
        (n,) = self.unpack("<Q", what)
        if n > MAX_STRING_BYTES:
            raise GgufError(f"{what}: string of {n} bytes exceeds the limit {MAX_STRING_BYTES}")
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError as e:
            raise GgufError(f"{what}: invalid UTF-8 ({e})") from None

    def value(self, value_type, what):
        if value_type == STRING:
            return self.string(what)
        if value_type == ARRAY:
            element_type, count = self.unpack("<IQ", what)
            if count > MAX_ARRAY_ELEMENTS:
                raise GgufError(f"{what}: array of {count} elements exceeds the limit "
                                f"{MAX_ARRAY_ELEMENTS}")
            if element_type == ARRAY:
                raise GgufError(f"{what}: nested arrays are not supported")
            return [self.value(element_type, what) for _ in range(count)]
        if value_type not in _SCALAR_FORMATS:
            raise GgufError(f"{what}: unknown value type {value_type}")
        return self.unpack(_SCALAR_FORMATS[value_type], what)[0]


def read_gguf(path):
    """Reads a GGUF v3 file: returns (metadata dict, {name: (dims, ggml_type, float32 array)}).

    Arrays come back with the Hugging Face shape (dims reversed), decoded to float32.
    """
    with open(path, "rb") as f:
        cur = _Cursor(f.read())
    if cur.take(4, "magic") != GGUF_MAGIC:
        raise GgufError(f"{path}: not a GGUF file (bad magic)")
    (version,) = cur.unpack("<I", "version")
    if version != GGUF_VERSION:
        raise GgufError(f"{path}: version {version}, only {GGUF_VERSION} is supported")
    tensor_count, kv_count = cur.unpack("<QQ", "counts")
    if kv_count > MAX_KV_COUNT:
        raise GgufError(f"{path}: metadata_kv_count {kv_count} exceeds {MAX_KV_COUNT}")
    if tensor_count > MAX_TENSOR_COUNT:
        raise GgufError(f"{path}: tensor_count {tensor_count} exceeds {MAX_TENSOR_COUNT}")
    metadata = {}
    for i in range(kv_count):
        key = cur.string(f"metadata key #{i}")
        (value_type,) = cur.unpack("<I", f"metadata {key} type")
        metadata[key] = cur.value(value_type, f"metadata {key}")
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    infos = []
    for i in range(tensor_count):
        name = cur.string(f"tensor #{i} name")
        (n_dims,) = cur.unpack("<I", f"tensor {name} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GgufError(f"tensor {name}: n_dims {n_dims} not in [1, {MAX_DIMS}]")
        dims = cur.unpack(f"<{n_dims}Q", f"tensor {name} dims")
        ggml_type, offset = cur.unpack("<IQ", f"tensor {name} type/offset")
        if ggml_type not in _ELEMENT_BYTES:
            raise GgufError(f"tensor {name}: unsupported ggml type {ggml_type}")
        if offset % alignment:
            raise GgufError(f"tensor {name}: offset {offset} not a multiple of {alignment}")
        infos.append((name, dims, ggml_type, offset))
    data_start = cur.pos + (-cur.pos) % alignment
    tensors = {}
    for name, dims, ggml_type, offset in infos:
        count = int(np.prod(dims))
        start = data_start + offset
        end = start + count * _ELEMENT_BYTES[ggml_type]
        if end > len(cur.data):
            raise GgufError(f"tensor {name}: data [{start}, {end}) past the end of the file")
        raw = cur.data[start:end]
        if ggml_type == GGML_TYPE_F32:
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif ggml_type == GGML_TYPE_F16:
            values = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        else:
            values = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        tensors[name] = (tuple(dims), ggml_type, values.reshape(tuple(reversed(dims))))
    return metadata, tensors
