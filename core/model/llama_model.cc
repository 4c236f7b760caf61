#include "core/model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/model/rope.h"
#include "core/util/status_macros.h"
#include "spdlog/spdlog.h"

namespace zigzag {
namespace {

absl::StatusOr<Tensor> UploadWeight(Backend* backend, const Checkpoint& checkpoint,
                                    const std::string& name, const Shape& shape) {
  ASSIGN_OR_RETURN(HostTensorView view, checkpoint.Get(name, shape));
  ASSIGN_OR_RETURN(Tensor tensor, backend->Allocate(backend->weight_dtype(), shape));
  absl::Status copied = backend->CopyToDevice(view.data, view.dtype, &tensor);
  if (!copied.ok()) {
    return absl::Status(copied.code(),
                        absl::StrCat("loading tensor '", name, "': ", copied.message()));
  }
  return tensor;
}

std::string LayerName(int64_t layer, const char* suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::LoadFromDir(
    const std::filesystem::path& dir, Backend* backend) {
  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(dir));
  return Load(*checkpoint, backend);
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const Checkpoint& checkpoint,
                                                             Backend* backend) {
  const ModelConfig& c = checkpoint.config();
  std::unique_ptr<LlamaModel> model(new LlamaModel(c, backend));
  const int64_t d = c.hidden_size, f = c.intermediate_size;
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;

  ASSIGN_OR_RETURN(
      model->embed_tokens_,
      UploadWeight(backend, checkpoint, "model.embed_tokens.weight", {c.vocab_size, d}));
  ASSIGN_OR_RETURN(model->final_norm_, UploadWeight(backend, checkpoint, "model.norm.weight", {d}));
  if (c.tie_word_embeddings || !checkpoint.Contains("lm_head.weight")) {
    model->lm_head_ = model->embed_tokens_;
  } else {
    ASSIGN_OR_RETURN(model->lm_head_,
                     UploadWeight(backend, checkpoint, "lm_head.weight", {c.vocab_size, d}));
  }

  model->layers_.resize(c.num_layers);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights& w = model->layers_[l];
    auto load = [&](const char* suffix, const Shape& shape) {
      return UploadWeight(backend, checkpoint, LayerName(l, suffix), shape);
    };
    ASSIGN_OR_RETURN(w.input_norm, load("input_layernorm.weight", {d}));
    ASSIGN_OR_RETURN(w.q_proj, load("self_attn.q_proj.weight", {q_dim, d}));
    ASSIGN_OR_RETURN(w.k_proj, load("self_attn.k_proj.weight", {kv_dim, d}));
    ASSIGN_OR_RETURN(w.v_proj, load("self_attn.v_proj.weight", {kv_dim, d}));
    if (c.qkv_bias) {
      ASSIGN_OR_RETURN(w.q_bias, load("self_attn.q_proj.bias", {q_dim}));
      ASSIGN_OR_RETURN(w.k_bias, load("self_attn.k_proj.bias", {kv_dim}));
      ASSIGN_OR_RETURN(w.v_bias, load("self_attn.v_proj.bias", {kv_dim}));
    }
    ASSIGN_OR_RETURN(w.o_proj, load("self_attn.o_proj.weight", {d, q_dim}));
    ASSIGN_OR_RETURN(w.post_attention_norm, load("post_attention_layernorm.weight", {d}));
    ASSIGN_OR_RETURN(w.gate_proj, load("mlp.gate_proj.weight", {f, d}));
    ASSIGN_OR_RETURN(w.up_proj, load("mlp.up_proj.weight", {f, d}));
    ASSIGN_OR_RETURN(w.down_proj, load("mlp.down_proj.weight", {d, f}));
  }

