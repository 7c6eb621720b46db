// Attention over a paged KV pool, pure C++ (see paged_attention.h).
//
// The hot loops (dot products over D, the block's exponentials, the P @ V accumulation, the dtype
// conversions) are plain loops over contiguous floats that the compiler vectorises. The entry points
// are compiled three times (AVX-512, AVX2, baseline x86-64) with target_clones and picked at load time
// by the CPU's features, so the extension keeps its portable -O3 flags; every helper is always_inline
// so it is compiled inside each clone. No -ffast-math: the exponential is a polynomial of our own.
#include "cpu/paged_attention.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__GNUC__)
#define THINKC_INLINE inline __attribute__((always_inline))
#define THINKC_RESTRICT __restrict__
#else
#define THINKC_INLINE inline
#define THINKC_RESTRICT
#endif

#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define THINKC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef THINKC_CLONES
#define THINKC_CLONES
#endif

namespace thinkc {
namespace {

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

// Branch-free (selects only) so that a loop of conversions vectorises.
THINKC_INLINE float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16, em = h & 0x7fffu;
  const float subnormal = static_cast<float>(static_cast<int32_t>(em)) * 0x1p-24f;  // exact for em < 0x400
  uint32_t mag = em >= 0x7c00u ? (em << 13) | 0x7f800000u : (em << 13) + (112u << 23);  // inf/NaN : rebias
  mag = em < 0x400u ? bits_of(subnormal) : mag;
  return float_of(sign | mag);
}

THINKC_INLINE uint16_t float_to_half_bits(float f) {
  const uint32_t u = bits_of(f), sign = (u >> 16) & 0x8000u, mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN stays a (quiet) NaN
  if (mag >= 0x47800000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 2^16: inf
  if (mag < 0x38800000u) {  // below 2^-14: a half subnormal. Adding 0.5 (ulp 2^-24 = the subnormal step)
    // makes the FPU round to nearest even; the result's low mantissa bits are the half's.
    return static_cast<uint16_t>(sign | (bits_of(float_of(mag) + 0.5f) - bits_of(0.5f)));
  }
  // Normal: rebias the exponent (127 -> 15) and round 23 -> 10 mantissa bits to nearest even; a carry
  // out of the mantissa correctly bumps the exponent (up to inf for [65520, 65536)).
  const uint32_t odd = (mag >> 13) & 1u;
  return static_cast<uint16_t>(sign | ((mag - (112u << 23) + 0xfffu + odd) >> 13));
}

THINKC_INLINE float bf16_bits_to_float(uint16_t h) { return float_of(static_cast<uint32_t>(h) << 16); }

THINKC_INLINE uint16_t float_to_bf16_bits(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Element types: raw storage, conversions, and the lowest finite value (mask entries <= it are "not visible").
struct F32 {
  using Raw = float;
  static THINKC_INLINE float to_float(float x) { return x; }
  static THINKC_INLINE float from_float(float x) { return x; }
  static constexpr float kLowest = -0x1.fffffep127f;
};
struct BF16 {
  using Raw = uint16_t;
  static THINKC_INLINE float to_float(uint16_t x) { return bf16_bits_to_float(x); }
  static THINKC_INLINE uint16_t from_float(float x) { return float_to_bf16_bits(x); }
  static constexpr float kLowest = -0x1.fep127f;
};
struct F16 {
  using Raw = uint16_t;
  static THINKC_INLINE float to_float(uint16_t x) { return half_bits_to_float(x); }
  static THINKC_INLINE uint16_t from_float(float x) { return float_to_half_bits(x); }
  static constexpr float kLowest = -65504.0f;
};

// exp(x) for x <= 0 (larger x works up to ~88): 2^n * e^r with |r| <= ln2 / 2, a degree-7 Taylor
// polynomial (relative error < 1e-7); below -87 it returns exp(-87) ~ 1.6e-38 instead of underflowing,
// which no sum of weights >= 1 can see. Selects and arithmetic only: vectorises.
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

// Loops over D work on blocks of kLanes floats copied into local arrays: no aliasing for the compiler
// to prove and no reassociation needed, so each block becomes a few vector instructions at any width.
constexpr int kLanes = 16;

// a . b over n floats: kLanes independent partial sums, then a tree.
THINKC_INLINE float dot(const float* a, const float* b, int64_t n) {
  float acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    float x[kLanes], y[kLanes];
    std::memcpy(x, a + d, sizeof x);
    std::memcpy(y, b + d, sizeof y);
    for (int l = 0; l < kLanes; ++l) acc[l] += x[l] * y[l];
  }
  float h[kLanes / 2];
  for (int l = 0; l < kLanes / 2; ++l) h[l] = acc[l] + acc[l + kLanes / 2];
  for (int l = 0; l < kLanes / 4; ++l) h[l] += h[l + kLanes / 4];
  float s = (h[0] + h[2]) + (h[1] + h[3]);
  for (; d < n; ++d) s += a[d] * b[d];
  return s;
}

// acc = acc * c + p * v over n floats (c = 1: a plain axpy).
THINKC_INLINE void scale_add(float* acc, float c, float p, const float* v, int64_t n) {
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes) {
    float x[kLanes], y[kLanes];
    std::memcpy(x, acc + d, sizeof x);
    std::memcpy(y, v + d, sizeof y);
    for (int l = 0; l < kLanes; ++l) x[l] = x[l] * c + p * y[l];
    std::memcpy(acc + d, x, sizeof x);
  }
  for (; d < n; ++d) acc[d] = acc[d] * c + p * v[d];
}

// Per-thread working memory, sized once per paged_attention_run call.
struct Scratch {
  int64_t D;
  std::vector<float> q, acc, m, l;   // [G * kQueryChunk, D] scaled queries / accumulators, running max / sum
  std::vector<float> kbuf, vbuf;     // [kKeyBlock, D] converted K / V rows (non-float dtypes)
  std::vector<float> maskf;          // [kQueryChunk, kKeyBlock] the block's mask values as float
  std::vector<uint8_t> vis;          // [kQueryChunk, kKeyBlock] key t visible to position wi
  uint8_t any[kKeyBlock];            // key t visible to some position of the unit
  const float* kp[kKeyBlock];        // float rows of the block's keys (pool or kbuf)
  const float* vp[kKeyBlock];
  int32_t idx[kKeyBlock];            // visible keys of one position
  float score[kKeyBlock];

