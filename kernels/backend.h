// Backend: the ops the Llama-family forward pass needs, over tensors in memory the backend owns.
// kernels/cpu is the reference implementation, kernels/cuda sits beside it; the model code is
// written once against this interface. It knows nothing of requests, schedulers or checkpoints.
//
// Conventions for every op:
// - Shapes are row-major; the comment on each argument gives it. Ops check shapes and dtypes and
//   return InvalidArgument naming the op and the argument instead of computing garbage.
// - Small integer metadata (token ids, positions, KV slots, block tables) is passed as host spans;
//   a device backend uploads it. The forward pass instead plans a whole step at once (PlanStep:
//   one upload of every layer's tables), then runs the per-layer *Step ops against that plan,
//   which upload nothing; host_to_device_copies() counts every upload of metadata.
// - Float tensors are in the backend's activation dtype (`activation_dtype()`), weights in
//   `weight_dtype()`; both accumulate in float32. All ops are asynchronous on a device backend
//   until CopyToHost or Synchronize.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/tensor.h"

namespace zigzag {

// One sequence's part of a batched attention call, for one layer. The pool pages per KV head
// (a block holds one KV head's K and V of block_size tokens), so every KV head g of the sequence
// has its own stream: kv_lens[g] cache entries in blocks
// block_ids[block_offsets[g] .. block_offsets[g + 1]) (FlashInfer's CSR form, one row per head).
// The sequence's queries are rows [query_begin, query_begin + num_queries) of q. They are the
// newest num_queries entries of every head's stream (already written with WriteKv), so query r
// (0-based) of a query head reading KV head g sees entries [0, kv_lens[g] - num_queries + r] of
// g's stream. Causality is by cache index, never by position: after compression positions and
// cache indices differ, and heads that kept different counts differ in length.
struct AttentionSequence {
  int32_t query_begin = 0;
  int32_t num_queries = 0;
  std::span<const int32_t> kv_lens;        // [kv_heads]
  std::span<const int32_t> block_offsets;  // [kv_heads + 1], ascending, starting at 0
  // Every head g needs at least ceil(kv_lens[g] / block_size) blocks in its row.
  std::span<const int32_t> block_ids;
  // Optional window summary for compression: when non-null, every query whose cache index in
  // its KV head's stream is >= window_begin adds its float32 attention probabilities into
  // window_mass[h, j] (+=, so chunked prefills accumulate). Shape [num_query_heads, >= the
  // longest kv_lens], float32, this backend's memory, zero-initialised by the caller.
  Tensor* window_mass = nullptr;
  int32_t window_begin = 0;
};

struct AttentionBatch {
  std::span<const AttentionSequence> sequences;
  int32_t num_kv_heads = 0;  // G: every sequence has G streams; must divide q's heads
  float scale = 1.0f;        // usually 1 / sqrt(head_dim)
};

// One KV head stream's compaction (Backend::CompactKv): entry i of the stream takes the key and
// value of entry kept[i], for i < kept.size(). kept is strictly ascending (so sources are at or
// after their destinations) and within the stream's block_ids.size() * block_size entries.
struct KvStreamCompaction {
  std::span<const int32_t> block_ids;
  std::span<const int32_t> kept;
};

struct StepTables;  // kernels/step_tables.h

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const char* name() const = 0;
  virtual Device device() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual DType weight_dtype() const = 0;

  // Memory --------------------------------------------------------------------------------------
  // Uninitialised storage for `shape` elements of `dtype`. ResourceExhausted when it cannot.
  virtual absl::StatusOr<Tensor> Allocate(DType dtype, const Shape& shape) = 0;
  // Zero storage (e.g. the window_mass accumulators).
  virtual absl::StatusOr<Tensor> AllocateZeros(DType dtype, const Shape& shape) = 0;
  // Copies dst->numel() elements of `host_dtype` from `host` into dst, converting between float
  // dtypes (f32, bf16, f16) as needed. I32 copies only into I32.
  virtual absl::Status CopyToDevice(const void* host, DType host_dtype, Tensor* dst) = 0;
  // Copies src into `host` as float32 (src must be a float dtype, host.size() == src.numel()).
  virtual absl::Status CopyToHost(const Tensor& src, std::span<float> host) = 0;
  // Waits for all queued work and reports any asynchronous error.
  virtual absl::Status Synchronize() = 0;

  // Ops -----------------------------------------------------------------------------------------
  // out[n, :] = table[ids[n], :]. table [vocab, hidden], out [N, hidden]. An id outside
  // [0, vocab) is InvalidArgument.
  virtual absl::Status Embedding(const Tensor& table, std::span<const int32_t> ids,
                                 Tensor* out) = 0;

  // y = x * w^T (+ bias). x [N, K], w [M, K] (Hugging Face Linear layout), bias [M] or null,
  // y [N, M]. y must not alias x.
  virtual absl::Status Matmul(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor* y) = 0;

