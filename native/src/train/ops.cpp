// Training ops: forward/backward pairs (see ops.h). The double instantiation is the plain
// reference (sums in double, checked against finite differences); the float one runs its big
// products (the frozen weights' input gradient, the LoRA terms) on the CPU's f32 gemm kernel.
// Parallel loops split work so that every output element has one writer (no atomics, results
// independent of the thread count).
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "aha/error.h"
#include "aha/kernels.h"
#include "backends/cpu/matmul.h"
#include "backends/cpu/ops.h"

namespace aha::train {

namespace {

using RangeFn = std::function<void(int64_t, int64_t, int)>;

void par(ThreadPool* pool, int64_t n, const RangeFn& fn, int64_t grain = 1) {
  if (n <= 0) return;
  if (pool && pool->size() > 1) pool->parallel_for(n, fn, grain);
  else fn(0, n, 0);
}

const uint8_t* row_ptr(const Tensor& W, int64_t j) { return static_cast<const uint8_t*>(W.data) + size_t(j) * W.row_bytes; }

// C[m, n] += alpha A[m, k] B[k, n] in f32 on the CPU's gemm kernel (tested against the scalar
// one), the pool splitting C by rows when there are enough of them, else by columns.
void par_gemm(ThreadPool* pool, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
              int64_t ldc) {
  const CpuOps& ops = cpu_ops();
  const int64_t threads = pool ? pool->size() : 1;
  if (m >= 8 * threads)
    par(pool, m, [&](int64_t i0, int64_t i1, int) { ops.gemm(i1 - i0, n, k, alpha, A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc); }, 4);
  else
    par(pool, n, [&](int64_t j0, int64_t j1, int) { ops.gemm(m, j1 - j0, k, alpha, A, lda, B + j0, ldb, C + j0, ldc); }, 64);
}

// [rows, cols] → [cols, rows]
std::vector<float> transposed(const float* x, int64_t rows, int64_t cols) {
  std::vector<float> t(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) t[size_t(j * rows + i)] = x[i * cols + j];
  return t;
}

}  // namespace

// ---------------------------------------------------------------- RMSNorm

template <class F>
void rmsnorm_forward(F* y, F* rstd, const F* x, const float* w, int64_t rows, int64_t n, double eps) {
  for (int64_t t = 0; t < rows; t++) {
    const F* xr = x + t * n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += double(xr[i]) * double(xr[i]);
    const F r = F(1.0 / std::sqrt(ss / double(n) + eps));
    rstd[t] = r;
    F* yr = y + t * n;
    for (int64_t i = 0; i < n; i++) yr[i] = xr[i] * r * F(w[i]);
  }
}

// y_i = x_i r w_i with r = (mean x² + eps)^-½, dr/dx_j = −r³ x_j / n:
// dx_i = r w_i dy_i − r³ x_i / n · Σ_j dy_j w_j x_j;  dw_i += dy_i x_i r.
template <class F>
void rmsnorm_backward(F* dx, F* dw, const F* dy, const F* x, const F* rstd, const float* w, int64_t rows, int64_t n) {
  for (int64_t t = 0; t < rows; t++) {
    const F* xr = x + t * n;
    const F* dyr = dy + t * n;
    const double r = double(rstd[t]);
    double dot = 0;
    for (int64_t i = 0; i < n; i++) dot += double(dyr[i]) * double(w[i]) * double(xr[i]);
    const double c = r * r * r * dot / double(n);
    F* dxr = dx + t * n;
    for (int64_t i = 0; i < n; i++) dxr[i] = F(r * double(w[i]) * double(dyr[i]) - c * double(xr[i]));
    if (dw)
      for (int64_t i = 0; i < n; i++) dw[i] += F(double(dyr[i]) * double(xr[i]) * r);
  }
}

// ---------------------------------------------------------------- RoPE

namespace {

// Rotates every pair of every head of one token by +angle (sign 1) or −angle (sign −1).
template <class F>
void rotate(F* y, const F* x, int64_t pos, const float* inv_freq, int64_t n_heads, int64_t head_dim, bool neox, int sign) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; i++) {
    // The angle as the inference path computes it (double, then the cos/sin in F).
    const double ang = double(pos) * double(inv_freq[i]);
    const F c = F(std::cos(ang)), s = F(sign * std::sin(ang));
    for (int64_t h = 0; h < n_heads; h++) {
      const int64_t i0 = h * head_dim + (neox ? i : 2 * i), i1 = h * head_dim + (neox ? i + half : 2 * i + 1);
      const F a = x[i0], b = x[i1];
      y[i0] = a * c - b * s;
      y[i1] = a * s + b * c;
    }
  }
}

}  // namespace