  Scratch(int64_t G, int64_t D_)
      : D(D_), q(G * kQueryChunk * D_), acc(G * kQueryChunk * D_), m(G * kQueryChunk), l(G * kQueryChunk),
        kbuf(kKeyBlock * D_), vbuf(kKeyBlock * D_), maskf(kQueryChunk * kKeyBlock), vis(kQueryChunk * kKeyBlock) {}
};

// One block of visible keys for one query: online-softmax update of (m, l, acc).
THINKC_INLINE void attend_block(Scratch& s, const float* q, const float* mrow, int nv, float& m, float& l, float* acc) {
  const int64_t D = s.D;
  float bm = kNegInf;
  for (int k = 0; k < nv; ++k) {
    const int t = s.idx[k];
    s.score[k] = dot(q, s.kp[t], D) + mrow[t];
    bm = s.score[k] > bm ? s.score[k] : bm;
  }
  const float mn = bm > m ? bm : m;
  if (mn == kNegInf) return;  // every score -inf: weight 0 (only an overflowing mask/score gets here)
  const float c = mn > m ? exp_neg(m - mn) : 1.0f;  // rescale of the running sums (folded into key 0)
  m = mn;
  float sum = 0.0f;
  for (int k = 0; k < nv; ++k) s.score[k] = exp_neg(s.score[k] - mn);
  for (int k = 0; k < nv; ++k) sum += s.score[k];
  l = l * c + sum;
  scale_add(acc, c, s.score[0], s.vp[s.idx[0]], D);
  for (int k = 1; k < nv; ++k) scale_add(acc, 1.0f, s.score[k], s.vp[s.idx[k]], D);
}

// Mask values of keys [j0, j0 + n) for the unit's nw positions; returns how many keys any position sees.
template <class E>
THINKC_INLINE int block_visibility(const PagedAttentionArgs& a, const typename E::Raw* mask_rows, int64_t j0,
                                   int n, int64_t nw, Scratch& s) {
  uint8_t* any = s.any;
  std::fill(any, any + n, uint8_t{0});
  for (int64_t wi = 0; wi < nw; ++wi) {
    const typename E::Raw* row = mask_rows + wi * a.mask_sw + j0;
    float* mf = s.maskf.data() + wi * kKeyBlock;
    uint8_t* vis = s.vis.data() + wi * kKeyBlock;
    for (int t = 0; t < n; ++t) {
      mf[t] = E::to_float(row[t]);
      vis[t] = mf[t] > E::kLowest;
      any[t] |= vis[t];
    }
  }
  int count = 0;
  for (int t = 0; t < n; ++t) count += any[t];
  return count;
}

// Float pointers to the block's K / V rows (physical slots slot0 .. slot0 + n of KV head h): straight
// into the pool for float32, else rows converted into the scratch (visible rows only).
template <class E>
THINKC_INLINE void fetch_rows(const PagedAttentionArgs& a, int64_t h, int64_t slot0, int n, Scratch& s) {
  const int64_t D = a.D;
  const auto* kbase = static_cast<const typename E::Raw*>(a.k_pool) + (h * a.P + slot0) * D;
  const auto* vbase = static_cast<const typename E::Raw*>(a.v_pool) + (h * a.P + slot0) * D;
  for (int t = 0; t < n; ++t) {
    if constexpr (std::is_same<E, F32>::value) {
      s.kp[t] = kbase + t * D;
      s.vp[t] = vbase + t * D;
    } else {
      float* THINKC_RESTRICT kd = s.kbuf.data() + t * D;
      float* THINKC_RESTRICT vd = s.vbuf.data() + t * D;
      s.kp[t] = kd;
      s.vp[t] = vd;
      if (!s.any[t]) continue;
      const typename E::Raw* THINKC_RESTRICT ks = kbase + t * D;
      const typename E::Raw* THINKC_RESTRICT vs = vbase + t * D;
      for (int64_t d = 0; d < D; ++d) kd[d] = E::to_float(ks[d]);
      for (int64_t d = 0; d < D; ++d) vd[d] = E::to_float(vs[d]);
    }
  }
}

// Every (query head of the group, position) of the unit against the block's visible keys.
THINKC_INLINE void attend_positions(Scratch& s, int64_t G, int64_t nw, int n) {
  const int64_t D = s.D;
  for (int64_t wi = 0; wi < nw; ++wi) {
    const uint8_t* vis = s.vis.data() + wi * kKeyBlock;
    int nv = 0;
    for (int t = 0; t < n; ++t) {
      s.idx[nv] = t;
      nv += vis[t];
    }
    if (nv == 0) continue;
    const float* mrow = s.maskf.data() + wi * kKeyBlock;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t qi = g * nw + wi;
      attend_block(s, s.q.data() + qi * D, mrow, nv, s.m[qi], s.l[qi], s.acc.data() + qi * D);
    }
  }
}

