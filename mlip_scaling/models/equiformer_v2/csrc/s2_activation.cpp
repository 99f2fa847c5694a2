// Fused S² activation of EquiformerV2 and its first and second derivatives (CPU).
//
// For every row n (an edge or a node) of x [N, K, C]:
//   h = A x            A = to_grid [G, K]: coefficients -> values on G grid points
//   y = B^T silu(h)    B = from_grid [G, Ko]: grid values -> Ko coefficients
// s2_act_backward gives gx = A^T (silu'(h) * B gy) for the cotangent gy [N, Ko, C];
// s2_act_double gives the derivatives of <ggx, gx> with respect to gy and x:
//   g_gy = B^T (silu'(h) * A ggx),  g_x = A^T (silu''(h) * (B gy) * (A ggx)).
// One pass per row keeps h and the grid values in a per-thread buffer, instead of
// the several full-size tensors (and operator calls) of the unfused chain.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <vector>

namespace {

// Rows are processed in blocks: the block's rows of an [N, J, C] tensor are copied to
// columns [J, L] (L = rows x C), so the small matrix products and the elementwise work
// run along one long contiguous axis that the compiler vectorizes.
constexpr int64_t kColumns = 512;  // target L of a block

int64_t block_rows(int64_t c) { return std::max<int64_t>(1, kColumns / std::max<int64_t>(c, 1)); }

// vt[j, b * C + c] = v[b, j, c] for the nb rows of v [nb, J, C]
template <typename T>
void to_columns(const T* v, T* vt, int64_t nb, int64_t J, int64_t C) {
  const int64_t L = nb * C;
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t j = 0; j < J; ++j) std::copy_n(v + (b * J + j) * C, C, vt + j * L + b * C);
}

// v[b, j, c] = vt[j, b * C + c]
template <typename T>
void from_columns(const T* vt, T* v, int64_t nb, int64_t J, int64_t C) {
  const int64_t L = nb * C;
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t j = 0; j < J; ++j) std::copy_n(vt + j * L + b * C, C, v + (b * J + j) * C);
}

// out[G, L] = m[G, J] @ vt[J, L]
template <typename T>
void project(const T* m, const T* vt, T* out, int64_t G, int64_t J, int64_t L) {
  for (int64_t g = 0; g < G; ++g) {
    T* o = out + g * L;
    std::fill(o, o + L, T(0));
    for (int64_t j = 0; j < J; ++j) {
      const T w = m[g * J + j];
      const T* v = vt + j * L;
      for (int64_t l = 0; l < L; ++l) o[l] += w * v[l];
    }
  }
}

// out[J, L] = m[G, J]^T @ s[G, L]
template <typename T>
void project_back(const T* m, const T* s, T* out, int64_t G, int64_t J, int64_t L) {
  std::fill(out, out + J * L, T(0));
  for (int64_t g = 0; g < G; ++g) {
    const T* sg = s + g * L;
    for (int64_t j = 0; j < J; ++j) {
      const T w = m[g * J + j];
      T* o = out + j * L;
      for (int64_t l = 0; l < L; ++l) o[l] += w * sg[l];
    }
  }
}

// exp(x) for |x| <= 700 by 2^n e^r, |r| <= ln2/2, with a degree-13 Taylor polynomial
// (truncation < 1e-17 relative); branch-free so that loops over it vectorize (with
// -fno-trapping-math, which lets the compiler turn the clamps into selects).
inline double exp_poly(double x) {
  x = x < -700.0 ? -700.0 : x;
  x = x > 700.0 ? 700.0 : x;
  const double shifter = 0x1.8p52;  // adding it rounds to an integer kept in the low bits
  const double t = x * 1.4426950408889634 + shifter;
  const double n = t - shifter;
  const double r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  // Horner's scheme of sum_k r^k / k!, k = 0..13
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // the low bits of t hold n (two's complement); 2^n from its biased exponent
  const int64_t bits = (std::bit_cast<int64_t>(t) + 1023) << 52;
  return p * std::bit_cast<double>(bits);
}

// exp(x) in float for |x| <= 87: as exp_poly, with a degree-7 polynomial (truncation
// < 1e-8 relative, below float's rounding).
inline float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 87.0f ? 87.0f : x;
  const float shifter = 0x1.8p23f;
  const float t = x * 1.44269504f + shifter;
  const float n = t - shifter;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (std::bit_cast<int32_t>(t) + 127) << 23;
  return p * std::bit_cast<float>(bits);
}