template <class F>
void rope_forward(F* y, const F* x, const int64_t* pos, const float* inv_freq, int64_t rows, int64_t n_heads, int64_t head_dim, bool neox) {
  const int64_t d = n_heads * head_dim;
  for (int64_t t = 0; t < rows; t++) rotate(y + t * d, x + t * d, pos[t], inv_freq, n_heads, head_dim, neox, 1);
}

// The rotation is orthogonal: its transpose is the rotation by −angle.
template <class F>
void rope_backward(F* dx, const F* dy, const int64_t* pos, const float* inv_freq, int64_t rows, int64_t n_heads, int64_t head_dim, bool neox) {
  const int64_t d = n_heads * head_dim;
  for (int64_t t = 0; t < rows; t++) rotate(dx + t * d, dy + t * d, pos[t], inv_freq, n_heads, head_dim, neox, -1);
}

// ---------------------------------------------------------------- attention

template <class F>
void attention_forward(F* out, F* lse, const F* q, const F* k, const F* v, const int64_t* seq_begin, int64_t T, int64_t nh, int64_t nkv,
                       int64_t hd, ThreadPool* pool) {
  const int64_t group = nh / nkv, QD = nh * hd, KD = nkv * hd;
  const double scale = 1.0 / std::sqrt(double(hd));
  par(pool, T * nh, [&](int64_t i0, int64_t i1, int) {
    std::vector<double> s, acc(static_cast<size_t>(hd));
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t = i / nh, h = i % nh, kh = h / group, b = seq_begin[t];
      const F* qr = q + t * QD + h * hd;
      s.assign(size_t(t - b + 1), 0.0);
      double mx = -INFINITY;
      for (int64_t j = b; j <= t; j++) {
        const F* kr = k + j * KD + kh * hd;
        double d = 0;
        for (int64_t c = 0; c < hd; c++) d += double(qr[c]) * double(kr[c]);
        s[size_t(j - b)] = d * scale;
        mx = std::max(mx, d * scale);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - mx));
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = b; j <= t; j++) {
        const F* vr = v + j * KD + kh * hd;
        const double p = s[size_t(j - b)];
        for (int64_t c = 0; c < hd; c++) acc[size_t(c)] += p * double(vr[c]);
      }
      F* o = out + t * QD + h * hd;
      for (int64_t c = 0; c < hd; c++) o[c] = F(acc[size_t(c)] / sum);
      lse[h * T + t] = F(mx + std::log(sum));
    }
  });
}

