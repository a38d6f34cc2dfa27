// The training ops against central finite differences in double precision (ggml's test-grad
// idea): for an op y = f(x), the backward given dy = R (a fixed random tensor) must equal the
// numerical gradient of L = Σ y·R with respect to every input and parameter. Odd and even shapes,
// GQA groups, packed sequences, every weight dtype. Then the float instantiation against the
// double one (the same code, the reference for itself in higher precision).
// Parameter gradients must accumulate and activation gradients be assigned: the buffers start
// filled with junk / an offset, and the checks see through it only if the semantics hold.
#include <cmath>
#include <functional>
#include <random>
#include <tuple>
#include <vector>

#include "aha/kernels.h"
#include "check.h"
#include "models/loader.h"
#include "train/ops.h"

using namespace aha;
using namespace aha::train;

namespace {

using Vec = std::vector<double>;

Vec randv(size_t n, std::mt19937& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> to_f(const Vec& v) { return std::vector<float>(v.begin(), v.end()); }

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Compares `grad` with central differences of loss() in x (every element, or `max_checks` spread ones).
void check_fd(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss, double tol = 1e-7, size_t max_checks = 400) {
  const double h = 1e-5;
  Vec num, ana;
  const size_t step = std::max<size_t>(1, x.size() / max_checks);
  for (size_t i = 0; i < x.size(); i += step) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    num.push_back((lp - lm) / (2 * h));
    ana.push_back(grad[i]);
  }
  const double e = nerr(ana, num);
  check::note(std::string(what) + ": finite-difference error " + [&] { char b[32]; std::snprintf(b, sizeof b, "%.2e", e); return std::string(b); }() + " over " + std::to_string(num.size()) + " elements");
  CHECK_MSG(e < tol, what << ": analytic vs finite-difference gradient, normalized error " << e);
}

// The same for an f32 weight (full training's master weights): the difference quotient divides
// by the difference of the stored floats, so a step h that float rounds is still exact.
void check_fd_f32(const char* what, float* w, const Vec& grad, const std::function<double()>& loss, double h, double tol, size_t max_checks = 300) {
  Vec num, ana;
  const size_t step = std::max<size_t>(1, grad.size() / max_checks);
  for (size_t i = 0; i < grad.size(); i += step) {
    const float w0 = w[i], wp = float(w0 + h), wm = float(w0 - h);
    w[i] = wp;
    const double lp = loss();
    w[i] = wm;
    const double lm = loss();
    w[i] = w0;
    num.push_back((lp - lm) / (double(wp) - double(wm)));
    ana.push_back(grad[i]);
  }
  const double e = nerr(ana, num);
  char b[32];
  std::snprintf(b, sizeof b, "%.2e", e);
  check::note(std::string(what) + ": finite-difference error " + b + " over " + std::to_string(num.size()) + " elements");
  CHECK_MSG(e < tol, what << ": analytic vs finite-difference gradient, normalized error " << e);
}

// A weight in any dtype, quantized from doubles (the test then uses its dequantized values).
struct OwnedTensor {
  Tensor t;
  std::vector<uint8_t> bytes;
  OwnedTensor(DType dt, int64_t in, int64_t out, std::mt19937& rng, double scale = 0.5) {
    auto v = to_f(randv(size_t(in * out), rng, scale));
    t.name = "w";
    t.dtype = dt;
    t.ne = {in, out};
    t.row_bytes = row_bytes(dt, in);
    bytes.resize(t.row_bytes * size_t(out));
    for (int64_t j = 0; j < out; j++) quantize_row(dt, v.data() + j * in, bytes.data() + size_t(j) * t.row_bytes, in);
    t.data = bytes.data();
  }
};

}  // namespace

