// Writes our quantizer's bytes and dequantizer's floats for one f32 input, per dtype, so
// tests/oracle/check_quants.py can compare them with llama.cpp's gguf-py.
//   quant_dump IN.f32 K OUTDIR   (IN: rows of K little-endian floats)
// writes OUTDIR/<dtype>.q (quantize_row of every row) and OUTDIR/<dtype>.f32 (dequantize_row
// of those bytes) for every dtype quantize_row supports.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "aha/kernels.h"

using namespace aha;

static std::vector<char> read_file(const char* path) {
  std::FILE* f = std::fopen(path, "rb");
  if (!f) {
    std::perror(path);
    std::exit(1);
  }
  std::vector<char> b;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) b.insert(b.end(), buf, buf + n);
  std::fclose(f);
  return b;
}

static void write_file(const std::string& path, const void* p, size_t n) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(p, 1, n, f) != n) {
    std::perror(path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: quant_dump IN.f32 K OUTDIR\n");
    return 2;
  }
  const std::vector<char> raw = read_file(argv[1]);
  const int64_t k = std::atoll(argv[2]);
  const std::string out = argv[3];
  if (k <= 0 || raw.size() % (size_t(k) * 4)) {
    std::fprintf(stderr, "%s: %zu bytes is not rows of %lld floats\n", argv[1], raw.size(), (long long)k);
    return 2;
  }
  const size_t rows = raw.size() / (size_t(k) * 4);
  const float* x = reinterpret_cast<const float*>(raw.data());
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    if (k % traits(t).block) continue;
    const size_t rb = row_bytes(t, k);
    std::vector<uint8_t> q(rb * rows);
    std::vector<float> y(size_t(k) * rows);
    for (size_t r = 0; r < rows; r++) {
      quantize_row(t, x + r * size_t(k), q.data() + r * rb, k);
      dequantize_row(t, q.data() + r * rb, y.data() + r * size_t(k), k);
    }
    write_file(out + "/" + dtype_name(t) + ".q", q.data(), q.size());
    write_file(out + "/" + dtype_name(t) + ".f32", y.data(), y.size() * 4);
  }
  return 0;
}