// With p_tj = exp(s_tj − lse_t), s = scale q_t·k_j, D_t = dout_t·out_t:
//   ds_tj = p_tj (dout_t·v_j − D_t),  dq_t = scale Σ_j ds_tj k_j,
//   dk_j = scale Σ_t ds_tj q_t,        dv_j = Σ_t p_tj dout_t.
// Two passes (queries, then keys), each element with one writer.
template <class F>
void attention_backward(F* dq, F* dk, F* dv, const F* dout, const F* out, const F* lse, const F* q, const F* k, const F* v,
                        const int64_t* seq_begin, int64_t T, int64_t nh, int64_t nkv, int64_t hd, ThreadPool* pool) {
  const int64_t group = nh / nkv, QD = nh * hd, KD = nkv * hd;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> D(static_cast<size_t>(nh * T));  // [n_heads, T]
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < nh; h++) {
      double d = 0;
      for (int64_t c = 0; c < hd; c++) d += double(dout[t * QD + h * hd + c]) * double(out[t * QD + h * hd + c]);
      D[size_t(h * T + t)] = d;
    }
  auto prob_ds = [&](int64_t t, int64_t j, int64_t h, double* p_out) {
    const int64_t kh = h / group;
    const F* qr = q + t * QD + h * hd;
    const F* kr = k + j * KD + kh * hd;
    const F* vr = v + j * KD + kh * hd;
    const F* gr = dout + t * QD + h * hd;
    double s = 0, dp = 0;
    for (int64_t c = 0; c < hd; c++) {
      s += double(qr[c]) * double(kr[c]);
      dp += double(gr[c]) * double(vr[c]);
    }
    const double p = std::exp(s * scale - double(lse[h * T + t]));
    *p_out = p;
    return p * (dp - D[size_t(h * T + t)]);
  };
  par(pool, T * nh, [&](int64_t i0, int64_t i1, int) {
    std::vector<double> acc(static_cast<size_t>(hd));
    for (int64_t i = i0; i < i1; i++) {
      const int64_t t = i / nh, h = i % nh, kh = h / group;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = seq_begin[t]; j <= t; j++) {
        double p;
        const double ds = prob_ds(t, j, h, &p);
        const F* kr = k + j * KD + kh * hd;
        for (int64_t c = 0; c < hd; c++) acc[size_t(c)] += ds * double(kr[c]);
      }
      for (int64_t c = 0; c < hd; c++) dq[t * QD + h * hd + c] = F(scale * acc[size_t(c)]);
    }
  });
  par(pool, T * nkv, [&](int64_t i0, int64_t i1, int) {
    std::vector<double> ak(static_cast<size_t>(hd)), av(static_cast<size_t>(hd));
    for (int64_t i = i0; i < i1; i++) {
      const int64_t j = i / nkv, kh = i % nkv;
      std::fill(ak.begin(), ak.end(), 0.0);
      std::fill(av.begin(), av.end(), 0.0);
      for (int64_t h = kh * group; h < (kh + 1) * group; h++)
        for (int64_t t = j; t < T && seq_begin[t] == seq_begin[j]; t++) {
          double p;
          const double ds = prob_ds(t, j, h, &p);
          const F* qr = q + t * QD + h * hd;
          const F* gr = dout + t * QD + h * hd;
          for (int64_t c = 0; c < hd; c++) {
            ak[size_t(c)] += ds * double(qr[c]);
            av[size_t(c)] += p * double(gr[c]);
          }
        }
      for (int64_t c = 0; c < hd; c++) {
        dk[j * KD + kh * hd + c] = F(scale * ak[size_t(c)]);
        dv[j * KD + kh * hd + c] = F(av[size_t(c)]);
      }
    }
  });
}

// ---------------------------------------------------------------- SwiGLU

template <class F>
void swiglu_forward(F* h, const F* gate, const F* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double g = double(gate[i]);
    h[i] = F(g / (1.0 + std::exp(-g)) * double(up[i]));
  }
}

// silu'(g) = σ(g) (1 + g (1 − σ(g))).
template <class F>
void swiglu_backward(F* dgate, F* dup, const F* dh, const F* gate, const F* up, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double g = double(gate[i]), sg = 1.0 / (1.0 + std::exp(-g));
    dgate[i] = F(double(dh[i]) * double(up[i]) * sg * (1.0 + g * (1.0 - sg)));
    dup[i] = F(double(dh[i]) * g * sg);
  }
}

// ---------------------------------------------------------------- linear + LoRA

