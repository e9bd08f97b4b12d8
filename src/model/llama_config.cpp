#include "model/llama_config.h"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <numbers>

#include "core/file_io.h"
#include "core/json.h"
#include "qllm/error.h"

namespace qllm {

namespace {

using json = nlohmann::json;

// Field readers: absent (or null) optional fields take Hugging Face's LlamaConfig defaults; present
// fields of the wrong type are errors naming the field.
bool has(const json& j, const char* key) {
  return j.contains(key) && !j[key].is_null();
}

int64_t get_int(const json& j, const char* key, const std::string& label) {
  QLLM_CHECK(has(j, key), "{}: missing field '{}'", label, key);
  QLLM_CHECK(j[key].is_number_integer(), "{}: field '{}' must be an integer, got {}", label, key,
             json_excerpt(j[key]));
  return j[key].get<int64_t>();
}
int64_t get_int(const json& j, const char* key, const std::string& label, int64_t fallback) {
  return has(j, key) ? get_int(j, key, label) : fallback;
}

double get_number(const json& j, const char* key, const std::string& label) {
  QLLM_CHECK(has(j, key), "{}: missing field '{}'", label, key);
  QLLM_CHECK(j[key].is_number(), "{}: field '{}' must be a number, got {}", label, key, json_excerpt(j[key]));
  return j[key].get<double>();
}
double get_number(const json& j, const char* key, const std::string& label, double fallback) {
  return has(j, key) ? get_number(j, key, label) : fallback;
}

bool get_bool(const json& j, const char* key, const std::string& label, bool fallback) {
  if (!has(j, key)) return fallback;
  QLLM_CHECK(j[key].is_boolean(), "{}: field '{}' must be true or false, got {}", label, key,
             json_excerpt(j[key]));
  return j[key].get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& label,
                       const std::string& fallback) {
  if (!has(j, key)) return fallback;
  QLLM_CHECK(j[key].is_string(), "{}: field '{}' must be a string, got {}", label, key, json_excerpt(j[key]));
  return j[key].get<std::string>();
}

void check_architecture(const json& j, const std::string& label) {
  if (has(j, "architectures")) {
    const json& arch = j["architectures"];
    QLLM_CHECK(arch.is_array(), "{}: field 'architectures' must be a list", label);
    bool llama = false;
    for (const json& a : arch) llama = llama || (a.is_string() && a.get<std::string>() == "LlamaForCausalLM");
    QLLM_CHECK(llama, "{}: unsupported architectures {} (only LlamaForCausalLM)", label, json_excerpt(arch));
  }
  const std::string model_type = get_string(j, "model_type", label, "llama");
  QLLM_CHECK(model_type == "llama", "{}: unsupported model_type '{}' (only llama)", label, model_type);
  const std::string act = get_string(j, "hidden_act", label, "silu");
  QLLM_CHECK(act == "silu", "{}: unsupported hidden_act '{}' (only silu)", label, act);
  QLLM_CHECK(!get_bool(j, "attention_bias", label, false), "{}: unsupported attention_bias = true", label);
  QLLM_CHECK(!get_bool(j, "mlp_bias", label, false), "{}: unsupported mlp_bias = true", label);
}

// Rope parameters live in `rope_parameters` (transformers 5, with rope_theta inside) or in `rope_theta` +
// `rope_scaling` (transformers 4, real Llama 3.x files; rope_scaling may be null for plain RoPE).
void parse_rope(const json& j, const std::string& label, LlamaConfig& c) {
  const bool v5 = has(j, "rope_parameters");
  const char* section_key = v5 ? "rope_parameters" : "rope_scaling";
  c.rope_theta = get_number(j, "rope_theta", label, 10000.0);
  if (!has(j, section_key)) return;
  const json& section = j[section_key];
  const std::string where = fmt::format("{}: {}", label, section_key);
  QLLM_CHECK(section.is_object(), "{} must be an object, got {}", where, json_excerpt(section));
  if (v5) c.rope_theta = get_number(section, "rope_theta", where, c.rope_theta);
  c.rope.type = get_string(section, "rope_type", where, get_string(section, "type", where, "default"));
  if (c.rope.type == "default") return;
  if (c.rope.type == "linear") {
    c.rope.factor = get_number(section, "factor", where);
    QLLM_CHECK(c.rope.factor > 0, "{}: linear factor must be positive", where);
    return;
  }
  QLLM_CHECK(c.rope.type == "llama3", "{}: unsupported rope_type '{}' (supported: default, linear, llama3)",
             label, c.rope.type);
  c.rope.factor = get_number(section, "factor", where);
  c.rope.low_freq_factor = get_number(section, "low_freq_factor", where);
  c.rope.high_freq_factor = get_number(section, "high_freq_factor", where);
  c.rope.original_max_position_embeddings = get_int(section, "original_max_position_embeddings", where);
  QLLM_CHECK(c.rope.factor > 0 && c.rope.low_freq_factor > 0 && c.rope.original_max_position_embeddings > 0,
             "{}: llama3 factor, low_freq_factor and original_max_position_embeddings must be positive",
             where);
  QLLM_CHECK(c.rope.high_freq_factor > c.rope.low_freq_factor,
             "{}: high_freq_factor ({}) must exceed low_freq_factor ({})", where, c.rope.high_freq_factor,
             c.rope.low_freq_factor);
}

std::vector<int64_t> parse_eos(const json& j, const std::string& label) {
  if (!has(j, "eos_token_id")) return {};
  const json& eos = j["eos_token_id"];
  if (eos.is_number_integer()) return {eos.get<int64_t>()};
  QLLM_CHECK(eos.is_array(), "{}: field 'eos_token_id' must be an integer or a list of integers, got {}",
             label, json_excerpt(eos));
  std::vector<int64_t> ids;
  for (const json& id : eos) {
    QLLM_CHECK(id.is_number_integer(), "{}: field 'eos_token_id' must hold integers, got {}", label,
               json_excerpt(eos));
    ids.push_back(id.get<int64_t>());
  }
  return ids;
}

void validate(const LlamaConfig& c, const std::string& label) {
  QLLM_CHECK(c.hidden_size > 0 && c.intermediate_size > 0 && c.num_hidden_layers > 0 &&
                 c.num_attention_heads > 0 && c.num_key_value_heads > 0 && c.vocab_size > 0 &&
                 c.max_position_embeddings > 0 && c.head_dim > 0,
             "{}: sizes must be positive: {}", label, c.describe());
  // Far above any Llama (405B: hidden 16384, vocab 128256, context 131072) and small enough that products
  // of two sizes (q_dim, a KV cache's elements) cannot overflow 64 bits.
  constexpr int64_t kMaxSize = int64_t{1} << 24;
  for (auto [value, field] : {std::pair{c.hidden_size, "hidden_size"},
                              {c.intermediate_size, "intermediate_size"},
                              {c.num_hidden_layers, "num_hidden_layers"},
                              {c.num_attention_heads, "num_attention_heads"},
                              {c.num_key_value_heads, "num_key_value_heads"},
                              {c.vocab_size, "vocab_size"},
                              {c.max_position_embeddings, "max_position_embeddings"},
                              {c.head_dim, "head_dim"}}) {
    QLLM_CHECK(value <= kMaxSize, "{}: {} = {} is beyond any supported model (at most {})", label, field,
               value, kMaxSize);
  }
  QLLM_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
             "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", label,
             c.num_attention_heads, c.num_key_value_heads);
  QLLM_CHECK(c.head_dim % 2 == 0, "{}: head_dim {} must be even for rotary embeddings", label, c.head_dim);
  QLLM_CHECK(c.rms_norm_eps > 0, "{}: rms_norm_eps must be positive, got {}", label, c.rms_norm_eps);
  QLLM_CHECK(c.rope_theta > 1, "{}: rope_theta must exceed 1, got {}", label, c.rope_theta);
  auto check_id = [&](int64_t id, const char* field) {
    QLLM_CHECK(id >= 0 && id < c.vocab_size, "{}: {} {} is outside the vocabulary [0, {})", label, field, id,
               c.vocab_size);
  };
  if (c.bos_token_id >= 0) check_id(c.bos_token_id, "bos_token_id");
  for (int64_t id : c.eos_token_ids) check_id(id, "eos_token_id");
}

}  // namespace

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& label) {
  QLLM_CHECK(j.is_object(), "{}: must be a JSON object", label);
  check_architecture(j, label);
  LlamaConfig c;
  c.hidden_size = get_int(j, "hidden_size", label);
  c.intermediate_size = get_int(j, "intermediate_size", label);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", label);
  c.num_attention_heads = get_int(j, "num_attention_heads", label);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", label, c.num_attention_heads);
  QLLM_CHECK(c.num_attention_heads > 0, "{}: num_attention_heads must be positive", label);
  if (!has(j, "head_dim")) {
    QLLM_CHECK(c.hidden_size % c.num_attention_heads == 0,
               "{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim is given)",
               label, c.hidden_size, c.num_attention_heads);
  }
  c.head_dim = get_int(j, "head_dim", label, c.hidden_size / c.num_attention_heads);
  c.vocab_size = get_int(j, "vocab_size", label);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", label, 2048);
  c.rms_norm_eps = get_number(j, "rms_norm_eps", label, 1e-6);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", label, false);
  c.bos_token_id = get_int(j, "bos_token_id", label, -1);
  c.eos_token_ids = parse_eos(j, label);
  c.dtype = get_string(j, "torch_dtype", label, get_string(j, "dtype", label, "float32"));
  parse_rope(j, label, c);
  validate(c, label);
  return c;
}