TEST(train_rmsnorm_backward_matches_finite_differences) {
  std::mt19937 rng(1);
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{3, 7}, {4, 16}, {1, 33}}) {
    Vec x = randv(size_t(rows * n), rng, 2.0), R = randv(size_t(rows * n), rng);
    auto w = to_f(randv(size_t(n), rng));
    Vec y(x.size()), rstd(static_cast<size_t>(rows)), dx(x.size(), 7.0), dw(size_t(n), 0.5);
    auto loss = [&] {
      rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), rows, n, 1e-6);
      return dot(y, R);
    };
    loss();
    rmsnorm_backward(dx.data(), dw.data(), R.data(), x.data(), rstd.data(), w.data(), rows, n);
    check_fd("rmsnorm dx", x, dx, loss);
    // dw accumulated onto 0.5. w is f32 and y is linear in it, so a difference quotient with a
    // large step through the op itself is exact up to rounding.
    Vec num, ana;
    for (int64_t i = 0; i < n; i++) {
      const float w0 = w[size_t(i)];
      w[size_t(i)] = w0 + 0.25f;
      const double lp = loss();
      w[size_t(i)] = w0 - 0.25f;
      const double lm = loss();
      w[size_t(i)] = w0;
      num.push_back((lp - lm) / (double(w0 + 0.25f) - double(w0 - 0.25f)));
      ana.push_back(dw[size_t(i)] - 0.5);
    }
    CHECK_MSG(nerr(ana, num) < 1e-9, "rmsnorm dw error " << nerr(ana, num));
    // float instantiation against double
    std::vector<float> xf = to_f(x), Rf = to_f(R), yf(x.size()), rf(static_cast<size_t>(rows)), dxf(x.size());
    rmsnorm_forward(yf.data(), rf.data(), xf.data(), w.data(), rows, n, 1e-6);
    rmsnorm_backward(dxf.data(), (float*)nullptr, Rf.data(), xf.data(), rf.data(), w.data(), rows, n);
    loss();
    CHECK(nerr(yf, y) < 1e-6);
    CHECK(nerr(dxf, dx) < 1e-5);
  }
}

TEST(train_rope_backward_matches_finite_differences) {
  std::mt19937 rng(2);
  ModelConfig c;
  c.head_dim = 8;
  c.rope_theta = 10000;
  auto plain = rope_inv_freq(c, {});
  c.rope_scaling = RopeScalingType::Llama3;
  c.rope_factor = 8;
  c.rope_original_max_position = 16;
  auto llama3 = rope_inv_freq(c, {});
  CHECK(plain != llama3);
  for (bool neox : {true, false})
    for (auto* inv : {&plain, &llama3}) {
      const int64_t rows = 5, nh = 3, hd = 8, d = nh * hd;
      std::vector<int64_t> pos = {0, 1, 7, 40, 3};
      Vec x = randv(size_t(rows * d), rng), R = randv(x.size(), rng), y(x.size()), dx(x.size(), 7.0);
      auto loss = [&] {
        rope_forward(y.data(), x.data(), pos.data(), inv->data(), rows, nh, hd, neox);
        return dot(y, R);
      };
      rope_backward(dx.data(), R.data(), pos.data(), inv->data(), rows, nh, hd, neox);
      check_fd(neox ? "rope neox dx" : "rope interleaved dx", x, dx, loss);
      // in place, and the float instantiation
      std::vector<float> xf = to_f(x), yf(x.size());
      rope_forward(yf.data(), xf.data(), pos.data(), inv->data(), rows, nh, hd, neox);
      rope_forward(xf.data(), xf.data(), pos.data(), inv->data(), rows, nh, hd, neox);
      loss();
      CHECK(xf == yf);
      CHECK(nerr(yf, y) < 1e-6);
    }
}