template <class F>
void lora_add(F* y, F* xa, const F* x, const F* A, const F* B, double scale, int64_t m, int64_t in, int64_t out, int64_t r, ThreadPool* pool) {
  if constexpr (std::is_same_v<F, float>) {
    // xa = x Aᵀ, then y += scale · xa Bᵀ: A [r, in] and B [out, r] are row-major "weights" of
    // the engine's f32 matmul kernels as they are (decode, one row, pays for no transpose).
    std::vector<float> own;
    if (!xa) own.resize(size_t(m * r));
    float* a = xa ? xa : own.data();
    auto as_weight = [](const float* d, int64_t cols, int64_t rows, const char* name) {
      Tensor t;
      t.name = name;
      t.dtype = DType::F32;
      t.ne = {cols, rows};
      t.row_bytes = size_t(cols) * sizeof(float);
      t.data = d;
      return t;
    };
    const Tensor At = as_weight(A, in, r, "lora_A"), Bt = as_weight(B, r, out, "lora_B");
    std::vector<float> yb(static_cast<size_t>(m * out));
    MatmulScratch scratch;
    if (pool) {
      matmul(At, x, m, a, *pool, scratch);
      matmul(Bt, a, m, yb.data(), *pool, scratch);
    } else {
      matmul_reference(At, x, m, a);
      matmul_reference(Bt, a, m, yb.data());
    }
    const float sc = float(scale);
    for (size_t i = 0; i < yb.size(); i++) y[i] += sc * yb[i];
    return;
  }
  par(pool, m, [&](int64_t i0, int64_t i1, int) {
    std::vector<double> a(static_cast<size_t>(r));
    for (int64_t i = i0; i < i1; i++) {
      const F* xr = x + i * in;
      for (int64_t k = 0; k < r; k++) {
        double s = 0;
        for (int64_t c = 0; c < in; c++) s += double(xr[c]) * double(A[k * in + c]);
        a[size_t(k)] = s;
        if (xa) xa[i * r + k] = F(s);
      }
      for (int64_t o = 0; o < out; o++) {
        double s = 0;
        for (int64_t k = 0; k < r; k++) s += a[size_t(k)] * double(B[o * r + k]);
        y[i * out + o] = F(double(y[i * out + o]) + scale * s);
      }
    }
  });
}

template <class F>
void lora_linear_forward(F* y, F* xa, const F* x, const Tensor& W, const float* bias, const F* A, const F* B, double scale, int64_t m, int64_t r,
                         ThreadPool* pool) {
  const int64_t in = W.ne[0], out = W.rows();
  par(pool, out, [&](int64_t j0, int64_t j1, int) {
    std::vector<float> w(static_cast<size_t>(in));
    for (int64_t j = j0; j < j1; j++) {
      dequantize_row(W.dtype, row_ptr(W, j), w.data(), in);
      for (int64_t i = 0; i < m; i++) {
        double s = bias ? double(bias[j]) : 0.0;
        for (int64_t c = 0; c < in; c++) s += double(x[i * in + c]) * double(w[size_t(c)]);
        y[i * out + j] = F(s);
      }
    }
  });
  if (A) lora_add(y, xa, x, A, B, scale, m, in, out, r, pool);
}

template <class F>
void matmul_backward_input(F* dx, const F* dy, const Tensor& W, int64_t m, ThreadPool* pool) {
  const int64_t in = W.ne[0], out = W.rows();
  const DTypeTraits& tr = traits(W.dtype);
  const int64_t nblocks = in / tr.block;
  if constexpr (std::is_same_v<F, float>) {
    // Each thread owns whole blocks of columns of dx: per panel of weight rows, its slice of
    // them dequantized to f32, then dx_slice += dy[:, panel] · panel on the gemm kernel.
    constexpr int64_t kPanelRows = 256;
    const CpuOps& ops = cpu_ops();
    par(pool, nblocks, [&](int64_t b0, int64_t b1, int) {
      const int64_t c0 = b0 * tr.block, width = (b1 - b0) * tr.block;
      std::vector<float> w(static_cast<size_t>(kPanelRows * width));
      for (int64_t i = 0; i < m; i++) std::fill(dx + i * in + c0, dx + i * in + c0 + width, 0.0f);
      for (int64_t j0 = 0; j0 < out; j0 += kPanelRows) {
        const int64_t nj = std::min(kPanelRows, out - j0);
        for (int64_t j = 0; j < nj; j++)
          dequantize_row(W.dtype, row_ptr(W, j0 + j) + size_t(b0) * tr.block_bytes, w.data() + j * width, width);
        ops.gemm(m, width, nj, 1.0f, dy + j0, out, w.data(), width, dx + c0, in);
      }
    });
    return;
  }
  constexpr int64_t kPanel = 64;  // weight rows dequantized at a time
  // Each thread owns whole blocks of columns: it dequantizes only its slice of every row.
  par(pool, nblocks, [&](int64_t b0, int64_t b1, int) {
    const int64_t c0 = b0 * tr.block, width = (b1 - b0) * tr.block;
    std::vector<float> w(static_cast<size_t>(kPanel * width));
    std::vector<double> acc(size_t(m * width), 0.0);
    for (int64_t j0 = 0; j0 < out; j0 += kPanel) {
      const int64_t nj = std::min(kPanel, out - j0);
      for (int64_t j = 0; j < nj; j++)
        dequantize_row(W.dtype, row_ptr(W, j0 + j) + size_t(b0) * tr.block_bytes, w.data() + j * width, width);
      for (int64_t i = 0; i < m; i++) {
        double* a = acc.data() + i * width;
        for (int64_t j = 0; j < nj; j++) {
          const double g = double(dy[i * out + j0 + j]);
          if (g == 0) continue;
          const float* wr = w.data() + j * width;
          for (int64_t c = 0; c < width; c++) a[c] += g * double(wr[c]);
        }
      }
    }
    for (int64_t i = 0; i < m; i++)
      for (int64_t c = 0; c < width; c++) dx[i * in + c0 + c] = F(acc[size_t(i * width + c)]);
  });
}

