// CPU dot-product kernels: one entry per weight dtype, chosen at run time by ISA.
//
// Every matmul in the engine is y = x · Wᵀ with W stored row-major as n_out rows
// of k elements in the weight dtype (GGUF/HF layout), x as m rows of k floats.
// The activation rows are first converted once to the kernel's `act` dtype
// (f32, f16, bf16, q8_0 or q8_K; see quantize_act), then `tile` computes a
// block of dot products. The scalar kernels (Isa::Scalar) are the reference
// every other ISA is tested against.
#pragma once
#include <cstddef>
#include <cstdint>

#include "aha/dtype.h"

namespace aha {

// x86 levels in increasing order (each implies the ones before it); Neon stands alone.
// Avx512Vnni: AVX-512 with vpdpbusd/vpdpwssd. Amx: that plus AMX-INT8 tiles, which the OS
// must grant (Linux arch_prctl) before a thread may use them.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Vnni = 3, Neon = 4, Amx = 5 };
const char* isa_name(Isa isa);
Isa best_isa();                 // what this CPU (and OS) supports best
bool cpu_has_amx_bf16();        // AMX runs here (best_isa() is Amx) and the CPU has AMX-BF16 and AVX512-BF16
bool cpu_has_avx512_bf16();     // AVX-512 runs here and the CPU has AVX512-BF16 (vdpbf16ps)
bool isa_supported(Isa isa);    // this machine runs isa's kernels
Isa active_isa();               // best_isa(), or the AHA_ISA override ("scalar", "avx2", ..., "amx")
void set_active_isa(Isa isa);   // an unsupported isa becomes best_isa(); used by tests and --isa

// y[i * y_stride + j] = dot(A row i, W row j) for i < na, j < nw.
// w/a point at the first row; strides are in bytes for w and a, in floats for y.
// k is a multiple of the weight dtype's block size (32 or 256).
using DotTileFn = void (*)(int64_t k, const void* w, size_t w_stride, int nw,
                           const void* a, size_t a_stride, int na,
                           float* y, size_t y_stride);

struct WeightKernel {
  DType weight;
  DType act;       // dtype the activations are converted to for this weight dtype
  DotTileFn tile;
  // Matrix-matrix tiles matmul hands to `tile`: weight rows (0: a thread's whole share) and
  // activation rows (0: all of them). Kernels that repack operands per call want big tiles.
  int64_t panel_w = 64, panel_a = 64;
};

// nullptr when the dtype has no kernel (callers report "unsupported dtype").
const WeightKernel* weight_kernel(DType weight, Isa isa);
inline const WeightKernel* weight_kernel(DType weight) { return weight_kernel(weight, active_isa()); }

// ---- Weights packed at load. Where an ISA has kernels for it, a matmul weight is copied once
// into a layout its kernels stream faster than the file's (WeightStore::pack_for_cpu); the file's
// bytes stay what every other reader (embedding rows, training's backward, export) uses.
// q8_0: groups of 16 rows; per block of 32 columns, 8 × 64 bytes (quant dword j of rows 0..15,
// +128 as u8), then after the group's last block its 16 fp16 scales per block. A group is
// exactly 16 rows' bytes, so a row that is a multiple of 16 starts where it does in the file;
// the rows are padded with zero rows to a multiple of 16. q4_K: the same groups; per super-block
// 32 × 64 bytes of quants (sub-block j, dword u: each row's values 8u..8u+3 in the low nibbles,
// 8u+4..8u+7 in the high), then the 16 rows' d and dmin, then their 12 scale bytes transposed.
bool has_packed_layout(DType weight);
size_t packed_bytes(DType weight, int64_t k, int64_t rows);  // rows rounded up to 16
// Packs rows [r0, r1) (multiples of 16, or r1 = rows) of the matrix at src (row_bytes apart)
// into dst, which holds the whole packed matrix.
void pack_rows(DType weight, const void* src, int64_t k, int64_t rows, int64_t r0, int64_t r1, void* dst);
// The kernel over packed weights (tile's w: the packed matrix, its row r at r × row_bytes, r a
// multiple of 16; w_stride: the file's row bytes); nullptr where this ISA has none.
const WeightKernel* packed_weight_kernel(DType weight, Isa isa);

// Activation conversion: x[k] floats -> k elements of `act` dtype at out (row_bytes(act, k) bytes).
void quantize_act(DType act, const float* x, void* out, int64_t k, Isa isa);

// Reference (scalar) row codecs for every file dtype, bit-compatible with ggml.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);  // f32/f16/bf16/q4_0/q4_1/q5_0/q5_1/q8_0/q4_K/q5_K/q6_K/q8_K
bool can_quantize(DType t);

}  // namespace aha
