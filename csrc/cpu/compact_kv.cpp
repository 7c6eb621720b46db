// In-place KV compaction, pure C++ (see compact_kv.h).
#include "cpu/compact_kv.h"

#include <cstring>

namespace thinkc {

std::string compact_kv_check(const int32_t* ranges, const int32_t* offsets, const int32_t* lengths, int64_t B,
                             int64_t R, int64_t capacity) {
  if (offsets[0] != 0) return "range_offsets[0] must be 0, got " + std::to_string(offsets[0]);
  if (offsets[B] != R)
    return "range_offsets[B] must equal the number of ranges (" + std::to_string(R) + "), got " +
           std::to_string(offsets[B]);
  for (int64_t b = 0; b < B; ++b) {
    const std::string row = "row " + std::to_string(b) + ": ";
    const int64_t len = lengths[b];
    if (len < 0 || len > capacity)
      return row + "length " + std::to_string(len) + " outside [0, capacity=" + std::to_string(capacity) + "]";
    if (offsets[b + 1] < offsets[b]) return row + "range_offsets must be non-decreasing";
    int64_t prev_end = 0;
    for (int64_t i = offsets[b]; i < offsets[b + 1]; ++i) {
      const int64_t s = ranges[2 * i], e = ranges[2 * i + 1];
      const std::string where = row + "range " + std::to_string(i) + " [" + std::to_string(s) + ", " +
                                std::to_string(e) + ")";
      if (s < 0 || e < s || e > len) return where + " outside [0, length=" + std::to_string(len) + ")";
      if (s < prev_end) return where + " unsorted or overlapping the previous range";
      prev_end = e;
    }
  }
  return "";
}

int64_t compact_kv_new_length(const int32_t* ranges, const int32_t* offsets, int64_t b) {
  int64_t total = 0;
  for (int64_t i = offsets[b]; i < offsets[b + 1]; ++i) total += ranges[2 * i + 1] - ranges[2 * i];
  return total;
}

void compact_kv_head(char* head, int64_t row_bytes, const int32_t* ranges, int64_t n_ranges, int64_t old_len) {
  int64_t dst = 0;
  for (int64_t i = 0; i < n_ranges; ++i) {
    const int64_t s = ranges[2 * i], n = ranges[2 * i + 1] - s;
    if (n > 0 && dst != s) std::memmove(head + dst * row_bytes, head + s * row_bytes, n * row_bytes);
    dst += n;
  }
  if (old_len > dst) std::memset(head + dst * row_bytes, 0, (old_len - dst) * row_bytes);
}

}  // namespace thinkc
