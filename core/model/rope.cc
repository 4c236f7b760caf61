#include "core/model/rope.h"

#include <cmath>
#include <numbers>

namespace zigzag {

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    double inv = std::pow(config.rope_theta,
                          -2.0 * static_cast<double>(i) / static_cast<double>(config.head_dim));
    if (config.rope_scaling && config.rope_scaling->type == "llama3") {
      // Llama 3.1: long wavelengths (beyond the original context) are stretched by `factor`,
      // short ones kept, and the band between blended smoothly.
      const RopeScaling& s = *config.rope_scaling;
      const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
      const double wavelength = 2.0 * std::numbers::pi / inv;
      const double low_freq_wavelength = old_ctx / s.low_freq_factor;
      const double high_freq_wavelength = old_ctx / s.high_freq_factor;
      if (wavelength > low_freq_wavelength) {
        inv = inv / s.factor;
      } else if (wavelength >= high_freq_wavelength) {
        const double smooth =
            (old_ctx / wavelength - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        inv = (1.0 - smooth) * inv / s.factor + smooth * inv;
      }
    }
    inv_freq[i] = static_cast<float>(inv);
  }
  return inv_freq;
}

}  // namespace zigzag