template <class E>
THINKC_INLINE void load_queries(const PagedAttentionArgs& a, int64_t i, int64_t h, int64_t w0, int64_t nw,
                                Scratch& s) {
  const int64_t G = a.Hq / a.H, D = a.D;
  const auto* q = static_cast<const typename E::Raw*>(a.q);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t wi = 0; wi < nw; ++wi) {
      const int64_t qi = g * nw + wi;
      const typename E::Raw* THINKC_RESTRICT src = q + ((i * a.Hq + h * G + g) * a.W + w0 + wi) * D;
      float* THINKC_RESTRICT dst = s.q.data() + qi * D;
      for (int64_t d = 0; d < D; ++d) dst[d] = E::to_float(src[d]) * a.scale;
      std::fill(s.acc.data() + qi * D, s.acc.data() + (qi + 1) * D, 0.0f);
      s.m[qi] = kNegInf;
      s.l[qi] = 0.0f;
    }
}

template <class E>
THINKC_INLINE void store_outputs(const PagedAttentionArgs& a, int64_t i, int64_t h, int64_t w0, int64_t nw,
                                 Scratch& s) {
  const int64_t G = a.Hq / a.H, D = a.D;
  auto* out = static_cast<typename E::Raw*>(a.out);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t wi = 0; wi < nw; ++wi) {
      const int64_t qi = g * nw + wi;
      const float inv = s.l[qi] > 0.0f ? 1.0f / s.l[qi] : 0.0f;  // no visible key: zeros
      const float* THINKC_RESTRICT src = s.acc.data() + qi * D;
      typename E::Raw* THINKC_RESTRICT dst = out + ((i * a.Hq + h * G + g) * a.W + w0 + wi) * D;
      for (int64_t d = 0; d < D; ++d) dst[d] = E::from_float(src[d] * inv);
    }
}

// Keys in the block starting at j0: at most kKeyBlock, never past its page or kv_len.
THINKC_INLINE int block_len(const PagedAttentionArgs& a, int64_t j0) {
  return static_cast<int>(std::min({a.kv_len - j0, (j0 / a.page_size + 1) * a.page_size - j0, kKeyBlock}));
}

