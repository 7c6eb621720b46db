// Gist BlockMask builder, CPU (see gist_block_mask.h for the algorithm and the output format).
#include "cpu/gist_block_mask.h"

#include <algorithm>
#include <vector>

namespace thinkc {
namespace {

// Each non-pad doc id must be one contiguous run, else "same document" is not an interval.
std::string check_doc_runs(const int32_t* doc, int64_t L) {
  std::vector<int32_t> run_ids;
  for (int64_t i = 0; i < L; ++i)
    if (doc[i] >= 0 && (i == 0 || doc[i - 1] != doc[i])) run_ids.push_back(doc[i]);
  std::sort(run_ids.begin(), run_ids.end());
  if (std::adjacent_find(run_ids.begin(), run_ids.end()) != run_ids.end())
    return "gist block mask: each doc id must occupy one contiguous run of the row";
  return "";
}

// Writes the tiles of one q-block row whose count satisfies `pick`, ascending, then the other
// columns ascending (torch's stable descending argsort of the 0/1 tile row).
template <typename Pick>
int32_t write_ordered(const int32_t* counts, int64_t n_kv, Pick pick, int32_t* indices) {
  int32_t n = 0;
  for (int64_t j = 0; j < n_kv; ++j)
    if (pick(counts[j])) indices[n++] = static_cast<int32_t>(j);
  int32_t pos = n;
  for (int64_t j = 0; j < n_kv; ++j)
    if (!pick(counts[j])) indices[pos++] = static_cast<int32_t>(j);
  return n;
}

}  // namespace

std::string gist_block_mask_row(const int32_t* role, const int32_t* seg, const int32_t* doc, const int32_t* expire,
                                int64_t L, int64_t q_block, int64_t kv_block, GistMaskFlags flags,
                                int32_t* kv_num_blocks, int32_t* kv_indices, int32_t* full_kv_num_blocks,
                                int32_t* full_kv_indices) {
  if (q_block <= 0 || kv_block <= 0) return "gist block mask: block sizes must be positive";
  std::string err = check_doc_runs(doc, L);
  if (!err.empty()) return err;
  const int64_t n_q = ceil_div(L, q_block), n_kv = ceil_div(L, kv_block);

  // normal_prefix[i]: queries before i that follow the base rule.
  std::vector<int32_t> normal_prefix(L + 1, 0);
  for (int64_t i = 0; i < L; ++i)
    normal_prefix[i + 1] = normal_prefix[i] + (gist_query_is_special(role[i], flags) ? 0 : 1);
  // run_end[i]: one past the last index of i's document run.
  std::vector<int32_t> run_end(L);
  for (int64_t i = L - 1; i >= 0; --i)
    run_end[i] = (i == L - 1 || doc[i + 1] != doc[i]) ? static_cast<int32_t>(i + 1) : run_end[i + 1];

  std::vector<int32_t> counts(n_q * n_kv, 0), diff(n_q * n_kv, 0);
  for (int64_t k = 0; k < L; ++k) {
    if (doc[k] < 0) continue;  // padding keys are never visible
    const int64_t a = k, e = std::min<int64_t>(expire[k], run_end[k]);
    if (e <= a) continue;
    const int64_t kb = k / kv_block, qa = a / q_block, qe = (e - 1) / q_block;
    if (qa == qe) {
      counts[qa * n_kv + kb] += normal_prefix[e] - normal_prefix[a];
      continue;
    }
    counts[qa * n_kv + kb] += normal_prefix[(qa + 1) * q_block] - normal_prefix[a];
    counts[qe * n_kv + kb] += normal_prefix[e] - normal_prefix[qe * q_block];
    if (qe > qa + 1) {
      diff[(qa + 1) * n_kv + kb] += 1;
      diff[qe * n_kv + kb] -= 1;
    }
  }
  // q-blocks fully inside a key's interval: (#covering keys) x (#normal queries of the block).
  std::vector<int32_t> covering(n_kv, 0);
  for (int64_t i = 0; i < n_q; ++i) {
    const int32_t normal_in_block = normal_prefix[std::min<int64_t>((i + 1) * q_block, L)] - normal_prefix[i * q_block];
    for (int64_t j = 0; j < n_kv; ++j) {
      covering[j] += diff[i * n_kv + j];
      counts[i * n_kv + j] += covering[j] * normal_in_block;
    }
  }

  if (flags.any()) {
    // Span of each segment's relevant keys: all its tokens (see_current) or its cache tokens.
    std::vector<int32_t> lo(L, INT32_MAX), hi(L, -1);
    for (int64_t t = 0; t < L; ++t) {
      if (seg[t] < 0 || !(flags.see_current || role[t] == kGistRoleCache)) continue;
      if (seg[t] >= L) return "gist block mask: seg ids must be < L when a cache-token flag is on";
      lo[seg[t]] = std::min<int32_t>(lo[seg[t]], static_cast<int32_t>(t));
      hi[seg[t]] = std::max<int32_t>(hi[seg[t]], static_cast<int32_t>(t));
    }
    for (int64_t q = 0; q < L; ++q) {
      if (role[q] != kGistRoleCache || seg[q] < 0 || doc[q] < 0) continue;  // row = base row (or empty)
      int32_t* row = counts.data() + (q / q_block) * n_kv;
      const int64_t first = lo[seg[q]];
      int64_t kb = first / kv_block, next_block = (kb + 1) * kv_block;  // no division in the loop
      for (int64_t k = first; k <= hi[seg[q]]; ++k) {
        if (k == next_block) {
          ++kb;
          next_block += kv_block;
        }
        const int32_t now = gist_visible(q, k, role[q], seg[q], doc[q], role[k], seg[k], doc[k], expire[k], flags);
        const int32_t base = flags.see_current ? 0 : gist_base_visible(q, k, doc[q], doc[k], expire[k]);
        row[kb] += now - base;
      }
    }
  }

  const int32_t full = static_cast<int32_t>(q_block * kv_block);
  for (int64_t i = 0; i < n_q; ++i) {
    const int32_t* c = counts.data() + i * n_kv;
    kv_num_blocks[i] = write_ordered(c, n_kv, [full](int32_t x) { return x > 0 && x < full; }, kv_indices + i * n_kv);
    full_kv_num_blocks[i] = write_ordered(c, n_kv, [full](int32_t x) { return x == full; }, full_kv_indices + i * n_kv);
  }
  return "";
}

std::string gist_block_mask_cpu(const int32_t* role, const int32_t* seg, const int32_t* doc, const int32_t* expire,
                                int64_t B, int64_t L, int64_t q_block, int64_t kv_block, GistMaskFlags flags,
                                int32_t* kv_num_blocks, int32_t* kv_indices, int32_t* full_kv_num_blocks,
                                int32_t* full_kv_indices) {
  if (q_block <= 0 || kv_block <= 0) return "gist block mask: block sizes must be positive";
  const int64_t n_q = ceil_div(L, q_block), n_kv = ceil_div(L, kv_block);
  for (int64_t b = 0; b < B; ++b) {
    std::string err = gist_block_mask_row(role + b * L, seg + b * L, doc + b * L, expire + b * L, L, q_block, kv_block,
                                          flags, kv_num_blocks + b * n_q, kv_indices + b * n_q * n_kv,
                                          full_kv_num_blocks + b * n_q, full_kv_indices + b * n_q * n_kv);
    if (!err.empty()) return err;
  }
  return "";
}

}  // namespace thinkc
