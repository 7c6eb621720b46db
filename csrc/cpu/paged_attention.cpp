// Attention over a paged KV pool, pure C++ (see paged_attention.h).
//
// A unit walks its row's logical keys in blocks of kKeyBlock: the mask says which keys of the block
// each query position sees; only pages holding a visible key are looked up (and checked) in the block
// table; K / V rows are used in place (float32) or converted to float rows in the scratch; then every
// query of the unit (G heads x positions) updates its online softmax with the block. While a block is
// computed, the next block's rows are prefetched (pages are scattered: hardware prefetchers cannot guess).
//
// The entry points are compiled three times (AVX-512, AVX2, baseline x86-64) with target_clones and
// picked at load time by the CPU's features, so the extension keeps its portable -O3 flags; the head
// dims 32, 64 and 128 get unrolled copies (kD), any other D the generic loops.
#include "cpu/paged_attention.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "cpu/paged_attention_math.h"

// -DTHINKC_NO_CLONES: one copy for the compiler's own -m flags (how to run the ctest through the AVX2
// or baseline code on an AVX-512 machine: add -mavx2, or nothing).
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute) && !defined(THINKC_NO_CLONES)
#if __has_attribute(target_clones)
#define THINKC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef THINKC_CLONES
#define THINKC_CLONES
#endif

namespace thinkc {
namespace {

using namespace paged_math;  // NOLINT: the kernel's own helpers
static_assert(kKeyBlock == 32, "max32 / sum32 reduce blocks of 32 keys");

// Element types: raw storage, conversions, the lowest finite value (mask entries <= it are hidden).
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

template <int kD>
THINKC_INLINE int64_t head_dim(int64_t runtime) {
  return kD > 0 ? kD : runtime;
}

// Per-thread working memory, sized once per paged_attention_run call. Query qi = g * nw + wi.
struct Scratch {
  int64_t G, D;
  std::vector<float> q, acc, m, l;  // [G * kQueryChunk (, D)] scaled queries, accumulators, running max / sum
  std::vector<float> kbuf, vbuf;    // [kKeyBlock, D] converted K / V rows (non-float dtypes)
  std::vector<float> maskf;         // [kQueryChunk, kKeyBlock] the block's mask values as float
  std::vector<uint8_t> vis;         // [kQueryChunk, kKeyBlock] key t visible to position wi
  std::vector<float> score;         // [G, kKeyBlock] one position's scores, then weights
  uint8_t any[kKeyBlock];           // key t visible to some position of the unit
  const float* kp[kKeyBlock];       // float rows of the block's visible keys (pool or kbuf)
  const float* vp[kKeyBlock];
  int32_t idx[kKeyBlock];           // the visible keys of one position