TEST(train_attention_backward_matches_finite_differences) {
  std::mt19937 rng(3);
  struct Shape {
    int64_t T, nh, nkv, hd;
    std::vector<int64_t> seq_begin;
  };
  std::vector<Shape> shapes = {
      {5, 4, 2, 6, {0, 0, 0, 0, 0}},
      {7, 3, 1, 5, {0, 0, 0, 3, 3, 3, 3}},     // two packed sequences, a group of 3
      {6, 2, 2, 4, {0, 1, 1, 1, 4, 4}},        // three sequences, one of a single token
  };
  for (auto& s : shapes) {
    const int64_t QD = s.nh * s.hd, KD = s.nkv * s.hd;
    Vec q = randv(size_t(s.T * QD), rng), k = randv(size_t(s.T * KD), rng), v = randv(size_t(s.T * KD), rng), R = randv(size_t(s.T * QD), rng);
    Vec out(q.size()), lse(static_cast<size_t>(s.nh * s.T));
    auto loss = [&] {
      attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), s.seq_begin.data(), s.T, s.nh, s.nkv, s.hd, nullptr);
      return dot(out, R);
    };
    loss();
    Vec dq(q.size(), 7.0), dk(k.size(), 7.0), dv(v.size(), 7.0);
    ThreadPool pool(2);
    attention_backward(dq.data(), dk.data(), dv.data(), R.data(), out.data(), lse.data(), q.data(), k.data(), v.data(), s.seq_begin.data(), s.T,
                       s.nh, s.nkv, s.hd, &pool);
    check_fd("attention dq", q, dq, loss);
    check_fd("attention dk", k, dk, loss);
    check_fd("attention dv", v, dv, loss);
    // a sequence never sees another: the first token of a later sequence attends only to itself
    for (int64_t t = 0; t < s.T; t++)
      if (s.seq_begin[size_t(t)] == t)
        for (int64_t h = 0; h < s.nh; h++)
          for (int64_t c = 0; c < s.hd; c++)
            CHECK_NEAR(out[size_t(t * QD + h * s.hd + c)], v[size_t(t * KD + (h / (s.nh / s.nkv)) * s.hd + c)], 1e-12);
    std::vector<float> qf = to_f(q), kf = to_f(k), vf = to_f(v), Rf = to_f(R), of(out.size()), lf(lse.size()), dqf(q.size()), dkf(k.size()),
                       dvf(v.size());
    attention_forward(of.data(), lf.data(), qf.data(), kf.data(), vf.data(), s.seq_begin.data(), s.T, s.nh, s.nkv, s.hd, &pool);
    attention_backward(dqf.data(), dkf.data(), dvf.data(), Rf.data(), of.data(), lf.data(), qf.data(), kf.data(), vf.data(), s.seq_begin.data(), s.T,
                       s.nh, s.nkv, s.hd, nullptr);
    CHECK(nerr(of, out) < 1e-6);
    CHECK(nerr(dqf, dq) < 1e-5 && nerr(dkf, dk) < 1e-5 && nerr(dvf, dv) < 1e-5);
  }
}

TEST(train_swiglu_backward_matches_finite_differences) {
  std::mt19937 rng(4);
  for (int64_t n : {1, 9, 64}) {
    Vec g = randv(size_t(n), rng, 3.0), u = randv(size_t(n), rng), R = randv(size_t(n), rng), h(static_cast<size_t>(n)), dg(size_t(n), 7.0), du(size_t(n), 7.0);
    auto loss = [&] {
      swiglu_forward(h.data(), g.data(), u.data(), n);
      return dot(h, R);
    };
    swiglu_backward(dg.data(), du.data(), R.data(), g.data(), u.data(), n);
    check_fd("swiglu dgate", g, dg, loss);
    check_fd("swiglu dup", u, du, loss);
  }
}

