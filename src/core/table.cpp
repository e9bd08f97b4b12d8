#include "core/table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "qllm/error.h"

namespace qllm {

Cell Cell::number(double v, int decimals) {
  Cell cell("");
  if (std::isfinite(v)) {
    cell.text = fmt::format("{:.{}f}", v, decimals);
    cell.value = v;
  } else {
    cell.text = fmt::format("{}", v);
    cell.value = nullptr;  // JSON has no inf/nan
  }
  return cell;
}

Cell Cell::missing() {
  Cell cell("-");
  cell.value = nullptr;
  return cell;
}

void Table::add_row(std::vector<Cell> cells) {
  QLLM_CHECK(cells.size() == columns_.size(), "table row has {} cells, expected {}", cells.size(),
             columns_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::to_text() const {
  std::vector<size_t> width(columns_.size());
  for (size_t c = 0; c < columns_.size(); ++c) {
    width[c] = columns_[c].size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].text.size());
  }
  auto line = [&](auto&& text_of) {
    std::string out = "|";
    for (size_t c = 0; c < columns_.size(); ++c) {
      const std::string text = text_of(c);
      const bool numeric = !text.empty() && (std::isdigit(static_cast<unsigned char>(text.back())) != 0);
      out += numeric ? fmt::format(" {:>{}} |", text, width[c]) : fmt::format(" {:<{}} |", text, width[c]);
    }
    return out + "\n";
  };
  std::string out = line([&](size_t c) { return columns_[c]; });
  out += line([&](size_t c) { return std::string(width[c], '-'); });
  for (const auto& row : rows_) out += line([&](size_t c) { return row[c].text; });
  return out;
}

nlohmann::json Table::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : rows_) {
    nlohmann::json object = nlohmann::json::object();
    for (size_t c = 0; c < columns_.size(); ++c) object[columns_[c]] = row[c].value;
    rows.push_back(std::move(object));
  }
  return rows;
}

}  // namespace qllm