template <typename T>
inline T sigmoid(T h) {
  return T(1) / (T(1) + exp_poly(-h));
}

// h = silu(h) over m values
template <typename T>
void silu_inplace(T* __restrict h, int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    const T hi = h[i];
    h[i] = hi * sigmoid(hi);
  }
}

// t *= silu'(h) over m values
template <typename T>
void mul_silu_grad(const T* __restrict h, T* __restrict t, int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    const T sg = sigmoid(h[i]);
    t[i] *= sg * (T(1) + h[i] * (T(1) - sg));
  }
}

// t *= silu''(h) u, then u *= silu'(h), over m values
template <typename T>
void mul_silu_grads(const T* __restrict h, T* __restrict t, T* __restrict u, int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    const T sg = sigmoid(h[i]), one = T(1);
    const T d1 = sg * (one + h[i] * (one - sg));
    const T d2 = sg * (one - sg) * (T(2) + h[i] * (one - T(2) * sg));
    t[i] *= d2 * u[i];
    u[i] *= d1;
  }
}

struct Shapes {
  int64_t n, k, c, g, ko;
};

Shapes check(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(x.dim() == 3 && a.dim() == 2 && b.dim() == 2, "s2_act: x [N, K, C], A [G, K], B [G, Ko]");
  TORCH_CHECK(a.size(1) == x.size(1) && b.size(0) == a.size(0), "s2_act: shapes do not match");
  TORCH_CHECK(x.scalar_type() == a.scalar_type() && x.scalar_type() == b.scalar_type(),
              "s2_act: x, A and B must have one dtype");
  TORCH_CHECK(x.device().is_cpu() && a.device().is_cpu() && b.device().is_cpu(), "s2_act: CPU tensors");
  return {x.size(0), x.size(1), x.size(2), a.size(0), b.size(1)};
}

// Runs body(first_row, rows, scratch) over blocks of rows, in parallel over blocks.
template <typename T, typename Body>
void over_blocks(int64_t n, int64_t c, int64_t scratch_size, const Body& body) {
  const int64_t nb = block_rows(c), blocks = (n + nb - 1) / nb;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(scratch_size * nb * c);
    for (int64_t i = begin; i < end; ++i) body(i * nb, std::min(nb, n - i * nb), scratch.data());
  });
}

at::Tensor s2_act(const at::Tensor& x_, const at::Tensor& a_, const at::Tensor& b_) {
  const Shapes s = check(x_, a_, b_);
  const auto x = x_.contiguous(), a = a_.contiguous(), b = b_.contiguous();
  auto y = at::empty({s.n, s.ko, s.c}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "s2_act", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    T* py = y.data_ptr<T>();
    const int64_t w = block_rows(s.c) * s.c;  // columns of a block's scratch rows
    over_blocks<T>(s.n, s.c, s.k + s.g + s.ko, [&](int64_t row, int64_t nb, T* buf) {
      T *xt = buf, *h = xt + s.k * w, *yt = h + s.g * w;
      const int64_t L = nb * s.c;
      to_columns(px + row * s.k * s.c, xt, nb, s.k, s.c);
      project(pa, xt, h, s.g, s.k, L);  // rows of h are L long (stride L)
      silu_inplace(h, s.g * L);
      project_back(pb, h, yt, s.g, s.ko, L);
      from_columns(yt, py + row * s.ko * s.c, nb, s.ko, s.c);
    });
  });
  return y;
}

