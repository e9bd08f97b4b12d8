// qllm: quantized LLM inference. One subcommand per file in this folder.
#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "qllm/error.h"
#include "tools/qllm/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"qllm: quantized LLM inference (INT4/INT8 weights, CUDA kernels, Llama 3)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qllm 0.1.0");
  qllm::cli::add_quant_error(app);
  qllm::cli::add_gemm_bench(app);
  qllm::cli::add_tokenize(app);
  qllm::cli::add_synth(app);
  qllm::cli::add_generate(app);
  qllm::cli::add_perplexity(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const qllm::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "qllm: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "qllm: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}