LlamaConfig LlamaConfig::load(const std::string& path) {
  namespace fs = std::filesystem;
  QLLM_CHECK(fs::exists(path), "model '{}' not found (no such directory or file)", path);
  const std::string file = fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
  return from_json(read_json_file(file), file);
}

json LlamaConfig::to_hf_json() const {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"attention_bias", false},
            {"attention_dropout", 0.0},
            {"head_dim", head_dim},
            {"hidden_act", "silu"},
            {"hidden_size", hidden_size},
            {"initializer_range", 0.02},
            {"intermediate_size", intermediate_size},
            {"max_position_embeddings", max_position_embeddings},
            {"mlp_bias", false},
            {"model_type", "llama"},
            {"num_attention_heads", num_attention_heads},
            {"num_hidden_layers", num_hidden_layers},
            {"num_key_value_heads", num_key_value_heads},
            {"pretraining_tp", 1},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"torch_dtype", dtype},
            {"use_cache", true},
            {"vocab_size", vocab_size}};
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_ids.size() == 1 ? json(eos_token_ids[0]) : json(eos_token_ids);
  if (rope.type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {{"factor", rope.factor},
                         {"high_freq_factor", rope.high_freq_factor},
                         {"low_freq_factor", rope.low_freq_factor},
                         {"original_max_position_embeddings", rope.original_max_position_embeddings},
                         {"rope_type", rope.type}};
  }
  return j;
}

