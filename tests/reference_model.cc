#include "tests/reference_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace zigzag::testing {
namespace {

double ElementToDouble(const HostTensorView& view, size_t i) {
  switch (view.dtype) {
    case DType::kF32: {
      float x;
      std::memcpy(&x, view.data + 4 * i, 4);
      return x;
    }
    case DType::kBF16:
    case DType::kF16: {
      uint16_t bits;
      std::memcpy(&bits, view.data + 2 * i, 2);
      return view.dtype == DType::kBF16 ? BF16ToFloat(bits) : HalfToFloat(bits);
    }
    default:
      ADD_FAILURE() << "unexpected dtype in " << view.name;
      return 0;
  }
}

// y[n][m] = sum_k x[n][k] * w[m][k] (+ b[m]); x is [N][K] flattened, w [M][K].
std::vector<double> Linear(const std::vector<double>& x, int64_t n, int64_t k,
                           const std::vector<double>& w, int64_t m, const std::vector<double>* b) {
  std::vector<double> y(n * m);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < m; ++c) {
      double acc = b ? (*b)[c] : 0.0;
      for (int64_t i = 0; i < k; ++i) acc += x[r * k + i] * w[c * k + i];
      y[r * m + c] = acc;
    }
  }
  return y;
}

std::vector<double> RmsNorm(const std::vector<double>& x, int64_t n, int64_t d,
                            const std::vector<double>& w, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < d; ++i) ss += x[r * d + i] * x[r * d + i];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; ++i) y[r * d + i] = x[r * d + i] * inv * w[i];
  }
  return y;
}

// In place on x [T][heads][hd], rotate-half pairing i with i + hd/2.
void ApplyRope(std::vector<double>& x, int64_t t, int64_t heads, int64_t hd,
               const std::vector<double>& inv_freq) {
  for (int64_t p = 0; p < t; ++p) {
    for (int64_t h = 0; h < heads; ++h) {
      double* v = &x[(p * heads + h) * hd];
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double angle = static_cast<double>(p) * inv_freq[i];
        const double c = std::cos(angle), s = std::sin(angle);
        const double a = v[i], b = v[i + hd / 2];
        v[i] = a * c - b * s;
        v[i + hd / 2] = b * c + a * s;
      }
    }
  }
}

}  // namespace

ReferenceModel::ReferenceModel(const Checkpoint& checkpoint) : config_(checkpoint.config()) {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = c.num_heads * hd, kvd = c.num_kv_heads * hd;
  auto get = [&](const std::string& name, const Shape& shape) {
    auto view = checkpoint.Get(name, shape);
    EXPECT_TRUE(view.ok()) << view.status();
    std::vector<double> out;
    if (!view.ok()) return out;
    const size_t n = static_cast<size_t>(ShapeNumel(shape));
    out.resize(n);
    for (size_t i = 0; i < n; ++i) out[i] = ElementToDouble(*view, i);
    return out;
  };
  embed_ = get("model.embed_tokens.weight", {c.vocab_size, d});
  final_norm_ = get("model.norm.weight", {d});
  lm_head_ = checkpoint.Contains("lm_head.weight") && !c.tie_word_embeddings
                 ? get("lm_head.weight", {c.vocab_size, d})
                 : embed_;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Layer layer;
    layer.input_norm = get(p + "input_layernorm.weight", {d});
    layer.q = get(p + "self_attn.q_proj.weight", {qd, d});
    layer.k = get(p + "self_attn.k_proj.weight", {kvd, d});
    layer.v = get(p + "self_attn.v_proj.weight", {kvd, d});
    if (c.qkv_bias) {
      layer.q_bias = get(p + "self_attn.q_proj.bias", {qd});
      layer.k_bias = get(p + "self_attn.k_proj.bias", {kvd});
      layer.v_bias = get(p + "self_attn.v_proj.bias", {kvd});
    }
    layer.o = get(p + "self_attn.o_proj.weight", {d, qd});
    layer.post_norm = get(p + "post_attention_layernorm.weight", {d});
    layer.gate = get(p + "mlp.gate_proj.weight", {f, d});
    layer.up = get(p + "mlp.up_proj.weight", {f, d});
    layer.down = get(p + "mlp.down_proj.weight", {d, f});
    layers_.push_back(std::move(layer));
  }
  // inv_freq from DESIGN.md's formulas, in double.
  for (int64_t i = 0; i < hd / 2; ++i) {
    double inv = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(hd));
    if (c.rope_scaling) {
      const RopeScaling& s = *c.rope_scaling;
      const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
      const double wl = 2 * std::numbers::pi / inv;
      const double lo = old_ctx / s.low_freq_factor, hi = old_ctx / s.high_freq_factor;
      if (wl > lo) {
        inv /= s.factor;
      } else if (!(wl < hi)) {
        const double sm =
            (old_ctx / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1 - sm) * inv / s.factor + sm * inv;
      }
    }
    inv_freq_.push_back(inv);
  }
}