// y = x Wᵀ + b + s (x Aᵀ) Bᵀ for W in every dtype; dx through the dequantized W, dA/dB accumulate.
TEST(train_lora_linear_backward_matches_finite_differences) {
  std::mt19937 rng(5);
  struct Case {
    DType dt;
    int64_t in, out, m, r;
  };
  std::vector<Case> cases = {{DType::F32, 7, 5, 3, 2},    {DType::F32, 16, 9, 4, 4},  {DType::F16, 9, 6, 5, 3},   {DType::BF16, 8, 3, 2, 1},
                             {DType::Q8_0, 64, 5, 3, 3},  {DType::Q4_0, 32, 4, 2, 2}, {DType::Q4_K, 256, 3, 3, 2}, {DType::Q6_K, 256, 4, 2, 3},
                             {DType::Q5_K, 256, 2, 3, 2}};
  for (auto& c : cases) {
    OwnedTensor W(c.dt, c.in, c.out, rng);
    auto bias = to_f(randv(size_t(c.out), rng));
    const double scale = 1.7;
    Vec x = randv(size_t(c.m * c.in), rng), A = randv(size_t(c.r * c.in), rng, 0.3), B = randv(size_t(c.out * c.r), rng, 0.3),
        R = randv(size_t(c.m * c.out), rng);
    Vec y(size_t(c.m * c.out)), xa(static_cast<size_t>(c.m * c.r));
    ThreadPool pool(2);
    auto loss = [&] {
      lora_linear_forward(y.data(), xa.data(), x.data(), W.t, bias.data(), A.data(), B.data(), scale, c.m, c.r, nullptr);
      return dot(y, R);
    };
    loss();
    Vec dx(x.size(), 7.0), dA(A.size(), 0.5), dB(B.size(), 0.5);
    lora_linear_backward(dx.data(), dA.data(), dB.data(), R.data(), x.data(), xa.data(), W.t, A.data(), B.data(), scale, c.m, c.r, &pool);
    for (auto& v : dA) v -= 0.5;
    for (auto& v : dB) v -= 0.5;
    std::string n = std::string("lora linear ") + dtype_name(c.dt);
    check_fd((n + " dx").c_str(), x, dx, loss);
    check_fd((n + " dA").c_str(), A, dA, loss);
    check_fd((n + " dB").c_str(), B, dB, loss);
    // no adapter: the plain frozen product, and its input gradient alone
    Vec y0(y.size()), dx0(x.size(), 7.0);
    lora_linear_forward(y0.data(), (double*)nullptr, x.data(), W.t, nullptr, (const double*)nullptr, (const double*)nullptr, 0.0, c.m, 0, nullptr);
    auto loss0 = [&] {
      lora_linear_forward(y0.data(), (double*)nullptr, x.data(), W.t, nullptr, (const double*)nullptr, (const double*)nullptr, 0.0, c.m, 0, nullptr);
      return dot(y0, R);
    };
    lora_linear_backward(dx0.data(), (double*)nullptr, (double*)nullptr, R.data(), x.data(), (const double*)nullptr, W.t, (const double*)nullptr,
                         (const double*)nullptr, 0.0, c.m, 0, &pool);
    check_fd((n + " dx, no adapter").c_str(), x, dx0, loss0);
    // float against double
    std::vector<float> xf = to_f(x), Af = to_f(A), Bf = to_f(B), Rf = to_f(R), yf(y.size()), xaf(xa.size()), dxf(x.size()), dAf(A.size()), dBf(B.size());
    lora_linear_forward(yf.data(), xaf.data(), xf.data(), W.t, bias.data(), Af.data(), Bf.data(), scale, c.m, c.r, nullptr);
    lora_linear_backward(dxf.data(), dAf.data(), dBf.data(), Rf.data(), xf.data(), xaf.data(), W.t, Af.data(), Bf.data(), scale, c.m, c.r, nullptr);
    loss();
    CHECK(nerr(yf, y) < 1e-6);
    CHECK(nerr(dxf, dx) < 1e-5 && nerr(dAf, dA) < 1e-5 && nerr(dBf, dB) < 1e-5);
  }
}

