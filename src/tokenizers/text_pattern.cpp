// A tokenizer.json pattern, {"String": "..."} (literal) or {"Regex": "..."}: where it matches in a text.
#include "src/tokenizers/text_pattern.h"

namespace mpitrain::tokenizers {

TextPattern::TextPattern(const ComponentJson& component, const char* key) {
  const auto& all = component.json();
  const auto it = all.find(key);
  if (it == all.end() || !it->is_object() || it->size() != 1)
    component.fail(std::string("'") + key + "' must be {\"String\": ...} or {\"Regex\": ...}");
  if (const auto s = it->find("String"); s != it->end() && s->is_string()) {
    literal_ = s->get<std::string>();
  } else if (const auto r = it->find("Regex"); r != it->end() && r->is_string()) {
    try {
      regex_ = std::make_shared<const Regex>(r->get<std::string>());
    } catch (const std::invalid_argument& e) {
      component.fail(e.what());
    }
  } else {
    component.fail(std::string("'") + key + "' must be {\"String\": ...} or {\"Regex\": ...}");
  }
}

Ranges TextPattern::matches(std::string_view text) const {
  return regex_ ? regex_->find_all(text) : literal_matches(text, literal_);
}

std::string TextPattern::replace_all(std::string_view text, const std::string& content) const {
  std::string out;
  std::size_t previous = 0;
  for (const auto& [begin, end] : matches(text)) {
    out.append(text.substr(previous, begin - previous));
    out += content;
    previous = end;
  }
  out.append(text.substr(previous));
  return out;
}

}  // namespace mpitrain::tokenizers
