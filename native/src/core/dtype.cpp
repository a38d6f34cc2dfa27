// dtype table (GGML ids, GGUF names and block sizes) and the scalar fp16/bf16 conversions
// every kernel is checked against.
#include "aha/dtype.h"

#include <cctype>
#include <cstring>
#include <string>

#include "aha/error.h"

namespace aha {

namespace {

struct Entry {
  uint32_t id;
  DTypeTraits t;
};

// Block sizes and bytes are ggml's (ggml.c type_traits); the quant layouts are in core/quants.h.
constexpr Entry kTable[] = {
    {0, {"f32", 1, 4}},       {1, {"f16", 1, 2}},       {2, {"q4_0", 32, 18}},   {3, {"q4_1", 32, 20}},
    {6, {"q5_0", 32, 22}},    {7, {"q5_1", 32, 24}},    {8, {"q8_0", 32, 34}},   {12, {"q4_K", 256, 144}},
    {13, {"q5_K", 256, 176}}, {14, {"q6_K", 256, 210}}, {15, {"q8_K", 256, 292}}, {30, {"bf16", 1, 2}},
    {1000, {"f8_e4m3", 1, 1}}, {1001, {"fp8_b128", 128, 132}},
};

uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

const DTypeTraits* dtype_traits(uint32_t ggml_type_id) {
  for (const Entry& e : kTable)
    if (e.id == ggml_type_id) return &e.t;
  return nullptr;
}

float e4m3_to_f32(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return __builtin_nanf("");
  // normal: (1 + m/8) · 2^(e − 7); subnormal (e = 0): m/8 · 2^−6
  const float v = e ? float(8 + m) * float(1 << e) / 1024.0f : float(m) / 512.0f;
  return b & 0x80 ? -v : v;
}

const DTypeTraits& traits(DType t) {
  const DTypeTraits* tr = dtype_traits(uint32_t(t));
  if (!tr) throw Error("unknown dtype id " + std::to_string(uint32_t(t)));
  return *tr;
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeTraits& tr = traits(t);
  if (n < 0 || n % tr.block != 0)
    throw Error(std::string("row of ") + std::to_string(n) + " elements is not a whole number of " + tr.name + " blocks");
  return size_t(n / tr.block) * tr.block_bytes;
}

bool dtype_from_name(const char* name, DType* out) {
  if (!name) return false;
  for (const Entry& e : kTable) {
    const char* a = e.t.name;
    const char* b = name;
    while (*a && *b && std::tolower((unsigned char)*a) == std::tolower((unsigned char)*b)) a++, b++;
    if (!*a && !*b) {
      *out = DType(e.id);
      return true;
    }
  }
  return false;
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000 | (mant << 13));  // inf / nan (payload kept)
  if (exp != 0) return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_f32(sign);
  // Subnormal: mant * 2^-24, exact in f32.
  float v = float(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}

uint16_t f32_to_fp16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000) return uint16_t(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // nan: quiet, top payload kept
  if (abs == 0x7f800000) return uint16_t(sign | 0x7c00);
  const int e = int(abs >> 23) - 127 + 15;  // half exponent before rounding
  if (e >= 31) return uint16_t(sign | 0x7c00);  // |f| >= 2^16: overflows to inf
  uint32_t m = (abs & 0x7fffff) | 0x800000;    // 24-bit significand
  int shift;
  uint32_t base;
  if (e > 0) {
    shift = 13;
    base = uint32_t(e) << 10;
    m &= 0x7fffff;
  } else {
    shift = 14 - e;  // subnormal half: value = (m >> shift) * 2^-24
    if (shift > 24) return sign;  // below half of the smallest subnormal
    base = 0;
  }
  uint32_t h = base + (m >> shift);
  const uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1))) h++;  // a carry into the exponent is the right rounding (up to inf)
  return uint16_t(sign | h);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);  // nan: force quiet
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

void kv_store(uint8_t* dst, const float* src, int64_t n, DType t) {
  if (t == DType::F32) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  uint16_t* h = reinterpret_cast<uint16_t*>(dst);
  if (t == DType::F16)
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_fp16(src[i]);
  else
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(src[i]);
}

void kv_load(float* dst, const uint8_t* src, int64_t n, DType t) {
  if (t == DType::F32) {
    std::memcpy(dst, src, size_t(n) * 4);
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(src);
  if (t == DType::F16)
    for (int64_t i = 0; i < n; i++) dst[i] = fp16_to_f32(h[i]);
  else
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
}

}  // namespace aha