template <class F>
void lora_linear_backward(F* dx, F* dA, F* dB, const F* dy, const F* x, const F* xa, const Tensor& W, const F* A, const F* B, double scale,
                          int64_t m, int64_t r, ThreadPool* pool, bool base) {
  const int64_t in = W.ne[0], out = W.rows();
  if (dx && base) matmul_backward_input(dx, dy, W, m, pool);
  if (!A) return;
  if constexpr (std::is_same_v<F, float>) {
    // The same four products in f32 on the gemm kernel: g = dy B; dBᵀ = scale xaᵀ dy;
    // dA += scale gᵀ x; dx += scale g A.
    std::vector<float> g(static_cast<size_t>(m * r), 0.0f);
    par_gemm(pool, m, r, out, 1.0f, dy, out, B, r, g.data(), r);
    if (dB) {
      const std::vector<float> xat = transposed(xa, m, r);
      std::vector<float> dbt(static_cast<size_t>(r * out), 0.0f);
      par_gemm(pool, r, out, m, float(scale), xat.data(), m, dy, out, dbt.data(), out);
      for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < r; k++) dB[o * r + k] += dbt[size_t(k * out + o)];
    }
    if (dA) {
      const std::vector<float> gt = transposed(g.data(), m, r);
      par_gemm(pool, r, in, m, float(scale), gt.data(), m, x, in, dA, in);
    }
    if (dx) par_gemm(pool, m, in, r, float(scale), g.data(), r, A, in, dx, in);
    return;
  }
  std::vector<double> g(static_cast<size_t>(m * r));  // [m, r] = dy B
  par(pool, m, [&](int64_t i0, int64_t i1, int) {
    for (int64_t i = i0; i < i1; i++)
      for (int64_t k = 0; k < r; k++) {
        double s = 0;
        for (int64_t o = 0; o < out; o++) s += double(dy[i * out + o]) * double(B[o * r + k]);
        g[size_t(i * r + k)] = s;
      }
  });
  if (dB)
    par(pool, out, [&](int64_t o0, int64_t o1, int) {
      for (int64_t o = o0; o < o1; o++)
        for (int64_t k = 0; k < r; k++) {
          double s = 0;
          for (int64_t i = 0; i < m; i++) s += double(dy[i * out + o]) * double(xa[i * r + k]);
          dB[o * r + k] += F(scale * s);
        }
    });
  if (dA)
    par(pool, in, [&](int64_t c0, int64_t c1, int) {
      for (int64_t k = 0; k < r; k++)
        for (int64_t c = c0; c < c1; c++) {
          double s = 0;
          for (int64_t i = 0; i < m; i++) s += g[size_t(i * r + k)] * double(x[i * in + c]);
          dA[k * in + c] += F(scale * s);
        }
    });
  if (dx)
    par(pool, m, [&](int64_t i0, int64_t i1, int) {
      for (int64_t i = i0; i < i1; i++)
        for (int64_t c = 0; c < in; c++) {
          double s = 0;
          for (int64_t k = 0; k < r; k++) s += g[size_t(i * r + k)] * double(A[k * in + c]);
          dx[i * in + c] = F(double(dx[i * in + c]) + scale * s);
        }
    });
}

