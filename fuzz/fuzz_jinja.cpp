// libFuzzer entry point for the chat-template interpreter: the input is parsed as a template and rendered
// with a small conversation (as ChatTemplate renders one). A qllm::Error is the expected way to refuse
// input; a crash, a hang, a sanitizer report or any other exception is a bug.
// Built and run by scripts/fuzz.sh (QLLM_FUZZ_TARGETS=jinja).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "jinja/template.h"
#include "qllm/error.h"

namespace {

qllm::jinja::Context conversation() {
  const auto json = nlohmann::ordered_json::parse(R"({
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ there }}"},
                 {"role": "assistant", "content": " Hello! "}, {"role": "user", "content": "Café 😀"}],
    "tools": null, "documents": null, "add_generation_prompt": true,
    "bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"})");
  qllm::jinja::Context context;
  for (const auto& [name, value] : json.items()) context[name] = qllm::jinja::from_json(value);
  return context;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const qllm::jinja::Context context = conversation();
  qllm::jinja::Limits limits;
  limits.max_output_bytes = 1u << 20;  // small bounds keep each run fast
  limits.max_steps = 100000;
  try {
    const auto source = std::string_view(reinterpret_cast<const char*>(data), size);
    const auto template_ = qllm::jinja::Template::parse(source, "fuzz", limits);
    (void)template_.render(context);
  } catch (const qllm::Error&) {
    // refused: fine
  }
  return 0;
}
