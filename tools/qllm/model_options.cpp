// The model options shared by generate, chat and perplexity, and the load that follows them.
#include <fmt/format.h>

#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace qllm::cli {

void add_model_options(CLI::App& cmd, ModelCliOptions& o) {
  cmd.add_option("--model", o.model, "Hugging Face checkpoint directory or .gguf file")->required();
  cmd.add_option("--device", o.device, "auto (the GPU when there is one), cpu (the reference engine) or cuda")
      ->capture_default_str();
  cmd.add_option("--quant", o.quant,
                 "weights of the linear layers: auto (as the checkpoint stores them: bf16, or a quantized "
                 "checkpoint's INT4), bf16, f16, int4-global, int4-rowwise, int4-g<N>, int4-g<N>-asym, int8")
      ->capture_default_str();
  cmd.add_option("--quant-lm-head", o.quant_lm_head,
                 "the lm_head (and a tied embedding): same (as --quant) or a mode of --quant")
      ->capture_default_str();
  cmd.add_option("--int8-threshold", o.int8_threshold, "LLM.int8() outlier threshold (0: no outliers)")
      ->capture_default_str();
  cmd.add_option("--scale-search", o.scale_search, "int4 scales: none (round to nearest), mse or mae")
      ->capture_default_str();
  cmd.add_option("--method", o.method, kMethodHelp)->capture_default_str();
  add_gptq_options(cmd, o.gptq);
}

LoadedModel load_model_from(const ModelCliOptions& o, bool quiet) {
  LoadOptions options;
  options.device = parse_device(o.device);
  if (o.quant != "auto") {
    options.quant = ModelQuant::parse(o.quant, o.quant_lm_head);
    for (QuantMode* mode : {&options.quant->linear, &options.quant->lm_head}) {
      mode->int8_threshold = o.int8_threshold;
      mode->int4.search = parse_scale_search(o.scale_search);
    }
  } else {
    QLLM_CHECK(o.quant_lm_head == "same", "--quant-lm-head {} needs an explicit --quant (not auto)",
               o.quant_lm_head);
  }
  QLLM_CHECK(o.int8_threshold >= 0, "--int8-threshold must be >= 0, got {}", o.int8_threshold);
  options.gptq = calibrated_method(o.method, o.gptq);
  options.verbose = !quiet;
  LoadedModel loaded = load_model(o.model, options);
  if (!quiet) {
    fmt::print(stderr, "{}: {} on {}, weights {:.1f} MiB\n", o.model, loaded.model->quantization(),
               loaded.model->device_name(), static_cast<double>(loaded.model->weight_bytes()) / (1 << 20));
  }
  return loaded;
}

}  // namespace qllm::cli