template <class F>
void linear_backward_weight(F* dW, F* dbias, const F* dy, const F* x, int64_t m, int64_t in, int64_t out, ThreadPool* pool) {
  // Rows of dW split across threads: each row has one writer.
  par(pool, out, [&](int64_t o0, int64_t o1, int) {
    std::vector<double> acc(static_cast<size_t>(in));
    for (int64_t o = o0; o < o1; o++) {
      std::fill(acc.begin(), acc.end(), 0.0);
      double db = 0;
      for (int64_t i = 0; i < m; i++) {
        const double g = double(dy[i * out + o]);
        if (g == 0) continue;
        db += g;
        const F* xr = x + i * in;
        for (int64_t c = 0; c < in; c++) acc[size_t(c)] += g * double(xr[c]);
      }
      F* dr = dW + o * in;
      for (int64_t c = 0; c < in; c++) dr[c] = F(double(dr[c]) + acc[size_t(c)]);
      if (dbias) dbias[o] = F(double(dbias[o]) + db);
    }
  });
}

// ---------------------------------------------------------------- embedding, lm head + cross-entropy

template <class F>
void embedding_forward(F* x, const int32_t* tokens, const Tensor& E, int64_t T) {
  const int64_t H = E.ne[0], V = E.rows();
  std::vector<float> row(static_cast<size_t>(H));
  for (int64_t t = 0; t < T; t++) {
    if (tokens[t] < 0 || tokens[t] >= V) throw Error("token id " + std::to_string(tokens[t]) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    dequantize_row(E.dtype, row_ptr(E, tokens[t]), row.data(), H);
    for (int64_t c = 0; c < H; c++) x[t * H + c] = F(row[size_t(c)]);
  }
}

template <class F>
void embedding_backward(F* dE, const F* dx, const int32_t* tokens, int64_t T, int64_t H) {
  for (int64_t t = 0; t < T; t++) {
    F* row = dE + int64_t(tokens[t]) * H;
    for (int64_t c = 0; c < H; c++) row[c] += dx[t * H + c];
  }
}

template <class F>
double lm_head_cross_entropy(F* dx, F* dW, double* row_loss_out, const F* x, const Tensor& W, const int32_t* targets, int64_t T, double grad_scale, int64_t chunk, ThreadPool* pool) {
  const int64_t H = W.ne[0], V = W.rows();
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < T; t++) {
    if (targets[t] >= V) throw Error("target token " + std::to_string(targets[t]) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    if (targets[t] >= 0) rows.push_back(t);
  }
  if (dx) std::fill(dx, dx + T * H, F(0));
  if (row_loss_out) std::fill(row_loss_out, row_loss_out + T, 0.0);
  chunk = std::max<int64_t>(1, chunk);
  std::vector<F> xc(size_t(std::min<int64_t>(chunk, int64_t(rows.size())) * H)), logits(size_t(std::min<int64_t>(chunk, int64_t(rows.size())) * V)),
      dxc(xc.size());
  MatmulScratch scratch;
  double loss = 0;
  for (size_t r0 = 0; r0 < rows.size(); r0 += size_t(chunk)) {
    const int64_t C = std::min<int64_t>(chunk, int64_t(rows.size() - r0));
    for (int64_t c = 0; c < C; c++) std::copy(x + rows[r0 + size_t(c)] * H, x + (rows[r0 + size_t(c)] + 1) * H, xc.data() + c * H);
    if constexpr (std::is_same_v<F, float>) {
      if (pool) matmul(W, xc.data(), C, logits.data(), *pool, scratch);
      else matmul_reference(W, xc.data(), C, logits.data());
    } else {
      lora_linear_forward<F>(logits.data(), nullptr, xc.data(), W, nullptr, nullptr, nullptr, 0.0, C, 0, pool);
    }
    std::vector<double> row_loss(static_cast<size_t>(C));
    par(pool, C, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; c++) {
        F* l = logits.data() + c * V;
        const int32_t tgt = targets[rows[r0 + size_t(c)]];
        double mx = -INFINITY;
        for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(l[v]));
        double sum = 0;
        for (int64_t v = 0; v < V; v++) sum += std::exp(double(l[v]) - mx);
        const double lse = mx + std::log(sum);
        row_loss[size_t(c)] = lse - double(l[tgt]);
        if (dx || dW) {
          // d(−log p_tgt)/dlogit_v = softmax_v − [v = tgt]
          for (int64_t v = 0; v < V; v++) l[v] = F(grad_scale * std::exp(double(l[v]) - lse));
          l[tgt] = F(double(l[tgt]) - grad_scale);
        }
      }
    });
    for (int64_t c = 0; c < C; c++) {
      loss += row_loss[size_t(c)];
      if (row_loss_out) row_loss_out[rows[r0 + size_t(c)]] = row_loss[size_t(c)];
    }
    if (dx) {
      matmul_backward_input(dxc.data(), logits.data(), W, C, pool);
      for (int64_t c = 0; c < C; c++) std::copy(dxc.data() + c * H, dxc.data() + (c + 1) * H, dx + rows[r0 + size_t(c)] * H);
    }
    if (dW) linear_backward_weight<F>(dW, nullptr, logits.data(), xc.data(), C, H, V, pool);
  }
  return loss;
}

