// Quantized checkpoints: INT4 linear weights inside a Hugging Face style safetensors checkpoint, in one of
// three tensor layouts named by config.json's `quantization_config` (byte layouts: docs/FORMATS.md,
// "Quantized checkpoints"). A linear weight `<base>.weight` (e.g. model.layers.0.mlp.up_proj.weight) is
// quantized when the file holds `<base>.qweight` instead:
//   qllm (quant_method "qllm"): qweight U8 [N, K/2] in qllm's canonical nibble order, scales F16|BF16 [N, G]
//        ([1, 1] for GLOBAL), zeros U8 [N, G] when asymmetric: the Int4Matrix bytes as they are.
//   gptq (AutoGPTQ v1): qweight I32 [K/8, N], qzeros I32 [G, N/8] holding zero - 1, scales F16 [G, N],
//        g_idx I32 [K] (k / group_size: desc_act is not supported).
//   awq (AutoAWQ GEMM): qweight I32 [K, N/8] and qzeros I32 [G, N/8] with AWQ's nibble order
//        [0, 2, 4, 6, 1, 3, 5, 7], scales F16 [G, N].
// Every layout reconstructs w' = (q - z) * s, qllm's INT4 exactly (include/qllm/quant.h).
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "qllm/quant.h"

namespace qllm {

enum class QuantFormat { Qllm, Gptq, Awq };
std::string_view quant_format_name(QuantFormat format);  // "qllm", "gptq", "awq"
QuantFormat parse_quant_format(std::string_view name);   // qllm::Error listing the three otherwise

struct QuantizationConfig {
  QuantFormat format = QuantFormat::Qllm;
  // Granularity, group size and zero point; the scale dtype is the scales tensors' (gptq/awq: f16).
  Int4Scheme scheme;
  std::string label;  // names it in errors: "<dir>/config.json: quantization_config"

  // The `quantization_config` object written to config.json (what transformers reads for gptq and awq).
  nlohmann::json to_json() const;
};

// `config`'s quantization_config (the parsed config.json), or nullopt when it has none. qllm::Error naming the
// field for a method other than qllm/gptq/awq, bits != 4, desc_act, a bad group size, or a scheme the format
// cannot hold.
std::optional<QuantizationConfig> read_quantization_config(const nlohmann::json& config,
                                                           const std::string& label);

// Whether the format can store `scheme` and a [rows, cols] weight (gptq/awq: K and N multiples of 8, no GLOBAL,
// awq asymmetric only, gptq/awq scales f16); qllm::Error naming `name` and the reason otherwise.
void check_storable(const QuantizationConfig& config, const Int4Scheme& scheme, const std::string& name,
                    int64_t rows, int64_t cols);

// The weight `base` of [rows, cols] read from the checkpoint's tensors (their names are added to `used`).
// qllm::Error naming the tensor for a missing tensor, a wrong dtype or shape, zero points out of range,
// non-finite scales, or a g_idx other than k / group_size.
Int4Matrix read_int4_weight(const SafetensorsCheckpoint& ckpt, const QuantizationConfig& config,
                            const std::string& base, int64_t rows, int64_t cols, std::set<std::string>& used);

// The tensors that store `matrix` as `base` in the config's format, filled when written.
std::vector<TensorToWrite> int4_weight_tensors(const QuantizationConfig& config, const std::string& base,
                                               std::shared_ptr<const Int4Matrix> matrix);

}  // namespace qllm