  const std::vector<float> inv_freq = RopeInverseFrequencies(c);
  ASSIGN_OR_RETURN(model->inv_freq_,
                   backend->Allocate(DType::kF32, {static_cast<int64_t>(inv_freq.size())}));
  RETURN_IF_ERROR(backend->CopyToDevice(inv_freq.data(), DType::kF32, &model->inv_freq_));
  RETURN_IF_ERROR(backend->Synchronize());
  spdlog::info("loaded {} ({} layers, hidden {}, heads {}/{}, vocab {}) on the {} backend",
               checkpoint.dir().string(), c.num_layers, d, c.num_heads, c.num_kv_heads,
               c.vocab_size, backend->name());
  return model;
}

KvLayout LlamaModel::kv_layout(int32_t block_size) const {
  KvLayout layout;
  layout.num_layers = static_cast<int32_t>(config_.num_layers);
  layout.num_kv_heads = static_cast<int32_t>(config_.num_kv_heads);
  layout.head_dim = static_cast<int32_t>(config_.head_dim);
  layout.block_size = block_size;
  layout.dtype = backend_->activation_dtype();
  return layout;
}

absl::Status LlamaModel::EnsureWorkspace(int64_t tokens) {
  if (tokens <= workspace_tokens_) return absl::OkStatus();
  const ModelConfig& c = config_;
  const DType dt = backend_->activation_dtype();
  // Grow geometrically so that a run of growing prefills does not reallocate every time.
  const int64_t n = std::max<int64_t>(tokens, workspace_tokens_ * 2);
  Workspace& ws = workspace_;
  ASSIGN_OR_RETURN(ws.residual, backend_->Allocate(dt, {n, c.hidden_size}));
  ASSIGN_OR_RETURN(ws.normed, backend_->Allocate(dt, {n, c.hidden_size}));
  ASSIGN_OR_RETURN(ws.q, backend_->Allocate(dt, {n, c.num_heads * c.head_dim}));
  ASSIGN_OR_RETURN(ws.k, backend_->Allocate(dt, {n, c.num_kv_heads * c.head_dim}));
  ASSIGN_OR_RETURN(ws.v, backend_->Allocate(dt, {n, c.num_kv_heads * c.head_dim}));
  ASSIGN_OR_RETURN(ws.attention, backend_->Allocate(dt, {n, c.num_heads * c.head_dim}));
  ASSIGN_OR_RETURN(ws.projected, backend_->Allocate(dt, {n, c.hidden_size}));
  ASSIGN_OR_RETURN(ws.gate, backend_->Allocate(dt, {n, c.intermediate_size}));
  ASSIGN_OR_RETURN(ws.up, backend_->Allocate(dt, {n, c.intermediate_size}));
  workspace_tokens_ = n;
  return absl::OkStatus();
}

absl::Status LlamaModel::EnsureOutputWorkspace(int64_t rows) {
  if (rows <= output_rows_) return absl::OkStatus();
  const DType dt = backend_->activation_dtype();
  ASSIGN_OR_RETURN(output_selected_, backend_->Allocate(dt, {rows, config_.hidden_size}));
  ASSIGN_OR_RETURN(output_logits_, backend_->Allocate(dt, {rows, config_.vocab_size}));
  output_rows_ = rows;
  return absl::OkStatus();
}

absl::Status LlamaModel::ValidateBatch(std::span<const ForwardSequence> batch,
                                       const KvCache& cache) const {
  if (batch.empty()) return absl::InvalidArgumentError("Forward: empty batch");
  if (cache.layout().num_layers != config_.num_layers ||
      cache.layout().num_kv_heads != config_.num_kv_heads ||
      cache.layout().head_dim != config_.head_dim ||
      cache.layout().dtype != backend_->activation_dtype()) {
    return absl::InvalidArgumentError("Forward: KV cache layout does not match the model");
  }
  for (size_t s = 0; s < batch.size(); ++s) {
    const ForwardSequence& seq = batch[s];
    const int64_t n = static_cast<int64_t>(seq.tokens.size());
    if (n == 0)
      return absl::InvalidArgumentError(absl::StrCat("Forward: sequence ", s, " has no tokens"));
    if (seq.first_position < 0 || seq.first_position + n > config_.max_context()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: sequence ", s, " reaches position ", seq.first_position + n - 1,
                       " beyond the model's context of ", config_.max_context(), " tokens"));
    }
    for (int32_t id : seq.tokens) {
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("Forward: token id ", id, " in sequence ", s,
                                                       " is outside the vocabulary [0, ",
                                                       config_.vocab_size, ")"));
      }
    }
    if (seq.kv == nullptr || seq.kv->num_layers() != config_.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Forward: sequence ", s, " has no KV state for ", config_.num_layers, " layers"));
    }
    if (seq.kv->num_kv_heads() != config_.num_kv_heads) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: sequence ", s, " has ", seq.kv->num_kv_heads(),
                       " KV heads, the model ", config_.num_kv_heads));
    }
    for (int l = 0; l < seq.kv->num_layers(); ++l) {
      if (seq.kv->min_length(l) < n) {
        return absl::InvalidArgumentError(absl::StrCat(
            "Forward: sequence ", s, " layer ", l, " has a KV head holding ", seq.kv->min_length(l),
            " entries, fewer than its ", n, " new tokens (reserve them first)"));
      }
    }
    if (!seq.window_mass.empty() &&
        static_cast<int64_t>(seq.window_mass.size()) != config_.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("Forward: sequence ", s, " window_mass must have one tensor per layer"));
    }
    if (seq.captured_window_queries != nullptr) {
      for (int l = 0; l < seq.kv->num_layers(); ++l) {
        if (seq.kv->min_length(l) != seq.kv->length(0, 0) ||
            seq.kv->max_length(l) != seq.kv->length(0, 0)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "Forward: sequence ", s, " captured_window_queries needs every (layer, KV head) at ",
              "the same KV length; layer ", l, " holds ", seq.kv->min_length(l), " to ",
              seq.kv->max_length(l), ", layer 0 head 0 holds ", seq.kv->length(0, 0)));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status LlamaModel::PlanStep(std::span<const ForwardSequence> batch,
                                  std::span<const int32_t> positions, KvCache* cache) {
  const ModelConfig& c = config_;
  const int32_t layers = static_cast<int32_t>(c.num_layers);
  const int32_t kv_heads = static_cast<int32_t>(c.num_kv_heads);
  StepTables& t = step_tables_;
  t.Reset(layers, kv_heads, static_cast<int32_t>(c.num_heads),
          1.0f / std::sqrt(static_cast<float>(c.head_dim)));
  t.positions.assign(positions.begin(), positions.end());
  const int64_t rows = t.num_rows();
  bool any_window_mass = false;
  int32_t row = 0;
  for (const ForwardSequence& seq : batch) {
    const int32_t n = static_cast<int32_t>(seq.tokens.size());
    t.sequences.push_back({.query_begin = row, .num_queries = n, .window_begin = seq.window_begin});
    any_window_mass = any_window_mass || !seq.window_mass.empty();
    row += n;
  }
  // Every layer's view of every sequence's cache: each KV head's stream has its own blocks and
  // length (they differ per layer and head once compressed); token n's head g goes to
  // slots[(l * rows + n) * kv_heads + g], the newest entries of g's stream.
  t.slots.resize(static_cast<size_t>(layers * rows * kv_heads));
  for (int32_t l = 0; l < layers; ++l) {
    for (size_t s = 0; s < batch.size(); ++s) {
      const ForwardSequence& seq = batch[s];
      const int64_t n = static_cast<int64_t>(seq.tokens.size());
      const int64_t first_row = t.sequences[s].query_begin;
      for (int32_t g = 0; g < kv_heads; ++g) {
        const int64_t kv_len = seq.kv->length(l, g);
        for (int64_t i = 0; i < n; ++i) {
          t.slots[static_cast<size_t>((l * rows + first_row + i) * kv_heads + g)] =
              seq.kv->Slot(l, g, kv_len - n + i);
        }
        t.AppendStream(static_cast<int32_t>(kv_len), seq.kv->blocks(l, g));
      }
    }
  }
  if (any_window_mass) {
    t.window_mass.assign(static_cast<size_t>(layers) * batch.size(), nullptr);
    for (int32_t l = 0; l < layers; ++l) {
      for (size_t s = 0; s < batch.size(); ++s) {
        if (!batch[s].window_mass.empty()) {
          t.window_mass[static_cast<size_t>(l) * batch.size() + s] = &batch[s].window_mass[l];
        }
      }
    }
  }
  AssignResidentRows(batch, *cache);
  return backend_->PlanStep(t, cache->pool_tensor());
}

void LlamaModel::SetResidentSequences(int32_t sequences) {
  max_row_sets_ = std::max(0, sequences);
  row_sets_.clear();
  row_set_of_.clear();
}

void LlamaModel::AssignResidentRows(std::span<const ForwardSequence> batch, const KvCache& cache) {
  // A row holds a whole stream: at most the pool, at most the model's context.
  constexpr int64_t kMaxEntries = int64_t{1} << 24;  // 64 MiB of block ids on the device
  const int64_t layers = config_.num_layers, kv_heads = config_.num_kv_heads;
  const int64_t block_size = cache.pool().block_size();
  int64_t capacity = cache.pool().num_blocks();
  // ValidateBatch keeps every position, so every stream's length, within max_context().
  if (config_.max_context() > 0) {
    capacity = std::min(capacity, (config_.max_context() + block_size - 1) / block_size);
  }
  const int64_t streams_per_set = layers * kv_heads;
  const int64_t sets = std::min<int64_t>(
      max_row_sets_, kMaxEntries / std::max<int64_t>(1, streams_per_set * capacity));
  if (sets < 1 || sets < static_cast<int64_t>(batch.size()) || capacity < 1) return;
  if (capacity != row_capacity_ || static_cast<int64_t>(row_sets_.size()) != sets) {
    row_sets_.assign(static_cast<size_t>(sets), RowSet{});
    row_set_of_.clear();
    row_capacity_ = static_cast<int32_t>(capacity);
  }
  ++step_count_;
  StepTables& t = step_tables_;
  const size_t num_seqs = batch.size(), streams = t.kv_lens.size();
  t.resident_rows = static_cast<int32_t>(sets * streams_per_set);
  t.row_capacity = row_capacity_;
  t.stream_rows.assign(streams, 0);
  t.stream_versions.assign(streams, 0);
  t.row_reset.assign(streams, 0);
  for (size_t s = 0; s < num_seqs; ++s) {
    const SequenceKv& kv = *batch[s].kv;
    bool reset = false;
    auto found = row_set_of_.find(kv.id());
    int32_t set = 0;
    if (found != row_set_of_.end()) {
      set = found->second;
    } else {
      // A free set, else the least recently used one no sequence of this step holds (there is
      // one: the batch has at most `sets` sequences).
      int32_t best = -1;
      for (int32_t c = 0; c < static_cast<int32_t>(sets); ++c) {
        const RowSet& r = row_sets_[static_cast<size_t>(c)];
        if (r.last_step == step_count_) continue;
        if (best < 0 || r.last_step < row_sets_[static_cast<size_t>(best)].last_step) best = c;
      }
      set = best;
      if (row_sets_[static_cast<size_t>(set)].sequence != 0) {
        row_set_of_.erase(row_sets_[static_cast<size_t>(set)].sequence);
      }
      row_sets_[static_cast<size_t>(set)].sequence = kv.id();
      row_set_of_[kv.id()] = set;
      reset = true;
    }
    row_sets_[static_cast<size_t>(set)].last_step = step_count_;
    for (int64_t l = 0; l < layers; ++l) {
      for (int64_t g = 0; g < kv_heads; ++g) {
        const size_t i = static_cast<size_t>(
            (l * static_cast<int64_t>(num_seqs) + static_cast<int64_t>(s)) * kv_heads + g);
        t.stream_rows[i] = static_cast<int32_t>(set * streams_per_set + l * kv_heads + g);
        t.stream_versions[i] = kv.version(static_cast<int>(l), static_cast<int>(g));
        t.row_reset[i] = reset ? 1 : 0;
      }
    }
  }
}

absl::StatusOr<std::vector<float>> LlamaModel::Forward(std::span<const ForwardSequence> batch,
                                                       KvCache* cache) {
  RETURN_IF_ERROR(ValidateBatch(batch, *cache));
  const ModelConfig& c = config_;

  // Flatten the batch: one row per new token.
  std::vector<int32_t> ids, positions, output_rows;
  for (const ForwardSequence& seq : batch) {
    const int64_t n = static_cast<int64_t>(seq.tokens.size());
    const int32_t first_row = static_cast<int32_t>(ids.size());
    for (int64_t i = 0; i < n; ++i) {
      ids.push_back(seq.tokens[i]);
      positions.push_back(static_cast<int32_t>(seq.first_position + i));
    }
    if (seq.all_logits) {
      for (int64_t i = 0; i < n; ++i) output_rows.push_back(first_row + static_cast<int32_t>(i));
    } else {
      output_rows.push_back(first_row + static_cast<int32_t>(n - 1));
    }
  }
  const int64_t rows = static_cast<int64_t>(ids.size());
  RETURN_IF_ERROR(EnsureWorkspace(rows));
  const Workspace& ws = workspace_;
  Tensor x = ws.residual.Rows(0, rows);
  Tensor normed = ws.normed.Rows(0, rows);
  Tensor q = ws.q.Rows(0, rows), k = ws.k.Rows(0, rows), v = ws.v.Rows(0, rows);
  Tensor attention = ws.attention.Rows(0, rows);
  Tensor projected = ws.projected.Rows(0, rows);
  Tensor gate = ws.gate.Rows(0, rows), up = ws.up.Rows(0, rows);
  Tensor q_heads = q.Reshaped({rows, c.num_heads, c.head_dim});
  Tensor k_heads = k.Reshaped({rows, c.num_kv_heads, c.head_dim});
  Tensor v_heads = v.Reshaped({rows, c.num_kv_heads, c.head_dim});
  Tensor attention_heads = attention.Reshaped({rows, c.num_heads, c.head_dim});

  const float eps = static_cast<float>(c.rms_norm_eps);
  RETURN_IF_ERROR(PlanStep(batch, positions, cache));

  // Window query capture: which rows of q each capturing sequence wants, and one scratch tensor
  // to gather them into before the copy to the host.
  std::vector<std::vector<int32_t>> capture_rows(batch.size());
  int64_t max_capture_rows = 0;
  {
    int32_t first_row = 0;
    for (size_t s = 0; s < batch.size(); ++s) {
      const ForwardSequence& seq = batch[s];
      const int64_t n = static_cast<int64_t>(seq.tokens.size());
      if (seq.captured_window_queries != nullptr) {
        const int64_t first_index = seq.kv->length(0, 0) - n;  // cache index of this call's token 0
        for (int64_t i = 0; i < n; ++i) {
          if (first_index + i >= seq.window_begin) {
            capture_rows[s].push_back(first_row + static_cast<int32_t>(i));
          }
        }
        const int64_t captured = static_cast<int64_t>(capture_rows[s].size());
        seq.captured_window_queries->assign(
            static_cast<size_t>(c.num_layers * captured * c.num_heads * c.head_dim), 0.0f);
        max_capture_rows = std::max(max_capture_rows, captured);
      }
      first_row += static_cast<int32_t>(n);
    }
  }
  Tensor capture_scratch;
  if (max_capture_rows > 0) {
    ASSIGN_OR_RETURN(capture_scratch,
                     backend_->Allocate(backend_->activation_dtype(),
                                        {max_capture_rows, c.num_heads * c.head_dim}));
  }

  RETURN_IF_ERROR(backend_->Embedding(embed_tokens_, ids, &x));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = layers_[l];
    const int32_t layer = static_cast<int32_t>(l);
    RETURN_IF_ERROR(backend_->RmsNorm(x, w.input_norm, eps, &normed));
    RETURN_IF_ERROR(backend_->Matmul(normed, w.q_proj, c.qkv_bias ? &w.q_bias : nullptr, &q));
    RETURN_IF_ERROR(backend_->Matmul(normed, w.k_proj, c.qkv_bias ? &w.k_bias : nullptr, &k));
    RETURN_IF_ERROR(backend_->Matmul(normed, w.v_proj, c.qkv_bias ? &w.v_bias : nullptr, &v));
    RETURN_IF_ERROR(backend_->RopeStep(inv_freq_, &q_heads));
    RETURN_IF_ERROR(backend_->RopeStep(inv_freq_, &k_heads));
    for (size_t s = 0; s < batch.size(); ++s) {
      const std::vector<int32_t>& wanted = capture_rows[s];
      if (wanted.empty()) continue;
      const int64_t captured = static_cast<int64_t>(wanted.size());
      Tensor gathered = capture_scratch.Rows(0, captured);
      RETURN_IF_ERROR(backend_->CopyRows(q, wanted, &gathered));
      const size_t layer_floats = static_cast<size_t>(captured * c.num_heads * c.head_dim);
      RETURN_IF_ERROR(backend_->CopyToHost(
          gathered, std::span<float>(*batch[s].captured_window_queries)
                        .subspan(static_cast<size_t>(l) * layer_floats, layer_floats)));
    }
    RETURN_IF_ERROR(backend_->WriteKvStep(layer, k_heads, v_heads, &cache->pool_tensor()));
    RETURN_IF_ERROR(
        backend_->AttentionStep(layer, q_heads, cache->pool_tensor(), &attention_heads));
    RETURN_IF_ERROR(backend_->Matmul(attention, w.o_proj, nullptr, &projected));
    RETURN_IF_ERROR(backend_->Add(x, projected, &x));

    RETURN_IF_ERROR(backend_->RmsNorm(x, w.post_attention_norm, eps, &normed));
    RETURN_IF_ERROR(backend_->Matmul(normed, w.gate_proj, nullptr, &gate));
    RETURN_IF_ERROR(backend_->Matmul(normed, w.up_proj, nullptr, &up));
    RETURN_IF_ERROR(backend_->SiluMul(gate, up, &gate));
    RETURN_IF_ERROR(backend_->Matmul(gate, w.down_proj, nullptr, &projected));
    RETURN_IF_ERROR(backend_->Add(x, projected, &x));
  }

  // Only the rows whose logits are wanted go through the final norm and the LM head.
  const int64_t out_rows = static_cast<int64_t>(output_rows.size());
  RETURN_IF_ERROR(EnsureOutputWorkspace(out_rows));
  Tensor selected = output_selected_.Rows(0, out_rows);
  Tensor logits = output_logits_.Rows(0, out_rows);
  RETURN_IF_ERROR(backend_->CopyRows(x, output_rows, &selected));
  RETURN_IF_ERROR(backend_->RmsNorm(selected, final_norm_, eps, &selected));
  RETURN_IF_ERROR(backend_->Matmul(selected, lm_head_, nullptr, &logits));
  std::vector<float> host(static_cast<size_t>(out_rows * c.vocab_size));
  RETURN_IF_ERROR(backend_->CopyToHost(logits, host));
  return host;
}

}  // namespace zigzag