// ---------------------------------------------------------------- lm head log-probs at a temperature, per-token objective

template <class F>
void lm_head_logprobs(F* dx, F* dW, double* logp, double* entropy, const F* x, const Tensor& W, const int32_t* targets, int64_t T, double temperature,
                      const LogprobGrad* dloss, int64_t chunk, ThreadPool* pool) {
  const int64_t H = W.ne[0], V = W.rows();
  if (!(temperature > 0)) throw Error("the temperature must be > 0");
  if ((dx || dW) && !dloss) throw Error("lm_head_logprobs: a gradient needs d loss / d logp");
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < T; t++) {
    if (targets[t] >= V) throw Error("target token " + std::to_string(targets[t]) + " is outside the vocabulary (0.." + std::to_string(V - 1) + ")");
    if (targets[t] >= 0) rows.push_back(t);
  }
  if (dx) std::fill(dx, dx + T * H, F(0));
  std::fill(logp, logp + T, 0.0);
  if (entropy) std::fill(entropy, entropy + T, 0.0);
  chunk = std::max<int64_t>(1, chunk);
  const int64_t C_max = std::min<int64_t>(chunk, int64_t(rows.size()));
  std::vector<F> xc(size_t(C_max * H)), logits(size_t(C_max * V)), dxc(dx ? xc.size() : 0);
  std::vector<double> lse(static_cast<size_t>(C_max)), lp(lse.size()), coef(lse.size());
  MatmulScratch scratch;
  const double inv_t = 1.0 / temperature;
  for (size_t r0 = 0; r0 < rows.size(); r0 += size_t(chunk)) {
    const int64_t C = std::min<int64_t>(chunk, int64_t(rows.size() - r0));
    const int64_t* crows = rows.data() + r0;
    for (int64_t c = 0; c < C; c++) std::copy(x + crows[c] * H, x + (crows[c] + 1) * H, xc.data() + c * H);
    if constexpr (std::is_same_v<F, float>) {
      if (pool) matmul(W, xc.data(), C, logits.data(), *pool, scratch);
      else matmul_reference(W, xc.data(), C, logits.data());
    } else {
      lora_linear_forward<F>(logits.data(), nullptr, xc.data(), W, nullptr, nullptr, nullptr, 0.0, C, 0, pool);
    }
    // z = logits / temperature; log p_v = z_v − lse; entropy = lse − Σ p_v z_v.
    par(pool, C, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; c++) {
        const F* l = logits.data() + c * V;
        double mx = -INFINITY;
        for (int64_t v = 0; v < V; v++) mx = std::max(mx, double(l[v]) * inv_t);
        double sum = 0, pz = 0;
        for (int64_t v = 0; v < V; v++) {
          const double z = double(l[v]) * inv_t, e = std::exp(z - mx);
          sum += e;
          pz += e * z;
        }
        lse[size_t(c)] = mx + std::log(sum);
        lp[size_t(c)] = double(l[targets[crows[c]]]) * inv_t - lse[size_t(c)];
        if (entropy) entropy[crows[c]] = lse[size_t(c)] - pz / sum;
      }
    });
    for (int64_t c = 0; c < C; c++) logp[crows[c]] = lp[size_t(c)];
    if (!dx && !dW) continue;
    (*dloss)(C, crows, lp.data(), coef.data());
    par(pool, C, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; c++) {
        F* l = logits.data() + c * V;
        const double g = coef[size_t(c)] * inv_t, m = lse[size_t(c)];
        const int32_t tgt = targets[crows[c]];
        for (int64_t v = 0; v < V; v++) l[v] = F(-g * std::exp(double(l[v]) * inv_t - m));
        l[tgt] = F(double(l[tgt]) + g);
      }
    });
    if (dx) {
      matmul_backward_input(dxc.data(), logits.data(), W, C, pool);
      for (int64_t c = 0; c < C; c++) std::copy(dxc.data() + c * H, dxc.data() + (c + 1) * H, dx + crows[c] * H);
    }
    if (dW) linear_backward_weight<F>(dW, nullptr, logits.data(), xc.data(), C, H, V, pool);
  }
}

