// LlamaModel: the Llama-family forward pass, written once over the Backend interface:
// embed -> L x [rmsnorm, qkv (+bias), rope, paged attention, o-proj, residual, rmsnorm,
// swiglu mlp, residual] -> rmsnorm -> lm head. Owns the weights on the backend; the KV memory
// belongs to KvCache and each sequence's blocks to its SequenceKv.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "core/kv/kv_cache.h"
#include "core/kv/sequence_kv.h"
#include "core/model/checkpoint.h"
#include "core/model/model_config.h"
#include "kernels/backend.h"
#include "kernels/step_tables.h"

namespace zigzag {

// One sequence's part of a forward batch: `tokens` are new tokens at positions
// first_position, first_position + 1, ... Their cache entries must already be reserved: each
// (layer, KV head) stream of `kv` holds them as its last tokens.size() entries
// (SequenceKv::AppendAllLayers).
struct ForwardSequence {
  std::span<const int32_t> tokens;
  int64_t first_position = 0;
  SequenceKv* kv = nullptr;
  // false: logits of the last token only; true: logits of every token (tests, scoring).
  bool all_logits = false;
  // Optional per-layer window summaries (see AttentionSequence::window_mass); empty = none.
  std::span<Tensor> window_mass;
  int32_t window_begin = 0;
  // Optional (profiling, tests): when non-null, receives the post-RoPE queries of this call's
  // tokens whose cache index is >= window_begin, float32, layer-major [L][rows][H][head_dim]
  // (rows = how many of this call's tokens fall in the window; 0 leaves it empty). Replaced by
  // each call. Needs every stream at the same length (an uncompressed sequence).
  std::vector<float>* captured_window_queries = nullptr;
};

class LlamaModel {
 public:
  // Loads weights from an opened checkpoint onto the backend (converted to its weight dtype).
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const Checkpoint& checkpoint,
                                                          Backend* backend);
  // Opens DIR and loads it.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> LoadFromDir(const std::filesystem::path& dir,
                                                                 Backend* backend);

  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return backend_; }
  // The KV layout this model needs, in the backend's activation dtype.
  KvLayout kv_layout(int32_t block_size) const;

  // Not thread-safe: one caller (the worker thread) at a time.
  // Runs the batch and returns logits, float32, row-major [rows, vocab]: one row per sequence
  // (its last token), or one per token for sequences with all_logits, in batch order.
  // InvalidArgument for an empty batch, a token id outside the vocabulary, a position beyond
  // the model's context, or a sequence whose KV is not reserved.
  absl::StatusOr<std::vector<float>> Forward(std::span<const ForwardSequence> batch,
                                             KvCache* cache);

  // How many sequences' block lists the backend keeps resident between steps (default 128, so
  // bounded by 128 * layers * KV heads rows; fewer when a row set would pass 2^24 block ids);
  // 0 turns residency off (every step uploads every list, the span-taking layout). A batch of
  // more sequences than this is planned without residency. Changing it forgets every row.
  void SetResidentSequences(int32_t sequences);

 private:
  struct LayerWeights {
    Tensor input_norm, q_proj, k_proj, v_proj, q_bias, k_bias, v_bias, o_proj;
    Tensor post_attention_norm, gate_proj, up_proj, down_proj;
  };
  // Activation buffers reused across calls; grown when a batch has more rows.
  struct Workspace {
    Tensor residual, normed, q, k, v, attention, projected, gate, up;
  };
  LlamaModel(ModelConfig config, Backend* backend)
      : config_(std::move(config)), backend_(backend) {}
  absl::Status ValidateBatch(std::span<const ForwardSequence> batch, const KvCache& cache) const;
  absl::Status EnsureWorkspace(int64_t tokens);
  // Builds the step's tables for every layer (positions, slots, per-(layer, sequence, KV head)
  // lengths and block lists) and hands them to Backend::PlanStep: one upload per step, however
  // many layers (docs/architecture.md, "How block tables reach the device").
  absl::Status PlanStep(std::span<const ForwardSequence> batch, std::span<const int32_t> positions,
                        KvCache* cache);
  // The final-norm and logits buffers for `rows` output rows (grown, never shrunk): allocating
  // them per call would free device memory every step, and cudaFree synchronizes the device.
  absl::Status EnsureOutputWorkspace(int64_t rows);

  ModelConfig config_;
  Backend* backend_;
  Tensor embed_tokens_;
  Tensor final_norm_;
  Tensor lm_head_;  // shares embed_tokens_ when tied
  Tensor inv_freq_;
  std::vector<LayerWeights> layers_;
  Workspace workspace_;
  int64_t workspace_tokens_ = 0;
  Tensor output_selected_, output_logits_;
  StepTables step_tables_;  // reused across steps for its capacity
  // Resident block-table rows: each sequence (by SequenceKv::id) holds one row set, its L * G
  // streams' rows, until a sequence not in the current step needs one and it is the least
  // recently used. A released sequence has a new id, so its old set simply ages out; versions
  // never repeat, so a reused row is always sent in full (row_reset) and never misread.
  struct RowSet {
    uint64_t sequence = 0;  // 0: free
    int64_t last_step = -1;
  };
  // Fills the tables' residency fields; leaves them empty (every list uploaded) for a batch of
  // more sequences than the table has row sets.
  void AssignResidentRows(std::span<const ForwardSequence> batch, const KvCache& cache);
  std::vector<RowSet> row_sets_;
  absl::flat_hash_map<uint64_t, int32_t> row_set_of_;
  int32_t row_capacity_ = 0;
  int64_t step_count_ = 0;
  int32_t max_row_sets_ = 128;
  int64_t output_rows_ = 0;
};

}  // namespace zigzag