  Scratch(int64_t G_, int64_t D_)
      : G(G_), D(D_), q(G_ * kQueryChunk * D_), acc(G_ * kQueryChunk * D_), m(G_ * kQueryChunk),
        l(G_ * kQueryChunk), kbuf(kKeyBlock * D_), vbuf(kKeyBlock * D_), maskf(kQueryChunk * kKeyBlock),
        vis(kQueryChunk * kKeyBlock), score(G_ * kKeyBlock) {}
};

// Online-softmax update of one query (m, l, acc) with its scores sc[0, nv) of the block's visible keys.
template <int kD>
THINKC_INLINE void softmax_update(Scratch& s, float* sc, int nv, float& m, float& l, float* acc) {
  for (int k = nv; k < kKeyBlock; ++k) sc[k] = kNegInf;
  const float bm = max32(sc), mn = bm > m ? bm : m;
  if (mn == kNegInf) return;  // every score -inf: weight 0 (only an overflowing mask or score gets here)
  const float c = exp_neg(m - mn);  // rescale of the running sums; exactly 1 when the max did not move
  m = mn;
  for (int k = 0; k < kKeyBlock; ++k) sc[k] = k < nv ? exp_neg(sc[k] - mn) : 0.0f;
  l = l * c + sum32(sc);
  accumulate<kD>(acc, c, sc, s.vp, s.idx, nv, head_dim<kD>(s.D));
}

// Position wi's G queries against its nv visible keys s.idx[0, nv): all scores first (each K row is
// loaded once for the G heads), then one softmax update per head.
template <int kD>
THINKC_INLINE void attend_group(Scratch& s, int64_t nw, int64_t wi, int nv) {
  const int64_t D = head_dim<kD>(s.D), G = s.G;
  const float* mrow = s.maskf.data() + wi * kKeyBlock;
  for (int k = 0; k < nv; ++k) {
    const int t = s.idx[k];
    for (int64_t g = 0; g < G; ++g)
      s.score[g * kKeyBlock + k] = dot(s.q.data() + (g * nw + wi) * D, s.kp[t], D) + mrow[t];
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t qi = g * nw + wi;
    softmax_update<kD>(s, s.score.data() + g * kKeyBlock, nv, s.m[qi], s.l[qi], s.acc.data() + qi * D);
  }
}

template <int kD>
THINKC_INLINE void attend_positions(Scratch& s, int64_t nw, int n) {
  for (int64_t wi = 0; wi < nw; ++wi) {
    const uint8_t* vis = s.vis.data() + wi * kKeyBlock;
    int nv = 0;
    for (int t = 0; t < n; ++t) {
      s.idx[nv] = t;
      nv += vis[t];
    }
    if (nv > 0) attend_group<kD>(s, nw, wi, nv);
  }
}

// Mask values of keys [j0, j0 + n) for the unit's nw positions; returns how many keys some position sees.
template <class E>
THINKC_INLINE int block_visibility(const PagedAttentionArgs& a, const typename E::Raw* mask_rows, int64_t j0, int n,
                                   int64_t nw, Scratch& s) {
  std::fill(s.any, s.any + n, uint8_t{0});
  for (int64_t wi = 0; wi < nw; ++wi) {
    const typename E::Raw* row = mask_rows + wi * a.mask_sw + j0;
    float* mf = s.maskf.data() + wi * kKeyBlock;
    uint8_t* vis = s.vis.data() + wi * kKeyBlock;
    for (int t = 0; t < n; ++t) {
      mf[t] = E::to_float(row[t]);
      vis[t] = mf[t] > E::kLowest;
      s.any[t] |= vis[t];
    }
  }
  int count = 0;
  for (int t = 0; t < n; ++t) count += s.any[t];
  return count;
}

// Float rows for block keys [t0, t0 + len), which sit on consecutive pool rows from `row0` (in rows of D).
template <class E>
THINKC_INLINE void set_rows(const PagedAttentionArgs& a, int64_t row0, int t0, int len, Scratch& s) {
  const int64_t D = a.D;
  const auto* ks = static_cast<const typename E::Raw*>(a.k_pool) + row0 * D;
  const auto* vs = static_cast<const typename E::Raw*>(a.v_pool) + row0 * D;
  for (int u = 0; u < len; ++u) {
    const int t = t0 + u;
    if constexpr (std::is_same<E, F32>::value) {
      s.kp[t] = ks + u * D;
      s.vp[t] = vs + u * D;
    } else if (s.any[t]) {
      float* THINKC_RESTRICT kd = s.kbuf.data() + t * D;
      float* THINKC_RESTRICT vd = s.vbuf.data() + t * D;
      for (int64_t d = 0; d < D; ++d) kd[d] = E::to_float(ks[u * D + d]);
      for (int64_t d = 0; d < D; ++d) vd[d] = E::to_float(vs[u * D + d]);
      s.kp[t] = kd;
      s.vp[t] = vd;
    }
  }
}

// Rows of the block [j0, j0 + n) of KV head h, page by page; a page holding no visible key is not looked
// up. Returns -1, or the block-table column of a page with visible keys that is not in the pool.
template <class E>
THINKC_INLINE int64_t fetch_rows(const PagedAttentionArgs& a, const int32_t* pages, int64_t h, int64_t j0, int n,
                                 Scratch& s) {
  const int64_t ps = a.page_size, n_phys = a.P / ps;
  for (int t = 0; t < n;) {
    const int64_t j = j0 + t, pi = j / ps;
    const int len = static_cast<int>(std::min<int64_t>(n - t, (pi + 1) * ps - j));
    uint8_t seen = 0;
    for (int u = t; u < t + len; ++u) seen |= s.any[u];
    if (seen) {
      const int64_t page = pages[pi];
      if (page < 0 || page >= n_phys) return pi;
      set_rows<E>(a, h * a.P + page * ps + j % ps, t, len, s);
    }
    t += len;
  }
  return -1;
}

// Asks L2 for the K / V rows of the block starting at j0 (pages outside the pool are skipped). Into L2,
// not L1 (locality 2): measured ~1.7x faster than prefetcht0 and ~2x faster than no prefetch at b=64,
// D=32 (18 MB of K / V), as L1 has few line-fill buffers and the rows are read once.
template <class E>
THINKC_INLINE void prefetch_block(const PagedAttentionArgs& a, const int32_t* pages, int64_t h, int64_t j0) {
#if defined(__GNUC__)
  const int64_t ps = a.page_size, end = std::min(a.kv_len, j0 + kKeyBlock);
  const int64_t row_bytes = a.D * static_cast<int64_t>(sizeof(typename E::Raw));
  for (int64_t j = j0; j < end;) {
    const int64_t pi = j / ps, stop = std::min(end, (pi + 1) * ps), page = pages[pi];
    if (page >= 0 && page < a.P / ps) {
      const int64_t off = (h * a.P + page * ps + j % ps) * row_bytes, bytes = (stop - j) * row_bytes;
      const char* k = static_cast<const char*>(a.k_pool) + off;
      const char* v = static_cast<const char*>(a.v_pool) + off;
      for (int64_t o = 0; o < bytes; o += 64) {
        __builtin_prefetch(k + o, 0, 2);
        __builtin_prefetch(v + o, 0, 2);
      }
    }
    j = stop;
  }
#endif
}

template <class E>
THINKC_INLINE void load_queries(const PagedAttentionArgs& a, int64_t i, int64_t h, int64_t w0, int64_t nw,
                                Scratch& s) {
  const int64_t G = s.G, D = a.D;
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
  const int64_t G = s.G, D = a.D;
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

// One unit = (row i, KV head h, query positions [w0, w0 + nw)); -1 or the error code of the header.
template <class E, int kD>
THINKC_INLINE int64_t run_unit(const PagedAttentionArgs& a, int64_t unit, Scratch& s) {
  const int64_t chunks = (a.W + kQueryChunk - 1) / kQueryChunk;
  const int64_t i = unit / (a.H * chunks), h = unit / chunks % a.H, w0 = unit % chunks * kQueryChunk;
  const int64_t nw = std::min(kQueryChunk, a.W - w0);
  load_queries<E>(a, i, h, w0, nw, s);
  const auto* mask_rows = static_cast<const typename E::Raw*>(a.mask) + i * a.mask_sb + w0 * a.mask_sw;
  const int32_t* pages = a.block_table + i * a.max_pages;
  prefetch_block<E>(a, pages, h, 0);
  for (int64_t j0 = 0; j0 < a.kv_len; j0 += kKeyBlock) {
    const int n = static_cast<int>(std::min(kKeyBlock, a.kv_len - j0));
    prefetch_block<E>(a, pages, h, j0 + kKeyBlock);
    if (block_visibility<E>(a, mask_rows, j0, n, nw, s) == 0) continue;
    const int64_t bad = fetch_rows<E>(a, pages, h, j0, n, s);
    if (bad >= 0) return i * a.max_pages + bad;
    attend_positions<kD>(s, nw, n);
  }
  store_outputs<E>(a, i, h, w0, nw, s);
  return -1;
}

template <class E, int kD>
THINKC_INLINE int64_t run_range(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  Scratch s(a.Hq / a.H, a.D);
  for (int64_t u = begin; u < end; ++u) {
    const int64_t bad = run_unit<E, kD>(a, u, s);
    if (bad >= 0) return bad;
  }
  return -1;
}

// The common head dims get their own unrolled copy; any other D runs the generic loops.
template <class E>
THINKC_INLINE int64_t run_any_dim(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  switch (a.D) {
    case 32:
      return run_range<E, 32>(a, begin, end);
    case 64:
      return run_range<E, 64>(a, begin, end);
    case 128:
      return run_range<E, 128>(a, begin, end);
    default:
      return run_range<E, 0>(a, begin, end);
  }
}

THINKC_CLONES int64_t run_f32(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_any_dim<F32>(a, begin, end);
}
THINKC_CLONES int64_t run_bf16(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_any_dim<BF16>(a, begin, end);
}
THINKC_CLONES int64_t run_f16(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  return run_any_dim<F16>(a, begin, end);
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

float bf16_to_float(uint16_t h) { return paged_math::bf16_bits_to_float(h); }
uint16_t float_to_bf16(float f) { return paged_math::float_to_bf16_bits(f); }
float f16_to_float(uint16_t h) { return paged_math::half_bits_to_float(h); }
uint16_t float_to_f16(float f) { return paged_math::float_to_half_bits(f); }

}  // namespace thinkc