// The chunked lm head + log-softmax + cross-entropy: the loss against a direct log-softmax, its
// gradient against finite differences, the same for any chunk size, masked rows without gradient.
TEST(train_lm_head_cross_entropy_matches_finite_differences) {
  std::mt19937 rng(6);
  for (DType dt : {DType::F32, DType::Q8_0}) {
    const int64_t T = 6, H = 32, V = 37;
    OwnedTensor W(dt, H, V, rng, 0.4);
    std::vector<int32_t> targets = {3, -1, 36, 0, -1, 17};
    Vec x = randv(size_t(T * H), rng), dx(x.size(), 7.0);
    const double gs = 1.0 / 4;
    auto loss = [&] { return gs * lm_head_cross_entropy<double>(nullptr, nullptr, nullptr, x.data(), W.t, targets.data(), T, 1.0, 2, nullptr); };
    ThreadPool pool(2);
    const double l = lm_head_cross_entropy<double>(dx.data(), nullptr, nullptr, x.data(), W.t, targets.data(), T, gs, 4, &pool);
    // direct: full logits, log-softmax
    Vec logits(size_t(T * V));
    lora_linear_forward(logits.data(), (double*)nullptr, x.data(), W.t, nullptr, (const double*)nullptr, (const double*)nullptr, 0.0, T, 0, nullptr);
    double want = 0;
    Vec want_rows(size_t(T), 0.0);
    for (int64_t t = 0; t < T; t++) {
      if (targets[size_t(t)] < 0) continue;
      double mx = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) mx = std::max(mx, logits[size_t(t * V + v)]);
      for (int64_t v = 0; v < V; v++) s += std::exp(logits[size_t(t * V + v)] - mx);
      want_rows[size_t(t)] = mx + std::log(s) - logits[size_t(t * V + targets[size_t(t)])];
      want += want_rows[size_t(t)];
    }
    CHECK_NEAR(l, want, 1e-10 * want);
    // each row's −log p (the log-prob scoring reads these), 0 for rows without a target
    Vec rows(size_t(T), 5.0);
    lm_head_cross_entropy<double>(nullptr, nullptr, rows.data(), x.data(), W.t, targets.data(), T, 1.0, 4, &pool);
    for (int64_t t = 0; t < T; t++) CHECK_NEAR(rows[size_t(t)], want_rows[size_t(t)], 1e-12 * (1 + want_rows[size_t(t)]));
    for (int64_t chunk : {1, 3, 100}) CHECK_NEAR(lm_head_cross_entropy<double>(nullptr, nullptr, nullptr, x.data(), W.t, targets.data(), T, 1.0, chunk, &pool), want, 1e-10 * want);
    check_fd(dt == DType::F32 ? "cross-entropy dx f32" : "cross-entropy dx q8_0", x, dx, loss);
    for (int64_t t : {1, 4})
      for (int64_t c = 0; c < H; c++) CHECK(dx[size_t(t * H + c)] == 0.0);
    // float: the lm head through the engine's matmul (q8_0 quantizes the activations: looser)
    std::vector<float> xf = to_f(x), dxf(x.size());
    const double lf = lm_head_cross_entropy<float>(dxf.data(), nullptr, nullptr, xf.data(), W.t, targets.data(), T, gs, 4, &pool);
    const double tol = dt == DType::F32 ? 1e-6 : 1e-2;
    CHECK_MSG(std::fabs(lf - want) < tol * want, "float loss " << lf << " vs " << want);
    CHECK_MSG(nerr(dxf, dx) < (dt == DType::F32 ? 1e-5 : 2e-2), "float dx error " << nerr(dxf, dx));
  }
}

TEST(train_embedding_reads_dequantized_rows) {
  std::mt19937 rng(7);
  OwnedTensor E(DType::Q8_0, 32, 10, rng);
  std::vector<int32_t> tok = {9, 0, 9};
  Vec x(3 * 32);
  embedding_forward(x.data(), tok.data(), E.t, 3);
  std::vector<float> row(32);
  dequantize_row(DType::Q8_0, static_cast<const uint8_t*>(E.t.data) + 9 * E.t.row_bytes, row.data(), 32);
  for (int c = 0; c < 32; c++) CHECK(x[size_t(c)] == row[size_t(c)] && x[size_t(64 + c)] == row[size_t(c)]);
  std::vector<int32_t> bad = {10};
  CHECK_THROWS(embedding_forward(x.data(), bad.data(), E.t, 1), "outside the vocabulary");
}

// Full training's weight gradients, accumulated onto junk: a linear layer's dW = dyᵀ x and
// dbias = Σ dy, the embedding's scattered rows, the lm head's dW through the chunked
// cross-entropy and the log-probs at a temperature. y is linear in W, b and E, so a large step
// through the forward is exact; the lm head is not (a small step).
TEST(train_linear_backward_weight_matches_finite_differences) {
  std::mt19937 rng(8);
  for (auto [in, out, m] : {std::tuple<int64_t, int64_t, int64_t>{7, 5, 3}, {16, 9, 1}, {33, 4, 6}}) {
    OwnedTensor W(DType::F32, in, out, rng);
    float* w = reinterpret_cast<float*>(W.bytes.data());
    auto bias = to_f(randv(size_t(out), rng));
    Vec x = randv(size_t(m * in), rng), R = randv(size_t(m * out), rng), y(size_t(m * out));
    R[0] = 0;  // a zero entry of dy is skipped, nothing else
    auto loss = [&] {
      lora_linear_forward(y.data(), (double*)nullptr, x.data(), W.t, bias.data(), (const double*)nullptr, (const double*)nullptr, 0.0, m, 0, nullptr);
      return dot(y, R);
    };
    Vec dW(size_t(in * out), 0.5), db(size_t(out), 0.5);
    ThreadPool pool(2);
    linear_backward_weight(dW.data(), db.data(), R.data(), x.data(), m, in, out, &pool);
    for (auto& v : dW) v -= 0.5;
    for (auto& v : db) v -= 0.5;
    check_fd_f32("linear dW", w, dW, loss, 0.25, 1e-12);
    check_fd_f32("linear dbias", bias.data(), db, loss, 0.25, 1e-12);
    std::vector<float> xf = to_f(x), Rf = to_f(R), dWf(dW.size()), dbf(db.size());
    linear_backward_weight(dWf.data(), dbf.data(), Rf.data(), xf.data(), m, in, out, nullptr);
    CHECK(nerr(dWf, dW) < 1e-6 && nerr(dbf, db) < 1e-6);
  }
}