// Asks the cache for the K / V rows of the block starting at j0 of KV head h (pages are scattered, so
// the hardware prefetcher cannot guess the next one). A page number outside the pool is ignored.
template <class E>
THINKC_INLINE void prefetch_block(const PagedAttentionArgs& a, const int32_t* pages, int64_t h, int64_t j0) {
#if defined(__GNUC__)
  if (j0 >= a.kv_len) return;
  const int64_t page = pages[j0 / a.page_size];
  if (page < 0 || page >= a.P / a.page_size) return;
  const int64_t off = (h * a.P + page * a.page_size + j0 % a.page_size) * a.D * sizeof(typename E::Raw);
  const int64_t bytes = block_len(a, j0) * a.D * sizeof(typename E::Raw);
  const char* k = static_cast<const char*>(a.k_pool) + off;
  const char* v = static_cast<const char*>(a.v_pool) + off;
  for (int64_t o = 0; o < bytes; o += 64) {
    __builtin_prefetch(k + o);
    __builtin_prefetch(v + o);
  }
#endif
}

template <class E>
THINKC_INLINE int64_t run_unit(const PagedAttentionArgs& a, int64_t unit, Scratch& s) {
  const int64_t chunks = (a.W + kQueryChunk - 1) / kQueryChunk, G = a.Hq / a.H, ps = a.page_size;
  const int64_t i = unit / (a.H * chunks), h = unit / chunks % a.H, w0 = unit % chunks * kQueryChunk;
  const int64_t nw = std::min(kQueryChunk, a.W - w0), n_phys = a.P / ps;
  load_queries<E>(a, i, h, w0, nw, s);
  const auto* mask_rows = static_cast<const typename E::Raw*>(a.mask) + i * a.mask_sb + w0 * a.mask_sw;
  const int32_t* pages = a.block_table + i * a.max_pages;
  prefetch_block<E>(a, pages, h, 0);
  for (int64_t j0 = 0; j0 < a.kv_len;) {
    const int64_t pi = j0 / ps;
    const int n = block_len(a, j0);
    prefetch_block<E>(a, pages, h, j0 + n);
    if (block_visibility<E>(a, mask_rows, j0, n, nw, s) > 0) {
      const int64_t page = pages[pi];
      if (page < 0 || page >= n_phys) return i * a.max_pages + pi;
      fetch_rows<E>(a, h, page * ps + j0 % ps, n, s);
      attend_positions(s, G, nw, n);
    }
    j0 += n;
  }
  store_outputs<E>(a, i, h, w0, nw, s);
  return -1;
}

template <class E>
THINKC_INLINE int64_t run_range(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  Scratch s(a.Hq / a.H, a.D);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t bad = run_unit<E>(a, u, s);
    if (bad >= 0) return bad;
  }
  return -1;
}

THINKC_CLONES int64_t run_f32(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_range<F32>(a, begin, end);
}
THINKC_CLONES int64_t run_bf16(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_range<BF16>(a, begin, end);
}
THINKC_CLONES int64_t run_f16(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_range<F16>(a, begin, end);
}

}  // namespace

const char* paged_attention_check(const PagedAttentionArgs& a) {
  if (a.b < 0 || a.W < 0 || a.P < 0 || a.max_pages < 0 || a.kv_len < 0) return "negative size";
  if (a.H < 1 || a.Hq < 1 || a.Hq % a.H) return "query heads Hq must be a positive multiple of the KV heads H";
  if (a.D < 1) return "head dim D must be >= 1";
  if (a.page_size < 1) return "page_size must be >= 1";
  if (a.P % a.page_size) return "pool slots P are not a whole number of pages";
  if (a.kv_len > a.max_pages * a.page_size) return "kv_len exceeds max_pages * page_size";
  if (a.mask_sb < 0 || a.mask_sw < 0) return "negative mask stride";
  const int d = static_cast<int>(a.dtype);
  if (d < 0 || d > 2) return "unknown dtype";
  return "";
}

int64_t paged_attention_units(const PagedAttentionArgs& a) {
  return a.b * a.H * ((a.W + kQueryChunk - 1) / kQueryChunk);
}

int64_t paged_attention_run(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  if (begin >= end) return -1;
  switch (a.dtype) {
    case PagedDtype::kBFloat16:
      return run_bf16(a, begin, end);
    case PagedDtype::kFloat16:
      return run_f16(a, begin, end);
    default:
      return run_f32(a, begin, end);
  }
}

float bf16_to_float(uint16_t h) { return bf16_bits_to_float(h); }
uint16_t float_to_bf16(float f) { return float_to_bf16_bits(f); }
float f16_to_float(uint16_t h) { return half_bits_to_float(h); }
uint16_t float_to_f16(float f) { return float_to_half_bits(f); }

}  // namespace thinkc