LlamaConfig LlamaConfig::llama_3_2_1b() {
  LlamaConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope = RopeScaling{"llama3", 32.0, 1.0, 4.0, 8192};
  c.tie_word_embeddings = true;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  c.dtype = "bfloat16";
  return c;
}

LlamaConfig LlamaConfig::tiny() {
  LlamaConfig c = llama_3_2_1b();
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 272;  // 256 byte tokens + 16 Llama 3 special tokens (model/synthetic.h)
  c.max_position_embeddings = 1024;
  c.bos_token_id = 256;
  c.eos_token_ids = {257, 264, 265};
  return c;
}

LlamaConfig LlamaConfig::small() {
  LlamaConfig c = tiny();
  c.hidden_size = 192;        // 3 heads of 64: K = 192 is not a multiple of 128 (a g128 row has a partial group)
  c.intermediate_size = 320;  // the down projection's K = 320: 2.5 groups of 128
  c.num_attention_heads = 3;
  c.num_key_value_heads = 1;  // GQA ratio 3, as SmolLM2's 9/3
  c.head_dim = 64;
  return c;
}

std::string LlamaConfig::describe() const {
  return fmt::format(
      "{} layers, hidden {}, intermediate {}, heads {}/{} (kv), head_dim {}, vocab {}, max positions {}, "
      "rope {} theta {}{}, {} embeddings",
      num_hidden_layers, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim,
      vocab_size, max_position_embeddings, rope.type, rope_theta,
      rope.type == "llama3" ? fmt::format(" factor {}", rope.factor) : std::string(),
      tie_word_embeddings ? "tied" : "untied");
}

std::vector<double> rope_inverse_frequencies(const LlamaConfig& config) {
  const int64_t half = config.head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] =
        1.0 / std::pow(config.rope_theta, static_cast<double>(2 * i) / static_cast<double>(config.head_dim));
  }
  if (config.rope.type == "linear") {
    for (double& f : inv_freq) f /= config.rope.factor;
    return inv_freq;
  }
  if (config.rope.type == "factors") {
    QLLM_CHECK(config.rope.freq_factors.size() == inv_freq.size(),
               "rope frequency factors: {} values for head_dim {} (expected head_dim / 2)",
               config.rope.freq_factors.size(), config.head_dim);
    for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= config.rope.freq_factors[i];
    return inv_freq;
  }
  if (config.rope.type != "llama3") return inv_freq;

  // Llama 3 scaling: long wavelengths (low frequencies) are slowed down by `factor`, short ones kept, the
  // band between interpolated smoothly.
  const RopeScaling& r = config.rope;
  const double original = static_cast<double>(r.original_max_position_embeddings);
  const double low_freq_wavelen = original / r.low_freq_factor;
  const double high_freq_wavelen = original / r.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen < high_freq_wavelen) continue;
    if (wavelen > low_freq_wavelen) {
      f = f / r.factor;
    } else {
      const double smooth =
          (original / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = (1.0 - smooth) * f / r.factor + smooth * f;
    }
  }
  return inv_freq;
}

}  // namespace qllm