  // y = x / sqrt(mean(x^2) + eps) * weight, in float32. x, y [N, D]; weight [D]. y may alias x.
  virtual absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor* y) = 0;

  // Rotary embedding, "rotate half" layout, in place on x [N, heads, head_dim]: for i < head_dim/2,
  // angle = positions[n] * inv_freq[i]; (x_i, x_{i+d/2}) -> (x_i cos - x_{i+d/2} sin,
  // x_{i+d/2} cos + x_i sin). inv_freq [head_dim/2] float32 (llama3 scaling already applied).
  virtual absl::Status Rope(std::span<const int32_t> positions, const Tensor& inv_freq,
                            Tensor* x) = 0;

  // out = silu(gate) * up. All [N, F]. out may alias gate or up.
  virtual absl::Status SiluMul(const Tensor& gate, const Tensor& up, Tensor* out) = 0;

  // out = a + b, same shapes. out may alias a or b.
  virtual absl::Status Add(const Tensor& a, const Tensor& b, Tensor* out) = 0;

  // dst[r, :] = src[rows[r], :]. src [N, D], dst [rows.size(), D].
  virtual absl::Status CopyRows(const Tensor& src, std::span<const int32_t> rows, Tensor* dst) = 0;

  // Writes KV head g of token n (its key and value) into slot slots[n * kv_heads + g] of the
  // paged pool, where slot = block_id * block_size + offset_in_block: each KV head has its own
  // blocks. k, v [N, kv_heads, head_dim]; slots [N * kv_heads];
  // kv_pool [num_blocks, 2, block_size, head_dim] with index 0 = K and 1 = V along dimension 1.
  virtual absl::Status WriteKv(const Tensor& k, const Tensor& v, std::span<const int32_t> slots,
                               Tensor* kv_pool) = 0;

  // Compaction after compression, of any number of KV head streams at once (e.g. every
  // (layer, KV head) of a sequence): see KvStreamCompaction. Streams must not share a block.
  // Entries >= kept.size() are left as they were (the caller shrinks the stream and frees its
  // tail blocks).
  virtual absl::Status CompactKv(std::span<const KvStreamCompaction> streams, Tensor* kv_pool) = 0;

  // Copies whole blocks of the pool (K and V of every entry of one KV head): block dst_blocks[i]
  // takes the contents of src_blocks[i]. Both lists have the same length, every id is within [0,
  // num_blocks), and no destination is repeated or also a source. For forking a sequence's cache
  // (one prefill shared by several continuations).
  virtual absl::Status CopyBlocks(std::span<const int32_t> src_blocks,
                                  std::span<const int32_t> dst_blocks, Tensor* kv_pool) = 0;

  // Causal attention of a batch of sequences over their paged KV (one layer).
  // q, out [N_total, num_heads, head_dim]; kv_pool as in WriteKv. GQA: query head h reads KV head
  // h / (num_heads / num_kv_heads), over that head's own stream and length. Softmax in float32.
  virtual absl::Status Attention(const AttentionBatch& batch, const Tensor& q,
                                 const Tensor& kv_pool, Tensor* out) = 0;

  // One step, planned once, run per layer (FlashInfer's plan/run split) -------------------------
  // Checks `tables` against kv_pool (StepTables::Validate) and makes them the current plan: a
  // device backend uploads them, for every layer, in one host-to-device copy. Resident tables
  // (StepTables::stream_rows set) keep every stream's block list in the backend's resident block
  // table across steps, and the copy carries only the small metadata and the lists whose version
  // moved (kernels/resident_block_table.h); a version older than its row's last upload is
  // InvalidArgument (stale tables). The plan stays valid until the next PlanStep; the *Step ops
  // below read it by layer index and upload nothing. `tables` need not outlive the call, but its
  // window_mass tensors must outlive the step. kv_pool is the pool the step ops must be given.
  virtual absl::Status PlanStep(const StepTables& tables, const Tensor& kv_pool) = 0;
  // Rope with the plan's positions (x has the plan's rows).
  virtual absl::Status RopeStep(const Tensor& inv_freq, Tensor* x) = 0;
  // WriteKv with the plan's slots of `layer` (k, v have the plan's rows and KV heads).
  virtual absl::Status WriteKvStep(int32_t layer, const Tensor& k, const Tensor& v,
                                   Tensor* kv_pool) = 0;
  // Attention with the plan's tables of `layer`: the same result as Attention given
  // tables.LayerBatch(layer). q has the plan's rows and num_heads.
  virtual absl::Status AttentionStep(int32_t layer, const Tensor& q, const Tensor& kv_pool,
                                     Tensor* out) = 0;

  // Host-to-device transfers of integer metadata (ids, positions, slots, block tables, kernel
  // descriptors) since creation, and their bytes: each span-taking op that uploads counts one,
  // PlanStep counts one. Weights and activations (CopyToDevice) are not metadata and do not
  // count. The CPU backend counts the uploads a device backend would make for the same calls.
  // Like the ops, not thread-safe.
  int64_t host_to_device_copies() const { return host_to_device_copies_; }
  int64_t host_to_device_bytes() const { return host_to_device_bytes_; }

 protected:
  void CountHostToDevice(int64_t bytes) {
    ++host_to_device_copies_;
    host_to_device_bytes_ += bytes;
  }

 private:
  int64_t host_to_device_copies_ = 0;
  int64_t host_to_device_bytes_ = 0;
};

}  // namespace zigzag
