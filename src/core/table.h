// Result tables: printed as aligned Markdown-style text for people and as JSON for scripts (--json).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace qllm {

// One table cell: the text a person reads and the value a script reads.
struct Cell {
  std::string text;
  nlohmann::json value;

  Cell(const char* s) : text(s), value(s) {}             // NOLINT: implicit on purpose, rows read as literals
  Cell(std::string s) : text(s), value(std::move(s)) {}  // NOLINT
  Cell(int64_t v) : text(std::to_string(v)), value(v) {}  // NOLINT
  Cell(int v) : Cell(static_cast<int64_t>(v)) {}          // NOLINT
  static Cell number(double v, int decimals);             // fixed-point text, full-precision JSON value
  static Cell missing();                                  // "-" in text, null in JSON
};

class Table {
 public:
  explicit Table(std::vector<std::string> columns) : columns_(std::move(columns)) {}

  void add_row(std::vector<Cell> cells);
  size_t rows() const { return rows_.size(); }

  std::string to_text() const;     // header, separator line, one line per row; columns aligned
  nlohmann::json to_json() const;  // [{column: value, ...}, ...]

 private:
  std::vector<std::string> columns_;
  std::vector<std::vector<Cell>> rows_;
};

}  // namespace qllm
