// In-place paged KV compaction, pure C++ (see compact_kv_paged.h).
#include "cpu/compact_kv_paged.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/compact_kv.h"

namespace thinkc {

std::string compact_kv_paged_check(const int32_t* ranges, const int32_t* offsets, const int32_t* lengths, int64_t B,
                                   int64_t R, const int32_t* block_table, int64_t max_pages, int64_t page_size,
                                   int64_t n_pages) {
  if (page_size < 1) return "page_size must be >= 1, got " + std::to_string(page_size);
  if (max_pages < 0 || n_pages < 0) return "negative max_pages or n_pages";
  const std::string err = compact_kv_check(ranges, offsets, lengths, B, R, max_pages * page_size);
  if (!err.empty()) return err;
  std::vector<int64_t> owner(static_cast<size_t>(n_pages), -1);  // row using each physical page
  for (int64_t b = 0; b < B; ++b) {
    const int64_t used = (lengths[b] + page_size - 1) / page_size;  // <= max_pages (length <= capacity)
    for (int64_t i = 0; i < used; ++i) {
      const int64_t p = block_table[b * max_pages + i];
      const std::string where = "row " + std::to_string(b) + ": block_table[" + std::to_string(b) + ", " +
                                std::to_string(i) + "] = page " + std::to_string(p);
      if (p < 0 || p >= n_pages) return where + " outside [0, n_pages=" + std::to_string(n_pages) + ")";
      if (owner[p] >= 0)
        return where + " is already used by " + (owner[p] == b ? "this row" : "row " + std::to_string(owner[p]));
      owner[p] = b;
    }
  }
  return "";
}

void compact_kv_paged_head(char* head, int64_t row_bytes, const int32_t* pages, int64_t page_size,
                           const int32_t* ranges, int64_t n_ranges, int64_t old_len) {
  int64_t dst = 0;
  for (int64_t i = 0; i < n_ranges; ++i) {
    for (int64_t src = ranges[2 * i], end = ranges[2 * i + 1]; src < end;) {
      const int64_t n = std::min({end - src, page_size - src % page_size, page_size - dst % page_size});
      if (dst != src)
        std::memmove(head + paged_slot(pages, page_size, dst) * row_bytes,
                     head + paged_slot(pages, page_size, src) * row_bytes, n * row_bytes);
      src += n;
      dst += n;
    }
  }
  for (int64_t j = dst; j < old_len;) {
    const int64_t n = std::min(old_len - j, page_size - j % page_size);
    std::memset(head + paged_slot(pages, page_size, j) * row_bytes, 0, n * row_bytes);
    j += n;
  }
}

}  // namespace thinkc
