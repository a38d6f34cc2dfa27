#include "formats/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "aha/error.h"

namespace aha {

std::string json_quote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += char(c);
    else if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '\r') o += "\\r";
    else if (c < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else o += char(c);
  }
  return o + "\"";
}

static void write_atomic(const std::string& path, const std::vector<const std::string*>& parts, const std::vector<const std::vector<uint8_t>*>& blobs) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path + ": cannot write (" + std::string(std::strerror(errno)) + ")");
  bool ok = true;
  for (auto* p : parts) ok = ok && std::fwrite(p->data(), 1, p->size(), f) == p->size();
  for (auto* b : blobs) ok = ok && std::fwrite(b->data(), 1, b->size(), f) == b->size();
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": write failed (" + std::string(std::strerror(errno)) + ")");
  }
}

void write_file_atomic(const std::string& path, const std::string& text) { write_atomic(path, {&text}, {}); }

void write_safetensors(const std::string& path, std::vector<SafetensorsEntry> entries, const std::map<std::string, std::string>& metadata) {
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (auto& [k, v] : metadata) {
      h += (first ? "" : ",") + json_quote(k) + ":" + json_quote(v);
      first = false;
    }
    h += "}";
  }
  size_t off = 0;
  for (auto& e : entries) {
    if (h.size() > 1) h += ",";
    h += json_quote(e.name) + ":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < e.shape.size(); i++) h += (i ? "," : "") + std::to_string(e.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + e.bytes.size()) + "]}";
    off += e.bytes.size();
  }
  h += "}";
  while ((8 + h.size()) % 8) h += ' ';
  std::string len(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; i++) len[size_t(i)] = char((n >> (8 * i)) & 0xff);
  std::vector<const std::vector<uint8_t>*> blobs;
  for (auto& e : entries) blobs.push_back(&e.bytes);
  write_atomic(path, {&len, &h}, blobs);
}

}  // namespace aha
