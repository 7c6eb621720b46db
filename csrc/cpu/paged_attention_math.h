// Inline float helpers of the paged attention kernel (cpu/paged_attention.cpp): dtype conversions, an
// exponential, and the loops over the head dim / the key block. Everything is always_inline, so it is
// compiled inside each target_clones copy of the kernel (AVX-512, AVX2, baseline) with that ISA.
// All loops are plain C++ over contiguous floats with fixed-width independent partial sums (no
// reassociation needed, so no -ffast-math): the compiler turns them into vector instructions.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__GNUC__)
#define THINKC_INLINE inline __attribute__((always_inline))
#define THINKC_RESTRICT __restrict__
#else
#define THINKC_INLINE inline
#define THINKC_RESTRICT
#endif

namespace thinkc {
namespace paged_math {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

THINKC_INLINE uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

THINKC_INLINE float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float16 bits -> float, exact. Selects only, so that a loop of conversions vectorises.
THINKC_INLINE float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, em = h & 0x7fffu;
  const float subnormal = static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f;  // exact for em < 0x400
  uint32_t mag = em >= 0x7c00u ? (em << 13) | 0x7f800000u : (em << 13) + (112u << 23);  // inf/NaN : rebias
  mag = em < 0x400u ? bits_of(subnormal) : mag;
  return float_of(sign | mag);
}

// float -> float16 bits, round to nearest even; overflow gives inf, NaN stays a quiet NaN.
THINKC_INLINE uint16_t float_to_half_bits(float f) {
  const uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000u, mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (mag >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 2^16
  if (mag < 0x38800000u) {  // below 2^-14: a half subnormal. Adding 0.5 (ulp 2^-24 = the subnormal step)
    // makes the FPU round to nearest even; the sum's low mantissa bits are the half's.
    return static_cast<uint16_t>(sign | (bits_of(float_of(mag) + 0.5f) - bits_of(0.5f)));
  }
  // Normal: rebias the exponent (127 -> 15) and round 23 -> 10 mantissa bits to nearest even; a carry
  // out of the mantissa bumps the exponent (up to inf for [65520, 65536)).
  const uint32_t odd = (mag >> 13) & 1u;
  return static_cast<uint16_t>(sign | ((mag - (112u << 23) + 0xfffu + odd) >> 13));
}

THINKC_INLINE float bf16_bits_to_float(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

THINKC_INLINE uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// exp(x) for x <= 0 (fine up to ~88): 2^n * e^r with |r| <= ln2 / 2 and a degree-7 Taylor polynomial
// (relative error ~1e-7, exp(0) = 1 exactly). Below -87 it returns exp(-87) ~ 1.6e-38 rather than
// underflowing, which no sum holding a weight of 1 can see. Arithmetic and selects only: vectorises.
THINKC_INLINE float exp_neg(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2)
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;  // Cody-Waite ln2 split
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * float_of(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// a . b over n floats: 16 partial sums, then a tree of fixed-width halvings.
THINKC_INLINE float dot(const float* THINKC_RESTRICT a, const float* THINKC_RESTRICT b, int64_t n) {
  constexpr int L = 16;
  float acc[L] = {};
  int64_t d = 0;
  for (; d + L <= n; d += L)
    for (int l = 0; l < L; ++l) acc[l] += a[d + l] * b[d + l];
  float h8[8], h4[4];
  for (int l = 0; l < 8; ++l) h8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
  float s = (h4[0] + h4[2]) + (h4[1] + h4[3]);
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

// Max / sum of 32 floats as trees of fixed-width halvings.
THINKC_INLINE float max32(const float* x) {
  float h[16];
  for (int l = 0; l < 16; ++l) h[l] = x[l] > x[l + 16] ? x[l] : x[l + 16];
  for (int l = 0; l < 8; ++l) h[l] = h[l] > h[l + 8] ? h[l] : h[l + 8];
  for (int l = 0; l < 4; ++l) h[l] = h[l] > h[l + 4] ? h[l] : h[l + 4];
  const float a = h[0] > h[2] ? h[0] : h[2], b = h[1] > h[3] ? h[1] : h[3];
  return a > b ? a : b;
}

THINKC_INLINE float sum32(const float* x) {
  float h[16];
  for (int l = 0; l < 16; ++l) h[l] = x[l] + x[l + 16];
  for (int l = 0; l < 8; ++l) h[l] += h[l + 8];
  for (int l = 0; l < 4; ++l) h[l] += h[l + 4];
  return (h[0] + h[2]) + (h[1] + h[3]);
}

// acc = acc * c + sum_k p[k] * rows[idx[k]] over n floats. Keys are the inner loop so that the sums stay
// in registers (the whole row when kD, the head dim, is a compile-time constant; 16 floats at a time when
// kD = 0); even and odd keys feed two sums, two independent add chains.
template <int kD>
THINKC_INLINE void accumulate(float* acc, float c, const float* p, const float* const* rows, const int32_t* idx,
                              int nv, int64_t n) {
  constexpr int64_t W = kD > 0 ? kD : 16;
  int64_t d = 0;
  for (; d + W <= n; d += W) {
    float x[W], y[W] = {};
    for (int64_t e = 0; e < W; ++e) x[e] = acc[d + e] * c;
    int k = 0;
    for (; k + 2 <= nv; k += 2) {
      const float *u = rows[idx[k]] + d, *v = rows[idx[k + 1]] + d;
      const float pu = p[k], pv = p[k + 1];
      for (int64_t e = 0; e < W; ++e) x[e] += pu * u[e];
      for (int64_t e = 0; e < W; ++e) y[e] += pv * v[e];
    }
    if (k < nv) {
      const float* u = rows[idx[k]] + d;
      for (int64_t e = 0; e < W; ++e) x[e] += p[k] * u[e];
    }
    for (int64_t e = 0; e < W; ++e) acc[d + e] = x[e] + y[e];
  }
  for (; d < n; ++d) {
    float x = acc[d] * c;
    for (int k = 0; k < nv; ++k) x += p[k] * rows[idx[k]][d];
    acc[d] = x;
  }
}

}  // namespace paged_math
}  // namespace thinkc
