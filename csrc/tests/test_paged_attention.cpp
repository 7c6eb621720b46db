// Self-checking test of the paged CPU attention against a naive double-precision loop: random pools
// (pages shuffled between rows, page sizes 1..40, GQA group sizes 1..3, W from 1 to 33 so that query
// chunks split, head dims 1..40, kv_len 0..~120, mask rows read through strides), every slot that no
// query may see filled with NaN (and unused block-table entries with garbage page numbers) so a read of
// one shows up; fully masked queries give zeros; a visible key on a page outside the pool is reported;
// units split arbitrarily between calls; float32, bfloat16 and float16; the float <-> half / bfloat16
// conversions (round trip of every pattern, nearest-even rounding of random floats).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/check.h"
#include "cpu/paged_attention.h"

namespace {

using thinkc_test::expect;

int uni(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
float unif(std::mt19937& rng, float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(rng); }

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A problem in float; its bf16 / f16 runs round every value to the dtype first.
struct Case {
  int64_t b, Hq, H, W, D, ps, kv_len, max_pages, n_pages, cap;  // cap: mask row length (>= kv_len)
  std::vector<int32_t> table;
  std::vector<float> k, v, q, mask;  // k, v [H, (n_pages + 1) * ps, D]; q [b, Hq, W, D]; mask [b, W, cap]
  float scale;

  int64_t P() const { return (n_pages + 1) * ps; }
  int64_t slot(int64_t i, int64_t j) const { return int64_t(table[i * max_pages + j / ps]) * ps + j % ps; }
  float m(int64_t i, int64_t w, int64_t j) const { return mask[(i * W + w) * cap + j]; }
};

float mask_value(std::mt19937& rng) {
  const int kind = uni(rng, 0, 9);
  if (kind == 0) return -std::numeric_limits<float>::infinity();
  if (kind <= 2) return std::numeric_limits<float>::lowest();
  return unif(rng, -3.0f, 3.0f);
}

// Random mask: keys past each row's length hidden, random holes, some fully hidden queries.
void fill_mask(std::mt19937& rng, Case& c, const std::vector<int64_t>& lens) {
  c.mask.assign(c.b * c.W * c.cap, 0.0f);
  for (int64_t i = 0; i < c.b; ++i)
    for (int64_t w = 0; w < c.W; ++w) {
      const bool hidden = uni(rng, 0, 7) == 0;
      for (int64_t j = 0; j < c.cap; ++j) {
        float x = mask_value(rng);
        if (hidden || j >= lens[i]) x = uni(rng, 0, 1) ? std::numeric_limits<float>::lowest() : -INFINITY;
        c.mask[(i * c.W + w) * c.cap + j] = x;
      }
    }
}

Case random_case(std::mt19937& rng) {
  Case c;
  const int64_t Ws[] = {1, 1, 2, 7, 16, 17, 33}, Ds[] = {1, 5, 16, 32, 40}, pss[] = {1, 3, 16, 40};
  c.b = uni(rng, 1, 4), c.H = uni(rng, 1, 3), c.Hq = c.H * uni(rng, 1, 3);
  c.W = Ws[uni(rng, 0, 6)], c.D = Ds[uni(rng, 0, 4)], c.ps = pss[uni(rng, 0, 3)];
  c.kv_len = uni(rng, 0, 120), c.scale = unif(rng, 0.1f, 0.5f);
  c.max_pages = (c.kv_len + c.ps - 1) / c.ps + uni(rng, 0, 2);
  c.cap = c.kv_len + uni(rng, 0, 5);
  std::vector<int64_t> lens(c.b), used(c.b);
  int64_t total = 0;
  for (int64_t i = 0; i < c.b; ++i) {
    lens[i] = uni(rng, 0, static_cast<int>(c.kv_len));
    total += used[i] = (lens[i] + c.ps - 1) / c.ps;
  }
  c.n_pages = total + uni(rng, 0, 3);
  std::vector<int32_t> perm(c.n_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  int next = 0;
  c.table.assign(c.b * c.max_pages, 0);
  for (int64_t i = 0; i < c.b; ++i)  // past a row's pages: the null page, or garbage (never read)
    for (int64_t p = 0; p < c.max_pages; ++p)
      c.table[i * c.max_pages + p] = p < used[i] ? perm[next++] : (uni(rng, 0, 1) ? c.n_pages : uni(rng, -9, 999));
  fill_mask(rng, c, lens);
  c.k.assign(c.H * c.P() * c.D, kNaN);
  c.v.assign(c.H * c.P() * c.D, kNaN);
  for (int64_t i = 0; i < c.b; ++i)  // only slots some query sees hold numbers
    for (int64_t j = 0; j < c.kv_len; ++j) {
      bool seen = false;
      for (int64_t w = 0; w < c.W; ++w) seen |= c.m(i, w, j) > std::numeric_limits<float>::lowest();
      for (int64_t h = 0; seen && h < c.H; ++h)
        for (int64_t d = 0; d < c.D; ++d) {
          c.k[(h * c.P() + c.slot(i, j)) * c.D + d] = unif(rng, -2.0f, 2.0f);
          c.v[(h * c.P() + c.slot(i, j)) * c.D + d] = unif(rng, -2.0f, 2.0f);
        }
    }
  c.q.resize(c.b * c.Hq * c.W * c.D);
  for (auto& x : c.q) x = unif(rng, -2.0f, 2.0f);
  return c;
}

// Naive expectation, in double: visible keys only, zeros for a query that sees none.
std::vector<double> naive(const Case& c) {
  std::vector<double> out(c.b * c.Hq * c.W * c.D, 0.0);
  const int64_t G = c.Hq / c.H;
  for (int64_t i = 0; i < c.b; ++i)
    for (int64_t hq = 0; hq < c.Hq; ++hq)
      for (int64_t w = 0; w < c.W; ++w) {
        const float* q = &c.q[((i * c.Hq + hq) * c.W + w) * c.D];
        std::vector<std::pair<int64_t, double>> s;
        for (int64_t j = 0; j < c.kv_len; ++j) {
          if (!(c.m(i, w, j) > std::numeric_limits<float>::lowest())) continue;
          const float* k = &c.k[((hq / G) * c.P() + c.slot(i, j)) * c.D];
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d) dot += double(q[d]) * k[d];
          s.push_back({j, dot * c.scale + c.m(i, w, j)});
        }
        if (s.empty()) continue;
        double mx = -INFINITY, sum = 0;
        for (auto& e : s) mx = std::max(mx, e.second);
        for (auto& e : s) sum += (e.second = std::exp(e.second - mx));
        double* o = &out[((i * c.Hq + hq) * c.W + w) * c.D];
        for (auto& e : s)
          for (int64_t d = 0; d < c.D; ++d)
            o[d] += e.second / sum * c.v[((hq / G) * c.P() + c.slot(i, e.first)) * c.D + d];
      }
  return out;
}

thinkc::PagedAttentionArgs args_for(const Case& c, const void* q, const void* k, const void* v, const void* mask,
                                    void* out, thinkc::PagedDtype dtype) {
  thinkc::PagedAttentionArgs a;
  a.q = q, a.k_pool = k, a.v_pool = v, a.block_table = c.table.data(), a.mask = mask, a.out = out;
  a.b = c.b, a.Hq = c.Hq, a.H = c.H, a.W = c.W, a.D = c.D, a.P = c.P();
  a.max_pages = c.max_pages, a.page_size = c.ps, a.kv_len = c.kv_len;
  a.mask_sb = c.W * c.cap, a.mask_sw = c.cap, a.scale = c.scale, a.dtype = dtype;
  return a;
}

// Runs the units in two arbitrary pieces; -1 or the kernel's error code.
int64_t run_split(std::mt19937& rng, const thinkc::PagedAttentionArgs& a) {
  const int64_t units = thinkc::paged_attention_units(a), cut = uni(rng, 0, static_cast<int>(units));
  const int64_t e1 = thinkc::paged_attention_run(a, 0, cut), e2 = thinkc::paged_attention_run(a, cut, units);
  return e1 >= 0 ? e1 : e2;
}

void compare(const std::vector<float>& got, const std::vector<double>& want, double tol, const std::string& where) {
  for (size_t x = 0; x < want.size(); ++x) {
    const bool ok = std::isfinite(got[x]) && std::fabs(got[x] - want[x]) <= tol * (1.0 + std::fabs(want[x]));
    if (!ok) {
      expect(false, where + ": element " + std::to_string(x) + " = " + std::to_string(got[x]) + ", expected " +
                        std::to_string(want[x]));
      return;
    }
  }
}

void check_f32(std::mt19937& rng, const Case& c, const std::string& where) {
  std::vector<float> out(c.q.size(), kNaN);
  const auto a = args_for(c, c.q.data(), c.k.data(), c.v.data(), c.mask.data(), out.data(),
                          thinkc::PagedDtype::kFloat32);
  expect(std::string(thinkc::paged_attention_check(a)).empty(), where + ": valid sizes rejected");
  expect(run_split(rng, a) == -1, where + ": error reported on a valid pool");
  compare(out, naive(c), 1e-5, where + " f32");
}

// bf16 / f16: round the case's values to the dtype, run on the bits, compare with the naive loop on the
// rounded values (outputs are rounded once more: tolerance of a few ulps of the dtype).
template <uint16_t (*ToBits)(float), float (*FromBits)(uint16_t)>
void check_half(std::mt19937& rng, Case c, thinkc::PagedDtype dtype, double tol, const std::string& where) {
  auto bits = [](std::vector<float>& xs) {
    std::vector<uint16_t> out(xs.size());
    for (size_t i = 0; i < xs.size(); ++i) xs[i] = FromBits(out[i] = ToBits(xs[i]));
    return out;
  };
  const std::vector<uint16_t> q = bits(c.q), k = bits(c.k), v = bits(c.v), mask = bits(c.mask);
  std::vector<uint16_t> out(c.q.size(), 0x7e00);
  const auto a = args_for(c, q.data(), k.data(), v.data(), mask.data(), out.data(), dtype);
  expect(run_split(rng, a) == -1, where + ": error reported on a valid pool");
  std::vector<float> got(out.size());
  for (size_t i = 0; i < out.size(); ++i) got[i] = FromBits(out[i]);
  compare(got, naive(c), tol, where);
}

// A visible key on a page outside the pool is reported (row * max_pages + page index); the same entry
// behind fully masked keys is never read. Size checks reject Hq % H != 0 and kv_len past the table.
void check_bad_page() {
  Case c{2, 2, 1, 1, 4, 4, 10, 3, 6, 10, {0, 1, 2, 3, 4, 5}, {}, {}, {}, {}, 0.5f};
  c.k.assign(c.H * c.P() * c.D, 0.25f), c.v.assign(c.H * c.P() * c.D, 1.0f), c.q.assign(c.b * c.Hq * c.D, 1.0f);
  c.mask.assign(c.b * c.cap, 0.5f);
  for (int64_t j = 0; j < c.ps; ++j) c.mask[c.cap + j] = std::numeric_limits<float>::lowest();  // row 1, page 0
  c.table[3] = -3;  // row 1's first page: only masked keys -> never read
  std::vector<float> out(c.q.size(), kNaN);
  auto a = args_for(c, c.q.data(), c.k.data(), c.v.data(), c.mask.data(), out.data(), thinkc::PagedDtype::kFloat32);
  const int64_t units = thinkc::paged_attention_units(a);
  expect(thinkc::paged_attention_run(a, 0, units) == -1, "entry behind masked keys was read");
  expect(out[c.Hq * c.D] == 1.0f, "row 1 output wrong with a masked bad page");
  c.table[4] = 7;  // row 1's second page: past the null page (6), keys visible
  expect(thinkc::paged_attention_run(a, 0, units) == 4, "visible key on a page outside the pool not reported");
  c.table[4] = 4, c.table[0] = -1;
  expect(thinkc::paged_attention_run(a, 0, units) == 0, "negative page with visible keys not reported");
  a.Hq = 3, a.H = 2;
  expect(!std::string(thinkc::paged_attention_check(a)).empty(), "Hq % H != 0 accepted");
  a.Hq = 2, a.H = 1, a.kv_len = a.max_pages * a.page_size + 1;
  expect(!std::string(thinkc::paged_attention_check(a)).empty(), "kv_len past the block table accepted");
  a.kv_len = 10, a.P = 27;
  expect(!std::string(thinkc::paged_attention_check(a)).empty(), "P not a whole number of pages accepted");
}

// Every non-NaN half / bf16 pattern survives a round trip; random floats round to the nearest value
// (ties to even), checked against the neighbouring patterns.
template <uint16_t (*ToBits)(float), float (*FromBits)(uint16_t)>
void check_conversion(const char* name, float max_finite) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = FromBits(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      expect(std::isnan(FromBits(ToBits(f))), std::string(name) + ": NaN lost");
      continue;
    }
    expect(ToBits(f) == h, std::string(name) + ": round trip of pattern " + std::to_string(h));
  }
  std::mt19937 rng(5);
  for (int t = 0; t < 200000; ++t) {
    uint32_t u = static_cast<uint32_t>(rng());
    float f;
    std::memcpy(&f, &u, sizeof f);
    if (t % 2) f = std::ldexp(unif(rng, -1.0f, 1.0f), uni(rng, -26, 17));  // the dtype's own range
    if (!std::isfinite(f) || std::fabs(f) >= max_finite) continue;
    const uint16_t h = ToBits(f);
    const double err = std::fabs(double(FromBits(h)) - f);
    for (int step : {-1, 1}) {
      const float other = FromBits(static_cast<uint16_t>(h + step));
      if (std::isnan(other) || (h & 0x7fff) + step < 0) continue;
      const double e2 = std::fabs(double(other) - f);
      expect(err < e2 || (err == e2 && (h & 1) == 0), std::string(name) + ": not the nearest for " + std::to_string(f));
    }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 400; ++trial) {
    const Case c = random_case(rng);
    const std::string where = "trial " + std::to_string(trial);
    check_f32(rng, c, where);
    if (trial % 4 == 0) {
      check_half<thinkc::float_to_bf16, thinkc::bf16_to_float>(rng, c, thinkc::PagedDtype::kBFloat16, 2e-2,
                                                                where + " bf16");
      check_half<thinkc::float_to_f16, thinkc::f16_to_float>(rng, c, thinkc::PagedDtype::kFloat16, 3e-3,
                                                              where + " f16");
    }
  }
  check_bad_page();
  check_conversion<thinkc::float_to_f16, thinkc::f16_to_float>("f16", 65504.0f);
  check_conversion<thinkc::float_to_bf16, thinkc::bf16_to_float>("bf16", 3.3e38f);
  return thinkc_test::report("test_paged_attention");
}