TEST(train_embedding_backward_matches_finite_differences) {
  std::mt19937 rng(9);
  const int64_t H = 12, V = 9, T = 5;
  OwnedTensor E(DType::F32, H, V, rng);
  std::vector<int32_t> tok = {3, 0, 3, 8, 3};  // token 3 three times: its row gets all three
  Vec x(size_t(T * H)), R = randv(x.size(), rng), dE(size_t(V * H), 0.5);
  auto loss = [&] {
    embedding_forward(x.data(), tok.data(), E.t, T);
    return dot(x, R);
  };
  embedding_backward(dE.data(), R.data(), tok.data(), T, H);
  for (auto& v : dE) v -= 0.5;
  check_fd_f32("embedding dE", reinterpret_cast<float*>(E.bytes.data()), dE, loss, 0.25, 1e-12);
  for (int32_t v : {1, 2, 4, 5, 6, 7})
    for (int64_t c = 0; c < H; c++) CHECK(dE[size_t(v * H + c)] == 0.0);
}

TEST(train_lm_head_weight_grad_matches_finite_differences) {
  std::mt19937 rng(10);
  const int64_t T = 6, H = 16, V = 23;
  OwnedTensor W(DType::F32, H, V, rng, 0.4);
  float* w = reinterpret_cast<float*>(W.bytes.data());
  std::vector<int32_t> targets = {3, -1, 22, 0, -1, 17};
  Vec x = randv(size_t(T * H), rng), dx(x.size());
  ThreadPool pool(2);
  // cross-entropy, grad_scale 1/4, chunks of 4 rows (the dW of two chunks accumulates)
  const double gs = 0.25;
  auto ce = [&] { return gs * lm_head_cross_entropy<double>(nullptr, nullptr, nullptr, x.data(), W.t, targets.data(), T, 1.0, 100, nullptr); };
  Vec dW(size_t(V * H), 0.5);
  lm_head_cross_entropy<double>(dx.data(), dW.data(), nullptr, x.data(), W.t, targets.data(), T, gs, 3, &pool);
  for (auto& v : dW) v -= 0.5;
  check_fd_f32("lm head cross-entropy dW", w, dW, ce, 1e-3, 1e-6);
  std::vector<float> xf = to_f(x), dxf(x.size()), dWf(dW.size());
  lm_head_cross_entropy<float>(dxf.data(), dWf.data(), nullptr, xf.data(), W.t, targets.data(), T, gs, 4, &pool);
  CHECK_MSG(nerr(dWf, dW) < 1e-5, "float dW error " << nerr(dWf, dW));
  // log-probs at temperature 0.7, loss Σ c_t logp_t
  Vec c = randv(size_t(T), rng), logp(static_cast<size_t>(T));
  LogprobGrad dl = [&](int64_t n, const int64_t* rows, const double*, double* dlogp) {
    for (int64_t i = 0; i < n; i++) dlogp[i] = c[size_t(rows[i])];
  };
  auto lp = [&] {
    lm_head_logprobs<double>(nullptr, nullptr, logp.data(), nullptr, x.data(), W.t, targets.data(), T, 0.7, nullptr, 100, nullptr);
    return dot(logp, c);
  };
  Vec dW2(size_t(V * H), 0.5);
  lm_head_logprobs<double>(dx.data(), dW2.data(), logp.data(), nullptr, x.data(), W.t, targets.data(), T, 0.7, &dl, 3, &pool);
  for (auto& v : dW2) v -= 0.5;
  check_fd_f32("lm head log-probs dW", w, dW2, lp, 1e-3, 1e-6);
}
