// Helpers of the Jinja interpreter tests: render a template with variables given as JSON, and the message
// of the qllm::Error a template raises.
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "jinja/template.h"
#include "qllm/error.h"

namespace qllm::testing {

inline jinja::Context jinja_context(std::string_view json) {
  const auto parsed = nlohmann::ordered_json::parse(json);
  jinja::Context context;
  for (const auto& [name, value] : parsed.items()) context[name] = jinja::from_json(value);
  return context;
}

// `source` rendered with the variables of the JSON object `context`.
inline std::string render(std::string_view source, std::string_view context = "{}",
                          jinja::Limits limits = {}) {
  return jinja::Template::parse(source, "t", limits).render(jinja_context(context));
}

// The message of the qllm::Error that parsing or rendering `source` throws, or "" when it renders.
inline std::string render_error(std::string_view source, std::string_view context = "{}",
                                jinja::Limits limits = {}) {
  try {
    render(source, context, limits);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace qllm::testing