at::Tensor s2_act_backward(const at::Tensor& gy_, const at::Tensor& x_, const at::Tensor& a_,
                           const at::Tensor& b_) {
  const Shapes s = check(x_, a_, b_);
  TORCH_CHECK(gy_.dim() == 3 && gy_.size(0) == s.n && gy_.size(1) == s.ko && gy_.size(2) == s.c,
              "s2_act_backward: gy must be [N, Ko, C]");
  const auto gy = gy_.contiguous().to(x_.scalar_type());
  const auto x = x_.contiguous(), a = a_.contiguous(), b = b_.contiguous();
  auto gx = at::empty({s.n, s.k, s.c}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "s2_act_backward", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    const T* pgy = gy.data_ptr<T>();
    T* pgx = gx.data_ptr<T>();
    const int64_t w = block_rows(s.c) * s.c;
    over_blocks<T>(s.n, s.c, 2 * s.k + s.ko + 2 * s.g, [&](int64_t row, int64_t nb, T* buf) {
      T *xt = buf, *gyt = xt + s.k * w, *h = gyt + s.ko * w, *t = h + s.g * w, *gxt = t + s.g * w;
      const int64_t L = nb * s.c;
      to_columns(px + row * s.k * s.c, xt, nb, s.k, s.c);
      to_columns(pgy + row * s.ko * s.c, gyt, nb, s.ko, s.c);
      project(pa, xt, h, s.g, s.k, L);
      project(pb, gyt, t, s.g, s.ko, L);
      mul_silu_grad(h, t, s.g * L);  // silu'(h) (B gy)
      project_back(pa, t, gxt, s.g, s.k, L);
      from_columns(gxt, pgx + row * s.k * s.c, nb, s.k, s.c);
    });
  });
  return gx;
}

std::tuple<at::Tensor, at::Tensor> s2_act_double(const at::Tensor& ggx_, const at::Tensor& gy_,
                                                 const at::Tensor& x_, const at::Tensor& a_,
                                                 const at::Tensor& b_) {
  const Shapes s = check(x_, a_, b_);
  TORCH_CHECK(ggx_.sizes() == x_.sizes(), "s2_act_double: ggx must have the shape of x");
  TORCH_CHECK(gy_.dim() == 3 && gy_.size(0) == s.n && gy_.size(1) == s.ko && gy_.size(2) == s.c,
              "s2_act_double: gy must be [N, Ko, C]");
  const auto ggx = ggx_.contiguous().to(x_.scalar_type()), gy = gy_.contiguous().to(x_.scalar_type());
  const auto x = x_.contiguous(), a = a_.contiguous(), b = b_.contiguous();
  auto g_gy = at::empty({s.n, s.ko, s.c}, x.options());
  auto g_x = at::empty({s.n, s.k, s.c}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "s2_act_double", [&] {
    using T = scalar_t;
    const T *px = x.data_ptr<T>(), *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    const T *pgy = gy.data_ptr<T>(), *pggx = ggx.data_ptr<T>();
    T *pg_gy = g_gy.data_ptr<T>(), *pg_x = g_x.data_ptr<T>();
    const int64_t w = block_rows(s.c) * s.c;
    // x and ggx columns are reused for the g_x columns, gy columns for g_gy
    over_blocks<T>(s.n, s.c, 2 * s.k + s.ko + 3 * s.g, [&](int64_t row, int64_t nb, T* buf) {
      T *xt = buf, *ggt = xt + s.k * w, *gyt = ggt + s.k * w;
      T *h = gyt + s.ko * w, *t = h + s.g * w, *u = t + s.g * w;
      const int64_t L = nb * s.c;
      to_columns(px + row * s.k * s.c, xt, nb, s.k, s.c);
      to_columns(pggx + row * s.k * s.c, ggt, nb, s.k, s.c);
      to_columns(pgy + row * s.ko * s.c, gyt, nb, s.ko, s.c);
      project(pa, xt, h, s.g, s.k, L);
      project(pb, gyt, t, s.g, s.ko, L);
      project(pa, ggt, u, s.g, s.k, L);
      mul_silu_grads(h, t, u, s.g * L);  // silu''(h) (B gy) (A ggx), silu'(h) (A ggx)
      project_back(pb, u, gyt, s.g, s.ko, L);
      project_back(pa, t, xt, s.g, s.k, L);
      from_columns(gyt, pg_gy + row * s.ko * s.c, nb, s.ko, s.c);
      from_columns(xt, pg_x + row * s.k * s.c, nb, s.k, s.c);
    });
  });
  return {g_gy, g_x};
}

}  // namespace

TORCH_LIBRARY(mlip_scaling, m) {
  m.def("s2_act(Tensor x, Tensor to_grid, Tensor from_grid) -> Tensor");
  m.def("s2_act_backward(Tensor gy, Tensor x, Tensor to_grid, Tensor from_grid) -> Tensor");
  m.def(
      "s2_act_double(Tensor ggx, Tensor gy, Tensor x, Tensor to_grid, Tensor from_grid)"
      " -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mlip_scaling, CPU, m) {
  m.impl("s2_act", &s2_act);
  m.impl("s2_act_backward", &s2_act_backward);
  m.impl("s2_act_double", &s2_act_double);
}
