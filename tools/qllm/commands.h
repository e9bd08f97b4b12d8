// Each subcommand lives in its own file (tools/qllm/<name>.cpp, picked up by CMake) and registers itself on
// the CLI11 app through one add_<name>() function declared here and called from main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "model/llama_config.h"
#include "qllm/tokenizer.h"

namespace qllm::cli {

void add_quant_error(CLI::App& app);
void add_gemm_bench(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_synth(CLI::App& app);
void add_generate(CLI::App& app);
void add_perplexity(CLI::App& app);

// A tokenizer whose ids reach past the model's vocabulary would fail only when such an id is fed: refuse the
// pair at load, naming both sizes.
void check_tokenizer_fits(const Tokenizer& tokenizer, const LlamaConfig& config, const std::string& model);

}  // namespace qllm::cli
