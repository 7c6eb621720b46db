// Self-checking test of the paged CPU compaction against a naive gather -> compact -> scatter: random
// pools (page sizes 1..9, pages shuffled between rows, garbage block-table entries past a row's pages,
// several heads and slot widths, keep sets with adjacent / empty ranges crossing page boundaries,
// empty and full keeps, empty rows); kept tokens in order, freed logical tail zeroed, every other
// byte of the pool untouched; invalid inputs (bad pages, shared pages, bad ranges) rejected.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/check.h"
#include "cpu/compact_kv.h"
#include "cpu/compact_kv_paged.h"

namespace {

using thinkc_test::expect;

int uni(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// One row's keep set: empty, full, or random runs (some adjacent, some empty).
std::vector<int32_t> random_ranges(std::mt19937& rng, int len) {
  std::vector<int32_t> r;
  const int kind = uni(rng, 0, 9);
  if (kind == 0) return r;
  if (kind == 1) return len ? std::vector<int32_t>{0, len} : r;
  int t = 0;
  while (t < len) {
    int s = t + uni(rng, 0, 5), e = s + uni(rng, 0, 11);
    if (s > len) break;
    if (e > len) e = len;
    r.push_back(s);
    r.push_back(e);
    t = e + uni(rng, 0, 1);
  }
  return r;
}

struct Pool {
  int64_t B, H, page_size, max_pages, n_pages, row_bytes;
  std::vector<int32_t> table, lengths, ranges, offsets;
  std::vector<char> data;  // [H, n_pages * page_size, row_bytes]

  char* slot(int64_t h, int64_t s) { return data.data() + (h * n_pages * page_size + s) * row_bytes; }
};

Pool random_pool(std::mt19937& rng) {
  Pool p;
  p.B = uni(rng, 1, 5);
  p.H = uni(rng, 1, 3);
  p.page_size = uni(rng, 1, 9);
  p.max_pages = uni(rng, 1, 6);
  p.row_bytes = uni(rng, 1, 24);
  std::vector<int> used(p.B);
  int total = 0;
  for (auto& u : used) total += (u = uni(rng, 0, static_cast<int>(p.max_pages)));
  p.n_pages = total + uni(rng, 0, 4);  // spare pages nobody owns
  std::vector<int32_t> perm(p.n_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  p.table.assign(p.B * p.max_pages, 0);
  p.offsets.push_back(0);
  int next = 0;
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t i = 0; i < p.max_pages; ++i)  // past the row's pages: -1 or any number
      p.table[b * p.max_pages + i] = i < used[b] ? perm[next++] : (uni(rng, 0, 1) ? -1 : uni(rng, -50, 50));
    const int lo = used[b] ? static_cast<int>((used[b] - 1) * p.page_size) + 1 : 0;
    const int len = uni(rng, lo, static_cast<int>(used[b] * p.page_size));
    p.lengths.push_back(len);
    const std::vector<int32_t> r = random_ranges(rng, len);
    p.ranges.insert(p.ranges.end(), r.begin(), r.end());
    p.offsets.push_back(static_cast<int32_t>(p.ranges.size() / 2));
  }
  p.data.resize(static_cast<size_t>(p.H * p.n_pages * p.page_size * p.row_bytes));
  for (auto& byte : p.data) byte = static_cast<char>(uni(rng, 1, 255));
  return p;
}

// Naive expectation: gather each row's logical tokens, concatenate the kept ones, zero-pad, scatter.
std::vector<char> naive(Pool p) {
  for (int64_t b = 0; b < p.B; ++b) {
    const int32_t* pages = &p.table[b * p.max_pages];
    for (int64_t h = 0; h < p.H; ++h) {
      std::vector<char> row(static_cast<size_t>(p.lengths[b] * p.row_bytes), 0);
      int64_t dst = 0;
      for (int64_t i = p.offsets[b]; i < p.offsets[b + 1]; ++i)
        for (int64_t t = p.ranges[2 * i]; t < p.ranges[2 * i + 1]; ++t, ++dst)
          std::memcpy(&row[dst * p.row_bytes], p.slot(h, thinkc::paged_slot(pages, p.page_size, t)), p.row_bytes);
      for (int64_t t = 0; t < p.lengths[b]; ++t)
        std::memcpy(p.slot(h, thinkc::paged_slot(pages, p.page_size, t)), &row[t * p.row_bytes], p.row_bytes);
    }
  }
  return p.data;
}

void check_random(std::mt19937& rng, int trial) {
  Pool p = random_pool(rng);
  const std::vector<char> expect_data = naive(p);
  const std::string where = "trial " + std::to_string(trial);
  const std::string err =
      thinkc::compact_kv_paged_check(p.ranges.data(), p.offsets.data(), p.lengths.data(), p.B, p.offsets.back(),
                                     p.table.data(), p.max_pages, p.page_size, p.n_pages);
  expect(err.empty(), where + ": valid input rejected: " + err);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      thinkc::compact_kv_paged_head(p.slot(h, 0), p.row_bytes, &p.table[b * p.max_pages], p.page_size,
                                    p.ranges.data() + 2 * p.offsets[b], p.offsets[b + 1] - p.offsets[b], p.lengths[b]);
  expect(p.data == expect_data, where + ": compacted pool differs from the naive copy");
}

// A long run shifted left by one inside a single page and across pages (maximal overlap).
void check_shift_by_one() {
  std::mt19937 rng(7);
  for (int64_t page_size : {1, 4, 16}) {
    Pool p{1, 1, page_size, 4, 4, 3, {2, 0, 3, 1}, {static_cast<int32_t>(4 * page_size)},
           {1, static_cast<int32_t>(4 * page_size)}, {0, 1}, {}};
    p.data.resize(static_cast<size_t>(4 * page_size * 3));
    for (auto& byte : p.data) byte = static_cast<char>(uni(rng, 1, 255));
    const std::vector<char> expect_data = naive(p);
    thinkc::compact_kv_paged_head(p.slot(0, 0), 3, p.table.data(), page_size, p.ranges.data(), 1, p.lengths[0]);
    expect(p.data == expect_data, "shift by one, page_size " + std::to_string(page_size));
  }
}

void check_invalid() {
  // Two rows, page_size 4, max_pages 2, 5 pages in the pool; row 0 length 6 (2 pages), row 1 length 3.
  struct Case {
    std::vector<int32_t> table, lengths, ranges, offsets;
    const char* what;
  };
  const Case cases[] = {
      {{0, 1, 2, -1}, {6, 3}, {0, 7}, {0, 1, 1}, "range past length"},
      {{0, 1, 2, -1}, {9, 3}, {}, {0, 0, 0}, "length past max_pages * page_size"},
      {{0, 5, 2, -1}, {6, 3}, {}, {0, 0, 0}, "page past n_pages"},
      {{0, -1, 2, -1}, {6, 3}, {}, {0, 0, 0}, "negative page"},
      {{0, 1, 1, -1}, {6, 3}, {}, {0, 0, 0}, "page shared by two rows"},
      {{3, 3, 2, -1}, {6, 3}, {}, {0, 0, 0}, "page used twice by one row"},
      {{0, 1, 2, -1}, {6, 3}, {2, 4, 0, 1}, {0, 2, 2}, "unsorted ranges"},
  };
  for (const Case& c : cases) {
    const std::string err = thinkc::compact_kv_paged_check(c.ranges.data(), c.offsets.data(), c.lengths.data(), 2,
                                                           c.ranges.size() / 2, c.table.data(), 2, 4, 5);
    expect(!err.empty(), std::string("invalid input accepted: ") + c.what);
  }
  // Entries past a row's pages are never read: garbage there is fine.
  const int32_t table[4] = {0, 99, 2, -7}, lengths[2] = {4, 3}, offsets[3] = {0, 0, 0};
  expect(thinkc::compact_kv_paged_check(nullptr, offsets, lengths, 2, 0, table, 2, 4, 5).empty(),
         "garbage past a row's pages rejected");
  expect(!thinkc::compact_kv_paged_check(nullptr, offsets, lengths, 2, 0, table, 2, 0, 5).empty(),
         "page_size 0 accepted");
}

}  // namespace

int main() {
  std::mt19937 rng(4321);
  for (int trial = 0; trial < 3000; ++trial) check_random(rng, trial);
  check_shift_by_one();
  check_invalid();
  return thinkc_test::report("test_compact_kv_paged");
}
