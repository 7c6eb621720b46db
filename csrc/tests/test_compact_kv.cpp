// Self-checking test of the CPU compaction against a naive copy: random rows (random lengths, keep
// sets with adjacent / empty ranges, empty and full keeps), several row widths; kept tokens in
// order, freed tail zeroed, bytes past the old length untouched; invalid inputs rejected.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tests/check.h"
#include "cpu/compact_kv.h"

namespace {

using thinkc_test::expect;

std::vector<int32_t> random_ranges(std::mt19937& rng, int len) {
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<int32_t> r;
  const int kind = uni(0, 9);
  if (kind == 0) return r;  // keep nothing
  if (kind == 1) return len ? std::vector<int32_t>{0, len} : r;  // keep all
  int t = 0;
  while (t < len) {
    int s = t + uni(0, 4), e = s + uni(0, 6);  // e == s: an empty range, legal
    if (s > len) break;
    if (e > len) e = len;
    r.push_back(s);
    r.push_back(e);
    t = e + uni(0, 1);  // 0: adjacent to the next range
  }
  return r;
}

void check_random(std::mt19937& rng, int trial) {
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const int C = uni(1, 64), row_bytes = uni(1, 40);
  const int len = uni(0, C);
  std::vector<int32_t> ranges = random_ranges(rng, len);
  const int64_t n = static_cast<int64_t>(ranges.size() / 2);
  std::vector<char> head(static_cast<size_t>(C) * row_bytes);
  for (auto& byte : head) byte = static_cast<char>(uni(1, 255));
  const std::vector<char> before = head;

  // Naive expectation.
  std::vector<char> expect_head = before;
  int64_t dst = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int32_t t = ranges[2 * i]; t < ranges[2 * i + 1]; ++t, ++dst)
      std::memcpy(&expect_head[dst * row_bytes], &before[static_cast<size_t>(t) * row_bytes], row_bytes);
  for (int64_t t = dst; t < len; ++t) std::memset(&expect_head[t * row_bytes], 0, row_bytes);

  const int32_t offsets[2] = {0, static_cast<int32_t>(n)};
  const int32_t lengths[1] = {len};
  const std::string err = thinkc::compact_kv_check(ranges.data(), offsets, lengths, 1, n, C);
  expect(err.empty(), "trial " + std::to_string(trial) + ": valid input rejected: " + err);
  expect(thinkc::compact_kv_new_length(ranges.data(), offsets, 0) == dst, "new length");
  thinkc::compact_kv_head(head.data(), row_bytes, ranges.data(), n, len);
  expect(head == expect_head, "trial " + std::to_string(trial) + ": compacted bytes differ");
}

void check_invalid() {
  const int32_t lengths[2] = {8, 4};
  struct Case {
    std::vector<int32_t> ranges, offsets;
    const char* what;
  };
  const Case cases[] = {
      {{0, 9}, {0, 1, 1}, "end past length"},
      {{-1, 2}, {0, 1, 1}, "negative start"},
      {{4, 6, 1, 2}, {0, 2, 2}, "unsorted"},
      {{0, 4, 3, 6}, {0, 2, 2}, "overlapping"},
      {{5, 3}, {0, 1, 1}, "end before start"},
      {{0, 1}, {1, 1, 1}, "offsets[0] != 0"},
      {{0, 1}, {0, 1, 2}, "offsets[B] != R"},
      {{0, 2, 0, 1}, {0, 2, 1}, "decreasing offsets"},
  };
  for (const Case& c : cases) {
    const std::string err =
        thinkc::compact_kv_check(c.ranges.data(), c.offsets.data(), lengths, 2, c.ranges.size() / 2, 10);
    expect(!err.empty(), std::string("invalid input accepted: ") + c.what);
  }
  const int32_t too_long[2] = {11, 0}, ok_offsets[3] = {0, 0, 0};
  expect(!thinkc::compact_kv_check(nullptr, ok_offsets, too_long, 2, 0, 10).empty(), "length > capacity accepted");
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 2000; ++trial) check_random(rng, trial);
  check_invalid();
  return thinkc_test::report("test_compact_kv");
}
