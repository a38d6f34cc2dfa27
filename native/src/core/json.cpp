#include "core/json.h"

#include <cmath>
#include <cstdlib>

#include "aha/error.h"

namespace aha {

class JsonParser {
 public:
  JsonParser(std::string_view s, const std::string& what) : s_(s), what_(what) {}

  Json parse_document() {
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) error("unexpected trailing characters");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 256;
  std::string_view s_;
  const std::string& what_;
  size_t pos_ = 0;

  [[noreturn]] void error(const std::string& msg) const {
    throw Error(what_ + ": invalid JSON at byte " + std::to_string(pos_) + ": " + msg);
  }

  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) pos_++;
  }

  bool consume(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) == lit) {
      pos_ += lit.size();
      return true;
    }
    return false;
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) error("unexpected end of input");
    Json v;
    char c = s_[pos_];
    if (c == '{') {
      v.kind_ = Json::Kind::Object;
      pos_++;
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        pos_++;
        return v;
      }
      for (;;) {
        skip_ws();
        if (pos_ >= s_.size() || s_[pos_] != '"') error("expected a string key");
        std::string key = parse_string();
        skip_ws();
        if (pos_ >= s_.size() || s_[pos_] != ':') error("expected ':'");
        pos_++;
        v.obj_[key] = parse_value(depth + 1);
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          pos_++;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == '}') {
          pos_++;
          return v;
        }
        error("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind_ = Json::Kind::Array;
      pos_++;
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ']') {
        pos_++;
        return v;
      }
      for (;;) {
        v.arr_.push_back(parse_value(depth + 1));
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == ',') {
          pos_++;
          continue;
        }
        if (pos_ < s_.size() && s_[pos_] == ']') {
          pos_++;
          return v;
        }
        error("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.kind_ = Json::Kind::String;
      v.str_ = parse_string();
      return v;
    }
    if (consume("true")) {
      v.kind_ = Json::Kind::Bool;
      v.b_ = true;
      return v;
    }
    if (consume("false")) {
      v.kind_ = Json::Kind::Bool;
      return v;
    }
    if (consume("null")) return v;
    // Python's json writes these for non-finite floats; transformers configs can contain them.
    if (consume("NaN")) return number(NAN);
    if (consume("Infinity")) return number(INFINITY);
    if (consume("-Infinity")) return number(-INFINITY);
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t start = pos_;
      if (s_[pos_] == '-') pos_++;
      while (pos_ < s_.size() && ((s_[pos_] >= '0' && s_[pos_] <= '9') || s_[pos_] == '.' || s_[pos_] == 'e' ||
                                  s_[pos_] == 'E' || s_[pos_] == '+' || s_[pos_] == '-'))
        pos_++;
      std::string tok(s_.substr(start, pos_ - start));
      char* end = nullptr;
      double d = std::strtod(tok.c_str(), &end);
      if (end != tok.c_str() + tok.size()) {
        pos_ = start;
        error("bad number '" + tok + "'");
      }
      return number(d);
    }
    error(std::string("unexpected character '") + c + "'");
  }

  static Json number(double d) {
    Json v;
    v.kind_ = Json::Kind::Number;
    v.num_ = d;
    return v;
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) error("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
      char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= uint32_t(h - '0');
      else if (h >= 'a' && h <= 'f') v |= uint32_t(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= uint32_t(h - 'A' + 10);
      else error("bad \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    pos_++;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) error("unterminated string");
      char c = s_[pos_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) error("unterminated escape");
      char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && pos_ + 6 <= s_.size() && s_[pos_] == '\\' && s_[pos_ + 1] == 'u') {
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else error("bad surrogate pair");
          }
          put_utf8(out, cp);
          break;
        }
        default: error(std::string("bad escape '\\") + e + "'");
      }
    }
  }
};

Json Json::parse(std::string_view text, const std::string& what) { return JsonParser(text, what).parse_document(); }

static const char* kind_name(Json::Kind k) {
  switch (k) {
    case Json::Kind::Null: return "null";
    case Json::Kind::Bool: return "a boolean";
    case Json::Kind::Number: return "a number";
    case Json::Kind::String: return "a string";
    case Json::Kind::Array: return "an array";
    case Json::Kind::Object: return "an object";
  }
  return "?";
}

[[noreturn]] static void wrong(Json::Kind have, const char* want) {
  throw Error(std::string("JSON value is ") + kind_name(have) + ", expected " + want);
}

double Json::number() const {
  if (kind_ != Kind::Number) wrong(kind_, "a number");
  return num_;
}
int64_t Json::integer() const {
  double d = number();
  if (!(std::fabs(d) < 9.2e18) || d != std::floor(d)) throw Error("JSON number " + std::to_string(d) + " is not an integer");
  return int64_t(d);
}
bool Json::boolean() const {
  if (kind_ != Kind::Bool) wrong(kind_, "a boolean");
  return b_;
}
const std::string& Json::string() const {
  if (kind_ != Kind::String) wrong(kind_, "a string");
  return str_;
}
const std::vector<Json>& Json::array() const {
  if (kind_ != Kind::Array) wrong(kind_, "an array");
  return arr_;
}
const std::map<std::string, Json>& Json::object() const {
  if (kind_ != Kind::Object) wrong(kind_, "an object");
  return obj_;
}
const Json* Json::find(const std::string& key) const {
  if (kind_ != Kind::Object) return nullptr;
  auto it = obj_.find(key);
  return it == obj_.end() ? nullptr : &it->second;
}

template <typename F>
static auto member(const Json& j, const std::string& key, F get) -> decltype(get(j)) {
  try {
    return get(j);
  } catch (const Error& e) {
    throw Error("\"" + key + "\": " + e.what());
  }
}

double Json::get_number(const std::string& key, double fallback) const {
  const Json* v = find(key);
  return v && !v->is_null() ? member(*v, key, [](const Json& j) { return j.number(); }) : fallback;
}
int64_t Json::get_int(const std::string& key, int64_t fallback) const {
  const Json* v = find(key);
  return v && !v->is_null() ? member(*v, key, [](const Json& j) { return j.integer(); }) : fallback;
}
bool Json::get_bool(const std::string& key, bool fallback) const {
  const Json* v = find(key);
  return v && !v->is_null() ? member(*v, key, [](const Json& j) { return j.boolean(); }) : fallback;
}
std::string Json::get_string(const std::string& key, const std::string& fallback) const {
  const Json* v = find(key);
  return v && !v->is_null() ? member(*v, key, [](const Json& j) { return j.string(); }) : fallback;
}

}  // namespace aha
