// libFuzzer target over the GGUF and safetensors header parsers: any byte string must
// either parse or throw aha::Error; never crash, hang or read out of bounds (ASan).
// Built by scripts/fuzz.sh with clang -fsanitize=fuzzer,address.
#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "aha/error.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the parser, so one corpus exercises both.
  std::vector<uint8_t> img(data + 1, data + size);
  try {
    if (data[0] & 1) {
      uint32_t version;
      std::map<std::string, aha::GgufValue> kv;
      std::vector<aha::GgufTensor> tensors;
      aha::parse_gguf(img.data(), img.size(), "fuzz.gguf", &version, &kv, &tensors);
    } else {
      aha::parse_safetensors(img.data(), img.size(), "fuzz.safetensors");
    }
  } catch (const aha::Error&) {
  }
  return 0;
}
