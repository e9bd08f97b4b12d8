// qllm: quantized LLM inference. One subcommand per file in this folder.
// Exit status: 0 success, 1 runtime error (bad input file, model mismatch, GPU error: a message names it),
// 2 usage error (unknown flag, bad flag value; the closest known flag is suggested).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "qllm/error.h"
#include "tools/qllm/commands.h"

namespace {

constexpr int kRuntimeError = 1;
constexpr int kUsageError = 2;

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitution});
    }
  }
  return row[b.size()];
}

// "did you mean --max-tokens?" for each argument that is no subcommand or flag of the one named, when a
// known name is within a few edits of it.
void suggest_closest(CLI::App& app, int argc, char** argv) {
  CLI::App* command = nullptr;
  std::vector<std::string> names;
  for (CLI::App* sub : app.get_subcommands({})) names.push_back(sub->get_name());
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (command == nullptr && !arg.starts_with("-")) {
      for (CLI::App* sub : app.get_subcommands({})) {
        if (sub->get_name() == arg) command = sub;
      }
      if (command != nullptr) {
        names.clear();
        for (const CLI::Option* option : command->get_options()) {
          for (const std::string& flag : option->get_lnames()) names.push_back("--" + flag);
        }
        continue;
      }
    } else if (command == nullptr || !arg.starts_with("--")) {
      continue;
    }
    const std::string_view flag = arg.substr(0, arg.find('='));
    if (std::find(names.begin(), names.end(), flag) != names.end()) continue;
    const std::string* best = nullptr;
    size_t best_distance = 4;  // farther than 3 edits is not a typo
    for (const std::string& name : names) {
      const size_t d = edit_distance(flag, name);
      if (d < best_distance) best = &name, best_distance = d;
    }
    if (best != nullptr) fmt::print(stderr, "qllm: '{}': did you mean '{}'?\n", flag, *best);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qllm: quantized LLM inference (INT4/INT8 weights, CUDA kernels, Llama models)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "qllm 0.1.0");
  app.footer("Exit status: 0 success, 1 runtime error, 2 usage error.");
  qllm::cli::add_quant_error(app);
  qllm::cli::add_gemm_bench(app);
  qllm::cli::add_tokenize(app);
  qllm::cli::add_synth(app);
  qllm::cli::add_generate(app);
  qllm::cli::add_perplexity(app);
  qllm::cli::add_chat(app);
  qllm::cli::add_bench(app);
  qllm::cli::add_quantize(app);
#ifdef QLLM_HAVE_SERVER
  qllm::cli::add_serve(app);
#endif
  qllm::cli::add_gptq_error(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // prints help, the version, or the error
    if (status == 0) return 0;
    suggest_closest(app, argc, argv);
    return kUsageError;
  } catch (const qllm::Error& e) {
    std::fflush(stdout);
    fmt::print(stderr, "qllm: error: {}\n", e.what());
    return kRuntimeError;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    fmt::print(stderr, "qllm: error: out of host memory\n");
    return kRuntimeError;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "qllm: internal error: {}\n", e.what());
    return kRuntimeError;
  }
  return 0;
}