// ---------------------------------------------------------------- instantiations

#define AHA_TRAIN_OPS(F)                                                                                                                  \
  template void rmsnorm_forward<F>(F*, F*, const F*, const float*, int64_t, int64_t, double);                                            \
  template void rmsnorm_backward<F>(F*, F*, const F*, const F*, const F*, const float*, int64_t, int64_t);                                \
  template void rope_forward<F>(F*, const F*, const int64_t*, const float*, int64_t, int64_t, int64_t, bool);                            \
  template void rope_backward<F>(F*, const F*, const int64_t*, const float*, int64_t, int64_t, int64_t, bool);                           \
  template void attention_forward<F>(F*, F*, const F*, const F*, const F*, const int64_t*, int64_t, int64_t, int64_t, int64_t, ThreadPool*); \
  template void attention_backward<F>(F*, F*, F*, const F*, const F*, const F*, const F*, const F*, const F*, const int64_t*, int64_t,     \
                                      int64_t, int64_t, int64_t, ThreadPool*);                                                            \
  template void swiglu_forward<F>(F*, const F*, const F*, int64_t);                                                                       \
  template void swiglu_backward<F>(F*, F*, const F*, const F*, const F*, int64_t);                                                        \
  template void lora_linear_forward<F>(F*, F*, const F*, const Tensor&, const float*, const F*, const F*, double, int64_t, int64_t,        \
                                       ThreadPool*);                                                                                      \
  template void lora_linear_backward<F>(F*, F*, F*, const F*, const F*, const F*, const Tensor&, const F*, const F*, double, int64_t,      \
                                        int64_t, ThreadPool*, bool);                                                                            \
  template void lora_add<F>(F*, F*, const F*, const F*, const F*, double, int64_t, int64_t, int64_t, int64_t, ThreadPool*);              \
  template void linear_backward_weight<F>(F*, F*, const F*, const F*, int64_t, int64_t, int64_t, ThreadPool*);                           \
  template void embedding_backward<F>(F*, const F*, const int32_t*, int64_t, int64_t);                                                   \
  template void matmul_backward_input<F>(F*, const F*, const Tensor&, int64_t, ThreadPool*);                                              \
  template void embedding_forward<F>(F*, const int32_t*, const Tensor&, int64_t);                                                         \
  template double lm_head_cross_entropy<F>(F*, F*, double*, const F*, const Tensor&, const int32_t*, int64_t, double, int64_t, ThreadPool*);  \
  template void lm_head_logprobs<F>(F*, F*, double*, double*, const F*, const Tensor&, const int32_t*, int64_t, double, const LogprobGrad*, int64_t, \
                                    ThreadPool*);

AHA_TRAIN_OPS(float)
AHA_TRAIN_OPS(double)

}  // namespace aha::train