std::vector<std::vector<double>> ReferenceModel::Logits(const std::vector<int32_t>& tokens) const {
  return LogitsWithKeptPositions(tokens, 0, {});
}

std::vector<std::vector<double>> ReferenceModel::LogitsWithKeptPositions(
    const std::vector<int32_t>& tokens, int64_t prompt_length,
    const std::vector<std::vector<std::vector<int64_t>>>& kept) const {
  const ModelConfig& c = config_;
  const int64_t t = static_cast<int64_t>(tokens.size());
  const int64_t d = c.hidden_size, f = c.intermediate_size, hd = c.head_dim;
  const int64_t heads = c.num_heads, kv_heads = c.num_kv_heads, group = heads / kv_heads;
  std::vector<double> x(t * d);
  for (int64_t p = 0; p < t; ++p) {
    for (int64_t i = 0; i < d; ++i) x[p * d + i] = embed_[tokens[p] * d + i];
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const Layer& w = layers_[l];
    std::vector<double> h = RmsNorm(x, t, d, w.input_norm, c.rms_norm_eps);
    std::vector<double> q = Linear(h, t, d, w.q, heads * hd, c.qkv_bias ? &w.q_bias : nullptr);
    std::vector<double> k = Linear(h, t, d, w.k, kv_heads * hd, c.qkv_bias ? &w.k_bias : nullptr);
    std::vector<double> v = Linear(h, t, d, w.v, kv_heads * hd, c.qkv_bias ? &w.v_bias : nullptr);
    ApplyRope(q, t, heads, hd, inv_freq_);
    ApplyRope(k, t, kv_heads, hd, inv_freq_);
    std::vector<double> attn(t * heads * hd, 0.0);
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t hq = 0; hq < heads; ++hq) {
        const int64_t g = hq / group;
        std::vector<int64_t> visible;
        for (int64_t j = 0; j <= i; ++j) {
          bool keep = true;
          // Prompt queries ran before compression and saw the whole prompt.
          if (!kept.empty() && i >= prompt_length && j < prompt_length) {
            const std::vector<int64_t>& set = kept[l][g];
            keep = std::binary_search(set.begin(), set.end(), j);
          }
          if (keep) visible.push_back(j);
        }
        std::vector<double> logits;
        double mx = -1e300;
        for (int64_t j : visible) {
          double dot = 0;
          for (int64_t e = 0; e < hd; ++e)
            dot += q[(i * heads + hq) * hd + e] * k[(j * kv_heads + g) * hd + e];
          dot /= std::sqrt(static_cast<double>(hd));
          logits.push_back(dot);
          mx = std::max(mx, dot);
        }
        double sum = 0;
        for (double& z : logits) sum += (z = std::exp(z - mx));
        for (size_t a = 0; a < visible.size(); ++a) {
          const double p = logits[a] / sum;
          for (int64_t e = 0; e < hd; ++e) {
            attn[(i * heads + hq) * hd + e] += p * v[(visible[a] * kv_heads + g) * hd + e];
          }
        }
      }
    }
    std::vector<double> o = Linear(attn, t, heads * hd, w.o, d, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = RmsNorm(x, t, d, w.post_norm, c.rms_norm_eps);
    std::vector<double> gate = Linear(h, t, d, w.gate, f, nullptr);
    std::vector<double> up = Linear(h, t, d, w.up, f, nullptr);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
    std::vector<double> down = Linear(gate, t, f, w.down, d, nullptr);
    for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  std::vector<double> normed = RmsNorm(x, t, d, final_norm_, c.rms_norm_eps);
  std::vector<double> logits = Linear(normed, t, d, lm_head_, c.vocab_size, nullptr);
  std::vector<std::vector<double>> rows(t);
  for (int64_t p = 0; p < t; ++p) {
    rows[p].assign(logits.begin() + p * c.vocab_size, logits.begin() + (p + 1) * c.vocab_size);
  }
  return rows;
}

}  // namespace zigzag::testing
