// The contract between the CPU attention planner (attention_runner.cc) and its per-instruction-set
// kernels (attention_scalar.cc, attention_avx2.cc, attention_avx512.cc): the work unit a kernel
// computes, the pool addressing and the scratch it needs. It plans nothing and picks no ISA.
#pragma once

#include <cstdint>

namespace zigzag::cpu::attn {

// Widest vector any kernel uses (AVX-512: 16 floats); rows and head dims are padded to it in
// scratch so that every kernel can use full-width loads there.
inline constexpr int64_t kMaxLanes = 16;
// Keys per tile of the online softmax (a multiple of every kernel's key block).
inline constexpr int64_t kKeyTile = 32;

inline constexpr int64_t PadToLanes(int64_t n) {
  return (n + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
}

// Read-only addressing of the pool [num_blocks, 2, block_size, head_dim]: a block holds one KV
// head's K (index 0) and V (index 1) of block_size entries.
struct PoolRef {
  const float* base = nullptr;
  int64_t block_size = 1;
  int64_t head_dim = 0;

  // Entry j of the stream whose blocks are `blocks`; its value row is key + ValueOffset().
  const float* Key(const int32_t* blocks, int64_t j) const {
    return base + (static_cast<int64_t>(blocks[j / block_size]) * 2 * block_size + j % block_size) *
                      head_dim;
  }
  int64_t ValueOffset() const { return block_size * head_dim; }
};

// One work unit: query heads [head0, head0 + group) (all heads of one KV head, so each K/V row
// is read once for the group) of queries [0, num_queries) of the unit, over the keys
// [key_begin, key_end) of that KV head's stream, each query further limited causally to the
// keys at or below its own cache index (first_index + its query number). Rows are ordered
// query-major: row = query * group + head.
//
// Without `partial` the unit covers every key its queries see and writes softmax(q K^T) V to
// out. With `partial` (a split-K chunk of a decode stream) it writes, per row, the online-softmax
// state of its keys instead: [m, l, acc[head_dim]] with m = max logit, l = sum exp(s - m),
// acc = sum exp(s - m) v (unnormalised), which attention_runner.cc merges across chunks exactly
// as the CUDA split-K kernel does.
struct TileUnit {
  const float* q = nullptr;  // [N, num_heads, head_dim]
  float* out = nullptr;      // [N, num_heads, head_dim]; may alias q (the unit copies its q first)
  int64_t num_heads = 0;
  int64_t query_row = 0;  // q row of the unit's query 0
  int32_t num_queries = 0;
  int32_t first_index = 0;  // cache index of query 0 in the stream
  int32_t head0 = 0;
  int32_t group = 0;
  int32_t key_begin = 0;
  int32_t key_end = 0;  // exclusive; <= first_index + num_queries
  const int32_t* blocks = nullptr;
  float scale = 1.0f;
  float* partial = nullptr;  // null, or [num_queries * group][2 + head_dim]

  int64_t rows() const { return static_cast<int64_t>(num_queries) * group; }
};

// Floats of per-thread scratch RunTileUnit needs for `rows` rows of head_dim.
inline int64_t TileScratchFloats(int64_t rows, int64_t head_dim) {
  const int64_t rpad = PadToLanes(rows);
  const int64_t dpad = PadToLanes(head_dim);
  // q (transposed [dpad][rpad] or row-major [rpad][dpad]), scores [kKeyTile][rpad],
  // acc [rpad][dpad], m, l and the rescale factor [rpad] each.
  return dpad * rpad + kKeyTile * rpad + rpad * dpad + 3 * rpad;
}

// Floats of per-thread scratch WindowRow needs for a stream of kv_len entries.
inline int64_t WindowScratchFloats(int64_t kv_len, int64_t head_dim) {
  return 2 * PadToLanes(head_dim) + PadToLanes(kv_len);
}

// One ISA's kernels.
struct AttentionKernels {
  const char* name;
  // Computes one unit; scratch holds TileScratchFloats(unit.rows(), pool.head_dim) floats and
  // limits PadToLanes(unit.rows()) ints.
  void (*tile_unit)(const TileUnit& unit, const PoolRef& pool, float* scratch, int32_t* limits);
  // One query row of head_dim against entries [0, visible) of a stream with a two-pass softmax
  // (max, then exp and sum), writing out_row and adding every probability into mass_row[j]
  // (when non-null). Used for the rows that add window mass: their probabilities need the
  // final (max, sum), which a one-pass tile only knows at its end. On the scalar kernel the
  // arithmetic, and so every bit of out_row and mass_row, is that of the original reference loop.
  // q_row may alias out_row; scratch holds WindowScratchFloats(visible, head_dim) floats.
  void (*window_row)(const PoolRef& pool, const int32_t* blocks, int64_t visible, float scale,
                     const float* q_row, float* out_row, float* mass_row, float* scratch);
};

}  // namespace zigzag::cpu::attn
